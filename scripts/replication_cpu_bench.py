#!/usr/bin/env python3
"""Master CPU per acks=majority write, against a single node's CPU per write (issue 15).

Starts a 1-node and a 3-node in-memory cluster once, then for each concurrency runs the
same closed-loop PUT load (separate load processes, keep-alive HTTP) against both,
interleaved, ``--repeat`` times. For every run it reads the master's user+system CPU
from ``/proc/<pid>/stat`` over the measured window (the bench tool's runner does that)
and prints the medians: throughput, the master's µs of CPU per write, and the 3-node /
1-node throughput ratio. The load average is printed before and after, because on a
shared machine every figure depends on it.

    python3 scripts/replication_cpu_bench.py                       # 16 and 64 connections
    python3 scripts/replication_cpu_bench.py --tree /tmp/main-copy # the same, for another checkout

``--tree`` measures the dkvs package of another checkout (e.g. a scratch clone of
``main``) with this script, so "before" and "after" use one method.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path


def _loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", help="root of the dkvs checkout to measure (default: this one)")
    p.add_argument("--concurrency", default="16,64", help="comma-separated connection counts")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=1.0)
    o = p.parse_args(argv)
    try:
        levels = [int(c) for c in o.concurrency.split(",") if c.strip()]
    except ValueError:
        print("--concurrency takes comma-separated integers", file=sys.stderr)
        return 2
    if not levels or min(levels) < 1 or o.repeat < 1 or o.duration <= 0:
        print("--concurrency, --repeat and --duration must be positive", file=sys.stderr)
        return 2
    root = Path(o.tree).resolve() if o.tree else Path(__file__).resolve().parents[1]
    if not (root / "dkvs" / "__init__.py").is_file():
        print(f"--tree {o.tree}: no dkvs package there", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    from dkvs.tools.bench.load import LoadSpec
    from dkvs.tools.bench.runner import run_once
    from dkvs.tools.bench.targets import StartedCluster

    print(f"tree {root}; load average before: {_loadavg()}", flush=True)
    rows = []
    with StartedCluster(1) as single, StartedCluster(3) as triple:
        targets = {"1-node acks=1": (single.target(), "1"), "3-node acks=majority": (triple.target(), "majority")}
        for clients in levels:
            runs: dict[str, list[dict]] = {name: [] for name in targets}
            for _ in range(o.repeat):
                for name, (target, acks) in targets.items():
                    spec = LoadSpec(workload="put", keys=10000, value_size=100, acks=acks, read_ratio=0.0,
                                    write_url=target.write_url, read_urls=target.read_urls,
                                    concurrency=clients, processes=2, populate=False, seed=1)
                    runs[name].append(run_once(target, spec, None, o.warmup, o.duration))
            for name, summaries in runs.items():
                ops = statistics.median(s["throughput"] for s in summaries)
                cpu = [s["cpu"]["master_us_per_op"] for s in summaries if s["cpu"]["master_us_per_op"]]
                errors = sum(s["error_count"] for s in summaries)
                rows.append((clients, name, ops, statistics.median(cpu) if cpu else None, errors))
    print(f"load average after: {_loadavg()}")
    print(f"{'clients':>7}  {'system':<22}{'ops/s':>9}  {'master µs/write':>15}  errors")
    single_ops = {}
    for clients, name, ops, cpu, errors in rows:
        if name.startswith("1-node"):
            single_ops[clients] = ops
        shown = f"{cpu:.1f}" if cpu is not None else "n/a"
        print(f"{clients:>7}  {name:<22}{ops:>9.0f}  {shown:>15}  {errors}")
    for clients, name, ops, _, _ in rows:
        if not name.startswith("1-node") and single_ops.get(clients):
            print(f"{clients:>7}  3-node majority / 1-node: {ops / single_ops[clients]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
