"""The cluster under test: real node processes that the nemesis can kill, pause and cut.

:class:`ChaosCluster` wraps :class:`~dkvs.tools.local_cluster.LocalCluster`: every node has a
data dir under one root, ``FAST_TIMINGS``, the chosen ``--fsync`` policy and
``--enable-fault-injection``. Nodes are addressed by index (0 .. size-1); a node keeps its
port, data dir and id across restarts, so clients and peers find it where it was.

What the cluster remembers: which nodes are killed (clients skip them), paused, and
blocked. :meth:`heal_all` undoes all three. The ``killed`` set is read by client threads
and written by the nemesis, so it is replaced, never mutated (a snapshot is always whole).

The end-of-run questions live here too: :meth:`convergence` (one master everybody agrees
on, equal last and commit seqs, equal data on every node) and :meth:`rollback_entries`
(the entries nodes discarded in divergence repairs, from their ``rollback/`` files).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

from ..local_cluster import FAST_TIMINGS, LocalCluster, LocalNode, http_call, node_status
from .interrupts import critical

__all__ = ["ChaosCluster", "RESTART_ATTEMPTS"]

RESTART_ATTEMPTS = 5
RESTART_RETRY_SECONDS = 0.5
CONTROL_TIMEOUT_SECONDS = 1.0  # /status, /internal/faults and listings during the run
LIST_LIMIT = 1000


class ChaosCluster:
    """``size`` nodes with data dirs under ``root``. Use :meth:`close` (always)."""

    def __init__(self, size: int, root: Path, fsync: str = "always", log_level: str = "warning") -> None:
        self.size = size
        self.root = Path(root)
        self.local = LocalCluster(*FAST_TIMINGS, "--fsync", fsync, "--enable-fault-injection",
                                  log_level=log_level)
        self.nodes: list[LocalNode] = []
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.ports: list[int] = []
        self.killed: frozenset[int] = frozenset()
        self.paused: frozenset[int] = frozenset()
        self.blocked: dict[int, list[str]] = {}
        self.restarts = 0
        self._old_logs: dict[int, list[str]] = {}

    # -- life ------------------------------------------------------------------------------
    def start(self, ready_timeout_s: float = 30.0) -> None:
        """Start the first node, join the others to it, wait for one master of all."""
        with critical():  # a started process is always recorded, so close() can kill it
            first = self.local.start("--data-dir", str(self.data_dir(0)))
            self._adopt(first)
        for index in range(1, self.size):
            with critical():
                self._adopt(self.local.start("--data-dir", str(self.data_dir(index)), "--join", first.url))
        deadline = time.monotonic() + ready_timeout_s
        while self.convergence()["reason"] is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not form: {self.convergence()['reason']}")
            time.sleep(0.05)

    def _adopt(self, node: LocalNode) -> None:
        self.nodes.append(node)
        self.ids.append(node.id)
        self.urls.append(node.url)
        self.ports.append(node.port)

    def data_dir(self, index: int) -> Path:
        return self.root / f"node{index}"

    def close(self) -> None:
        self.local.close()

    def live_urls(self) -> list[str]:
        """URLs of the nodes not killed (paused ones included: clients cannot know)."""
        killed = self.killed
        return [url for index, url in enumerate(self.urls) if index not in killed]

    def reachable(self) -> list[int]:
        """Indices of nodes that are neither killed nor paused."""
        return [i for i in range(self.size) if i not in self.killed and i not in self.paused]

    # -- faults ----------------------------------------------------------------------------
    def kill(self, index: int) -> None:
        self.killed = self.killed | {index}
        self.paused = self.paused - {index}
        self.blocked.pop(index, None)
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        """Start a killed node again on its port and data dir (retrying a busy port)."""
        old = self.nodes[index]
        self._old_logs.setdefault(index, []).extend(old.stderr_lines)
        self.local.nodes.remove(old)
        problem = ""
        for _ in range(RESTART_ATTEMPTS):
            with critical():  # a started process is always recorded, so close() can kill it
                node = self.local.start("--data-dir", str(self.data_dir(index)), port=self.ports[index],
                                        check=False)
            if node.url is not None:
                if node.id != self.ids[index]:
                    raise RuntimeError(f"node {index} came back as {node.id}, not {self.ids[index]}")
                self.nodes[index] = node
                self.killed = self.killed - {index}
                self.restarts += 1
                return
            problem = "".join(node.stderr_lines[-5:])
            node.kill()
            self.local.nodes.remove(node)
            self._old_logs[index].extend(node.stderr_lines)
            time.sleep(RESTART_RETRY_SECONDS)
        self.nodes[index] = old
        self.local.nodes.append(old)
        raise RuntimeError(f"node {index} did not restart: {problem}")

    def pause(self, index: int) -> None:
        self.paused = self.paused | {index}
        self.nodes[index].pause()

    def resume(self, index: int) -> None:
        self.nodes[index].resume()
        self.paused = self.paused - {index}

    def block(self, index: int, peer_ids: list[str]) -> bool:
        """``POST /internal/faults`` on one node; whether it answered 200.

        A node is remembered as blocked as soon as a non-empty list is *sent* (a request
        that timed out may still have been applied), and forgotten once unblocked.
        """
        if peer_ids:
            self.blocked[index] = list(peer_ids)
        body = json.dumps({"block": list(peer_ids)}).encode()
        try:
            code, _ = http_call(self.urls[index], "POST", "/internal/faults", body, timeout=CONTROL_TIMEOUT_SECONDS)
        except OSError:
            return False
        if code == 200 and not peer_ids:
            self.blocked.pop(index, None)
        return code == 200

    def heal_all(self) -> list[str]:
        """Resume paused nodes, lift every block, restart killed nodes; the problems met."""
        problems = []
        for index in sorted(self.paused):
            self.resume(index)
        for index in sorted(self.blocked):
            if index not in self.killed and not self._unblock(index):
                problems.append(f"could not unblock node {index}")
        for index in sorted(self.killed):
            try:
                self.restart(index)
            except RuntimeError as exc:
                problems.append(str(exc))
        return problems

    def _unblock(self, index: int, attempts: int = 5) -> bool:
        for _ in range(attempts):
            if self.block(index, []):
                return True
            time.sleep(0.1)
        return False

    # -- questions -------------------------------------------------------------------------
    def master_index(self) -> int | None:
        """The reachable node that says it is master (the highest epoch if several)."""
        best = None
        for index in self.reachable():
            status = node_status(self.urls[index], timeout=CONTROL_TIMEOUT_SECONDS)
            if status and status.get("role") == "master":
                if best is None or status.get("epoch", 0) > best[1]:
                    best = (index, status.get("epoch", 0))
        return best[0] if best else None

    def listing(self, index: int) -> list[tuple] | None:
        """Every item on node ``index`` (a plain local read), or None if it does not answer."""
        items, after = [], None
        while True:
            target = f"/kv?limit={LIST_LIMIT}" + (f"&after={quote(after, safe='')}" if after else "")
            try:
                code, body = http_call(self.urls[index], "GET", target, timeout=CONTROL_TIMEOUT_SECONDS)
            except OSError:
                return None
            if code != 200:
                return None
            items.extend((item["key"], item["value"], item["seq"]) for item in body.get("items", []))
            after = body.get("next")
            if not after:
                return items

    def convergence(self) -> dict:
        """One look at the whole cluster: ``reason`` is None when it has converged."""
        statuses = [node_status(url, timeout=CONTROL_TIMEOUT_SECONDS) for url in self.urls]
        nodes = [_summary(index, status) for index, status in enumerate(statuses)]
        return {"reason": _divergence(statuses, self.ids, self.listing), "nodes": nodes}

    def wait_converged(self, timeout_s: float) -> dict:
        """Poll :meth:`convergence` until it holds or ``timeout_s`` passes."""
        started = time.monotonic()
        while True:
            view = self.convergence()
            elapsed = time.monotonic() - started
            if view["reason"] is None or elapsed >= timeout_s:
                return {"converged": view["reason"] is None, "seconds": round(elapsed, 3),
                        "reason": view["reason"], "nodes": view["nodes"]}
            time.sleep(0.1)

    def rollback_entries(self) -> list[dict]:
        """Entries from every node's ``rollback/*.jsonl`` files, each with its node index."""
        entries = []
        for index in range(self.size):
            for path in sorted((self.data_dir(index) / "rollback").glob("*.jsonl")):
                for line in path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        entries.append(dict(json.loads(line), node=index, file=path.name))
        return entries

    def node_logs(self) -> dict[int, list[str]]:
        """Every stderr line of every incarnation of each node."""
        return {index: self._old_logs.get(index, []) + list(self.nodes[index].stderr_lines)
                for index in range(self.size)}


