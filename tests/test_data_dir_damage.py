"""Damage a data dir every way issue 12 lists; never lose an acknowledged write silently.

Real data goes through a FileStorage (``--fsync always``: an append that returned is
acknowledged), the files are damaged, and the dir is reopened. Each case must either
recover every acknowledged write or refuse with a message naming the file and the way
out. The manifest (``manifest.json``, :mod:`dkvs.storage.manifest`) is what turns a
deleted newest segment or a deleted state file from silence into a refusal.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dkvs.core.log import OP_PUT, Entry
from dkvs.storage import file as file_module
from dkvs.storage.base import CorruptStorage, StoredSnapshot
from dkvs.storage.file import FileStorage
from dkvs.storage.records import WAY_OUT
from dkvs.storage.segments import SEGMENT_HEADER_BYTES, segment_name

LAST = 70


def entry(seq: int) -> Entry:
    return Entry(1, seq, OP_PUT, f"key{seq}", f"value-{seq}-" + "x" * (seq % 17))


def snapshot_at(seq: int) -> StoredSnapshot:
    return StoredSnapshot(seq, 1, (("n1", "http://127.0.0.1:1"),),
                          [[f"key{s}", entry(s).value, s] for s in range(1, seq + 1)])


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """Snapshot at 40, segments log-31 (31..60) and log-61 (61..70), a state file, and
    a manifest refreshed after every append (the default refreshes at most once a second;
    what the last second leaves unrecorded is a torn tail: docs/storage.md)."""
    monkeypatch.setattr(file_module, "MANIFEST_REFRESH_SECONDS", 0.0)
    path = tmp_path / "data"
    with FileStorage(path, fsync="always") as storage:
        storage.load()
        storage.save_node_id("n1")
        storage.save_state(3, "n1")
        for first in range(1, 31, 5):
            storage.append([entry(s) for s in range(first, first + 5)])
        storage.save_snapshot(snapshot_at(20))
        for first in range(31, 61, 5):
            storage.append([entry(s) for s in range(first, first + 5)])
        storage.save_snapshot(snapshot_at(40))
        for first in range(61, LAST + 1, 5):
            storage.append([entry(s) for s in range(first, first + 5)])
    names = sorted(n for n in os.listdir(path) if n.startswith("log-"))
    assert names == [segment_name(31), segment_name(61)]
    return path


def segment(path, first: int):
    return path / segment_name(first)


def snapshot_file(path):
    (name,) = [n for n in os.listdir(path) if n.startswith("snapshot-")]
    return path / name


def record_end(path, first: int, seq: int) -> int:
    """The offset just past record ``seq`` of segment ``first``."""
    offset = SEGMENT_HEADER_BYTES
    for s in range(first, seq + 1):
        data = entry(s)
        offset += 8 + 21 + len(data.key.encode()) + len(data.value.encode())
    return offset


def flip(file, offset: int) -> None:
    with open(file, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x40]))


def zero_page(file, offset: int) -> None:
    with open(file, "r+b") as handle:
        size = os.path.getsize(file)
        handle.seek(offset)
        handle.write(bytes(min(4096, size - offset)))


DAMAGE = {
    "deleted newest segment": lambda p: os.remove(segment(p, 61)),
    "deleted older segment": lambda p: os.remove(segment(p, 31)),
    "newest segment cut at a record boundary": lambda p: os.truncate(segment(p, 61), record_end(p, 61, 67)),
    "newest segment cut inside a record": lambda p: os.truncate(segment(p, 61), record_end(p, 61, 68) - 5),
    "newest segment cut to its header": lambda p: os.truncate(segment(p, 61), SEGMENT_HEADER_BYTES),
    "older segment cut in the middle": lambda p: os.truncate(segment(p, 31), record_end(p, 31, 45) + 3),
    "flipped byte in a complete record": lambda p: flip(segment(p, 31), record_end(p, 31, 50) + 12),
    "flipped byte in the newest record": lambda p: flip(segment(p, 61), record_end(p, 61, 69) + 12),
    "deleted snapshot": lambda p: os.remove(snapshot_file(p)),
    "corrupted snapshot": lambda p: flip(snapshot_file(p), 40),
    "deleted state file": lambda p: os.remove(p / "state.json"),
    "corrupted state file": lambda p: flip(p / "state.json", 12),
    "zeroed page": lambda p: zero_page(segment(p, 31), SEGMENT_HEADER_BYTES + 100),
    "corrupted manifest": lambda p: flip(p / "manifest.json", 20),
    "deleted manifest": lambda p: os.remove(p / "manifest.json"),  # the other files are whole
    "no damage": lambda p: None,
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damage_is_recovered_whole_or_refused(data_dir, kind):
    DAMAGE[kind](data_dir)
    storage = FileStorage(data_dir)
    try:
        recovered = storage.load()
    except CorruptStorage as exc:
        message = str(exc)
        assert WAY_OUT in message and str(data_dir) in message, message
        assert "\n" not in message
        return
    try:
        assert kind in ("no damage", "deleted manifest"), f"{kind} was accepted"
        assert (recovered.node_id, recovered.epoch, recovered.voted_for) == ("n1", 3, "n1")
        assert recovered.snapshot.seq == 40
        assert [e.seq for e in recovered.entries] == list(range(41, LAST + 1))
        assert all(e == entry(e.seq) for e in recovered.entries)
    finally:
        storage.close()


REFUSED_WITH = {
    "deleted newest segment": "newest log segment",
    "newest segment cut at a record boundary": "missing or truncated",
    "newest segment cut inside a record": "missing or truncated",
    "newest segment cut to its header": "missing or truncated",
    "deleted state file": "state file is missing",
    "corrupted manifest": "manifest does not parse",
}


@pytest.mark.parametrize("kind", sorted(REFUSED_WITH))
def test_the_refusal_names_what_is_missing(data_dir, kind):
    DAMAGE[kind](data_dir)
    before = {name: (data_dir / name).read_bytes() for name in os.listdir(data_dir) if name != "LOCK"}
    with pytest.raises(CorruptStorage, match=REFUSED_WITH[kind]):
        FileStorage(data_dir).load()
    FileStorage(data_dir).close()  # the failed load released the lock
    after = {name: (data_dir / name).read_bytes() for name in os.listdir(data_dir) if name != "LOCK"}
    assert after == before  # a refusal repairs nothing: the operator gets the files as they were


def test_a_torn_tail_after_the_last_manifest_refresh_stays_a_warning(tmp_path, caplog):
    # The default refresh period: entries appended within it are not in the manifest yet,
    # so a cut there is what a crash leaves: repaired with a warning, as before.
    with FileStorage(tmp_path, fsync="always") as storage:
        storage.load()
        storage.save_node_id("n1")
        storage.append([entry(s) for s in range(1, 6)])
    os.truncate(segment(tmp_path, 1), record_end(tmp_path, 1, 5) - 3)
    with FileStorage(tmp_path) as storage:
        assert [e.seq for e in storage.load().entries] == [1, 2, 3, 4]
    assert "torn tail" in caplog.text


def test_a_restart_records_what_it_read_back(tmp_path):
    with FileStorage(tmp_path, fsync="batch") as storage:
        storage.load()
        storage.save_node_id("n1")
        storage.append([entry(s) for s in range(1, 6)])
    with FileStorage(tmp_path) as storage:
        storage.load()  # fsyncs what it read and records it as durable
    os.truncate(segment(tmp_path, 1), record_end(tmp_path, 1, 3))
    with pytest.raises(CorruptStorage, match="seqs up to 5 were durable"):
        FileStorage(tmp_path).load()


def test_the_node_refuses_to_start_with_one_line(data_dir):
    os.remove(data_dir / "state.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "dkvs", "--data-dir", str(data_dir), "--port", "0"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "state file is missing" in lines[0] and "--join" in lines[0], done.stderr
