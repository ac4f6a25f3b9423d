"""Background snapshots in storage: a consistent view, written off the node's thread,
compacted separately, read back by bounded chunks.

Both storages are driven through the same tests (``storage`` fixture). Interleavings of
the node's thread with a build are made deterministic by doing the node's calls inside
``should_stop``, which a build polls between pieces; one test also runs a real thread.
"""

from __future__ import annotations

import os
import threading
import zlib

import pytest

from dkvs.core.kvstate import KVState
from dkvs.core.log import OP_DELETE, OP_PUT, Entry
from dkvs.storage import FileStorage, MemoryStorage
from dkvs.storage.base import SnapshotSuperseded, StoredSnapshot
from dkvs.storage.snapshot_file import SORT_RUN_KEYS, read_snapshot
from dkvs.storage.snapshot_reader import EncodedSnapshotReader

MEMBERS = (("n1", "http://127.0.0.1:1"), ("n2", "http://127.0.0.1:2"))


def put(seq: int, key: str, value: str, epoch: int = 1) -> Entry:
    return Entry(epoch, seq, OP_PUT, key, value)


def log_entries(first: int, last: int) -> list[Entry]:
    return [put(seq, f"k{seq % 13}", f"v{seq}") for seq in range(first, last + 1)]


@pytest.fixture(params=["memory", "file"])
def storage(request, tmp_path):
    store = MemoryStorage() if request.param == "memory" else FileStorage(tmp_path / "d", fsync="never")
    store.load()
    yield store
    store.close()


def reopen(storage, tmp_path):
    """The storage as a restart finds it (the same object for memory: it is the disk)."""
    if isinstance(storage, MemoryStorage):
        return storage
    storage.close()
    again = FileStorage(tmp_path / "d", fsync="never")
    return again


# -- KVState.committed_view ------------------------------------------------------------------------
def test_committed_view_is_the_state_at_the_commit_point_and_stays_put():
    # The view equals snapshot_items (the old, sorted copy) and does not follow later writes.
    state = KVState()
    state.apply([put(1, "a", "1"), put(2, "b", "2"), put(3, "gone", "x")], commit_seq=3)
    state.apply([put(4, "a", "uncommitted"), Entry(1, 5, OP_DELETE, "b", None), put(6, "c", "new"),
                 put(7, "a", "again"), Entry(1, 8, OP_DELETE, "gone", None)], commit_seq=3)
    seq, view = state.committed_view()
    assert seq == 3
    assert view == {"a": ("1", 1), "b": ("2", 2), "gone": ("x", 3)}
    assert sorted((k, v, s) for k, (v, s) in view.items()) == [tuple(i) for i in state.snapshot_items()[1]]
    state.apply([put(9, "a", "later"), put(10, "z", "later")], commit_seq=10)
    assert view == {"a": ("1", 1), "b": ("2", 2), "gone": ("x", 3)}
    assert state.get("a") == ("later", 9)


# -- write_snapshot / compact ------------------------------------------------------------------------
def test_write_snapshot_keeps_the_log_until_compact(storage, tmp_path):
    # write_snapshot stores the state but drops no log entry; compact drops them; a restart
    # in between (or after) recovers the snapshot plus exactly the entries after it.
    storage.append(log_entries(1, 100))
    before = storage.log_bytes()
    data = {f"key{i:04d}": (f"val{i}", i) for i in range(50)}
    nbytes = storage.write_snapshot(50, 1, MEMBERS, data)
    assert nbytes > 0
    assert storage.log_bytes() == before
    assert storage.snapshot_seq() == 50
    snap = storage.load_snapshot()
    assert (snap.seq, snap.epoch, snap.members) == (50, 1, MEMBERS)
    assert [list(i) for i in snap.items] == [[k, v, s] for k, (v, s) in sorted(data.items())]

    storage = reopen(storage, tmp_path)
    recovered = storage.load()
    assert recovered.snapshot.seq == 50
    assert [e.seq for e in recovered.entries] == list(range(51, 101))

    storage.compact(50)
    assert 0 < storage.log_bytes() < before
    storage.append(log_entries(101, 110))
    storage = reopen(storage, tmp_path)
    recovered = storage.load()
    assert recovered.snapshot.seq == 50
    assert [e.seq for e in recovered.entries] == list(range(51, 111))
    storage.close()