def _summary(index: int, status: dict | None) -> dict:
    if status is None:
        return {"index": index, "answered": False}
    return {"index": index, "answered": True, "id": status.get("id"), "role": status.get("role"),
            "epoch": status.get("epoch"), "last_seq": status.get("last_seq"),
            "commit_seq": status.get("commit_seq"), "keys": status.get("keys")}


def _divergence(statuses: list[dict | None], ids: list[str], listing) -> str | None:
    """Why the cluster has not converged, or None. Listings are fetched only at the end."""
    for index, status in enumerate(statuses):
        if status is None:
            return f"node {index} does not answer /status"
    masters = {(s["master"] or {}).get("id") for s in statuses}
    if len(masters) != 1 or None in masters:
        return f"nodes do not agree on one master: {sorted(map(str, masters))}"
    leaders = [s["id"] for s in statuses if s["role"] == "master"]
    if leaders != list(masters):
        return f"nodes acting as master: {leaders}, expected {sorted(masters)}"
    if len({s["epoch"] for s in statuses}) != 1:
        return f"epochs differ: {[s['epoch'] for s in statuses]}"
    seqs = {(s["last_seq"], s["commit_seq"]) for s in statuses}
    if len(seqs) != 1 or len({seq for pair in seqs for seq in pair}) != 1:
        return f"(last_seq, commit_seq) differ: {[(s['last_seq'], s['commit_seq']) for s in statuses]}"
    for s in statuses:
        if sorted(m["id"] for m in s["members"]) != sorted(ids):
            return f"node {s['id']} has members {sorted(m['id'] for m in s['members'])}"
    listings = [listing(index) for index in range(len(statuses))]
    if any(items is None for items in listings):
        return "a node did not answer GET /kv"
    if any(items != listings[0] for items in listings[1:]):
        return "the nodes hold different data (GET /kv listings differ)"
    return None
