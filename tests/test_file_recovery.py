"""Recovery: torn tails are repaired with a warning, every other damage is refused.

The tests damage files the way crashes and disks do (cut a file at every byte, flip a
byte, delete a file) and check what ``load()`` makes of it. The last test SIGKILLs real
child processes in the middle of ``fsync=always`` appends and checks that no
acknowledged entry is ever lost.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from dkvs.core.log import OP_PUT, Entry
from dkvs.storage.base import CorruptStorage, StoredSnapshot
from dkvs.storage.file import FileStorage
from dkvs.storage.segments import SEGMENT_HEADER_BYTES, segment_name

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAY_OUT = "move the data dir away and start the node empty with --join"


def entry(seq: int, epoch: int = 1) -> Entry:
    return Entry(epoch, seq, OP_PUT, f"key{seq % 7}", "v" * (seq % 13))


def build_log(path, count: int) -> list[int]:
    """Append entries 1..count one call each; return the segment size after each entry
    (``sizes[k]`` = bytes of the file holding entries 1..k)."""
    sizes = [SEGMENT_HEADER_BYTES]
    with FileStorage(path, fsync="never") as storage:
        storage.load()
        for seq in range(1, count + 1):
            storage.append([entry(seq)])
            sizes.append(SEGMENT_HEADER_BYTES + storage.log_bytes())
    return sizes


def flip_byte(path, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0x5A]))


def load_entries(path) -> list[Entry]:
    with FileStorage(path) as storage:
        return storage.load().entries


# -- torn tails -----------------------------------------------------------------------------
def test_cut_anywhere_in_the_last_records_recovers_the_whole_ones(tmp_path, caplog):
    count = 20
    original = tmp_path / "original"
    sizes = build_log(original, count)
    segment = segment_name(1)
    for cut in range(sizes[count - 3], sizes[count]):
        data = tmp_path / f"cut{cut}"
        shutil.copytree(original, data)
        os.truncate(data / segment, cut)
        whole = max(k for k in range(count + 1) if sizes[k] <= cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dkvs.storage"):
            with FileStorage(data) as storage:
                recovered = storage.load()
                assert [e.seq for e in recovered.entries] == list(range(1, whole + 1)), cut
                storage.append([entry(whole + 1, epoch=2)])  # appending after repair works
        torn = cut != sizes[whole]
        assert any("torn tail" in r.getMessage() for r in caplog.records) == torn, cut
        assert load_entries(data)[-1] == entry(whole + 1, epoch=2)
        shutil.rmtree(data)


def test_zeros_after_the_last_record_are_a_torn_tail(tmp_path, caplog):
    # What a power loss can leave when the file size reached the disk before the data.
    build_log(tmp_path, 5)
    with open(tmp_path / segment_name(1), "ab") as file:
        file.write(bytes(4096))
    with caplog.at_level(logging.WARNING, logger="dkvs.storage"):
        assert [e.seq for e in load_entries(tmp_path)] == [1, 2, 3, 4, 5]
    assert "torn tail" in caplog.text


def test_bad_crc_in_the_last_record_is_truncated(tmp_path, caplog):
    sizes = build_log(tmp_path, 10)
    flip_byte(tmp_path / segment_name(1), sizes[9] + 8 + 3)  # inside record 10's payload
    with caplog.at_level(logging.WARNING, logger="dkvs.storage"):
        assert [e.seq for e in load_entries(tmp_path)] == list(range(1, 10))
    assert "CRC mismatch" in caplog.text


# -- damage in the middle -------------------------------------------------------------------
@pytest.mark.parametrize("where", ["payload", "crc", "length"])
def test_damage_followed_by_intact_records_is_refused(tmp_path, where):
    sizes = build_log(tmp_path, 10)
    path = tmp_path / segment_name(1)
    record_5 = sizes[4]
    flip_byte(path, record_5 + {"length": 0, "crc": 4, "payload": 8 + 10}[where])
    with pytest.raises(CorruptStorage) as info:
        load_entries(tmp_path)
    message = str(info.value)
    assert str(path) in message and f"offset {record_5}" in message and WAY_OUT in message
    FileStorage(tmp_path).close()  # a failed load released the lock


def test_damaged_segment_that_is_not_the_last_is_refused(tmp_path):
    two_segments(tmp_path)
    os.truncate(tmp_path / segment_name(1), os.path.getsize(tmp_path / segment_name(1)) - 3)
    with pytest.raises(CorruptStorage, match="not the last one"):
        load_entries(tmp_path)


def test_missing_segment_is_a_gap(tmp_path):
    two_segments(tmp_path)
    os.remove(tmp_path / segment_name(1))  # held seqs 6..10 after the snapshot at 5
    with pytest.raises(CorruptStorage, match="gap in seqs") as info:
        load_entries(tmp_path)
    assert WAY_OUT in str(info.value)


def test_renamed_segment_is_refused(tmp_path):
    two_segments(tmp_path)
    os.rename(tmp_path / segment_name(11), tmp_path / segment_name(12))
    with pytest.raises(CorruptStorage):
        load_entries(tmp_path)


def two_segments(path) -> None:
    """Segments 1..10 and 11..20 with a snapshot at 5 between them."""
    with FileStorage(path, fsync="never") as storage:
        storage.load()
        storage.append([entry(s) for s in range(1, 11)])
        storage.save_snapshot(StoredSnapshot(5, 1, (), [["k", "v", 5]]))
        storage.append([entry(s) for s in range(11, 21)])
    assert sorted(n for n in os.listdir(path) if n.startswith("log-")) == [segment_name(1), segment_name(11)]


# -- snapshots ------------------------------------------------------------------------------
def test_damaged_newest_snapshot_falls_back_to_an_older_valid_one(tmp_path, caplog):
    with FileStorage(tmp_path, fsync="never") as storage:
        storage.load()
        storage.append([entry(s) for s in range(1, 11)])
        storage.save_snapshot(StoredSnapshot(5, 1, (), [["k", "v", 5]]))
        older = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path) if n.startswith("snapshot-")}
        storage.save_snapshot(StoredSnapshot(8, 1, (), [["k", "v", 8]]))  # log 1..10 still straddles
    for name, data in older.items():  # as if the crash came before the old one was deleted
        (tmp_path / name).write_bytes(data)
    newest = max(n for n in os.listdir(tmp_path) if n.startswith("snapshot-"))
    flip_byte(tmp_path / newest, 20)
    with caplog.at_level(logging.WARNING, logger="dkvs.storage"):
        with FileStorage(tmp_path) as storage:
            recovered = storage.load()
    assert recovered.snapshot.seq == 5 and [e.seq for e in recovered.entries] == [6, 7, 8, 9, 10]
    assert "ignoring damaged snapshot" in caplog.text


def test_damaged_only_snapshot_with_compacted_log_is_refused(tmp_path):
    two_segments(tmp_path)
    with FileStorage(tmp_path, fsync="never") as storage:
        storage.load()
        storage.save_snapshot(StoredSnapshot(15, 1, (), [["k", "v", 15]]))  # deletes 1..10
    (snapshot,) = [n for n in os.listdir(tmp_path) if n.startswith("snapshot-")]
    os.truncate(tmp_path / snapshot, os.path.getsize(tmp_path / snapshot) - 1)
    with pytest.raises(CorruptStorage, match="gap in seqs"):
        load_entries(tmp_path)


# -- real crashes ---------------------------------------------------------------------------
CHILD = r"""
import sys
from dkvs.core.log import Entry
from dkvs.storage.base import StoredSnapshot
from dkvs.storage.file import FileStorage

