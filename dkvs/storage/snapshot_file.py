"""Snapshot files: the whole state at a committed seq, streamed in CRC-framed chunks.

A snapshot is ``snapshot-<generation, 10 digits>-<seq, 20 digits>.snap``. The generation
grows by one per snapshot saved in the data dir, so "newest" never depends on the seq (a
snapshot installed from the master may even carry a lower seq than an older one).

Content: magic ``DKVSSNP1``, then frames (:func:`.records.frame`) whose payload starts with
a kind byte::

    H  {"format": 1, "seq": S, "epoch": E, "members": [[id, url], ...]}   exactly one, first
       (a learner's row is [id, url, "learner"|"replica"]; dkvs.core.membership)
    C  [[key, value, seq], ...]        zero or more chunks of SNAPSHOT_CHUNK_ITEMS items
    E  {"items": N, "chunks": K}       exactly one, last; nothing may follow it

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
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO
from zlib import crc32

from ..core.membership import parse_member_rows
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
    "read_snapshot_from",
    "SnapshotParser",
    "encode_snapshot",
    "chunked",
    "write_snapshot_to",
    "sorted_item_chunks",
    "SORT_RUN_KEYS",
    "SnapshotItems",
]

SNAPSHOT_MAGIC = b"DKVSSNP1"
SNAPSHOT_FORMAT = 1
# Items per chunk frame: one frame is one json.dumps call (~1.5 ms at 330-byte items), and a
# background build lets other threads run between frames.
SNAPSHOT_CHUNK_ITEMS = 1024
# Keys sorted by one C call in a background build: ~5 ms at 64-byte keys.
SORT_RUN_KEYS = 16384
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


def encode_snapshot(seq: int, epoch: int, members, item_chunks: Iterable[list]) -> Iterator[bytes]:
    """The bytes of a snapshot file, piece by piece: magic, header, one frame per chunk of
    items (lists or tuples ``(key, value, seq)``; chunks of at most
    ``SNAPSHOT_CHUNK_ITEMS``), end frame. Deterministic: same input, same bytes."""
    yield SNAPSHOT_MAGIC
    header = {"format": SNAPSHOT_FORMAT, "seq": seq, "epoch": epoch,
              "members": [list(member) for member in members]}
    yield _json_frame(_HEADER, header)
    count = chunks = 0
    for chunk in item_chunks:
        if chunk:
            yield _json_frame(_CHUNK, chunk)
            count += len(chunk)
            chunks += 1
    yield _json_frame(_END, {"items": count, "chunks": chunks})


def chunked(items: Iterable, size: int = SNAPSHOT_CHUNK_ITEMS) -> Iterator[list]:
    """``items`` in lists of at most ``size``."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


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
    """The items of ``data`` (key -> ``(value, seq)``) sorted by key, as lists of
    ``(key, value, seq)`` of at most ``chunk_items``.

    Why not ``sorted(data)``: one sort of a million keys is one C call that holds the GIL
    for ~0.7 s, stalling the node's thread for all of it. Sorting runs of
    ``SORT_RUN_KEYS`` keys and merging them (:func:`heapq.merge`) costs ~30% more CPU on
    the worker but never holds the GIL for more than a few milliseconds. And between
    pieces (each run sorted, each chunk handed out and written) it yields the GIL on
    purpose (``time.sleep(0)``): a busy Python thread otherwise keeps it for the whole
    switch interval (5 ms) whenever the node's thread wants it, which is the median delay
    a busy worker adds to every write. ``should_stop()`` is polled between pieces; when
    it turns true, :class:`InterruptedError` is raised.
    """

    def pause() -> None:
        if should_stop is not None and should_stop():
            raise InterruptedError("snapshot build stopped")
        time.sleep(0)  # let a waiting thread take the GIL now, not at the switch interval

    keys = iter(data)  # the caller's private copy: it does not change while we walk it
    runs = []
    while run := sorted(itertools.islice(keys, SORT_RUN_KEYS)):
        runs.append(run)
        pause()
    merged = runs[0] if len(runs) == 1 else heapq.merge(*runs)
    for batch in chunked(merged, chunk_items):
        pause()
        yield [(key, *data[key]) for key in batch]


