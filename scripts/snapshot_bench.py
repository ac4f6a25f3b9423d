#!/usr/bin/env python3
"""Snapshot figures: what a background snapshot costs the node's thread.

    python3 scripts/snapshot_bench.py [--keys 1000000] [--probe-ms 5]
    python3 scripts/snapshot_bench.py --keys 1000000 --cpu     # CPU seconds of each step, median of 3

Builds a KVState of N keys (64-byte keys in random order, 256-byte values, a few
uncommitted writes on top), then prints:

* ``committed_view``: the copy-on-write step the node's thread pays (one dict.copy);
  next to it the old ``snapshot_items`` (copy + full sort + a list per key), which the
  node's thread used to pay on every snapshot;
* the background ``FileStorage.write_snapshot`` on a worker thread: time and bytes;
* the stall of a "node" thread that does one small dict write every ``--probe-ms`` while
  the snapshot is written (the GIL effect): median / p99 / max lateness of its wake-ups,
  next to the same probe with no snapshot running, with a busy pure-Python worker that
  never yields the GIL, with one that yields it every ~0.5 ms (the floor for any worker
  thread: what is left is the OS preempting the thread that holds the GIL), and with one
  big ``sorted()`` on a worker (what a naive background sort would cost);
* reading the stored snapshot back in 1 MiB chunks (the streaming source): time, MB/s;
* the slave's side without the network: assembling, parsing and verifying the chunks,
  storing the received snapshot (by renaming the received file, and — for comparison — by
  encoding it again), and restoring the state from it.

``--cpu`` prints only the CPU time (``time.process_time``, median of 3) of the steps a
snapshot goes through — ``committed_view``, ``write_snapshot``, ``read_snapshot`` (load
and check the file: what a restart does), ``KVState.restore`` — a figure that a loaded
machine disturbs far less than wall time, so two versions can be compared on it.

Figures vary with the machine's load; run it on a quiet machine and compare the lines of
one run with each other. Temporary files go to a temp dir that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.core.kvstate import KVState  # noqa: E402
from dkvs.core.log import OP_PUT, Entry  # noqa: E402
from dkvs.storage.base import StoredSnapshot  # noqa: E402
from dkvs.storage.file import FileStorage  # noqa: E402
from dkvs.transport.snapshot_stream import ChunkMeta, SnapshotAssembler  # noqa: E402

KEY_BYTES, VALUE_BYTES = 64, 256
MEMBERS = (("bench", "http://127.0.0.1:1"),)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (no usage dump)
        print(f"snapshot_bench: {message}", file=sys.stderr)
        raise SystemExit(2)


def positive(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_state(keys: int, seed: int = 1) -> KVState:
    rng = random.Random(seed)
    value = "v" * VALUE_BYTES
    names = [f"key-{rng.getrandbits(160):0{KEY_BYTES - 4}x}"[:KEY_BYTES] for _ in range(keys)]
    state = KVState()
    state.restore(keys, [[name, value, i + 1] for i, name in enumerate(names)])
    rng.shuffle(names)  # the uncommitted writes hit random keys
    uncommitted = [Entry(1, keys + 1 + i, OP_PUT, names[i], "new") for i in range(100)]
    state.apply(uncommitted, commit_seq=keys)
    return state


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, result = None, None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    return best, result


def probe_while(work, probe_seconds: float) -> tuple[list[float], float]:
    """Run ``work()`` on a worker thread while this thread writes to a dict every
    ``probe_seconds``; return the wake-up latenesses (s) and the work's duration."""
    done = threading.Event()
    took = []

    def run() -> None:
        started = time.perf_counter()
        try:
            work()
        finally:
            took.append(time.perf_counter() - started)
            done.set()

    small: dict = {}
    lateness = []
    worker = threading.Thread(target=run)
    last = time.perf_counter()  # the first gap includes any wait for the GIL at the start
    worker.start()
    i = 0
    while i == 0 or not done.is_set():
        time.sleep(probe_seconds)
        now = time.perf_counter()
        lateness.append(now - last - probe_seconds)
        last = now
        small[i % 100] = i  # the "write"
        i += 1
    worker.join()
    return lateness, took[0]


