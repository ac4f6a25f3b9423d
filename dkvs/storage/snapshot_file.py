"""Snapshot files: the whole state at a committed seq, streamed in CRC-framed chunks.

A snapshot is ``snapshot-<generation, 10 digits>-<seq, 20 digits>.snap``. The generation
grows by one per snapshot saved in the data dir, so "newest" never depends on the seq (a
snapshot installed from the master may even carry a lower seq than an older one).

Content: magic ``DKVSSNP1``, then frames (:func:`.records.frame`) whose payload starts with
a kind byte::

    H  {"format": 1, "seq": S, "epoch": E, "members": [[id, url], ...]}   exactly one, first
    C  [[key, value, seq], ...]        zero or more chunks of SNAPSHOT_CHUNK_ITEMS items
    E  {"items": N, "chunks": K}       exactly one, last; nothing may follow it

Items are encoded chunk by chunk, so a million keys never become one giant JSON string,
and the end frame proves the file is whole. Files are written with
:func:`.atomic.write_atomically`, so a crash leaves the old snapshot or the new one.
"""

from __future__ import annotations

import itertools
import json
import re
from zlib import crc32

from .atomic import write_atomically
from .base import StoredSnapshot
from .records import FRAME, FRAME_BYTES, corruption, frame

__all__ = [
    "SNAPSHOT_MAGIC",
    "SNAPSHOT_CHUNK_ITEMS",
    "SNAPSHOT_FORMAT",
    "snapshot_name",
    "parse_snapshot_name",
    "write_snapshot",
    "read_snapshot",
]

SNAPSHOT_MAGIC = b"DKVSSNP1"
SNAPSHOT_FORMAT = 1
SNAPSHOT_CHUNK_ITEMS = 4096
_HEADER, _CHUNK, _END = b"H", b"C", b"E"
_NAME = re.compile(r"^snapshot-(\d{10})-(\d{20})\.snap$")


def snapshot_name(generation: int, seq: int) -> str:
    return f"snapshot-{generation:010d}-{seq:020d}.snap"


def parse_snapshot_name(name: str) -> tuple[int, int] | None:
    """``(generation, seq)`` from a snapshot file name, or ``None`` for other files."""
    match = _NAME.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _json_frame(kind: bytes, obj: object) -> bytes:
    return frame(kind + json.dumps(obj, separators=(",", ":")).encode("ascii"))


def write_snapshot(path: str, snapshot: StoredSnapshot) -> int:
    """Write ``snapshot`` to ``path`` atomically and durably; return the fsyncs done."""

    def write(file) -> None:
        file.write(SNAPSHOT_MAGIC)
        header = {"format": SNAPSHOT_FORMAT, "seq": snapshot.seq, "epoch": snapshot.epoch,
                  "members": [list(member) for member in snapshot.members]}
        file.write(_json_frame(_HEADER, header))
        count = chunks = 0
        items = iter(snapshot.items)
        while chunk := list(itertools.islice(items, SNAPSHOT_CHUNK_ITEMS)):
            file.write(_json_frame(_CHUNK, chunk))
            count += len(chunk)
            chunks += 1
        file.write(_json_frame(_END, {"items": count, "chunks": chunks}))

    return write_atomically(path, write)


def read_snapshot(path: str) -> StoredSnapshot:
    """Read and fully check a snapshot file; :class:`CorruptStorage` if it is damaged.

    Items come back as lists ``[key, value, seq]``; members as tuples ``(id, url)``.
    """
    with open(path, "rb") as file:
        if file.read(len(SNAPSHOT_MAGIC)) != SNAPSHOT_MAGIC:
            raise corruption(path, 0, "bad snapshot magic")
        offset = len(SNAPSHOT_MAGIC)

        def next_frame() -> tuple[bytes, object]:
            nonlocal offset
            head = file.read(FRAME_BYTES)
            if len(head) < FRAME_BYTES:
                raise corruption(path, offset, "snapshot ends before its end frame")
            length, crc = FRAME.unpack(head)
            payload = file.read(length)
            if len(payload) < length or crc32(payload) != crc or not payload:
                raise corruption(path, offset, "snapshot frame is short or fails its CRC")
            at, offset = offset, offset + FRAME_BYTES + length
            try:
                return payload[:1], json.loads(payload[1:])
            except ValueError as exc:
                raise corruption(path, at, f"snapshot frame does not parse ({exc})") from None

        kind, header = next_frame()
        if kind != _HEADER or not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT:
            raise corruption(path, len(SNAPSHOT_MAGIC), "missing or unknown snapshot header")
        items: list = []
        chunks = 0
        while True:
            at = offset
            kind, body = next_frame()
            if kind == _CHUNK and isinstance(body, list):
                items.extend(body)
                chunks += 1
            elif kind == _END and isinstance(body, dict):
                break
            else:
                raise corruption(path, at, f"unexpected snapshot frame kind {kind!r}")
        if body.get("items") != len(items) or body.get("chunks") != chunks:
            raise corruption(path, at, f"end frame counts {body} but the file holds "
                                       f"{len(items)} items in {chunks} chunks")
        if file.read(1):
            raise corruption(path, offset, "bytes after the end frame")
    members = tuple(tuple(member) for member in header["members"])
    return StoredSnapshot(seq=header["seq"], epoch=header["epoch"], members=members, items=items)
