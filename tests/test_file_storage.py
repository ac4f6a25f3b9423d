"""FileStorage behaves like MemoryStorage across restarts, and keeps its fsync promises.

Every test uses its own ``tmp_path`` data dir. Randomised tests are seeded and print the
seed on failure. Damage and crash recovery live in ``test_file_recovery.py``.
"""

from __future__ import annotations

import json
import os
import random

import pytest

from dkvs.core.log import OP_DELETE, OP_MEMBER_ADD, OP_MEMBER_REMOVE, OP_NOOP, OP_PUT, Entry
from dkvs.storage.base import Recovered, StoredSnapshot
from dkvs.storage.file import DataDirLocked, FileStorage
from dkvs.storage.memory import MemoryStorage
from dkvs.tools.local_cluster import wait_for

# A liveness limit, not a claim: the flusher runs every 10 ms here, but on a machine whose
# cores are all busy its thread may not be scheduled for seconds.
BATCH_FLUSH_WAIT_SECONDS = 60.0

KEYS = ["a", "b", "", "ключ", "k/with/slashes", "emoji-\U0001F600", "x" * 300]
VALUES = ["", "1", "value", "значение", "\x00nul", "y" * 2000, "line\nbreak"]


def random_entry(rng: random.Random, epoch: int, seq: int) -> Entry:
    op = rng.choice([OP_PUT, OP_PUT, OP_PUT, OP_DELETE, OP_NOOP, OP_MEMBER_ADD, OP_MEMBER_REMOVE])
    if op in (OP_PUT, OP_MEMBER_ADD):
        return Entry(epoch, seq, op, rng.choice(KEYS), rng.choice(VALUES))
    return Entry(epoch, seq, op, rng.choice(KEYS) if op != OP_NOOP else "", None)


def last_seq(memory: MemoryStorage) -> int:
    if memory.entries:
        return memory.entries[-1].seq
    return memory.snapshot.seq if memory.snapshot else 0


def assert_same(got: Recovered, want: Recovered) -> None:
    assert (got.node_id, got.epoch, got.voted_for) == (want.node_id, want.epoch, want.voted_for)
    assert got.entries == want.entries
    if want.snapshot is None:
        assert got.snapshot is None
    else:
        assert got.snapshot is not None
        assert (got.snapshot.seq, got.snapshot.epoch) == (want.snapshot.seq, want.snapshot.epoch)
        assert got.snapshot.members == want.snapshot.members
        assert [list(item) for item in got.snapshot.items] == [list(i) for i in want.snapshot.items]


class Twin:
    """Drives a FileStorage and a MemoryStorage with the same calls."""

    def __init__(self, path, rng: random.Random) -> None:
        self.path, self.rng = path, rng
        self.memory = MemoryStorage()
        self.file = FileStorage(path, fsync=rng.choice(["always", "batch", "never"]))
        self.file.load()
        self.epoch = 1

    def step(self) -> None:
        rng, memory = self.rng, self.memory
        base = memory.snapshot.seq if memory.snapshot else 0
        last = last_seq(memory)
        roll = rng.random()
        if roll < 0.55:
            self.epoch += rng.random() < 0.1
            batch = [random_entry(rng, self.epoch, last + 1 + i) for i in range(rng.randint(1, 6))]
            self.call("append", batch)
        elif roll < 0.65:
            self.call("truncate_after", rng.randint(base, last))
        elif roll < 0.75:
            self.call("save_state", rng.randint(0, 50), rng.choice([None, "n1", "n2", "узел"]))
        elif roll < 0.78:
            self.call("save_node_id", f"node-{rng.randint(0, 9)}")
        elif roll < 0.88:
            # Beyond the log: installed from a master. Below the last one: odd, but allowed.
            seq = rng.randint(max(0, base - 3), last + 3)
            # A snapshot is a state: one item per key, in key order (the file format keeps
            # records sorted and refuses a key twice).
            state = {rng.choice(KEYS): [rng.choice(VALUES), rng.randint(1, seq or 1)]
                     for _ in range(rng.randint(0, 20))}
            items = [[key, *state[key]] for key in sorted(state)]
            members = tuple((f"n{i}", f"http://h{i}:7070") for i in range(rng.randint(0, 3)))
            self.call("save_snapshot", StoredSnapshot(seq, self.epoch, members, items))
        elif roll < 0.95:
            self.reopen()
        else:
            self.file.sync()
        assert (self.file.log_bytes() == 0) == (not memory.entries)

    def call(self, name: str, *args) -> None:
        getattr(self.memory, name)(*args)
        getattr(self.file, name)(*args)

    def reopen(self) -> None:
        self.file.close()
        self.file = FileStorage(self.path, fsync=self.rng.choice(["always", "batch", "never"]))
        assert_same(self.file.load(), self.memory.load())


