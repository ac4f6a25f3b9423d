"""Snapshot file format 2 (binary record blocks): old files still load, bad bytes are refused
with a message and never crash, whatever arrives over the network (seeded, no sockets)."""

from __future__ import annotations

import json
import random
import zlib

import pytest

from dkvs.core.kvstate import KVState
from dkvs.core.recordtable import pack
from dkvs.storage.base import CorruptStorage, StoredSnapshot
from dkvs.storage.file import FileStorage
from dkvs.storage.records import frame
from dkvs.storage.snapshot_blocks import encode_block
from dkvs.storage.snapshot_file import (SNAPSHOT_MAGIC, SnapshotParser, encode_snapshot, item_blocks,
                                        read_snapshot, snapshot_name)
from dkvs.transport.codec import CodecError
from dkvs.transport.snapshot_stream import ChunkMeta, SnapshotAssembler

MEMBERS = (("n1", "http://127.0.0.1:1"),)
ITEMS = sorted([f"key{i:05d}", f"value {i} \u00e9", i + 1] for i in range(5000))


def json_frame(kind: bytes, obj) -> bytes:
    return frame(kind + json.dumps(obj, separators=(",", ":")).encode("ascii"))


def format1_file(items, seq: int = 5000, chunk: int = 1024) -> bytes:
    """A snapshot as dkvs wrote it before format 2 (JSON item chunks)."""
    parts = [b"DKVSSNP1", json_frame(b"H", {"format": 1, "seq": seq, "epoch": 3, "members": [list(MEMBERS[0])]})]
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    parts += [json_frame(b"C", c) for c in chunks]
    parts.append(json_frame(b"E", {"items": len(items), "chunks": len(chunks)}))
    return b"".join(parts)


def format2_file(blocks, seq: int = 5000) -> bytes:
    """Format 2 with hand-made block payloads (records already packed)."""
    parts = [SNAPSHOT_MAGIC, json_frame(b"H", {"format": 2, "seq": seq, "epoch": 3, "members": [list(MEMBERS[0])]})]
    parts += [frame(b"R" + payload) for payload in blocks]
    parts.append(json_frame(b"E", {"items": 0, "chunks": len(blocks)}))
    return b"".join(parts)


def test_a_format_1_snapshot_still_loads_and_restarts_a_node(tmp_path):
    data_dir = tmp_path / "d"
    with FileStorage(data_dir, fsync="never") as storage:
        storage.load()
        storage.save_snapshot(StoredSnapshot(1, 1, MEMBERS, []))
    for name in [n for n in (p.name for p in data_dir.iterdir()) if n.endswith(".snap")]:
        (data_dir / name).unlink()
    (data_dir / snapshot_name(9, 5000)).write_bytes(format1_file(ITEMS))
    assert read_snapshot(str(data_dir / snapshot_name(9, 5000))).items == ITEMS
    with FileStorage(data_dir, fsync="never") as storage:
        recovered = storage.load()
    state = KVState()
    state.restore(recovered.snapshot.seq, recovered.snapshot.items)
    assert state.get("key00042") == ("value 42 \u00e9", 43) and len(state) == 5000


def test_written_files_are_format_2_and_round_trip():
    whole = b"".join(encode_snapshot(5000, 3, MEMBERS, item_blocks(ITEMS)))
    assert whole.startswith(b"DKVSSNP2") and b'"format":2' in whole
    parser = SnapshotParser("x")
    parser.feed(whole)
    snap = parser.finish()
    assert (snap.seq, snap.epoch, snap.members, snap.items) == (5000, 3, MEMBERS, ITEMS)
    assert snap.items[4999] == ITEMS[4999] and snap.items[1000:1003] == ITEMS[1000:1003]


def refused(data: bytes, match: str | None = None) -> CorruptStorage:
    parser = SnapshotParser("test")
    with pytest.raises(CorruptStorage, match=match) as info:
        parser.feed(data)
        parser.finish()
    assert "test at offset" in str(info.value)
    return info.value


def test_blocks_that_pass_their_crc_but_break_the_rules_are_refused():
    a, b, c = (pack(k, "v", 1) for k in ("a", "b", "c"))
    refused(format2_file([encode_block([b, a])]), "not in strictly increasing key order")
    refused(format2_file([encode_block([a, a])]), "not in strictly increasing key order")
    refused(format2_file([encode_block([b, c]), encode_block([a])]), "does not follow the previous one")
    refused(format2_file([(5).to_bytes(4, "little") + a]), "counts 5 records but holds 1")
    refused(format2_file([encode_block([b"short"])]), "too short")
    refused(format2_file([b"\x01"]), "too short for its count")
    refused(format1_file([["k", "v", "not a seq"]]), "malformed snapshot item")
    refused(format1_file([["b", "v", 1], ["a", "v", 2]]), "not in strictly increasing key order")


def test_random_bytes_in_valid_frames_are_refused_never_crash():
    rng = random.Random(15)
    good = encode_block([pack(f"k{i}", "v" * i, i) for i in range(50)])
    for _ in range(500):
        payload = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            payload[rng.randrange(len(payload))] = rng.randrange(256)
        if rng.random() < 0.3:
            payload = payload[:rng.randrange(len(payload))]
        parser = SnapshotParser("fuzz")
        try:  # a mutation may still be a valid block; it must never raise anything else
            parser.feed(format2_file([bytes(payload)]))
            parser.finish()
        except CorruptStorage:
            pass


def test_a_stream_with_a_valid_checksum_but_bad_records_is_refused_with_a_message(tmp_path):
    # The receiver skips frame CRCs (it checks the whole file's crc32), so the structure
    # checks are what stands between a bad sender and the node's state.
    a, b = pack("a", "v", 1), pack("b", "v", 2)
    data = format2_file([encode_block([b, a])], seq=7)
    assembler = SnapshotAssembler(directory=str(tmp_path))
    meta = ChunkMeta("m", 1, 7, 0, len(data), zlib.crc32(data))
    assert assembler.accept(meta, data) is None  # refused while parsing: asks for offset 0 again
    assert assembler.want_for(meta) == 0
    assert not list(tmp_path.iterdir())  # the temp file went with it


def test_a_received_stream_restores_the_state_without_reencoding(tmp_path):
    data = b"".join(encode_snapshot(5000, 3, MEMBERS, item_blocks(ITEMS)))
    assembler = SnapshotAssembler()
    crc, snapshot = zlib.crc32(data), None
    for offset in range(0, len(data), 4096):
        snapshot = assembler.accept(ChunkMeta("m", 1, 5000, offset, len(data), crc), data[offset:offset + 4096])
    state = KVState()
    state.restore(snapshot.seq, snapshot.data)
    assert state.snapshot_items() == (5000, ITEMS)
    snapshot.data.release()


def test_codec_error_for_a_stream_whose_header_lies_about_its_seq(tmp_path):
    data = b"".join(encode_snapshot(5000, 3, MEMBERS, item_blocks(ITEMS[:10])))
    with pytest.raises(CodecError, match="header says 5000"):
        SnapshotAssembler().accept(ChunkMeta("m", 1, 4999, 0, len(data), zlib.crc32(data)), data)
