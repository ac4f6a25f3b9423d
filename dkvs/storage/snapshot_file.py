"""Snapshot files: the whole state at a committed seq, streamed in CRC-framed chunks.

A snapshot is ``snapshot-<generation, 10 digits>-<seq, 20 digits>.snap``. The generation
grows by one per snapshot saved in the data dir, so "newest" never depends on the seq (a
snapshot installed from the master may even carry a lower seq than an older one).

Content: magic ``DKVSSNP2``, then frames (:func:`.records.frame`) whose payload starts with
a kind byte::

    H  {"format": 2, "seq": S, "epoch": E, "members": [[id, url], ...]}   exactly one, first
       (a learner's row is [id, url, "learner"|"replica"]; dkvs.core.membership)
    R  a block of records (:mod:`.snapshot_blocks`)    zero or more, sorted by key across the file
    E  {"items": N, "chunks": K}       exactly one, last; nothing may follow it

A record is the state's own form of one key (:mod:`dkvs.core.recordtable`: key, seq and
value in one ``bytes``), so writing a snapshot joins the state's records, and loading one
slices them back out: no JSON and no Python object per key beyond the record. Files of
format 1 (magic ``DKVSSNP1``, ``C`` frames holding JSON ``[[key, value, seq], ...]``)
still load; they are converted to records as they are read.

Items are encoded chunk by chunk, so a million keys never become one giant JSON string,
and the end frame proves the file is whole. Files are written with
:func:`.atomic.write_atomically` (or, for background snapshots, to a temp file that the
storage renames), so a crash leaves the old snapshot or the new one.

:func:`encode_snapshot` yields the file's bytes piece by piece: the file writer, the
in-memory snapshot reader and the checksum all use it, so the bytes a slave receives are
the bytes a data dir holds. :func:`sorted_item_chunks` sorts a state dict in bounded
pieces (see its docstring for why).
"""

from __future__ import annotations

import heapq
import itertools
import json
import operator
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO
from zlib import crc32

from ..core.membership import parse_member_rows
from ..core.recordtable import pack
from .atomic import write_atomically
from .base import StoredSnapshot
from .records import FRAME, FRAME_BYTES, corruption, frame
from .snapshot_blocks import RecordItems, check_records, decode_block, encode_block, pack_items

__all__ = [
    "SNAPSHOT_MAGIC",
    "SNAPSHOT_CHUNK_ITEMS",
    "SNAPSHOT_FORMAT",
    "snapshot_name",
    "parse_snapshot_name",
    "write_snapshot",
    "read_snapshot",
    "read_snapshot_from",
    "SnapshotParser",
    "encode_snapshot",
    "chunked",
    "item_blocks",
    "write_snapshot_to",
    "sorted_item_chunks",
    "SORT_RUN_KEYS",
    "SnapshotItems",
]

SNAPSHOT_MAGIC = b"DKVSSNP2"
SNAPSHOT_FORMAT = 2
_V1_MAGIC, _V1_FORMAT = b"DKVSSNP1", 1  # JSON chunks: still read, no longer written
# Items per block frame when items are packed here (the state's own chunks are used as they
# are: at most 1,024 records each). A background build lets other threads run between frames.
SNAPSHOT_CHUNK_ITEMS = 1024
# Keys sorted by one C call in a background build of a plain dict: ~5 ms at 64-byte keys.
SORT_RUN_KEYS = 16384
_HEADER, _CHUNK, _BLOCK, _END = b"H", b"C", b"R", b"E"
_NAME = re.compile(r"^snapshot-(\d{10})-(\d{20})\.snap$")


def snapshot_name(generation: int, seq: int) -> str:
    return f"snapshot-{generation:010d}-{seq:020d}.snap"


def parse_snapshot_name(name: str) -> tuple[int, int] | None:
    """``(generation, seq)`` from a snapshot file name, or ``None`` for other files."""
    match = _NAME.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _json_frame(kind: bytes, obj: object) -> bytes:
    return frame(kind + json.dumps(obj, separators=(",", ":")).encode("ascii"))


