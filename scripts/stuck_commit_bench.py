#!/usr/bin/env python3
"""Write throughput while the commit point cannot move: a 2-node cluster whose slave is dead.

With 2 members a majority is 2, so once the slave is gone nothing commits any more; the
master keeps taking ``acks=1`` writes. Nothing whole-state may happen while the commit
point is stuck (an older host built and threw away a full snapshot copy every burst:
17,115 → 803 writes/s within 12,000 writes). This script starts 2 real nodes on
127.0.0.1 (in memory by default, ``--data-dir-root`` for FileStorage), SIGKILLs the slave,
writes ``--writes`` PUTs with ``acks=1`` from ``--clients`` keep-alive connections, and
prints the throughput of each window of ``--window`` writes and the last/first ratio.
Every process is stopped at the end.

    python3 scripts/stuck_commit_bench.py --writes 20000
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.tools.local_cluster import LocalCluster, node_status, wait_for  # noqa: E402


def writer(url: str, start: int, count: int, value: bytes, done: list, errors: list) -> None:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    for i in range(start, start + count):
        conn.request("PUT", f"/kv/key{i % 50_000}?acks=1", body=value)
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            done.append(time.monotonic())
        else:
            errors.append(response.status)
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--window", type=int, default=2_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--data-dir-root", help="give each node a data dir under this directory")
    args = parser.parse_args()
    extra: list[str] = []
    with tempfile.TemporaryDirectory(dir=args.data_dir_root) as root, LocalCluster() as cluster:
        def node_args(name: str) -> list[str]:
            return ["--data-dir", os.path.join(root, name)] if args.data_dir_root else []
        master = cluster.start(*node_args("a"), *extra)
        slave = cluster.start("--join", master.url, *node_args("b"), *extra)
        wait_for(lambda: (node_status(master.url) or {}).get("commit_seq", 0) >= 2, 10)
        slave.kill()
        value = b"v" * args.value_bytes
        done: list[float] = []
        errors: list[int] = []
        per = args.writes // args.clients
        began = time.monotonic()
        threads = [threading.Thread(target=writer, args=(master.url, i * per, per, value, done, errors))
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        status = node_status(master.url) or {}
    done.sort()
    rates = []
    previous = began
    for end in range(args.window, len(done) + 1, args.window):
        stamp = done[end - 1]
        rates.append(args.window / max(1e-9, stamp - previous))
        previous = stamp
    print(f"2 nodes, slave killed; {len(done)} acks=1 writes acknowledged, {len(errors)} errors; "
          f"commit_seq stayed {status.get('commit_seq')} while last_seq reached {status.get('last_seq')}")
    print("writes/s per window of", args.window, ":", ", ".join(f"{r:,.0f}" for r in rates))
    if len(rates) >= 2:
        print(f"last/first window: {rates[-1] / rates[0]:.2f}; min/median: "
              f"{min(rates) / statistics.median(rates):.2f}  (load average {os.getloadavg()[0]:.2f})")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
