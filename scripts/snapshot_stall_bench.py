#!/usr/bin/env python3
"""Whole-state work off the node thread, measured with real processes on 127.0.0.1.

Two scenarios (issue "the whole node under proof", done-when figures):

* ``stall`` — one node with a data dir (default timings) is loaded with ``--keys`` keys of
  ``--value-bytes`` while a *paced writer* on its own connection sends 200 PUTs/s; its
  snapshots (taken as the log grows) must not stall writes. Prints the paced writer's
  latency median / p99 / max and the snapshots taken.
* ``join`` — a 3-node cluster with data dirs is loaded the same way and its master
  compacts; then a 4th node joins. Prints the time from the join to the new node holding
  the master's last seq, and the master's RSS before, at peak during and after catch-up.
* ``catchup`` — the data-size case (issue 15): a 1-node cluster whose data dir holds a
  snapshot of ``--keys`` keys (64 B keys, ``--value-bytes`` values; written directly
  through ``FileStorage``, as ``durability_bench.py`` does, so no minutes of loading) is
  started, then a new node joins it with an empty data dir. Prints the master's restart
  time (to its ``/status`` saying master) and the CPU it used for that (interpreter start,
  recovery, restore), the time from the join to the new node holding the master's last
  seq (process start included), the CPU both processes used meanwhile, ``--repeat``
  times, and the medians. CPU seconds are what to compare on a loaded machine.

Loading uses ``--loaders`` processes, each with one keep-alive connection. Every process
started is stopped at the end. Examples::

    python3 scripts/snapshot_stall_bench.py stall --keys 30000 --value-bytes 10000
    python3 scripts/snapshot_stall_bench.py join --keys 30000 --value-bytes 10000
    python3 scripts/snapshot_stall_bench.py catchup --keys 1000000 --value-bytes 256 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.tools.bench.harness import PacedWriter, bulk_load, free_port  # noqa: E402
from dkvs.tools.bench.runner import process_cpu_seconds  # noqa: E402
from dkvs.tools.local_cluster import LocalCluster, node_status, wait_for  # noqa: E402


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stall(args) -> None:
    with tempfile.TemporaryDirectory(dir=args.data_dir_root) as root, LocalCluster() as cluster:
        node = cluster.start("--data-dir", os.path.join(root, "a"))
        paced = PacedWriter(node.url)
        paced.start()
        took = bulk_load(node.url, args.keys, args.value_bytes, args.loaders)
        time.sleep(1.0)  # let a snapshot that started at the end of the load finish under the paced writer
        paced.stop.set()
        paced.join()
        metrics = node_status(node.url) or {}
    lat = sorted(paced.latencies)
    print(f"stall: {args.keys} keys x {args.value_bytes} B loaded in {took:.1f} s "
          f"({args.keys * (args.value_bytes + 64) / 1e6:.0f} MB raw); last_seq {metrics.get('last_seq')}, "
          f"snapshot_seq {metrics.get('snapshot_seq')}")
    print(f"paced writer (200/s, 1 connection): {len(lat)} writes, median {statistics.median(lat) * 1e3:.1f} ms, "
          f"p99 {lat[int(len(lat) * 0.99)] * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms  "
          f"(load average {os.getloadavg()[0]:.2f})")


def join(args) -> None:
    with tempfile.TemporaryDirectory(dir=args.data_dir_root) as root, LocalCluster() as cluster:
        nodes = [cluster.start("--data-dir", os.path.join(root, "a"))]  # log level: warning
        for name in "bc":
            nodes.append(cluster.start("--join", nodes[0].url, "--data-dir", os.path.join(root, name)))
        took = bulk_load(nodes[0].url, args.keys, args.value_bytes, args.loaders)
        master = cluster.master()
        wait_for(lambda: (node_status(master.url) or {}).get("snapshot_seq", 0) > 0, 120)
        time.sleep(2.0)
        before = rss_kb(master.proc.pid)
        target = node_status(master.url)["last_seq"]
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kb(master.proc.pid))
                done.wait(0.05)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        joined_at = time.monotonic()
        new = cluster.start("--join", master.url, "--data-dir", os.path.join(root, "d"))
        caught = wait_for(lambda: (node_status(new.url, timeout=5) or {}).get("last_seq", 0) >= target, 300)
        elapsed = time.monotonic() - joined_at
        if not caught:
            print("the new node did not catch up; its last log lines:\n" + "".join(new.stderr_lines[-15:]),
                  file=sys.stderr)
        time.sleep(2.0)
        done.set()
        after = rss_kb(master.proc.pid)
        status = node_status(master.url)
    print(f"join: {args.keys} keys x {args.value_bytes} B loaded in {took:.1f} s; master snapshot_seq "
          f"{status.get('snapshot_seq')}, last_seq {target}")
    print(f"new node caught up: {bool(caught)} in {elapsed:.2f} s (process start included); master RSS "
          f"{before / 1024:.0f} MB before, {peak[0] / 1024:.0f} MB peak, {after / 1024:.0f} MB after "
          f"(load average {os.getloadavg()[0]:.2f})")


def build_data_dir(path: str, keys: int, value_bytes: int, url: str) -> None:
    """A 1-node data dir ("bench" at ``url``) holding ``keys`` keys in a snapshot."""
    from dkvs.core.log import OP_MEMBER_ADD, Entry
    from dkvs.storage.base import StoredSnapshot
    from dkvs.storage.file import FileStorage

    storage = FileStorage(path, fsync="never")
    storage.load()
    storage.save_node_id("bench")
    storage.save_state(1, "bench")
    storage.append([Entry(1, 1, OP_MEMBER_ADD, "bench", url)])
    value = "v" * value_bytes
    items = [[f"key-{i:060d}", value, i + 2] for i in range(keys)]
    storage.save_snapshot(StoredSnapshot(keys + 1, 1, (("bench", url),), items))
    storage.sync()
    storage.close()


def catchup(args) -> None:
    restarts, restart_cpus, catchups, cpus = [], [], [], []
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory(dir=args.data_dir_root) as root, LocalCluster() as cluster:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            build_data_dir(os.path.join(root, "a"), args.keys, args.value_bytes, url)
            started = time.monotonic()
            master = cluster.start("--data-dir", os.path.join(root, "a"), port=port)
            wait_for(lambda: (node_status(master.url) or {}).get("role") == "master", 120)
            restarts.append(time.monotonic() - started)
            restart_cpus.append(process_cpu_seconds(master.proc.pid))
            target = node_status(master.url)["last_seq"]
            master_cpu = process_cpu_seconds(master.proc.pid)
            joined_at = time.monotonic()
            new = cluster.start("--join", master.url, "--data-dir", os.path.join(root, "b"))
            caught = wait_for(lambda: (node_status(new.url, timeout=5) or {}).get("last_seq", 0) >= target, 300)
            catchups.append(time.monotonic() - joined_at)
            cpus.append((process_cpu_seconds(master.proc.pid) - master_cpu, process_cpu_seconds(new.proc.pid)))
            if not caught:
                print("the new node did not catch up; its last log lines:\n" + "".join(new.stderr_lines[-15:]),
                      file=sys.stderr)
            print(f"run {run + 1}: {args.keys} keys x {args.value_bytes} B; master restart (to master role) "
                  f"{restarts[-1]:.2f} s, CPU {restart_cpus[-1]:.2f} s; new node caught up: {bool(caught)} in {catchups[-1]:.2f} s; "
                  f"CPU during catch-up: master {cpus[-1][0]:.2f} s, new node {cpus[-1][1]:.2f} s "
                  f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    print(f"median of {args.repeat}: master restart {statistics.median(restarts):.2f} s "
          f"(CPU {statistics.median(restart_cpus):.2f} s), "
          f"catch-up {statistics.median(catchups):.2f} s, CPU master "
          f"{statistics.median(c[0] for c in cpus):.2f} s + new node {statistics.median(c[1] for c in cpus):.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=("stall", "join", "catchup"))
    parser.add_argument("--keys", type=int, default=30_000)
    parser.add_argument("--value-bytes", type=int, default=10_000)
    parser.add_argument("--loaders", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="catchup: runs (the median is printed)")
    parser.add_argument("--data-dir-root", help="directory for the nodes' data dirs (default: the system temp dir)")
    args = parser.parse_args()
    {"stall": stall, "join": join, "catchup": catchup}[args.scenario](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