def busy_python(yield_gil: bool = False) -> None:
    """Pure Python work for ~2 s; with ``yield_gil``, it offers the GIL every ~0.5 ms."""
    deadline = time.perf_counter() + 2.0
    while time.perf_counter() < deadline:
        sum(range(10_000))
        if yield_gil:
            time.sleep(0)


def summary(lateness: list[float]) -> str:
    ordered = sorted(lateness)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"median {statistics.median(ordered) * 1000:6.2f} ms, p99 {p99 * 1000:7.2f} ms, "
            f"max {ordered[-1] * 1000:7.2f} ms over {len(ordered)} writes")


def receive(reader, directory: str) -> None:
    """The slave's side, without the network: assemble + verify + parse, store, restore."""
    meta = reader.meta
    slave = FileStorage(Path(directory) / "slave", fsync="batch")
    slave.load()
    assembler = SnapshotAssembler(directory=slave.path)  # the data dir: installing is a rename
    started = time.perf_counter()
    snapshot = None
    for offset, chunk in reader.chunks():
        snapshot = assembler.accept(ChunkMeta("bench", 1, meta.seq, offset, meta.size, meta.crc32), chunk)
    print(f"slave: assemble + parse + verify + fsync: {time.perf_counter() - started:.2f} s (HTTP threads)")

    def install(items) -> None:
        slave.save_snapshot(StoredSnapshot(snapshot.seq, snapshot.snap_epoch, snapshot.members, items))

    install_s, _ = timed(lambda: install(snapshot.data), repeat=1)
    print(f"slave: save_snapshot, renames the received file: {install_s:.2f} s (node thread)")
    encode_s, _ = timed(lambda: install(list(snapshot.data)), repeat=1)
    print(f"slave: save_snapshot, encoding the items again:  {encode_s:.2f} s (what it would cost)")
    restore_s, _ = timed(lambda: KVState().restore(snapshot.seq, snapshot.data), repeat=1)
    print(f"slave: KVState.restore:                          {restore_s:.2f} s (node thread)")
    slave.close()


def cpu_steps(keys: int) -> None:
    """CPU seconds (median of 3) of each step of a snapshot's life, in this process."""
    from dkvs.storage.snapshot_file import read_snapshot

    state = build_state(keys)
    directory = tempfile.mkdtemp(prefix="dkvs-snapbench-")
    figures: dict[str, list[float]] = {}

    def cpu(name: str, fn):
        started = time.process_time()
        result = fn()
        figures.setdefault(name, []).append(time.process_time() - started)
        return result

    try:
        storage = FileStorage(Path(directory) / "data", fsync="batch")
        storage.load()
        for _ in range(3):
            seq, view = cpu("committed_view (node thread)", state.committed_view)
            if storage.snapshot_seq() < seq - 1:
                storage.save_snapshot(StoredSnapshot(seq - 1, 1, MEMBERS, []))
                storage.append([Entry(1, seq, "noop", "", None)])
            cpu("write_snapshot (worker)", lambda: storage.write_snapshot(seq, 1, MEMBERS, view))
            del view
            path = storage._snapshots.path
            snapshot = cpu("read_snapshot (load + check)", lambda: read_snapshot(path))
            cpu("KVState.restore", lambda: KVState().restore(snapshot.seq, snapshot.items))
            del snapshot
        size = Path(storage._snapshots.path).stat().st_size
        storage.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{keys:,} keys of {KEY_BYTES} B, values {VALUE_BYTES} B; snapshot file {size / 1e6:.0f} MB; "
          f"CPU seconds, median of 3 (load average {os.getloadavg()[0]:.2f}):")
    for name, values in figures.items():
        print(f"  {name:32s} {statistics.median(values):6.3f} s")
    print(f"  KVState.get, a random key        {per_op(state, 'get') * 1e6:6.2f} us per call")
    print(f"  KVState.apply, random overwrites {per_op(state, 'put') * 1e6:6.2f} us per entry")