@pytest.mark.parametrize("seed", range(8))
def test_random_operations_survive_reopen_like_memory_storage(tmp_path, seed):
    rng = random.Random(seed)
    twin = Twin(tmp_path / "data", rng)
    try:
        for _ in range(300):
            twin.step()
        twin.reopen()
        snap = twin.file.load_snapshot()
        want = twin.memory.load_snapshot()
        assert (snap is None) == (want is None)
        if want is not None:
            assert (snap.seq, [list(i) for i in snap.items]) == (want.seq, [list(i) for i in want.items])
    except AssertionError as exc:
        raise AssertionError(f"seed {seed}: {exc}") from exc
    finally:
        twin.file.close()


def test_append_rejects_entries_that_do_not_continue_the_log(tmp_path):
    with FileStorage(tmp_path, fsync="never") as storage:
        storage.load()
        storage.append([Entry(1, 1, OP_PUT, "k", "v")])
        with pytest.raises(ValueError):
            storage.append([Entry(1, 3, OP_PUT, "k", "v")])
        with pytest.raises(ValueError):
            storage.append([Entry(1, 2, OP_PUT, "k", "v"), Entry(1, 4, OP_PUT, "k", "v")])
        with pytest.raises(ValueError):
            storage.append([Entry(1, 2, "frobnicate", "k", "v")])
        storage.append([Entry(1, 2, OP_PUT, "k", "v2")])
    with FileStorage(tmp_path) as storage:
        assert [e.seq for e in storage.load().entries] == [1, 2]


def test_truncate_after_spans_segments_and_is_durable(tmp_path):
    with FileStorage(tmp_path, fsync="never") as storage:
        storage.load()
        storage.append([Entry(1, s, OP_PUT, f"k{s}", "v") for s in range(1, 11)])
        storage.save_snapshot(StoredSnapshot(5, 1, (), []))  # seals segment 1..10
        storage.append([Entry(1, s, OP_PUT, f"k{s}", "v") for s in range(11, 21)])
        with pytest.raises(ValueError):
            storage.truncate_after(4)  # below the snapshot point
        storage.truncate_after(7)
        storage.append([Entry(2, 8, OP_NOOP)])
    with FileStorage(tmp_path) as storage:
        recovered = storage.load()
    assert [(e.epoch, e.seq) for e in recovered.entries] == [(1, 6), (1, 7), (2, 8)]
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("log-")) == [
        "log-00000000000000000001.seg"]  # the later segment was unlinked


def test_snapshot_round_trips_many_chunks(tmp_path):
    items = sorted([f"key{i}", f"value {i} \u00e9", i + 1] for i in range(20_000))  # a state: key order
    snapshot = StoredSnapshot(20_000, 3, (("n1", "http://a"), ("n2", "http://b")), items)
    with FileStorage(tmp_path, fsync="never") as storage:
        storage.load()
        storage.save_snapshot(snapshot)
        assert storage.load_snapshot().items == items
    with FileStorage(tmp_path) as storage:
        got = storage.load().snapshot
    assert (got.seq, got.epoch, got.members, got.items) == (20_000, 3, snapshot.members, items)