def encode_snapshot(seq: int, epoch: int, members, item_chunks: Iterable[list]) -> Iterator[bytes]:
    """The bytes of a snapshot file, piece by piece: magic, header, one block frame per
    chunk, end frame. A chunk is a sorted list of records (``bytes``, as the state holds
    them) or of items ``(key, value, seq)``, packed here; chunks follow each other in key
    order. Deterministic: same input, same bytes."""
    yield SNAPSHOT_MAGIC
    header = {"format": SNAPSHOT_FORMAT, "seq": seq, "epoch": epoch,
              "members": [list(member) for member in members]}
    yield _json_frame(_HEADER, header)
    count = chunks = 0
    for chunk in item_chunks:
        if chunk:
            records = chunk if type(chunk[0]) is bytes else [pack(k, v, s) for k, v, s in chunk]
            yield frame(_BLOCK + encode_block(records))
            count += len(records)
            chunks += 1
    yield _json_frame(_END, {"items": count, "chunks": chunks})


def chunked(items: Iterable, size: int = SNAPSHOT_CHUNK_ITEMS) -> Iterator[list]:
    """``items`` in lists of at most ``size`` (loaded items: their blocks of records as they are)."""
    if isinstance(items, RecordItems):
        yield from items.record_blocks()
        return
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def item_blocks(items: Iterable) -> Iterator[list[bytes]]:
    """A snapshot's ``items`` as sorted blocks of records for :func:`encode_snapshot`:
    loaded items as they are; ``[key, value, seq]`` items packed and, if they are not in
    key order already (a file must be), sorted."""
    if isinstance(items, RecordItems):
        return iter(items.record_blocks())
    records = pack_items(items)
    if not all(map(operator.lt, records, itertools.islice(records, 1, None))):
        records.sort()
    return chunked(records)


def write_snapshot_to(file: BinaryIO, pieces: Iterable[bytes]) -> tuple[int, int]:
    """Write ``pieces`` to ``file``; return ``(bytes written, crc32 of them)``."""
    size = crc = 0
    for piece in pieces:
        file.write(piece)
        size += len(piece)
        crc = crc32(piece, crc)
    return size, crc


def sorted_item_chunks(data: dict, should_stop: Callable[[], bool] | None = None,
                       chunk_items: int = SNAPSHOT_CHUNK_ITEMS) -> Iterator[list]:
    """The items of ``data`` sorted by key, in chunks for :func:`encode_snapshot`.

    ``data`` is the state's committed view (``KVState.committed_view``: its ``table``
    already holds sorted chunks of records, handed out as they are) or any dict of
    key -> ``(value, seq)``, yielded as lists of ``(key, value, seq)`` of at most
    ``chunk_items``.

    Why a plain dict is not sorted with one ``sorted(data)``: a sort of a million keys is
    one C call that holds the GIL for ~0.7 s, stalling the node's thread for all of it.
    Sorting runs of ``SORT_RUN_KEYS`` keys and merging them (:func:`heapq.merge`) never
    holds the GIL for more than a few milliseconds. And between pieces (each run sorted,
    each chunk handed out and written) it yields the GIL on purpose (``time.sleep(0)``): a
    busy Python thread otherwise keeps it for the whole switch interval (5 ms) whenever the
    node's thread wants it. ``should_stop()`` is polled between pieces; when it turns true,
    :class:`InterruptedError` is raised.
    """

    def pause() -> None:
        if should_stop is not None and should_stop():
            raise InterruptedError("snapshot build stopped")
        time.sleep(0)  # let a waiting thread take the GIL now, not at the switch interval

    table = getattr(data, "table", None)
    if table is not None:  # the state's own view: private sorted chunks of records
        for block in table.blocks():
            pause()
            yield block
        return
    keys = iter(data)  # the caller's private copy: it does not change while we walk it
    runs = []
    while run := sorted(itertools.islice(keys, SORT_RUN_KEYS)):
        runs.append(run)
        pause()
    merged = runs[0] if len(runs) == 1 else heapq.merge(*runs)
    for batch in chunked(merged, chunk_items):
        pause()
        yield [(key, *data[key]) for key in batch]