storage = FileStorage(sys.argv[1], fsync="always")
recovered = storage.load()
seq = recovered.entries[-1].seq if recovered.entries else (
    recovered.snapshot.seq if recovered.snapshot else 0)
print("ready", seq, flush=True)
calls = 0
while True:
    batch = [Entry(1, seq + 1 + i, "put", f"k{(seq + i) % 50}", "v" * ((seq + i) % 300))
             for i in range(1 + calls % 7)]
    storage.append(batch)
    seq += len(batch)
    print(seq, flush=True)  # only after append returned: seq is acknowledged
    calls += 1
    if calls % 40 == 0:  # compaction under fire; the items do not matter to storage
        storage.save_snapshot(StoredSnapshot(seq - 3, 1, (), [["k", "v", seq - 3]]))
"""
CRASH_ROUNDS = 20
CHILD_WATCHDOG_SECONDS = 120.0  # a liveness limit: a child on a busy machine starts slowly


def test_sigkill_never_loses_an_acknowledged_append(tmp_path):
    seed = 20240611
    rng = random.Random(seed)
    data = tmp_path / "data"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    acknowledged = 0
    for round_ in range(CRASH_ROUNDS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(data)], cwd=REPO_ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        watchdog = threading.Timer(CHILD_WATCHDOG_SECONDS, child.kill)
        watchdog.start()
        try:
            ready = child.stdout.readline().split()
            assert ready[:1] == [b"ready"], child.stderr.read().decode()
            assert int(ready[1]) >= acknowledged, f"seed {seed} round {round_}: child lost writes"
            for _ in range(rng.randint(0, 300)):  # the kill lands wherever the child is then
                line = child.stdout.readline()
                assert line, child.stderr.read().decode()
                acknowledged = int(line)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            watchdog.cancel()
            child.kill()
            child.wait()
        for line in child.stdout.read().splitlines(keepends=True):
            if line.endswith(b"\n"):
                acknowledged = int(line)  # printed before the kill: acknowledged too
        child.stdout.close()
        child.stderr.close()
        with FileStorage(data, fsync="never") as storage:
            recovered = storage.load()
        base = recovered.snapshot.seq if recovered.snapshot else 0
        seqs = [e.seq for e in recovered.entries]
        assert seqs == list(range(base + 1, base + 1 + len(seqs))), f"seed {seed} round {round_}"
        assert (seqs[-1] if seqs else base) >= acknowledged, f"seed {seed} round {round_}"
    assert acknowledged > CRASH_ROUNDS