def test_compact_needs_a_durable_snapshot(storage):
    storage.append(log_entries(1, 20))
    with pytest.raises(ValueError):
        storage.compact(10)  # no snapshot yet
    storage.write_snapshot(10, 1, MEMBERS, {"a": ("1", 3)})
    with pytest.raises(ValueError):
        storage.compact(15)  # beyond the snapshot
    storage.compact(10)
    storage.compact(5)  # at or below the compaction point: nothing to do


def test_writes_go_on_while_a_snapshot_is_built(storage, tmp_path):
    # Appends made by the node's thread during a build (here: between the build's pieces)
    # are all kept, and the log continues the snapshot after a restart.
    storage.append(log_entries(1, 10))
    data = {f"k{i:06d}": ("v", i) for i in range(2 * SORT_RUN_KEYS + 5)}
    seqs = iter(range(11, 10_000))

    def node_thread_appends():
        seq = next(seqs)
        storage.append([put(seq, "live", str(seq))])
        return False

    storage.write_snapshot(10, 1, MEMBERS, data, should_stop=node_thread_appends)
    last = next(seqs) - 1
    assert last > 12  # the build really interleaved with appends
    storage.compact(10)
    storage = reopen(storage, tmp_path)
    recovered = storage.load()
    assert recovered.snapshot.seq == 10 and len(recovered.snapshot.items) == len(data)
    assert [e.seq for e in recovered.entries] == list(range(11, last + 1))
    storage.close()


def test_a_snapshot_installed_during_a_build_wins(storage):
    # A slave that receives the master's snapshot while building its own keeps the
    # master's: the build is refused rather than leaving a snapshot behind the log.
    storage.append(log_entries(1, 10))
    installed = StoredSnapshot(500, 2, MEMBERS, [["m", "from-master", 500]])
    calls = []

    def install_midway():
        if not calls:
            storage.save_snapshot(installed)
        calls.append(1)
        return False

    with pytest.raises(SnapshotSuperseded):
        storage.write_snapshot(10, 1, MEMBERS, {"a": ("1", 1)}, should_stop=install_midway)
    assert storage.snapshot_seq() == 500
    assert storage.load_snapshot().items == [["m", "from-master", 500]]
    storage.append([put(501, "x", "y", epoch=2)])  # the log continues the installed snapshot


def test_should_stop_abandons_a_build_and_changes_nothing(storage, tmp_path):
    storage.append(log_entries(1, 10))
    with pytest.raises(SnapshotSuperseded):
        storage.write_snapshot(5, 1, MEMBERS, {"a": ("1", 1)}, should_stop=lambda: True)
    assert storage.load_snapshot() is None and storage.snapshot_seq() == 0
    if isinstance(storage, FileStorage):
        assert not [n for n in os.listdir(tmp_path / "d") if "snap" in n]


def test_older_snapshot_than_the_stored_one_is_refused(storage):
    storage.append(log_entries(1, 30))
    storage.write_snapshot(20, 1, MEMBERS, {"a": ("1", 20)})
    storage.compact(20)
    with pytest.raises(SnapshotSuperseded):
        storage.write_snapshot(10, 1, MEMBERS, {"a": ("1", 10)})
    assert storage.snapshot_seq() == 20


def test_build_on_a_real_thread_while_the_node_appends(tmp_path):
    # The thread-safety claim with real threads: a worker builds while this thread appends.
    storage = FileStorage(tmp_path / "d", fsync="batch")
    storage.load()
    storage.append(log_entries(1, 10))
    data = {f"k{i:06d}": ("v" * 50, i) for i in range(3 * SORT_RUN_KEYS)}
    done = threading.Event()
    result = {}

    def build():
        try:
            result["bytes"] = storage.write_snapshot(10, 1, MEMBERS, data)
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc
        done.set()

    worker = threading.Thread(target=build)
    worker.start()
    seq = 10
    while not done.is_set() or seq < 20:
        seq += 1
        storage.append([put(seq, "live", str(seq))])
    worker.join()
    assert "error" not in result and result["bytes"] > 0
    storage.compact(10)
    storage.close()
    again = FileStorage(tmp_path / "d", fsync="never")
    recovered = again.load()
    assert recovered.snapshot.seq == 10 and len(recovered.snapshot.items) == len(data)
    assert [e.seq for e in recovered.entries] == list(range(11, seq + 1))
    again.close()


