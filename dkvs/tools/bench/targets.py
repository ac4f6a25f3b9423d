"""What a benchmark runs against: a running dkvs node/cluster, one it starts, or the baseline.

A :class:`Target` is just URLs: where writes go (the master), where reads go, and which
slave the lag probe polls. :func:`resolve` builds one from any node's ``/status``;
:class:`StartedCluster` starts ``n`` local ``python -m dkvs`` processes (in memory, or each
with its own data dir under a fresh directory) through
:class:`~dkvs.tools.local_cluster.LocalCluster`, waits until they form one cluster, and
kills them on close; :func:`baseline_target` wraps a running baseline server.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..local_cluster import LocalCluster, node_status, wait_for

__all__ = ["Target", "BenchError", "resolve", "StartedCluster", "baseline_target",
           "wait_caught_up", "READ_FROM"]

READ_FROM = ("master", "slaves", "all")
CLUSTER_READY_SECONDS = 30.0
CATCH_UP_SECONDS = 30.0


class BenchError(Exception):
    """The benchmark cannot run as asked (no master, a worker failed, a timeout...)."""


@dataclass(frozen=True)
class Target:
    name: str  # "dkvs" or "baseline"
    write_url: str
    read_urls: tuple[str, ...]
    slave_url: str | None  # polled by the lag probe; None for a single node
    nodes: int
    pids: tuple[int, ...] = ()  # server processes on this machine, master first (CPU figures)


def resolve(url: str, read_from: str = "master", name: str = "dkvs") -> Target:
    """The target behind any node's URL: its master, its live slaves, per ``read_from``."""
    status = node_status(url.rstrip("/"), timeout=5.0)
    if status is None:
        raise BenchError(f"{url} does not answer /status")
    master = (status.get("master") or {}).get("url")
    if not master:
        raise BenchError(f"{url} knows no master (role {status.get('role')!r})")
    master_status = node_status(master, timeout=5.0) or status
    members = master_status.get("members") or []
    slaves = tuple(m["url"] for m in members
                   if m.get("role") == "slave" and m.get("alive", True) and m.get("url") != master)
    if read_from == "slaves" and not slaves:
        raise BenchError("--read-from slaves, but the cluster has no live slave")
    reads = {"master": (master,), "slaves": slaves, "all": (master, *slaves)}[read_from]
    return Target(name, master, reads, slaves[0] if slaves else None, 1 + len(slaves))


def baseline_target(url: str, pid: int | None = None) -> Target:
    return Target("baseline", url, (url,), None, 1, (pid,) if pid else ())


def wait_caught_up(target: Target, timeout: float = CATCH_UP_SECONDS) -> None:
    """Wait until every node we read from holds the master's last entry (after pre-population)."""
    if target.name != "dkvs" or set(target.read_urls) <= {target.write_url}:
        return
    master = node_status(target.write_url, timeout=5.0) or {}
    last = master.get("last_seq", 0)

    def caught_up() -> bool:
        statuses = [node_status(url, timeout=5.0) or {} for url in target.read_urls]
        return all(s.get("last_seq", -1) >= last for s in statuses)

    if not wait_for(caught_up, timeout, interval=0.05):
        raise BenchError(f"the nodes read from did not reach seq {last} within {timeout:.0f} s")


class StartedCluster:
    """``n`` local dkvs nodes forming one cluster; killed (and temp data removed) on close.

    With ``data_dir_root`` every node gets ``<root>/<run dir>/node<i>`` and ``--fsync``;
    the run dir is created fresh and removed on close. ``node_args`` go to every node.
    """

    def __init__(self, n: int, *, data_dir_root: str | None = None, fsync: str | None = None,
                 node_args: tuple[str, ...] = ()) -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self.size = n
        self.cluster = LocalCluster(*node_args)
        self.run_dir: Path | None = None
        try:
            self._start(n, data_dir_root, fsync)
        except BaseException:
            self.close()
            raise

    def _start(self, n: int, data_dir_root: str | None, fsync: str | None) -> None:
        if data_dir_root:
            Path(data_dir_root).mkdir(parents=True, exist_ok=True)
            self.run_dir = Path(tempfile.mkdtemp(prefix="dkvs-bench-", dir=data_dir_root))

        def node_args(i: int) -> list[str]:
            if self.run_dir is None:
                return []
            args = ["--data-dir", str(self.run_dir / f"node{i}")]
            return args + (["--fsync", fsync] if fsync else [])

        first = self.cluster.start(*node_args(0))
        for i in range(1, n):
            self.cluster.start("--join", first.url, *node_args(i))
        self.first_url = first.url
        if not wait_for(self._formed, CLUSTER_READY_SECONDS, interval=0.05):
            raise BenchError(f"the {n}-node cluster did not form within {CLUSTER_READY_SECONDS:.0f} s")

    def _formed(self) -> bool:
        status = node_status(self.first_url)
        if not status or not (status.get("master") or {}).get("url"):
            return False
        master = node_status(status["master"]["url"]) or {}
        alive = [m for m in master.get("members") or [] if m.get("alive", True)]
        if len(alive) != self.size:
            return False
        return all((node_status(node.url) or {}).get("master") for node in self.cluster.nodes)

    def target(self, read_from: str = "master") -> Target:
        target = resolve(self.first_url, read_from)
        nodes = sorted(self.cluster.nodes, key=lambda node: node.url != target.write_url)
        return dataclasses.replace(target, pids=tuple(node.proc.pid for node in nodes))

    def close(self) -> None:
        self.cluster.close()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    def __enter__(self) -> StartedCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def settle(seconds: float = 0.2) -> None:
    """A short pause between scenarios so the previous one's connections wind down."""
    time.sleep(seconds)
