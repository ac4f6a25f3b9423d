#!/usr/bin/env python3
"""Backing up a big store must not stall writes: figures with a real node on 127.0.0.1.

1. A snapshot file of ``--keys`` keys (``--key-bytes``/``--value-bytes``) is generated and
   restored with ``dkvs restore``'s code into a data dir (the fastest way to a big store,
   and a test of restore at scale); a node is started from it (time printed).
2. A *paced writer* (200 PUTs/s, acks=1, one keep-alive connection) runs for ``--window``
   seconds without a backup, then during a backup (``dkvs backup``'s code, downloading
   to a file), ``--rounds`` times, interleaved. Printed: write latency median / p99 / max
   in both windows (same run, same machine: compare the two), and each backup's time, size,
   seq and key count, with the load average.

Every process started is stopped at the end. Example::

    python3 scripts/backup_bench.py --keys 1000000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.client.admin import NodeAdmin  # noqa: E402
from dkvs.client.backup import download_backup  # noqa: E402
from dkvs.storage.snapshot_file import encode_snapshot  # noqa: E402
from dkvs.tools.backup import restore_backup  # noqa: E402
from dkvs.tools.bench.harness import PacedWriter, free_port  # noqa: E402
from dkvs.tools.local_cluster import LocalCluster, node_status, wait_for  # noqa: E402


def seed_file(path: str, keys: int, key_bytes: int, value_bytes: int) -> None:
    pad = "x" * max(0, key_bytes - 17)
    value = "v" * value_bytes

    def chunks():
        for first in range(0, keys, 1024):
            yield [(f"key-{i:012d}{pad}", value, i + 1) for i in range(first, min(keys, first + 1024))]

    with open(path, "wb") as file:
        for piece in encode_snapshot(keys, 1, [("seed", "http://127.0.0.1:1")], chunks()):
            file.write(piece)


def describe(latencies: list[float]) -> str:
    if not latencies:
        return "no writes"
    return (f"{len(latencies)} writes, median {statistics.median(latencies) * 1e3:.1f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--key-bytes", type=int, default=64)
    parser.add_argument("--value-bytes", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=5.0, help="seconds of writes without a backup per round")
    parser.add_argument("--dir", help="where the files go (default: the system temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as root, LocalCluster() as cluster:
        seed = os.path.join(root, "seed.backup")
        started = time.monotonic()
        seed_file(seed, args.keys, args.key_bytes, args.value_bytes)
        made = time.monotonic() - started
        port = free_port()
        started = time.monotonic()
        restored = restore_backup(seed, os.path.join(root, "data"), f"http://127.0.0.1:{port}")
        restore_took = time.monotonic() - started
        started = time.monotonic()
        node = cluster.start("--data-dir", restored.data_dir, port=port)
        wait_for(lambda: (node_status(node.url, timeout=10) or {}).get("role") == "master", 300)
        start_took = time.monotonic() - started
        print(f"{args.keys} keys x {args.key_bytes}+{args.value_bytes} B: seed file "
              f"{os.path.getsize(seed) / 1e6:.0f} MB made in {made:.1f} s, restored in {restore_took:.1f} s, "
              f"node master {start_took:.1f} s after start")
        writer = PacedWriter(node.url, acks="1")
        writer.start()
        quiet, busy = [], []
        with NodeAdmin([node.url], timeout=120) as admin:
            for round_no in range(args.rounds):
                begin = time.monotonic()
                writer.stop.wait(args.window)
                quiet += writer.between(begin, time.monotonic())
                begin = time.monotonic()
                info = download_backup(admin, os.path.join(root, f"backup-{round_no}"))
                took = time.monotonic() - begin
                busy += writer.between(begin, time.monotonic())
                os.remove(info.path)
                print(f"backup {round_no + 1}: seq {info.seq}, {info.keys} keys, {info.size / 1e6:.0f} MB in "
                      f"{took:.1f} s ({info.size / 1e6 / took:.0f} MB/s)")
        writer.stop.set()
        writer.join()
    quiet.sort()
    busy.sort()
    print(f"paced writer (200/s, acks=1) without a backup: {describe(quiet)}")
    print(f"paced writer (200/s, acks=1) during backups:   {describe(busy)}")
    print(f"write errors: {writer.errors}; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
