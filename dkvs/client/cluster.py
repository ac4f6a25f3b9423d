"""The client's view of the cluster: which nodes exist, which one is master, which failed.

No I/O happens here: :meth:`ClusterView.discover` is given a ``fetch_status(url)``
function, and the choice of master from a set of ``/status`` documents is the pure
function :func:`choose_master`. The view is shared by every thread of a client and is
thread safe; discovery runs in one thread at a time, and threads that waited for it reuse
its result.

How the master is found. Every known node is asked for ``/status``: the seeds, every
member any node listed, and then the members those answers named that were not known. The master is the node that answers ``role: master`` with the
highest epoch, unless a node with a higher epoch names a different master: then the
claimant is a deposed master that has not noticed yet, and discovery reports "no master"
so the caller retries. Asking every node, not just the first, costs a few requests per
failover and avoids writing to a partitioned old master. Nodes that failed in the last
:data:`FAILED_NODE_SECONDS` are asked last, and not at all once a master is found: a dead
old master would otherwise cost a connect timeout in every discovery.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from ..errors import DkvsError, NoMaster
from .errors import NoMajority, Unavailable, no_majority

__all__ = ["ClusterView", "choose_master", "FAILED_NODE_SECONDS"]

FAILED_NODE_SECONDS = 5.0  # a node that failed is tried last for this long


def choose_master(statuses: Iterable[tuple[str, dict]]) -> str | None:
    """The URL (as we reached it) of the master among ``(url, /status document)`` pairs."""
    best: tuple[int, str] | None = None
    named: dict[int, set[str]] = {}  # epoch → master ids named by nodes at that epoch
    claimant_ids: dict[str, str] = {}
    for url, status in statuses:
        epoch = status.get("epoch")
        if not isinstance(epoch, int):
            continue
        master = status.get("master")
        if isinstance(master, dict) and master.get("id") is not None:
            named.setdefault(epoch, set()).add(str(master["id"]))
        if status.get("role") == "master" and (best is None or epoch > best[0]):
            best = (epoch, url)
            claimant_ids[url] = str(status.get("id"))
    if best is None:
        return None
    epoch, url = best
    for later, ids in named.items():
        if later > epoch and ids - {claimant_ids[url]}:
            return None  # a newer epoch follows someone else: this claimant was deposed
    return url


class ClusterView:
    """Known node URLs (seeds first), the master if known, and recent node failures."""

    def __init__(self, seeds: list[str], clock: Callable[[], float] = time.monotonic) -> None:
        self._seeds = list(dict.fromkeys(seeds))
        self._members: list[str] = []
        self._master: str | None = None
        self._failed: dict[str, float] = {}  # url → when it last failed
        self._turn = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._discovery = threading.Lock()

    def nodes(self) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(self._seeds + self._members))

    def master(self) -> str | None:
        with self._lock:
            return self._master

    def forget_master(self, url: str | None) -> None:
        """``url`` is not (or no longer) the master: the next write rediscovers."""
        with self._lock:
            if url is None or self._master == url:
                self._master = None

    def _recently_failed(self, url: str) -> bool:
        with self._lock:
            failed_at = self._failed.get(url)
            return failed_at is not None and self._clock() - failed_at < FAILED_NODE_SECONDS

    def mark_failed(self, url: str | None) -> None:
        if url is not None:
            with self._lock:
                self._failed[url] = self._clock()

    def mark_ok(self, url: str) -> None:
        with self._lock:
            self._failed.pop(url, None)

    def read_order(self, prefer_master: bool) -> list[str]:
        """Nodes to try for a plain read: healthy ones first (the master first when
        ``prefer_master``, else in turns), then recently failed ones, oldest failure first."""
        with self._lock:
            nodes = list(dict.fromkeys(self._seeds + self._members))
            now = self._clock()
            failed = {u: t for u, t in self._failed.items() if now - t < FAILED_NODE_SECONDS}
            healthy = [u for u in nodes if u not in failed]
            if prefer_master and self._master in healthy:
                healthy.remove(self._master)
                healthy.insert(0, self._master)
            elif healthy:
                self._turn = (self._turn + 1) % len(healthy)
                healthy = healthy[self._turn:] + healthy[:self._turn]
            return healthy + sorted((u for u in nodes if u in failed), key=failed.__getitem__)

    def discover(self, fetch_status: Callable[[str], dict]) -> str:
        """Find the master (see the module docstring) and remember it; returns its URL.

        Raises Unavailable when no node answered, NoMaster when none is master (an
        election is running, or the only claimant was deposed).
        """
        before = self.master()
        with self._discovery:
            current = self.master()
            if current is not None and current != before:
                return current  # another thread found it while we waited
            statuses, problems, asked = [], [], set()
            while pending := [u for u in self.read_order(False) if u not in asked]:
                fresh = [u for u in pending if not self._recently_failed(u)]
                if not fresh and choose_master(statuses) is not None:
                    break  # nodes that just failed would only cost timeouts
                for url in fresh or pending:  # later rounds ask the members answers named
                    asked.add(url)
                    try:
                        statuses.append((url, fetch_status(url)))
                        self.mark_ok(url)
                    except DkvsError as exc:
                        self.mark_failed(url)
                        problems.append(f"{url}: {exc}")
                if statuses:
                    self._learn_members(statuses)
            if not statuses:
                raise Unavailable("no node answered /status (" + "; ".join(problems) + ")")
            master = choose_master(statuses)
            if master is None and statuses and all(no_majority(s) for _, s in statuses):
                quorum = statuses[0][1]["quorum"]
                raise NoMajority(f"no master is known: {quorum.get('reason') or 'no majority'} "
                                 f"(as {statuses[0][0]} sees it)", quorum=quorum)
            if master is None:
                raise NoMaster("no node is master right now (an election may be running)",
                               retry_after=0.0)
            with self._lock:
                self._master = master
            return master

    def _learn_members(self, statuses: list[tuple[str, dict]]) -> None:
        """Every member URL any node listed, in the order seen (the seeds stay known)."""
        learned: list[str] = []
        for _, status in statuses:
            for member in status.get("members") or ():
                url = member.get("url") if isinstance(member, dict) else None
                if isinstance(url, str) and url.startswith(("http://", "https://")):
                    learned.append(url.rstrip("/"))
        with self._lock:
            self._members = list(dict.fromkeys(learned))
