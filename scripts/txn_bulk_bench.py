"""Bulk load through POST /txn versus one PUT per key (issue 14: "the bulk-load path").

Starts a fresh 3-node cluster of real processes on loopback, loads N keys with one PUT
each (one client, keep-alive) and N other keys in transactions of B puts each, both with
acks=majority, and prints keys/s for both and the ratio. Figures depend on the machine and
its load; print the load average with them.

    python3 scripts/txn_bulk_bench.py --keys 5000 --batch 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dkvs.client import Client  # noqa: E402
from dkvs.tools.local_cluster import LocalCluster  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--value-bytes", type=int, default=100)
    args = parser.parse_args()
    value = "v" * args.value_bytes
    with LocalCluster() as cluster:
        nodes = cluster.start_cluster(3)
        with Client([n.url for n in nodes], acks="majority", timeout=30) as client:
            started = time.perf_counter()
            for i in range(args.keys):
                client.put(f"single/{i:08d}", value)
            single = time.perf_counter() - started
            started = time.perf_counter()
            for first in range(0, args.keys, args.batch):
                ops = [{"op": "put", "key": f"bulk/{i:08d}", "value": value}
                       for i in range(first, min(first + args.batch, args.keys))]
                assert client.txn(success=ops, timeout=30)["succeeded"]
            bulk = time.perf_counter() - started
            assert sum(1 for _ in client.items("bulk/", page_size=1000)) == args.keys
    print(f"keys={args.keys} value_bytes={args.value_bytes} acks=majority")
    print(f"one PUT per key:        {args.keys / single:10,.0f} keys/s  ({single:.2f} s)")
    print(f"txn of {args.batch} puts: {args.keys / bulk:10,.0f} keys/s  ({bulk:.2f} s)")
    print(f"ratio: {single / bulk:.1f}x")
    with open("/proc/loadavg") as f:
        print("loadavg:", f.read().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