def test_leftover_of_a_build_interrupted_by_a_crash_is_removed(tmp_path):
    storage = FileStorage(tmp_path / "d", fsync="never")
    storage.load()
    storage.append(log_entries(1, 5))
    storage.close()
    leftover = tmp_path / "d" / "snapshot-build-00000000000000000003-1.snap.tmp"
    leftover.write_bytes(b"half a snapshot")
    again = FileStorage(tmp_path / "d", fsync="never")
    recovered = again.load()
    assert recovered.snapshot is None and len(recovered.entries) == 5
    assert not leftover.exists()
    again.close()


# -- chunked reading ---------------------------------------------------------------------------------
def read_all(reader, chunk_bytes: int) -> bytes:
    parts = []
    for offset, chunk in reader.chunks(chunk_bytes=chunk_bytes):
        assert len(chunk) <= chunk_bytes
        assert offset == sum(len(p) for p in parts)
        parts.append(chunk)
    return b"".join(parts)


def test_reader_yields_the_snapshot_bytes_in_bounded_chunks(storage, tmp_path):
    assert storage.snapshot_reader() is None
    storage.append(log_entries(1, 10))
    data = {f"key-{i}": ("é" * (i % 7), i) for i in range(10_000)}
    storage.write_snapshot(10, 3, MEMBERS, data)
    with storage.snapshot_reader() as reader:
        assert (reader.meta.seq, reader.meta.epoch, reader.meta.members) == (10, 3, MEMBERS)
        whole = read_all(reader, 4096)
        assert len(whole) == reader.meta.size and zlib.crc32(whole) == reader.meta.crc32
        assert reader.read(5, 10) == whole[5:15]  # random access, also backwards
        assert reader.read(reader.meta.size - 3, 100) == whole[-3:]
        assert reader.read(reader.meta.size, 100) == b""
    path = tmp_path / "whole.snap"
    path.write_bytes(whole)
    parsed = read_snapshot(str(path))
    assert parsed.seq == 10 and parsed.items == [[k, v, s] for k, (v, s) in sorted(data.items())]


def test_memory_and_file_hold_the_same_bytes(tmp_path):
    data = {f"k{i}": (str(i) * 3, i) for i in range(5000)}
    blobs = []
    for store in (MemoryStorage(), FileStorage(tmp_path / "f", fsync="never")):
        store.load()
        store.append(log_entries(1, 9))
        store.write_snapshot(9, 2, MEMBERS, data)
        with store.snapshot_reader() as reader:
            blobs.append((reader.meta, read_all(reader, 1000)))
        store.close()
    assert blobs[0] == blobs[1]


def test_file_reader_finishes_the_snapshot_it_began_after_a_newer_one_replaces_it(tmp_path):
    storage = FileStorage(tmp_path / "d", fsync="never")
    storage.load()
    storage.append(log_entries(1, 30))
    storage.write_snapshot(10, 1, MEMBERS, {f"old{i}": ("x" * 100, i) for i in range(2000)})
    reader = storage.snapshot_reader()
    first = reader.read(0, 1000)
    storage.write_snapshot(20, 1, MEMBERS, {"new": ("y", 20)})  # unlinks the old file
    assert len([n for n in os.listdir(tmp_path / "d") if n.endswith(".snap")]) == 1
    rest = read_all(reader, 1 << 16)
    assert rest[:1000] == first and zlib.crc32(rest) == reader.meta.crc32 and reader.meta.seq == 10
    reader.close()
    with storage.snapshot_reader() as newest:
        assert newest.meta.seq == 20
    storage.close()


