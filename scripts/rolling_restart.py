#!/usr/bin/env python3
"""Restart every node of a live 3-node cluster, one by one, under write load; report the gaps.

The procedure of docs/operations.md ("Rolling restart"), run for real: three ``python -m
dkvs`` processes on 127.0.0.1, each with its own data dir in a temporary directory and a
fixed port (a restarted node keeps its id, data and URL). A :class:`dkvs.Client` writes in
a loop meanwhile. The slaves are restarted first, the master last: SIGTERM makes it hand
leadership to the most up-to-date slave before it exits (dkvs.core.transfer). Before each
restart the script waits until the previous node is back, a member, alive and caught up.

At the end it checks that every acknowledged write is on every node and prints the
longest gap between two successful writes (overall and around each restart), the writes
done, and every error the client raised. Exit status 0 when every node was restarted,
every exit status was 0, no write failed and none is missing; 1 otherwise. Every process
it started is stopped, even on Ctrl-C.

    python3 scripts/rolling_restart.py                       # CLI default timings, acks=majority
    python3 scripts/rolling_restart.py --acks 1 --heartbeat 0.05 --election-timeout 0.5 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs import Client  # noqa: E402
from dkvs.errors import DkvsError  # noqa: E402
from dkvs.tools.local_cluster import LocalCluster, LocalNode, node_status, wait_for  # noqa: E402

__all__ = ["Writer", "Cluster3", "longest_gap"]

SETTLE_TIMEOUT_SECONDS = 30.0


class Writer(threading.Thread):
    """One client writing distinct keys in a loop; keeps each success's completion time
    and every error (a failed write is one the client gave up on after its retries)."""

    def __init__(self, urls: list[str], acks: str, retry_seconds: float = 30.0, prefix: str = "rr") -> None:
        super().__init__(daemon=True)
        self.client = Client(urls, acks=acks, retry_seconds=retry_seconds)
        self.done: list[float] = []  # monotonic completion time of each acknowledged write
        self.acked: dict[str, str] = {}
        self.acked_at: dict[str, float] = {}
        self.errors: list[str] = []
        self.error_times: list[float] = []
        self.stop = threading.Event()
        self.prefix = prefix

    def run(self) -> None:
        i = 0
        with self.client:
            while not self.stop.is_set():
                key, value = f"{self.prefix}{i:07d}", str(i)
                try:
                    self.client.put(key, value)
                except DkvsError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    self.error_times.append(time.monotonic())
                else:
                    self.done.append(time.monotonic())
                    self.acked[key] = value
                    self.acked_at[key] = self.done[-1]
                i += 1


def longest_gap(times: list[float], start: float, end: float) -> float:
    """Longest time without a successful write within [start, end]."""
    inside = [start] + [t for t in times if start < t < end] + [end]
    return max(b - a for a, b in zip(inside, inside[1:]))


class Cluster3:
    """Three nodes n1..n3 with data dirs under ``root`` and ports kept across restarts."""

    def __init__(self, root: str, timings: list[str]) -> None:
        self.root = Path(root)
        self.local = LocalCluster(*timings, log_level="warning")
        self.nodes: dict[str, LocalNode] = {}
        self.ports: dict[str, int] = {}

    def start_all(self) -> None:
        first = self.start_node("n1", join=None, port=0)
        for name in ("n2", "n3"):
            self.start_node(name, join=first.url, port=0)

    def start_node(self, name: str, join: str | None, port: int) -> LocalNode:
        args = ["--id", name, "--data-dir", str(self.root / name)]
        if join:
            args += ["--join", join]
        node = self.local.start(*args, port=port)
        self.nodes[name] = node
        self.ports[name] = node.port
        return node

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.ports[n]}" for n in sorted(self.ports)]

    def status(self, name: str) -> dict | None:
        node = self.nodes[name]
        return node_status(node.url) if node.alive() else None

    def master(self) -> str | None:
        for name in sorted(self.nodes):
            s = self.status(name)
            if s and s.get("role") == "master":
                return name
        return None

    def healthy(self) -> bool:
        """A master, three alive members, every node within a few entries of its commit."""
        name = self.master()
        if name is None:
            return False
        s = self.status(name)
        members = s["members"]
        if len(members) != 3 or not all(m["alive"] for m in members):
            return False
        return all(m["last_seq"] is not None and m["last_seq"] >= s["commit_seq"] - 50 for m in members)

    def restart(self, name: str) -> tuple[int, float]:
        """SIGTERM ``name``, start it again (same id, data dir, port; joining the others);
        returns its exit status and how long it was down."""
        node = self.nodes[name]
        began = time.monotonic()
        code = node.terminate(timeout=30)
        others = [self.nodes[o].url for o in sorted(self.nodes) if o != name and self.nodes[o].alive()]
        self.start_node(name, join=",".join(others), port=self.ports[name])
        return code, time.monotonic() - began

    def close(self) -> None:
        self.local.close()


def run(args) -> dict:
    timings = ["--heartbeat-interval", str(args.heartbeat), "--election-timeout", str(args.election_timeout)]
    with tempfile.TemporaryDirectory(prefix="dkvs-rolling-") as root:
        cluster = Cluster3(root, timings)
        writer = None
        try:
            cluster.start_all()
            if not wait_for(cluster.healthy, SETTLE_TIMEOUT_SECONDS):
                raise RuntimeError("the cluster did not come up healthy")
            writer = Writer(cluster.urls(), args.acks)
            writer.start()
            time.sleep(args.warmup)
            master = cluster.master()
            order = [n for n in sorted(cluster.nodes) if n != master] + [master]
            steps = []
            for name in order:
                role = "master" if name == master else "slave"
                began = time.monotonic()
                code, down = cluster.restart(name)
                if not wait_for(cluster.healthy, SETTLE_TIMEOUT_SECONDS):
                    raise RuntimeError(f"the cluster did not recover after restarting {name}")
                time.sleep(args.warmup)
                steps.append({"node": name, "role": role, "exit_status": code, "down_s": round(down, 3),
                              "longest_gap_s": round(longest_gap(writer.done, began, time.monotonic()), 3),
                              "new_master": cluster.master()})
            ended = time.monotonic()
            writer.stop.set()
            writer.join(60)
            missing = _missing(cluster, writer.acked)
            first = writer.done[0] if writer.done else ended
            return {"acks": args.acks, "heartbeat_s": args.heartbeat, "election_timeout_s": args.election_timeout,
                    "restarts": steps, "writes": len(writer.acked), "failed_writes": len(writer.errors),
                    "errors": writer.errors[:20], "missing": missing,
                    "longest_gap_s": round(longest_gap(writer.done, first, ended), 3)}
        finally:
            if writer is not None:
                writer.stop.set()
            cluster.close()


def _missing(cluster: Cluster3, acked: dict[str, str]) -> int:
    """Acknowledged writes not on every node (after the nodes caught up)."""
    wait_for(lambda: len({(cluster.status(n) or {}).get("last_seq") for n in cluster.nodes}) == 1, 15)
    missing = 0
    for name in sorted(cluster.nodes):
        with Client(cluster.nodes[name].url, reads="any", retry_seconds=5) as client:
            have = {item.key: item.value for item in client.items("rr", page_size=1000)}
        missing += sum(1 for key, value in acked.items() if have.get(key) != value)
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acks", choices=("1", "majority", "all"), default="majority")
    parser.add_argument("--heartbeat", type=float, default=0.1)
    parser.add_argument("--election-timeout", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before and after each restart")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()
    try:
        result = run(args)
    except (RuntimeError, OSError) as exc:
        print(f"rolling_restart: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    ok = (len(result["restarts"]) == 3 and result["failed_writes"] == 0 and result["missing"] == 0
          and all(s["exit_status"] == 0 for s in result["restarts"]))
    if args.json:
        print(json.dumps(result))
    else:
        for s in result["restarts"]:
            print(f"restarted {s['node']} ({s['role']}): exit {s['exit_status']}, down {s['down_s']:.3f} s, "
                  f"longest write gap {s['longest_gap_s']:.3f} s, master now {s['new_master']}")
        print(f"{result['writes']} writes (acks={result['acks']}), {result['failed_writes']} failed, "
              f"{result['missing']} acknowledged writes missing; longest gap between writes "
              f"{result['longest_gap_s']:.3f} s")
        for error in result["errors"]:
            print(f"  error: {error}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
