#!/usr/bin/env python3
"""Longest acks=majority write gap while a second node joins a loaded 1-node cluster.

Issue 13's done-when figure for learners: "a second node joining a 1-node cluster that
holds ~100k keys: acks=majority writes to the first node never stop for more than 0.5 s
during the catch-up". Each run, with real processes on 127.0.0.1:

1. start one node with a data dir and load ``--keys`` keys of ``--value-bytes`` (acks=1,
   ``--loaders`` processes); its log is compacted into a snapshot as it grows, so the
   joiner receives a snapshot and then the log tail;
2. start a writer on its own keep-alive connection that sends ``acks=majority`` PUTs to
   the first node back to back (``timeout=60``, so a stalled write shows as a gap, not as a
   504) and records when each one is answered;
3. start the second node with ``--join`` and wait until it holds the first node's last seq
   as of the join and the first node's ``/status`` lists it as a voter (a cluster without
   learners never says ``voter``: every member votes), then one more second.

It prints, per run, the longest time between two successful writes from the join to that
end, the writes and errors in that window, the catch-up time, and as a control the longest
gap in the ``CONTROL_SECONDS`` of the same writes just before the join (what the machine's
load alone causes); then the medians of the runs and the load average. Run it on a checkout without learners (every joiner votes at
once) for the "before" figure: the script only uses the public HTTP API and /status.

    python3 scripts/learner_join_bench.py --keys 100000 --runs 3
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

from dkvs.tools.bench.harness import bulk_load  # noqa: E402
from dkvs.tools.local_cluster import LocalCluster, http_call, node_status, wait_for  # noqa: E402

CATCH_UP_TIMEOUT_SECONDS = 300.0
AFTER_SECONDS = 1.0  # keep writing this long after the joiner is a caught-up voter
CONTROL_SECONDS = 3.0  # steady writes before the join: the longest gap the machine causes alone


class MajorityWriter(threading.Thread):
    """acks=majority PUTs back to back on one connection; records (answered_at, status)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=90)
        self.answers: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                self.conn.request("PUT", f"/kv/majority{i % 100}?acks=majority&timeout=60", body=b"m" * 100)
                response = self.conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                self.conn.close()
            self.answers.append((time.monotonic(), status))
            i += 1


def _is_caught_up_voter(master_url: str, new_url: str, new_id: str | None, target: int) -> bool:
    new = node_status(new_url, timeout=5) or {}
    if new.get("last_seq", 0) < target:
        return False
    status = node_status(master_url, timeout=5) or {}
    member = next((m for m in status.get("members", ()) if m.get("id") == (new_id or new.get("id"))), None)
    return member is not None and member.get("voter", True)


def one_run(args, run: int) -> dict:
    with tempfile.TemporaryDirectory(dir=args.data_dir_root) as root, LocalCluster() as cluster:
        first = cluster.start("--data-dir", os.path.join(root, "a"))
        took = bulk_load(first.url, args.keys, args.value_bytes, args.loaders)
        wait_for(lambda: (node_status(first.url) or {}).get("snapshot_seq", 0) > 0, 60)
        target = node_status(first.url)["last_seq"]
        writer = MajorityWriter(first.url)
        writer.start()
        time.sleep(0.5)  # a steady stream before the control window
        control_from = time.monotonic()
        time.sleep(CONTROL_SECONDS)
        joined_at = time.monotonic()
        joined_wall = time.time()
        new = cluster.start("--join", first.url, "--data-dir", os.path.join(root, "b"), "--id", "joiner")
        caught = wait_for(lambda: _is_caught_up_voter(first.url, new.url, "joiner", target),
                          CATCH_UP_TIMEOUT_SECONDS, interval=0.05)
        caught_at = time.monotonic()
        time.sleep(AFTER_SECONDS)
        writer.stop.set()
        writer.join(timeout=90)
        end = time.monotonic()
        events = _events(first.url, joined_wall)
    window = [(t, s) for t, s in writer.answers if joined_at <= t <= end]
    ok_times = [joined_at] + [t for t, s in window if s == 200] + [end]
    gap, gap_at = max((b - a, a - joined_at) for a, b in zip(ok_times, ok_times[1:]))
    control = [control_from] + [t for t, s in writer.answers if control_from <= t < joined_at and s == 200] \
        + [joined_at]
    control_gap = max(b - a for a, b in zip(control, control[1:]))
    result = {"run": run, "load_s": took, "caught_up": bool(caught), "catch_up_s": caught_at - joined_at,
              "gap_s": gap, "writes": sum(1 for _, s in window if s == 200),
              "errors": sum(1 for _, s in window if s != 200), "gap_at_s": gap_at, "control_gap_s": control_gap}
    print(f"run {run}: loaded {args.keys} keys in {took:.1f} s; joiner a caught-up voter: {bool(caught)} after "
          f"{result['catch_up_s']:.2f} s; during the join: {result['writes']} acks=majority writes, "
          f"{result['errors']} errors, longest gap {gap * 1000:.0f} ms (from +{gap_at:.2f} s); "
          f"without a join ({CONTROL_SECONDS:g} s before it) {control_gap * 1000:.0f} ms  "
          f"(load average {os.getloadavg()[0]:.2f})",
          flush=True)
    if args.events:
        print("  first node's events during the join (s after it): "
              + "; ".join(f"+{at:.2f} {kind}" for at, kind in events))
    return result


def _events(url: str, since_wall: float) -> list[tuple[float, str]]:
    """``(seconds after the join, kind)`` of the node's events since the join (GET /events)."""
    try:
        code, body = http_call(url, "GET", "/events?after=0", timeout=5)
    except OSError:
        return []
    if code != 200:
        return []
    return [(e["time"] - since_wall, e["kind"]) for e in body.get("events", ()) if e.get("time", 0) >= since_wall]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--loaders", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", action="store_true", help="also print the first node's events during the join")
    parser.add_argument("--data-dir-root", help="directory for the nodes' data dirs (default: the system temp dir)")
    args = parser.parse_args()
    if args.keys < args.loaders or args.runs < 1 or args.value_bytes < 1:
        print("learner_join_bench: need --keys >= --loaders, --runs >= 1, --value-bytes >= 1", file=sys.stderr)
        return 2
    results = [one_run(args, run) for run in range(1, args.runs + 1)]
    gaps = [r["gap_s"] for r in results]
    controls = [r["control_gap_s"] for r in results]
    print(f"median of {len(gaps)} runs: longest acks=majority write gap {statistics.median(gaps) * 1000:.0f} ms "
          f"during the join, {statistics.median(controls) * 1000:.0f} ms in the same time without one "
          f"(runs: {', '.join(f'{g * 1000:.0f}' for g in gaps)} ms); errors {sum(r['errors'] for r in results)}; "
          f"catch-up median {statistics.median(r['catch_up_s'] for r in results):.2f} s; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
