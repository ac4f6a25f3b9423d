#!/usr/bin/env python3
"""Measure failover time: master SIGKILL → first acknowledged write, over many kills.

One 3-node cluster of real processes on 127.0.0.1. Each round: a client writes with
``acks=majority`` in a loop; the master is SIGKILLed; the time until the next write is
acknowledged (through any surviving node) is recorded; the killed node is restarted on
its port with ``--join`` and the cluster is left to converge before the next round.
Prints every round and the median / max. Every process is stopped at the end.

    python3 scripts/failover_bench.py --kills 20                       # CLI default timings
    python3 scripts/failover_bench.py --kills 20 --heartbeat 0.05 --election-timeout 0.5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.tools.local_cluster import LocalCluster, http_call, node_status, wait_for  # noqa: E402


class Writer(threading.Thread):
    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.ok_times: list[tuple[float, float]] = []  # (sent, acknowledged) of each write
        self.stop = threading.Event()

    def run(self) -> None:
        i = target = 0
        while not self.stop.is_set():
            live = [n for n in self.cluster.nodes if n.alive()]
            url = live[target % len(live)].url
            sent = time.monotonic()
            try:
                code, _ = http_call(url, "PUT", f"/kv/k{i % 1000}?acks=majority&timeout=1", b"v", timeout=1.0)
            except OSError:
                code = 0
            if code == 200:
                self.ok_times.append((sent, time.monotonic()))
                i += 1
            else:
                target += 1
                time.sleep(0.005)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--heartbeat", type=float, default=0.1)
    parser.add_argument("--election-timeout", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    timings = ["--heartbeat-interval", str(args.heartbeat), "--election-timeout", str(args.election_timeout)]
    times = []
    with LocalCluster(*timings, log_level="error") as cluster:
        cluster.start_cluster(3)
        writer = Writer(cluster)
        writer.start()
        for round_no in range(1, args.kills + 1):
            time.sleep(0.5)
            master = wait_for(cluster.master, 10)
            if master is None:
                print("no master", file=sys.stderr)
                return 1
            port = master.port
            master.kill()
            killed_at = time.monotonic()
            # The first write sent after the kill: one sent before may be acknowledged after it.
            first = wait_for(lambda: next((end for sent, end in writer.ok_times[-50:] if sent > killed_at), None), 15)
            if first is None:
                print(f"round {round_no}: no write within 15 s", file=sys.stderr)
                return 1
            times.append(first - killed_at)
            print(f"round {round_no:2}: first acknowledged write {times[-1]:.3f} s after SIGKILL")
            new_master = cluster.master()
            cluster.nodes.remove(master)
            cluster.start("--join", new_master.url, port=port)
            wait_for(lambda: len({(node_status(n.url) or {}).get("last_seq") for n in cluster.nodes}) == 1, 10)
        writer.stop.set()
        writer.join(5)
    result = {"kills": len(times), "heartbeat_s": args.heartbeat, "election_timeout_s": args.election_timeout,
              "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
              "min_s": round(min(times), 3)}
    print(json.dumps(result) if args.json else
          f"failover over {result['kills']} kills (heartbeat {args.heartbeat} s, election timeout "
          f"{args.election_timeout} s): median {result['median_s']:.3f} s, max {result['max_s']:.3f} s, "
          f"min {result['min_s']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
