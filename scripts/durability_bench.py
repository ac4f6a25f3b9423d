#!/usr/bin/env python3
"""Durability figures: restart time with many keys, and data-dir size under overwrites.

    python3 scripts/durability_bench.py restart --keys 1000000
        Builds a data dir holding N keys (64-byte keys, 256-byte values) written through
        FileStorage — once as a log only, once compacted into a snapshot — then times
        ``python -m dkvs --data-dir`` from exec to its "listening" line (recovery included)
        and to its first answered GET.

    python3 scripts/durability_bench.py dirsize --writes 1000000 --keys 1000
        Starts a real node with a data dir and overwrites K keys W times in total over
        keep-alive connections; prints the data dir size against the live data size.

Loopback only; every process and temporary directory is removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.core.log import OP_MEMBER_ADD, OP_PUT, Entry  # noqa: E402
from dkvs.storage.base import StoredSnapshot  # noqa: E402
from dkvs.storage.file import FileStorage  # noqa: E402
from dkvs.tools.local_cluster import LocalCluster, http_call  # noqa: E402

KEY_BYTES, VALUE_BYTES = 64, 256


def _key(i: int) -> str:
    return f"key-{i:0{KEY_BYTES - 4}d}"


def build_data_dir(path: Path, keys: int, snapshot: bool) -> None:
    """A single-node data dir with ``keys`` puts (as the node itself would have written)."""
    storage = FileStorage(str(path), fsync="never")
    storage.load()
    storage.save_node_id("bench")
    storage.save_state(1, "bench")
    value = "v" * VALUE_BYTES
    storage.append([Entry(1, 1, OP_MEMBER_ADD, "bench", "http://127.0.0.1:1")])
    batch = []
    for i in range(keys):
        batch.append(Entry(1, i + 2, OP_PUT, _key(i), value))
        if len(batch) == 10_000:
            storage.append(batch)
            batch = []
    if batch:
        storage.append(batch)
    if snapshot:
        items = [[_key(i), value, i + 2] for i in range(keys)]
        storage.save_snapshot(StoredSnapshot(keys + 1, 1, (("bench", "http://127.0.0.1:1"),), items))
    storage.sync()
    storage.close()


def time_restart(path: Path) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "dkvs", "--port", "0", "--data-dir", str(path),
                             "--log-level", "error"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline().split()
        listening = time.monotonic() - started
        port = int(line[-1].rsplit(":", 1)[1])
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", f"/kv/{_key(0)}")
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200:
                break
            time.sleep(0.005)
        return listening, time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def restart(args) -> None:
    root = Path(tempfile.mkdtemp(prefix="dkvs-restart-"))
    try:
        for snapshot in (False, True):
            path = root / ("snapshot" if snapshot else "log")
            t = time.monotonic()
            build_data_dir(path, args.keys, snapshot)
            built = time.monotonic() - t
            listening, first_get = time_restart(path)
            print(f"{args.keys} keys ({KEY_BYTES} B keys, {VALUE_BYTES} B values) in "
                  f"{'a snapshot' if snapshot else 'the log only'}: data dir {du(path) / 1e6:.0f} MB "
                  f"(built in {built:.1f} s); restart to listening {listening:.2f} s, to first GET "
                  f"{first_get:.2f} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def dirsize(args) -> None:
    root = Path(tempfile.mkdtemp(prefix="dkvs-dirsize-"))
    value = b"v" * args.value_size
    counter = iter(range(args.writes))
    lock = threading.Lock()
    errors = []

    def writer(port: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            conn.request("PUT", f"/kv/key{i % args.keys:06d}", body=value)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)
        conn.close()

    try:
        with LocalCluster(log_level="error") as cluster:
            node = cluster.start("--data-dir", str(root / "d"), "--fsync", args.fsync)
            started = time.monotonic()
            threads = [threading.Thread(target=writer, args=(node.port,)) for _ in range(args.connections)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - started
            status = http_call(node.url, "GET", "/status")[1]
            live = args.keys * (len("key000000") + args.value_size)
            size = du(root / "d")
            print(f"{args.writes} overwrites of {args.keys} keys ({args.value_size} B values) in {elapsed:.1f} s "
                  f"({args.writes / elapsed:.0f}/s, {len(errors)} errors): data dir {size / 1e3:.0f} kB, live data "
                  f"{live / 1e3:.0f} kB, ratio {size / live:.1f}x; snapshot at seq {status['snapshot_seq']}",
                  flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("restart")
    p.add_argument("--keys", type=int, default=1_000_000)
    p = sub.add_parser("dirsize")
    p.add_argument("--writes", type=int, default=1_000_000)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--fsync", default="batch")
    args = parser.parse_args()
    {"restart": restart, "dirsize": dirsize}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