def per_op(state: KVState, what: str, count: int = 100_000) -> float:
    """CPU seconds per ``get`` of a random existing key, or per applied overwrite of one
    (median of 3 rounds): the price of the state's representation on the hot paths."""
    rng = random.Random(3)
    keys = [key for key, _ in zip(state.data, range(count * 3))]  # existing keys, in key order
    rng.shuffle(keys)
    keys = keys[:count]
    rounds = []
    for _ in range(3):
        if what == "get":
            started = time.process_time()
            for key in keys:
                state.get(key)
        else:
            first = state.applied_seq + 1
            entries = [Entry(1, first + i, OP_PUT, key, "w" * VALUE_BYTES) for i, key in enumerate(keys)]
            started = time.process_time()
            state.apply(entries, commit_seq=first + count - 1)
        rounds.append((time.process_time() - started) / count)
    return statistics.median(rounds)


def main(argv=None) -> int:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=positive, default=1_000_000, help="keys in the state")
    parser.add_argument("--probe-ms", type=positive, default=5, help="the probe writes every N ms")
    parser.add_argument("--cpu", action="store_true", help="only the CPU time of each step (median of 3)")
    args = parser.parse_args(argv)
    if args.cpu:
        cpu_steps(args.keys)
        return 0
    probe = args.probe_ms / 1000

    started = time.perf_counter()
    state = build_state(args.keys)
    print(f"state: {len(state):,} keys of {KEY_BYTES} B, values {VALUE_BYTES} B, 100 uncommitted writes "
          f"(built in {time.perf_counter() - started:.1f} s)")

    view_s, (seq, view) = timed(state.committed_view)
    print(f"committed_view (node thread, dict.copy + undo):   {view_s * 1000:8.1f} ms")
    old_s, _ = timed(state.snapshot_items, repeat=1)
    print(f"snapshot_items (old: copy + sort + lists):        {old_s * 1000:8.1f} ms")

    directory = tempfile.mkdtemp(prefix="dkvs-snapbench-")
    try:
        storage = FileStorage(Path(directory) / "data", fsync="batch")
        storage.load()
        storage.save_snapshot(StoredSnapshot(seq - 1, 1, MEMBERS, []))  # a log that reaches seq
        storage.append([Entry(1, seq, "noop", "", None)])
        idle, _ = probe_while(lambda: time.sleep(1.0), probe)
        print(f"probe, nothing running:        {summary(idle)}")
        busy, _ = probe_while(busy_python, probe)
        print(f"probe, busy Python worker:     {summary(busy)}  (a worker that never yields)")
        polite, _ = probe_while(lambda: busy_python(yield_gil=True), probe)
        print(f"probe, yielding Python worker: {summary(polite)}  (the floor for any worker thread)")
        naive, naive_s = probe_while(lambda: sorted(view), probe)
        print(f"probe, one sorted() on worker: {summary(naive)}  (sort {naive_s:.2f} s)")
        nbytes = []
        during, write_s = probe_while(lambda: nbytes.append(storage.write_snapshot(seq, 1, MEMBERS, view)), probe)
        print(f"probe, write_snapshot worker:  {summary(during)}")
        print(f"write_snapshot (worker thread): {write_s:.2f} s, {nbytes[0] / 1e6:.0f} MB of state "
              f"(file {Path(storage._snapshots.path).stat().st_size / 1e6:.0f} MB)")
        compact_s, _ = timed(lambda: storage.compact(seq), repeat=1)
        print(f"compact (node thread):          {compact_s * 1000:.1f} ms")
        with storage.snapshot_reader() as reader:
            read_s, count = timed(lambda: sum(1 for _ in reader.chunks()), repeat=1)
            print(f"read back in 1 MiB chunks:      {read_s:.2f} s for {count} chunks "
                  f"({reader.meta.size / 1e6 / read_s:.0f} MB/s)")
            receive(reader, directory)
        storage.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
