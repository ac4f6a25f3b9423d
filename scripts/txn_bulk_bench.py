"""Bulk load through POST /txn versus one PUT per key (issue 14: "the bulk-load path").

Starts a fresh 3-node cluster of real processes on loopback, loads N keys with one PUT
each (one client, keep-alive) and N other keys in transactions of B puts each, both with
acks=majority, and prints keys/s for both and the ratio. ``--clients C`` loads the
transactions from C clients at once, each its own share of the keys (issue 15's bar: 4
clients, batches of 1,000, >= 50,000 majority-acknowledged keys/s). Figures depend on the
machine and its load; print the load average with them.

    python3 scripts/txn_bulk_bench.py --keys 5000 --batch 1000
    python3 scripts/txn_bulk_bench.py --keys 40000 --batch 1000 --clients 4
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dkvs.client import Client  # noqa: E402
from dkvs.tools.local_cluster import LocalCluster  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--clients", type=int, default=1, help="clients loading the transactions at once")
    args = parser.parse_args()
    if args.keys < 1 or args.batch < 1 or not 1 <= args.clients <= 64:
        parser.error("--keys and --batch must be positive, --clients from 1 to 64")
    value = "v" * args.value_bytes
    with LocalCluster() as cluster:
        nodes = cluster.start_cluster(3)
        with Client([n.url for n in nodes], acks="majority", timeout=30) as client:
            started = time.perf_counter()
            for i in range(args.keys):
                client.put(f"single/{i:08d}", value)
            single = time.perf_counter() - started
            urls = [n.url for n in nodes]
            batches = list(range(0, args.keys, args.batch))
            errors: list[BaseException] = []

            def load(share: list[int]) -> None:
                try:
                    with Client(urls, acks="majority", timeout=30) as mine:
                        for first in share:
                            ops = [{"op": "put", "key": f"bulk/{i:08d}", "value": value}
                                   for i in range(first, min(first + args.batch, args.keys))]
                            assert mine.txn(success=ops, timeout=30)["succeeded"]
                except BaseException as exc:  # noqa: BLE001 — reported below
                    errors.append(exc)

            threads = [threading.Thread(target=load, args=(batches[c::args.clients],))
                       for c in range(args.clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                print(f"txn load failed: {errors[0]!r}", file=sys.stderr)
                return 1
            bulk = time.perf_counter() - started
            assert sum(1 for _ in client.items("bulk/", page_size=1000)) == args.keys
    print(f"keys={args.keys} value_bytes={args.value_bytes} acks=majority")
    print(f"one PUT per key:        {args.keys / single:10,.0f} keys/s  ({single:.2f} s)")
    print(f"txn of {args.batch} puts, {args.clients} client(s): {args.keys / bulk:10,.0f} keys/s  ({bulk:.2f} s)")
    print(f"ratio: {single / bulk:.1f}x")
    with open("/proc/loadavg") as f:
        print("loadavg:", f.read().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
