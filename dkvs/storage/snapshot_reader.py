"""Readers of a stored snapshot as bytes, by offset, in bounded chunks.

Two kinds, one contract (:class:`~dkvs.storage.base.SnapshotReader`):

* :class:`FileSnapshotReader` reads a snapshot file through a descriptor opened once
  (``os.pread``: no shared file position, no whole-file read). Holding the descriptor is
  what lets a stream finish while a newer snapshot replaces and unlinks the file.
* :class:`EncodedSnapshotReader` serializes an in-memory snapshot lazily, frame by frame,
  with exactly the bytes the file would hold (:func:`.snapshot_file.encode_snapshot`). It
  keeps at most one requested chunk plus one frame; asking for an offset behind its
  position re-encodes from the start (rare: only when a receiver restarts).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from zlib import crc32

from .base import SNAPSHOT_READ_CHUNK_BYTES, SnapshotMeta, SnapshotReader

__all__ = ["FileSnapshotReader", "EncodedSnapshotReader", "measure", "file_crc32"]

_SCAN_BYTES = 1024 * 1024


def measure(pieces: Iterable[bytes]) -> tuple[int, int]:
    """``(total size, crc32)`` of a stream of pieces, keeping none of them."""
    size = crc = 0
    for piece in pieces:
        size += len(piece)
        crc = crc32(piece, crc)
    return size, crc


def file_crc32(fd: int, size: int) -> int:
    """The crc32 of the first ``size`` bytes of ``fd``, read in bounded chunks."""
    crc = offset = 0
    while offset < size:
        data = os.pread(fd, min(_SCAN_BYTES, size - offset), offset)
        if not data:
            raise OSError(f"file ends at {offset}, expected {size} bytes")
        crc = crc32(data, crc)
        offset += len(data)
    return crc


class FileSnapshotReader(SnapshotReader):
    """Reads a snapshot file by offset through ``fd``, which it owns and closes."""

    def __init__(self, fd: int, meta: SnapshotMeta) -> None:
        self.meta = meta
        self._fd: int | None = fd

    def read(self, offset: int, max_bytes: int = SNAPSHOT_READ_CHUNK_BYTES) -> bytes:
        if self._fd is None:
            raise ValueError("snapshot reader is closed")
        if offset < 0 or max_bytes <= 0:
            raise ValueError(f"bad read of {max_bytes} bytes at {offset}")
        end = min(offset + max_bytes, self.meta.size)
        parts = []
        while offset < end:
            data = os.pread(self._fd, end - offset, offset)
            if not data:
                break
            parts.append(data)
            offset += len(data)
        return b"".join(parts)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class EncodedSnapshotReader(SnapshotReader):
    """Reads ``pieces()`` (a fresh iterator of the snapshot's bytes per call) by offset."""

    def __init__(self, pieces: Callable[[], Iterator[bytes]], meta: SnapshotMeta) -> None:
        self.meta = meta
        self._pieces = pieces
        self._restart()

    def _restart(self) -> None:
        self._iter = self._pieces()
        self._buf = bytearray()
        self._buf_start = 0  # offset of _buf[0] in the stream

    def read(self, offset: int, max_bytes: int = SNAPSHOT_READ_CHUNK_BYTES) -> bytes:
        if offset < 0 or max_bytes <= 0:
            raise ValueError(f"bad read of {max_bytes} bytes at {offset}")
        if offset < self._buf_start:
            self._restart()
        end = min(offset + max_bytes, self.meta.size)
        while self._buf_start + len(self._buf) < end:
            piece = next(self._iter, None)
            if piece is None:
                break
            # Drop what lies before ``offset`` before growing: memory stays one chunk + one piece.
            drop = min(len(self._buf), offset - self._buf_start)
            if drop > 0:
                del self._buf[:drop]
                self._buf_start += drop
            self._buf += piece
        start = offset - self._buf_start
        return bytes(self._buf[start:start + (end - offset)]) if start >= 0 else b""