def test_compaction_keeps_the_data_dir_small(tmp_path):
    """100,000 overwrites of 100 keys, snapshotting whenever the log passes 64 KiB: the
    dir stays a small multiple of (live data + threshold), not the 4+ MB of history."""
    threshold_bytes = 64 * 1024
    state: dict[str, list] = {}
    max_dir_bytes = 0
    seq = 0
    with FileStorage(tmp_path, fsync="never") as storage:
        storage.load()
        while seq < 100_000:
            batch = [Entry(1, seq + i + 1, OP_PUT, f"key{(seq + i) % 100}", f"value-{seq + i}")
                     for i in range(10)]
            storage.append(batch)
            seq += 10
            for entry in batch:
                state[entry.key] = [entry.key, entry.value, entry.seq]
            if storage.log_bytes() > threshold_bytes:
                storage.save_snapshot(StoredSnapshot(seq, 1, (), list(state.values())))
            if seq % 1000 == 0:
                max_dir_bytes = max(max_dir_bytes, dir_bytes(tmp_path))
        snapshot_bytes = sum(len(json.dumps(item)) for item in state.values())
        assert max_dir_bytes < 3 * (threshold_bytes + snapshot_bytes)
    with FileStorage(tmp_path) as storage:
        recovered = storage.load()
    rebuilt = {item[0]: item for item in recovered.snapshot.items}
    for entry in recovered.entries:
        rebuilt[entry.key] = [entry.key, entry.value, entry.seq]
    assert rebuilt == state


def dir_bytes(path) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file())


def test_old_snapshots_and_covered_segments_are_deleted(tmp_path):
    with FileStorage(tmp_path, fsync="never") as storage:
        storage.load()
        for round_ in range(3):
            first = round_ * 10 + 1
            storage.append([Entry(1, s, OP_PUT, "k", str(s)) for s in range(first, first + 10)])
            storage.save_snapshot(StoredSnapshot(first + 7, 1, (), [["k", str(first + 7), first + 7]]))
        names = sorted(os.listdir(tmp_path))
        assert storage.log_bytes() > 0  # seqs 29 and 30 follow the snapshot
    assert [n for n in names if n.startswith("snapshot-")] == [
        "snapshot-0000000003-00000000000000000028.snap"]
    assert [n for n in names if n.startswith("log-")] == ["log-00000000000000000021.seg"]


def test_snapshot_deletes_exactly_the_segments_it_covers(tmp_path):
    with FileStorage(tmp_path, fsync="never") as storage:
        storage.load()
        storage.append([Entry(1, s, OP_NOOP) for s in range(1, 11)])
        storage.save_snapshot(StoredSnapshot(3, 1, (), []))
        storage.append([Entry(1, s, OP_NOOP) for s in range(11, 21)])
        storage.save_snapshot(StoredSnapshot(10, 1, (), []))  # ends exactly where segment 1 ends
        assert log_files(tmp_path) == ["log-00000000000000000011.seg"]
        storage.save_snapshot(StoredSnapshot(20, 1, (), []))  # covers the whole log
        assert log_files(tmp_path) == [] and storage.log_bytes() == 0
        storage.append([Entry(1, 21, OP_NOOP)])
        assert log_files(tmp_path) == ["log-00000000000000000021.seg"]


def test_empty_segment_left_by_a_crash_is_reused(tmp_path):
    with FileStorage(tmp_path, fsync="never") as storage:
        storage.load()
        storage.append([Entry(1, s, OP_NOOP) for s in range(1, 11)])
        storage.save_snapshot(StoredSnapshot(5, 1, (), []))
        storage.append([Entry(1, 11, OP_NOOP)])
    os.truncate(tmp_path / "log-00000000000000000011.seg", 16)  # crashed right after creating it
    with FileStorage(tmp_path, fsync="never") as storage:
        assert storage.load().entries[-1].seq == 10
        storage.save_snapshot(StoredSnapshot(8, 1, (), []))  # seals the empty segment
        storage.append([Entry(2, 11, OP_NOOP), Entry(2, 12, OP_NOOP)])
        storage.truncate_after(11)
    assert log_files(tmp_path) == ["log-00000000000000000001.seg", "log-00000000000000000011.seg"]
    with FileStorage(tmp_path) as storage:
        assert [(e.epoch, e.seq) for e in storage.load().entries] == [(1, 9), (1, 10), (2, 11)]


def log_files(path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.startswith("log-"))


# -- fsync policies -------------------------------------------------------------------------
def opened(path, policy: str, **kwargs) -> FileStorage:
    """A storage whose first segment already exists (creating it costs fsyncs of its own)."""
    storage = FileStorage(path, fsync=policy, **kwargs)
    storage.load()
    storage.append([Entry(1, 1, OP_NOOP)])
    storage.sync()
    return storage


