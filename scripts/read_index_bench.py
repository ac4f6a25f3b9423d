#!/usr/bin/env python3
"""Consistent GETs (read index, or lease) on a local cluster: throughput and latency per client count.

A consistent read is answered by the master once a majority confirmed a read round that
started after the read arrived (docs/protocol.md, "Reads"). This starts a fresh cluster
of real node processes on 127.0.0.1 (default timings: ``--heartbeat-interval 0.1``),
writes ``--keys`` keys, then runs closed-loop clients in separate load processes, each
sending ``GET /kv/{key}?consistent=true`` to the master over its own keep-alive
connection, and prints ops/s with p50/p99/max latency per client count (medians of
``--repeat`` runs; every run is printed too). The load average is printed with the
figures: on a shared machine they are rough.

``--modes index,lease`` starts two clusters, one of them with ``--lease-reads`` (the read
lease, docs/protocol.md "Reads: the lease"), and interleaves their runs: for each repeat
and client count, one run on each, so a drift of a shared machine hits both alike.

    python3 scripts/read_index_bench.py                      # 1 and 16 clients, 3 runs of 5 s
    python3 scripts/read_index_bench.py --clients 1,16,64 --duration 10 --nodes 3
    python3 scripts/read_index_bench.py --modes index,lease  # read index beside --lease-reads
    python3 scripts/read_index_bench.py --smoke              # CI: 1-second runs, exit 1 on errors

Bad arguments: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dkvs.tools.bench.load import Connection  # noqa: E402
from dkvs.tools.local_cluster import LocalCluster, http_call  # noqa: E402

WARMUP_SECONDS = 1.0
LIVENESS_SECONDS = 60.0
MODES = {"index": (), "lease": ("--lease-reads",)}  # mode -> extra node flags


def _client(url: str, keys: int, index: int, start: float, end: float, out: list, errors: list) -> None:
    conn = Connection(url)
    paths = [f"/kv/k{k}?consistent=true" for k in range(keys)]
    i = index
    try:
        while True:
            began = time.monotonic()
            status = conn.call("GET", paths[i % keys])
            done = time.monotonic()
            i += 1
            if done >= end:
                return
            if done >= start:
                if status == 200:
                    out.append(done - began)
                else:
                    errors.append(str(status))
    finally:
        conn.close()


def _load_process(url: str, keys: int, clients: range, start: float, end: float, results) -> None:
    latencies: list[float] = []
    errors: list[str] = []
    threads = [threading.Thread(target=_client, args=(url, keys, c, start, end, latencies, errors), daemon=True)
               for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(end - time.monotonic() + LIVENESS_SECONDS)
    results.put((latencies, errors))


def run_once(url: str, keys: int, clients: int, duration: float, slow_seconds: float) -> dict:
    """One measured run; ``time.monotonic`` is system-wide on Linux, so processes agree."""
    processes = min(clients, os.cpu_count() or 1)
    start = time.monotonic() + 0.5 + WARMUP_SECONDS
    end = start + duration
    results = multiprocessing.get_context("fork").Queue()
    share, extra = divmod(clients, processes)
    procs, first = [], 0
    for p in range(processes):
        count = share + (p < extra)
        proc = multiprocessing.get_context("fork").Process(
            target=_load_process, args=(url, keys, range(first, first + count), start, end, results), daemon=True)
        first += count
        proc.start()
        procs.append(proc)
    latencies: list[float] = []
    errors: list[str] = []
    for _ in procs:
        got, failed = results.get(timeout=duration + WARMUP_SECONDS + LIVENESS_SECONDS)
        latencies += got
        errors += failed
    for proc in procs:
        proc.join(LIVENESS_SECONDS)
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float:
        return latencies[min(n - 1, int(q * n))] * 1000 if n else float("nan")
    slow = sum(1 for x in latencies if x >= slow_seconds)
    return {"ops": n / duration, "p50": pct(0.50), "p99": pct(0.99), "max": latencies[-1] * 1000 if n else float("nan"),
            "slow": 100.0 * slow / n if n else float("nan"), "errors": len(errors)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,16", help="comma-separated client counts (default 1,16)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per client count; medians are printed")
    parser.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--slow-ms", type=float, default=50.0,
                        help="also print the share of reads at least this slow (default 50: half the "
                             "default heartbeat interval, which reads used to wait for)")
    parser.add_argument("--node-arg", action="append", default=[], help="extra flag for every node (repeatable)")
    parser.add_argument("--modes", default="index",
                        help="comma-separated: index (read index), lease (--lease-reads); several run "
                             "interleaved on one cluster each (default index)")
    parser.add_argument("--smoke", action="store_true", help="CI: 1-second runs, one repeat; exit 1 on errors")
    args = parser.parse_args(argv)
    try:
        args.client_counts = [int(c) for c in args.clients.split(",")]
    except ValueError:
        parser.error(f"--clients takes comma-separated integers; got {args.clients!r}")
    if any(c < 1 for c in args.client_counts) or args.duration <= 0 or args.repeat < 1 or args.nodes < 1 \
            or args.keys < 1 or args.slow_ms <= 0:
        parser.error("client counts, --duration, --repeat, --nodes, --keys and --slow-ms must be positive")
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    modes = args.mode_list
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) < len(modes):
        parser.error(f"--modes takes index and/or lease, each once; got {args.modes!r}")
    if args.smoke:
        args.duration, args.repeat = 1.0, 1
    return args


def _start(stack: contextlib.ExitStack, args, mode: str) -> str:
    cluster = stack.enter_context(LocalCluster(*args.node_arg, *MODES[mode]))
    cluster.start_cluster(args.nodes)
    master = cluster.master()
    for k in range(args.keys):
        http_call(master.url, "PUT", f"/kv/k{k}?acks=majority", b"v" * 100, timeout=LIVENESS_SECONDS)
    return master.url


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"# {args.nodes}-node cluster, consistent GETs on {args.keys} keys, {args.duration:g} s per run, "
          f"medians of {args.repeat}, modes {','.join(args.mode_list)} (interleaved); "
          f"load before: {open('/proc/loadavg').read().split()[:3]}")
    failed = False
    with contextlib.ExitStack() as stack:
        urls = {mode: _start(stack, args, mode) for mode in args.mode_list}
        runs: dict[tuple[str, int], list[dict]] = {(m, c): [] for m in args.mode_list for c in args.client_counts}
        for _ in range(args.repeat):
            for clients in args.client_counts:
                for mode in args.mode_list:
                    runs[(mode, clients)].append(run_once(urls[mode], args.keys, clients, args.duration,
                                                          args.slow_ms / 1000))
        slow_head = f">={args.slow_ms:g}ms"
        print(f"{'clients':>7}  {'ops/s':>7}  {'p50 ms':>7}  {'p99 ms':>7}  {'max ms':>7}  "
              f"{slow_head:>8}  errors  mode   runs (ops/s, max ms)")
        for clients in args.client_counts:
            for mode in args.mode_list:
                done = runs[(mode, clients)]
                med = {k: statistics.median(r[k] for r in done) for k in ("ops", "p50", "p99", "max", "slow")}
                errors = sum(r["errors"] for r in done)
                failed |= errors > 0
                every = ", ".join(f"{r['ops']:.0f}/{r['max']:.1f}" for r in done)
                print(f"{clients:>7}  {med['ops']:>7.0f}  {med['p50']:>7.2f}  {med['p99']:>7.2f}  "
                      f"{med['max']:>7.1f}  {med['slow']:>7.2f}%  {errors:>6}  {mode:<5}  {every}")
    print(f"# load after: {open('/proc/loadavg').read().split()[:3]}")
    return 1 if args.smoke and failed else 0


if __name__ == "__main__":
    sys.exit(main())
