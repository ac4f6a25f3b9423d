#!/usr/bin/env python3
"""Benchmark: the write gap of a SIGTERM on the master (leadership transfer) vs a SIGKILL.

One 3-node cluster of real processes on 127.0.0.1 (data dirs in a temporary directory,
ports kept across restarts), a :class:`dkvs.Client` writing in a loop with ``acks=majority``
(by default) and an ``acks=1`` writer beside it. Rounds alternate: SIGTERM to the master (it
hands leadership to the most up-to-date slave, leaves and exits), then SIGKILL to the
master (the others fail over after the election timeout). Each round measures the longest
time without a successful write of the main writer from just before the signal until
writes have flowed again for a while; the stopped node is then restarted (same id, data,
port) and the cluster left to settle. Prints each round and the medians side by side, the
SIGTERM exit statuses, the failed writes, and the rollback files written during SIGTERM
rounds (a handover must roll back no acknowledged acks=1 write: there should be none).

    python3 scripts/transfer_bench.py                      # 10 + 10 rounds, CLI default timings
    python3 scripts/transfer_bench.py --rounds 5 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dkvs import Client  # noqa: E402
from dkvs.tools.local_cluster import wait_for  # noqa: E402
from rolling_restart import Cluster3, Writer, longest_gap  # noqa: E402

SETTLE_TIMEOUT_SECONDS = 30.0
BEFORE_SIGNAL_SECONDS = 0.2  # the measured window opens this long before the signal
FLOWING_SECONDS = 0.5  # ... and closes once writes have flowed again this long


def _rollback_files(root: Path) -> int:
    return sum(1 for _ in root.glob("*/rollback/*"))


def _round(cluster: Cluster3, writer: Writer, mode: str) -> dict:
    if not wait_for(cluster.healthy, SETTLE_TIMEOUT_SECONDS):
        raise RuntimeError("the cluster did not settle between rounds")
    time.sleep(0.5)
    name = cluster.master()
    node = cluster.nodes[name]
    rollbacks = _rollback_files(cluster.root)
    began = time.monotonic()
    if mode == "sigterm":
        code = node.terminate(timeout=30)
    else:
        node.kill()
        code = None
    signalled = time.monotonic()

    def flowing_again():
        after = [t for t in writer.done if t > signalled]
        return after and time.monotonic() - after[0] >= FLOWING_SECONDS
    if not wait_for(flowing_again, SETTLE_TIMEOUT_SECONDS):
        raise RuntimeError(f"writes did not resume after the {mode} of {name}")
    ended = time.monotonic()
    gap = longest_gap(writer.done, began - BEFORE_SIGNAL_SECONDS, ended)
    errors = sum(1 for t in writer.error_times if began - BEFORE_SIGNAL_SECONDS <= t <= ended)
    others = [cluster.nodes[o].url for o in sorted(cluster.nodes) if o != name]
    cluster.start_node(name, join=",".join(others), port=cluster.ports[name])
    wait_for(cluster.healthy, SETTLE_TIMEOUT_SECONDS)
    return {"mode": mode, "node": name, "gap_s": round(gap, 3), "exit_status": code,
            "stop_s": round(signalled - began, 3), "new_master": cluster.master(),
            "rollback_files": _rollback_files(cluster.root) - rollbacks, "failed_writes": errors,
            "window": (began - BEFORE_SIGNAL_SECONDS, ended)}


def _lost_in_sigterm_windows(cluster: Cluster3, writer: Writer, rounds: list) -> int:
    """acks=1 writes acknowledged during a SIGTERM round that the cluster does not hold
    (a SIGKILL may lose acks=1 writes; a handover must not)."""
    windows = [(r["window"][0], r["window"][1]) for r in rounds if r["mode"] == "sigterm"]
    master = cluster.master()
    if master is None:
        return -1
    with Client(cluster.nodes[master].url, retry_seconds=5) as client:
        have = {item.key: item.value for item in client.items(writer.prefix, page_size=1000)}
    return sum(1 for key, value in writer.acked.items()
               if have.get(key) != value and any(a <= writer.acked_at[key] <= b for a, b in windows))


def run(args) -> dict:
    timings = ["--heartbeat-interval", str(args.heartbeat), "--election-timeout", str(args.election_timeout)]
    with tempfile.TemporaryDirectory(prefix="dkvs-transfer-bench-") as root:
        cluster = Cluster3(root, timings)
        writers: list = []
        rounds: list = []
        try:
            cluster.start_all()
            if not wait_for(cluster.healthy, SETTLE_TIMEOUT_SECONDS):
                raise RuntimeError("the cluster did not come up healthy")
            main_writer, side_writer = Writer(cluster.urls(), args.acks), Writer(cluster.urls(), "1", prefix="one")
            writers = [main_writer, side_writer]
            for w in writers:
                w.start()
            for i in range(args.rounds):
                for mode in ("sigterm", "sigkill"):
                    rounds.append(_round(cluster, main_writer, mode))
                    r = rounds[-1]
                    print(f"round {i + 1:2} {mode:7}: longest write gap {r['gap_s']:.3f} s (master {r['node']}"
                          f" -> {r['new_master']}, exit {r['exit_status']}, failed writes {r['failed_writes']}, "
                          f"rollback files {r['rollback_files']})",
                          file=sys.stderr, flush=True)
        finally:
            for w in writers:
                w.stop.set()
            for w in writers:
                w.join(30)
            lost = _lost_in_sigterm_windows(cluster, side_writer, rounds) if writers else None
            cluster.close()
    term = [r for r in rounds if r["mode"] == "sigterm"]
    kill = [r for r in rounds if r["mode"] == "sigkill"]
    return {"acks": args.acks, "heartbeat_s": args.heartbeat, "election_timeout_s": args.election_timeout,
            "rounds": args.rounds,
            "sigterm_gap_median_s": round(statistics.median(r["gap_s"] for r in term), 3),
            "sigterm_gap_max_s": round(max(r["gap_s"] for r in term), 3),
            "sigkill_gap_median_s": round(statistics.median(r["gap_s"] for r in kill), 3),
            "sigkill_gap_max_s": round(max(r["gap_s"] for r in kill), 3),
            "sigterm_exit_statuses": sorted({r["exit_status"] for r in term}),
            "sigterm_rollback_files": sum(r["rollback_files"] for r in term),
            "sigterm_failed_writes": sum(r["failed_writes"] for r in term),
            "sigkill_failed_writes": sum(r["failed_writes"] for r in kill),
            "sigterm_lost_acks1_writes": lost,
            "failed_writes": len(main_writer.errors) + len(side_writer.errors),
            "errors": (main_writer.errors + side_writer.errors)[:10]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="SIGTERM rounds (and as many SIGKILL rounds)")
    parser.add_argument("--acks", choices=("1", "majority", "all"), default="majority")
    parser.add_argument("--heartbeat", type=float, default=0.1)
    parser.add_argument("--election-timeout", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()
    if args.rounds < 1:
        print("transfer_bench: error: --rounds must be at least 1", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except (RuntimeError, OSError) as exc:
        print(f"transfer_bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        print(f"longest write gap (acks={result['acks']}, median of {result['rounds']}): SIGTERM (transfer) "
              f"{result['sigterm_gap_median_s']:.3f} s (max {result['sigterm_gap_max_s']:.3f}), SIGKILL (failover) "
              f"{result['sigkill_gap_median_s']:.3f} s (max {result['sigkill_gap_max_s']:.3f}); SIGTERM exit "
              f"statuses {result['sigterm_exit_statuses']}, rollback files after SIGTERM "
              f"{result['sigterm_rollback_files']}, acks=1 writes acknowledged in SIGTERM rounds and lost "
              f"{result['sigterm_lost_acks1_writes']}; failed writes: {result['sigterm_failed_writes']} in SIGTERM rounds, "
              f"{result['sigkill_failed_writes']} in SIGKILL rounds, {result['failed_writes']} in all")
        for error in result["errors"]:
            print(f"  error: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
