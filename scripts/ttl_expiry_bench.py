"""How long after its ttl a key put with ?ttl= is gone from every node (issue 14: "within 2 s").

Starts a fresh 3-node cluster of real processes on loopback (default timings), puts N keys
with ttl=T through a slave, and polls every node until each key is gone; prints, per key,
the delay from the end of its ttl (counted from when the PUT was sent, so a negative figure
would be an early expiry) to its deletion on the last node (min / median / max).

    python3 scripts/ttl_expiry_bench.py --keys 10 --ttl 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dkvs.tools.local_cluster import LocalCluster, http_call, node_status  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--ttl", type=float, default=1.0)
    args = parser.parse_args()
    delays = []
    with LocalCluster() as cluster:
        nodes = cluster.start_cluster(3)
        master = node_status(nodes[0].url)["master"]["url"]
        via = next(n.url for n in nodes if n.url != master)
        for i in range(args.keys):
            sent = time.monotonic()  # the lease starts after this: when the master applies its grant
            status, _ = http_call(via, "PUT", f"/kv/ttl-{i}?ttl={args.ttl:g}&acks=all", b"v")
            assert status == 200, status
            expires = sent + args.ttl
            pending = {n.url for n in nodes}
            while pending:
                pending = {u for u in pending if http_call(u, "GET", f"/kv/ttl-{i}")[0] != 404}
                if time.monotonic() > expires + 30:
                    raise SystemExit(f"ttl-{i} still on {sorted(pending)} 30 s after its ttl")
                time.sleep(0.01)
            delays.append(time.monotonic() - expires)
    print(f"keys={args.keys} ttl={args.ttl:g}s; seconds from the end of the ttl to gone on every node:")
    print(f"min {min(delays):.3f}  median {statistics.median(delays):.3f}  max {max(delays):.3f}")
    with open("/proc/loadavg") as f:
        print("loadavg:", f.read().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