class SnapshotItems(list):
    """Items of a snapshot received as a verified file, with that file still attached.

    A list like any other (``KVState.restore`` and every storage take it as is); storing
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


def write_snapshot(path: str, snapshot: StoredSnapshot) -> int:
    """Write ``snapshot`` to ``path`` atomically and durably; return the fsyncs done."""

    def write(file) -> None:
        pieces = encode_snapshot(snapshot.seq, snapshot.epoch, snapshot.members, chunked(snapshot.items))
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
    magic, every frame's CRC and JSON, frame order, the end frame's counts, nothing after it.

    Why incremental: a slave parses a snapshot while it is still arriving, so the parse
    overlaps the transfer instead of following it. Memory: the items parsed so far plus
    at most one frame of pending bytes. :class:`CorruptStorage` (naming ``name`` and the
    byte offset) as soon as damage is seen.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._buf = bytearray()
        self._offset = 0  # offset in the file of _buf[0]
        self._header: dict | None = None
        self._items: list = []
        self._chunks = 0
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
            if buf[:len(SNAPSHOT_MAGIC)] != SNAPSHOT_MAGIC:
                raise corruption(self.name, 0, "bad snapshot magic")
            pos = len(SNAPSHOT_MAGIC)
        while len(buf) - pos >= FRAME_BYTES:
            length, crc = FRAME.unpack_from(buf, pos)
            if len(buf) - pos - FRAME_BYTES < length:
                break
            payload = bytes(buf[pos + FRAME_BYTES:pos + FRAME_BYTES + length])
            at = self._offset + pos
            if crc32(payload) != crc or not payload:
                raise corruption(self.name, at, "snapshot frame is short or fails its CRC")
            pos += FRAME_BYTES + length
            self._frame(payload, at)
            if self._end is not None and pos < len(buf):
                raise corruption(self.name, self._offset + pos, "bytes after the end frame")
        del buf[:pos]
        self._offset += pos

    def _frame(self, payload: bytes, at: int) -> None:
        try:
            kind, body = payload[:1], json.loads(payload[1:])
        except ValueError as exc:
            raise corruption(self.name, at, f"snapshot frame does not parse ({exc})") from None
        if self._header is None:
            if kind != _HEADER or not isinstance(body, dict) or body.get("format") != SNAPSHOT_FORMAT:
                raise corruption(self.name, len(SNAPSHOT_MAGIC), "missing or unknown snapshot header")
            self._header = body
        elif kind == _CHUNK and isinstance(body, list):
            self._items.extend(body)
            self._chunks += 1
        elif kind == _END and isinstance(body, dict):
            if body.get("items") != len(self._items) or body.get("chunks") != self._chunks:
                raise corruption(self.name, at, f"end frame counts {body} but the file holds "
                                                f"{len(self._items)} items in {self._chunks} chunks")
            self._end = body
        else:
            raise corruption(self.name, at, f"unexpected snapshot frame kind {kind!r}")

    def finish(self) -> StoredSnapshot:
        """The whole snapshot; :class:`CorruptStorage` if the bytes stopped before its end."""
        if self._end is None:
            if self._offset == 0:  # not even the magic arrived
                raise corruption(self.name, 0, "bad snapshot magic")
            raise corruption(self.name, self._offset, "snapshot ends before its end frame")
        header = self._header
        try:
            members = parse_member_rows(header["members"])
            return StoredSnapshot(seq=int(header["seq"]), epoch=int(header["epoch"]), members=members,
                                  items=self._items)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise corruption(self.name, len(SNAPSHOT_MAGIC), f"malformed snapshot header ({exc!r})") from None