def test_reader_after_a_restart_learns_size_and_checksum(tmp_path):
    storage = FileStorage(tmp_path / "d", fsync="never")
    storage.load()
    storage.save_snapshot(StoredSnapshot(7, 1, MEMBERS, [["a", "1", 7]]))
    with storage.snapshot_reader() as reader:
        meta, whole = reader.meta, read_all(reader, 64)
    storage.close()
    again = FileStorage(tmp_path / "d", fsync="never")
    again.load()
    with again.snapshot_reader() as reader:
        assert reader.meta == meta and read_all(reader, 50) == whole
    again.close()


def test_encoded_reader_memory_stays_bounded():
    # The in-memory reader never holds more than one chunk plus one frame of the stream.
    pieces = [bytes([i % 256]) * 1000 for i in range(500)]
    from dkvs.storage.base import SnapshotMeta
    reader = EncodedSnapshotReader(lambda: iter(pieces), SnapshotMeta(1, 1, (), 500_000, zlib.crc32(b"".join(pieces))))
    total = b""
    for _, chunk in reader.chunks(chunk_bytes=3000):
        assert len(reader._buf) <= 3000 + 1000
        total += chunk
    assert total == b"".join(pieces)


def test_files_with_bigger_chunks_written_before_still_read(tmp_path):
    # Frames used to hold 4096 items; readers take any count, so old data dirs still load.
    from dkvs.storage.snapshot_file import chunked, encode_snapshot

    items = [[f"k{i:05d}", "v", i] for i in range(10_000)]
    path = tmp_path / "old.snap"
    path.write_bytes(b"".join(encode_snapshot(10_000, 1, MEMBERS, chunked(items, 4096))))
    assert read_snapshot(str(path)).items == items


def test_serving_a_snapshot_never_parses_or_loads_the_file(tmp_path, monkeypatch):
    # The issue: the master re-read and parsed its whole snapshot for every catch-up
    # attempt. A reader only copies bytes by offset; parsing is forbidden here.
    import dkvs.storage.snapshot_store as store_module

    storage = FileStorage(tmp_path / "d", fsync="never")
    storage.load()
    storage.append(log_entries(1, 5))
    storage.write_snapshot(5, 1, MEMBERS, {f"k{i}": ("v" * 100, i) for i in range(5000)})

    def forbidden(*args, **kwargs):
        raise AssertionError("the snapshot was parsed to serve it")

    monkeypatch.setattr(store_module, "read_snapshot", forbidden)
    monkeypatch.setattr(store_module, "read_snapshot_from", forbidden)
    for _attempt in range(3):
        with storage.snapshot_reader() as reader:
            assert max(len(chunk) for _, chunk in reader.chunks(chunk_bytes=64 * 1024)) <= 64 * 1024
    storage.close()


def test_parser_takes_pieces_of_any_size_and_checks_as_it_goes():
    import random

    from dkvs.storage.base import CorruptStorage
    from dkvs.storage.snapshot_file import SnapshotParser, chunked, encode_snapshot

    items = [[f"k{i:04d}", "v" * (i % 50), i] for i in range(3000)]
    whole = b"".join(encode_snapshot(3000, 2, MEMBERS, chunked(items)))
    rng = random.Random(7)
    for _ in range(5):
        parser, at = SnapshotParser("fed"), 0
        while at < len(whole):
            step = rng.choice([1, 7, 100, 5000, 70_000])
            parser.feed(whole[at:at + step])
            at += step
        parsed = parser.finish()
        assert (parsed.seq, parsed.epoch, parsed.members, parsed.items) == (3000, 2, MEMBERS, items)
    damaged = bytearray(whole)
    damaged[len(whole) // 3] ^= 0x01
    with pytest.raises(CorruptStorage):
        SnapshotParser("damaged").feed(bytes(damaged))  # seen while feeding, not at the end
    short = SnapshotParser("short")
    short.feed(whole[:-1])
    with pytest.raises(CorruptStorage, match="ends before its end frame"):
        short.finish()
    with pytest.raises(CorruptStorage, match="bytes after the end frame"):
        SnapshotParser("long").feed(whole + b"x")
    with pytest.raises(CorruptStorage, match="magic"):
        SnapshotParser("empty").finish()