class SnapshotItems(RecordItems):
    """Items of a snapshot received as a verified file, with that file still attached.

    Items like any others (``KVState.restore`` and every storage take them as they are); storing
    it in a data dir reuses the file instead of encoding a million items again
    (:meth:`.snapshot_store.SnapshotStore.install`): a named file in the data dir itself
    (``path``, already fsynced) is renamed into place, any other is copied. ``header`` is
    ``(seq, epoch, members)`` as the file says; ``size`` and ``crc32`` describe its bytes.
    :meth:`release` closes the file and removes a named one that was not adopted.
    """

    def attach(self, source: BinaryIO, header: tuple, size: int, crc: int,
               path: str | None = None) -> SnapshotItems:
        self.source, self.header, self.size, self.crc32, self.path = source, header, size, crc, path
        return self

    def adopt_path(self) -> str | None:
        """The named file's path, handed over: :meth:`release` will no longer remove it."""
        path, self.path = getattr(self, "path", None), None
        return path

    def release(self) -> None:
        source, self.source = getattr(self, "source", None), None
        if source is not None:
            source.close()
        path = self.adopt_path()
        if path is not None:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    def __del__(self) -> None:  # a snapshot dropped unstored (e.g. stale): clean up quietly
        self.release()

    def __deepcopy__(self, memo) -> list:  # a copy is plain data: the file has one owner
        import copy

        return copy.deepcopy(list(self), memo)

    def __reduce__(self):
        return list, (list(self),)

    __hash__ = None


def write_snapshot(path: str, snapshot: StoredSnapshot) -> int:
    """Write ``snapshot`` to ``path`` atomically and durably; return the fsyncs done."""

    def write(file) -> None:
        pieces = encode_snapshot(snapshot.seq, snapshot.epoch, snapshot.members, item_blocks(snapshot.items))
        write_snapshot_to(file, pieces)

    return write_atomically(path, write)


def read_snapshot(path: str) -> StoredSnapshot:
    """Read and fully check a snapshot file; :class:`CorruptStorage` if it is damaged.

    Items come back as lists ``[key, value, seq]``; members as tuples ``(id, url)``.
    """
    with open(path, "rb") as file:
        return read_snapshot_from(file, path)


def read_snapshot_from(file: BinaryIO, path: str) -> StoredSnapshot:
    """:func:`read_snapshot` on an open file positioned at its start (``path`` names it
    in error messages)."""
    parser = SnapshotParser(path)
    while data := file.read(_READ_BYTES):
        parser.feed(data)
    return parser.finish()


_READ_BYTES = 1024 * 1024


