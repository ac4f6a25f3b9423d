#!/usr/bin/env python3
"""3-node acks=majority PUT throughput and master CPU per write, by replication window.

Starts one in-memory 3-node cluster per ``--window`` value (``--replication-window N`` on
every node), then for each concurrency runs the same closed-loop PUT load (separate load
processes, keep-alive HTTP, 100-byte values) against each cluster, interleaved,
``--repeat`` times, so every window sees the same moments of load. Prints the medians:
requests/s, the master's µs of CPU (user+system, from ``/proc``) per write, and each
window's throughput against window 1's. The load average is printed before and after:
on a shared machine every figure depends on it.

    python3 scripts/replication_window_bench.py                          # windows 1,2,4; 1/8/16/64 connections
    python3 scripts/replication_window_bench.py --window 1,4 --concurrency 8 --repeat 5
    python3 scripts/replication_window_bench.py --tree /tmp/other-checkout --tree .   # trees side by side

``--tree`` (repeatable) runs the nodes from the dkvs package of that checkout; every tree
and window runs in the same repeats, interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from replication_cpu_bench import _Cluster, _loadavg  # noqa: E402


class _WindowCluster(_Cluster):
    """A cluster whose nodes run with ``--replication-window window``."""

    def __init__(self, tree: Path, n: int, window: int) -> None:
        import os
        saved = os.environ.get("DKVS_REPLICATION_WINDOW")
        os.environ["DKVS_REPLICATION_WINDOW"] = str(window)  # every flag has its variable
        try:
            super().__init__(tree, n)
        finally:
            if saved is None:
                del os.environ["DKVS_REPLICATION_WINDOW"]
            else:
                os.environ["DKVS_REPLICATION_WINDOW"] = saved


def _ints(raw: str, what: str) -> list[int]:
    try:
        values = [int(c) for c in raw.split(",") if c.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise SystemExit(print(f"{what} takes comma-separated positive integers", file=sys.stderr) or 2)
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", action="append", help="root of a dkvs checkout to measure (repeatable; default: this one)")
    p.add_argument("--window", default="1,2,4", help="comma-separated replication windows")
    p.add_argument("--concurrency", default="1,8,16,64", help="comma-separated connection counts")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=1.0)
    o = p.parse_args(argv)
    windows, levels = _ints(o.window, "--window"), _ints(o.concurrency, "--concurrency")
    if o.repeat < 1 or o.duration <= 0 or o.warmup < 0:
        print("--repeat and --duration must be positive", file=sys.stderr)
        return 2
    trees = [Path(t).resolve() for t in o.tree] if o.tree else [HERE.parent]
    for tree in trees:
        if not (tree / "dkvs" / "__init__.py").is_file():
            print(f"--tree {tree}: no dkvs package there", file=sys.stderr)
            return 2
    from dkvs.tools.bench.load import LoadSpec
    from dkvs.tools.bench.runner import run_once

    print(f"load average before: {_loadavg()}", flush=True)
    clusters, runs = {}, {}
    try:
        for t, tree in enumerate(trees):
            for window in windows:
                clusters[(t, window)] = _WindowCluster(tree, 3, window)
        for _ in range(o.repeat):
            for clients in levels:
                for key, cluster in clusters.items():
                    target = cluster.target()
                    spec = LoadSpec(workload="put", keys=10000, value_size=100, acks="majority", read_ratio=0.0,
                                    write_url=target.write_url, read_urls=target.read_urls,
                                    concurrency=clients, processes=min(clients, 2), populate=False, seed=1)
                    runs.setdefault((clients, key), []).append(run_once(target, spec, None, o.warmup, o.duration))
    finally:
        for cluster in clusters.values():
            cluster.close()
    print(f"load average after: {_loadavg()}")
    if len(trees) > 1:
        print("trees: " + ", ".join(f"{t}={tree}" for t, tree in enumerate(trees)))
    print(f"{'clients':>7}  {'tree':>4}  {'window':>6}  {'req/s':>8}  {'vs 1st':>6}  {'master µs/write':>15}  errors  (runs: req/s)")
    base = {}
    for (clients, (t, window)), summaries in runs.items():
        ops = statistics.median(s["throughput"] for s in summaries)
        cpu = [s["cpu"]["master_us_per_op"] for s in summaries if s["cpu"]["master_us_per_op"]]
        base.setdefault(clients, ops)  # the first tree's first window
        ratio = f"{ops / base[clients]:.2f}" if base.get(clients) else ""
        shown = f"{statistics.median(cpu):.1f}" if cpu else "n/a"
        each = " ".join(f"{s['throughput']:.0f}" for s in summaries)
        errors = sum(s["error_count"] for s in summaries)
        print(f"{clients:>7}  {t:>4}  {window:>6}  {ops:>8.0f}  {ratio:>6}  {shown:>15}  {errors:>6}  ({each})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