def test_always_fsyncs_once_per_append_call(tmp_path):
    with opened(tmp_path, "always") as storage:
        before = storage.fsync_count
        for seq in range(2, 12):
            storage.append([Entry(1, seq, OP_PUT, "k", "v")])
        storage.append([Entry(1, s, OP_PUT, "k", "v") for s in range(12, 112)])  # group commit
        assert storage.fsync_count == before + 11


def test_never_leaves_fsync_to_the_os_until_sync_or_close(tmp_path):
    storage = opened(tmp_path, "never")
    before = storage.fsync_count
    for seq in range(2, 12):
        storage.append([Entry(1, seq, OP_PUT, "k", "v")])
    assert storage.fsync_count == before
    storage.sync()
    assert storage.fsync_count == before + 1
    storage.append([Entry(1, 12, OP_PUT, "k", "v")])
    storage.close()
    assert storage.fsync_count == before + 2


def test_batch_fsyncs_in_the_background_within_the_interval(tmp_path):
    with opened(tmp_path, "batch", fsync_interval_seconds=0.01) as storage:
        before = storage.fsync_count
        storage.append([Entry(1, 2, OP_PUT, "k", "v")])
        assert wait_for(lambda: storage.fsync_count != before, BATCH_FLUSH_WAIT_SECONDS, interval=0.005), \
            "the background flusher never fsynced the appended entry"
        assert storage.fsync_count == before + 1


def test_batch_flusher_never_trips_over_segment_changes(tmp_path):
    """The flusher fsyncs every millisecond while the node thread seals, truncates and
    reopens segments under it: no EBADF, no lost entry, and the flusher keeps running."""
    rng = random.Random(7)
    with opened(tmp_path, "batch", fsync_interval_seconds=0.001) as storage:
        seq = 1
        for _ in range(2000):
            storage.append([Entry(1, seq + 1 + i, OP_PUT, "k", "v" * 50) for i in range(3)])
            seq += 3
            roll = rng.random()
            if roll < 0.02:
                storage.save_snapshot(StoredSnapshot(seq - 1, 1, (), []))
            elif roll < 0.04:
                seq -= 1
                storage.truncate_after(seq)
            elif roll < 0.05:
                storage.sync()
        assert storage.fsync_count > 0
    with FileStorage(tmp_path) as storage:
        assert storage.load().entries[-1].seq == seq


def test_unknown_fsync_policy_is_refused(tmp_path):
    with pytest.raises(ValueError):
        FileStorage(tmp_path, fsync="sometimes")


# -- lock, state, rollback ------------------------------------------------------------------
def test_second_storage_on_the_same_dir_is_refused(tmp_path):
    first = FileStorage(tmp_path)
    with pytest.raises(DataDirLocked, match="in use") as info:
        FileStorage(tmp_path)
    assert isinstance(info.value, OSError) and str(os.getpid()) in str(info.value)
    first.close()
    FileStorage(tmp_path).close()  # released on close


def test_state_survives_reopen_and_leftover_temp_files_are_ignored(tmp_path):
    with FileStorage(tmp_path) as storage:
        storage.load()
        storage.save_node_id("node-a")
        storage.save_state(7, "node-b")
        storage.save_state(8, None)
    # What a crash in the middle of an atomic rewrite leaves behind.
    (tmp_path / "state.json.tmp").write_bytes(b'{"crc32": 1, "sta')
    (tmp_path / "snapshot-0000000009-00000000000000000005.snap.tmp").write_bytes(b"DKVS")
    with FileStorage(tmp_path) as storage:
        recovered = storage.load()
    assert (recovered.node_id, recovered.epoch, recovered.voted_for) == ("node-a", 8, None)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_rollback_file_holds_the_discarded_entries(tmp_path):
    discarded = [Entry(3, 41, OP_PUT, "k", "v"), Entry(3, 42, OP_DELETE, "k", None),
                 Entry(3, 43, OP_MEMBER_ADD, "n9", "http://n9")]
    with FileStorage(tmp_path) as storage:
        storage.load()
        path = storage.save_rollback(discarded)
        other = storage.save_rollback(discarded[:1])
    assert path != other
    assert os.path.dirname(path) == str(tmp_path / "rollback")
    with open(path, encoding="utf-8") as file:
        lines = [json.loads(line) for line in file]
    assert [Entry(**line) for line in lines] == discarded
