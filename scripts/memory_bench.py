#!/usr/bin/env python3
"""Memory per key: a real in-memory node holding N keys, against the raw data size.

What it measures: the growth of the process's resident memory (``VmRSS`` from
``/proc/self/status``, after ``gc.collect()``), divided by the number of keys — not
tracemalloc, so allocator overhead and fragmentation count, as they do for an operator.

Default: starts one node in this process (``DkvsNode``, port 0 on 127.0.0.1), writes N keys
through its host — the same path as an HTTP PUT minus the HTTP parsing, so loading a
million keys takes seconds, not minutes — lets compaction run as it would, then reports the
growth per key. That figure includes the in-memory log the node still retains (entries since
its last snapshot: the node snapshots when the log outgrows the last snapshot, so anywhere
between none and about one state's worth), which the output names.

``--state-only``: the same N puts applied to a bare ``KVState`` in batches, the entries then
dropped: the cost of the state's representation alone (what the data-size target is about).

    python3 scripts/memory_bench.py --keys 1000000               # 64-byte keys, 256-byte values
    python3 scripts/memory_bench.py --keys 1000000 --state-only
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.core.kvstate import KVState  # noqa: E402
from dkvs.core.log import OP_PUT, Entry  # noqa: E402
from dkvs.runtime.app import DkvsNode, Settings  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--key-size", type=int, default=64)
    parser.add_argument("--value-size", type=int, default=256)
    parser.add_argument("--state-only", action="store_true", help="a bare KVState, no node, no log")
    args = parser.parse_args()
    if args.state_only:
        return state_only(args)
    node = DkvsNode(Settings(port=0)).start()
    try:
        gc.collect()
        before = rss_bytes()
        started = time.monotonic()
        width = args.key_size - 4
        for i in range(args.keys):
            # Distinct value objects, as values parsed from HTTP bodies are.
            outcome = node.host.propose("put", f"key-{i:0{width}d}", f"{i:0{args.value_size}d}", "1", 5.0)
            assert outcome.error is None, outcome.error
        loaded = time.monotonic() - started
        gc.collect()
        after = rss_bytes()
        status = node.host.query(lambda n: (n.log.last_seq, n.log.snapshot_seq, len(n.log.entries)))
        raw = args.keys * (args.key_size + args.value_size)
        grown = after - before
        print(f"{args.keys} keys ({args.key_size} B keys, {args.value_size} B values) loaded in {loaded:.1f} s; "
              f"log last seq {status[0]}, snapshot at {status[1]}, {status[2]} entries retained")
        print(f"resident memory grew by {grown / 1e6:.0f} MB = {grown / args.keys:.0f} bytes per key; "
              f"raw data {raw / 1e6:.0f} MB = {args.key_size + args.value_size} bytes per key; "
              f"overhead {grown / raw:.2f}x the raw data")
    finally:
        node.stop()
    return 0


def state_only(args) -> int:
    gc.collect()
    before = rss_bytes()
    started = time.monotonic()
    width = args.key_size - 4
    state = KVState()
    batch = 10_000
    for first in range(0, args.keys, batch):
        last = min(args.keys, first + batch)
        state.apply([Entry(1, i + 1, OP_PUT, f"key-{i:0{width}d}", f"{i:0{args.value_size}d}")
                     for i in range(first, last)], commit_seq=last)
    loaded = time.monotonic() - started
    gc.collect()
    grown = rss_bytes() - before
    raw = args.keys * (args.key_size + args.value_size)
    print(f"{len(state)} keys ({args.key_size} B keys, {args.value_size} B values) applied to a bare KVState "
          f"in {loaded:.1f} s")
    print(f"resident memory grew by {grown / 1e6:.0f} MB = {grown / args.keys:.0f} bytes per key; "
          f"raw data {raw / 1e6:.0f} MB = {args.key_size + args.value_size} bytes per key; "
          f"overhead {grown / raw:.2f}x the raw data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