class SnapshotParser:
    """Parses the bytes of a snapshot file fed in pieces of any size, checking everything:
    magic, every frame's CRC and content (:func:`.snapshot_blocks.decode_block`: records
    well-formed, in order, keys distinct), frame order, the end frame's counts, nothing
    after it.

    Why incremental: a slave parses a snapshot while it is still arriving, so the parse
    overlaps the transfer instead of following it. Memory: the records parsed so far plus
    at most one frame of pending bytes. :class:`CorruptStorage` (naming ``name`` and the
    byte offset) as soon as damage is seen. Reads format 2 and format 1 (JSON chunks).

    ``check_frames=False`` skips the frame CRCs: for a caller that checks the crc32 of the
    whole file before it uses anything parsed (a received stream), which makes them
    redundant work (~0.2 s per million keys). Structure is checked either way.
    """

    def __init__(self, name: str, check_frames: bool = True) -> None:
        self.name = name
        self._check_frames = check_frames
        self._buf = bytearray()
        self._offset = 0  # offset in the file of _buf[0]
        self._format: int | None = None
        self._header: dict | None = None
        self._blocks: list[list[bytes]] = []
        self._count = 0
        self._end: dict | None = None

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self._end is not None:
            raise corruption(self.name, self._offset, "bytes after the end frame")
        buf = self._buf
        buf += data
        pos = 0
        if self._offset == 0:
            if len(buf) < len(SNAPSHOT_MAGIC):
                return
            magic = bytes(buf[:len(SNAPSHOT_MAGIC)])
            if magic not in (SNAPSHOT_MAGIC, _V1_MAGIC):
                raise corruption(self.name, 0, "bad snapshot magic")
            self._format = SNAPSHOT_FORMAT if magic == SNAPSHOT_MAGIC else _V1_FORMAT
            pos = len(SNAPSHOT_MAGIC)
        while len(buf) - pos >= FRAME_BYTES:
            length, crc = FRAME.unpack_from(buf, pos)
            if len(buf) - pos - FRAME_BYTES < length:
                break
            payload = bytes(buf[pos + FRAME_BYTES:pos + FRAME_BYTES + length])
            at = self._offset + pos
            if not payload or self._check_frames and crc32(payload) != crc:
                raise corruption(self.name, at, "snapshot frame is short or fails its CRC")
            pos += FRAME_BYTES + length
            self._frame(payload, at)
            if self._end is not None and pos < len(buf):
                raise corruption(self.name, self._offset + pos, "bytes after the end frame")
        del buf[:pos]
        self._offset += pos

    def _frame(self, payload: bytes, at: int) -> None:
        kind = payload[:1]
        previous = self._blocks[-1][-1] if self._blocks else None
        try:
            if kind == _BLOCK and self._header is not None and self._format == SNAPSHOT_FORMAT:
                self._add(decode_block(payload, 1, previous))
                return
            body = json.loads(payload[1:])
            if self._header is None:
                if kind != _HEADER or not isinstance(body, dict) or body.get("format") != self._format:
                    raise corruption(self.name, len(SNAPSHOT_MAGIC), "missing or unknown snapshot header")
                self._header = body
            elif kind == _CHUNK and self._format == _V1_FORMAT and isinstance(body, list) and body:
                records = pack_items(body)
                check_records(records, previous)
                self._add(records)
            elif kind == _END and isinstance(body, dict):
                if body.get("items") != self._count or body.get("chunks") != len(self._blocks):
                    raise corruption(self.name, at, f"end frame counts {body} but the file holds "
                                                    f"{self._count} items in {len(self._blocks)} chunks")
                self._end = body
            else:
                raise corruption(self.name, at, f"unexpected snapshot frame kind {kind!r}")
        except (ValueError, RecursionError) as exc:  # BlockError, JSON and text errors
            raise corruption(self.name, at, f"snapshot frame does not parse ({exc})") from None

    def _add(self, records: list[bytes]) -> None:
        self._blocks.append(records)
        self._count += len(records)

    def finish(self) -> StoredSnapshot:
        """The whole snapshot (items: :class:`RecordItems`); :class:`CorruptStorage` if the
        bytes stopped before its end."""
        if self._end is None:
            if self._offset == 0:  # not even the magic arrived
                raise corruption(self.name, 0, "bad snapshot magic")
            raise corruption(self.name, self._offset, "snapshot ends before its end frame")
        header = self._header
        try:
            members = parse_member_rows(header["members"])
            return StoredSnapshot(seq=int(header["seq"]), epoch=int(header["epoch"]), members=members,
                                  items=RecordItems(self._blocks))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise corruption(self.name, len(SNAPSHOT_MAGIC), f"malformed snapshot header ({exc!r})") from None

    def blocks(self) -> list[list[bytes]]:
        """The record blocks parsed so far (for :class:`SnapshotItems`)."""
        return self._blocks
