"""Snapshots on the wire in bounded chunks: the chunk protocol and the receiving side.

Why chunks: a whole snapshot in one request made the master load and encode the whole
state per attempt, and a lost connection threw all of it away. Now the sender reads the
stored snapshot file by offset (:class:`dkvs.storage.base.SnapshotReader`) and POSTs one
chunk at a time; the receiver appends them in order to an unnamed temp file and says
which offset it wants next, parsing the frames as they arrive. Memory is one chunk on the
sender, and one chunk plus the items parsed so far on the receiver.

One chunk = ``POST /internal/snapshot?seq=S&offset=O&total=T&crc=C&epoch=E&from=ID``
with the raw bytes of the snapshot file ``[O, O + len)`` as the body (signed like every
internal request). ``total`` and ``crc`` (zlib crc32 of the whole file) identify the
stream together with ``from`` and ``seq``; ``epoch`` is the sender's epoch, carried into
the :class:`~dkvs.core.messages.Snapshot` message so the core fences it as usual. The
answer (:func:`dkvs.transport.codec.encode_snapshot_answer`) is ``{"want": offset}``
while incomplete — equal to ``O + len`` when the chunk was taken, anything else asks the
sender to continue from there (0: start again) — or ``{"done": true, "messages": [...]}``
with the node's replies once the last chunk made a whole, verified snapshot.

Receiver rules (:class:`SnapshotAssembler`): a chunk at offset 0 of a different stream
starts it afresh (dropping the one in progress unless that one's sender has a higher
epoch); a chunk at an offset other than the one wanted changes nothing; a complete
stream whose crc32 does not match, or whose frames do not parse as they arrive, is dropped
and restarted from 0. The verified file goes along with the items
(:class:`~dkvs.storage.snapshot_file.SnapshotItems`), so a data dir stores it by a rename
(or a copy) instead of encoding the state again.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from zlib import crc32

from ..core.messages import Snapshot
from ..storage.atomic import TEMP_SUFFIX
from ..storage.base import CorruptStorage
from ..storage.snapshot_file import SnapshotItems, SnapshotParser
from .codec import CodecError, encode_snapshot_answer

__all__ = ["ChunkMeta", "SnapshotAssembler", "chunk_query", "parse_chunk_query", "receive_chunk",
           "MAX_CHUNK_BYTES"]

log = logging.getLogger("dkvs.transport")

MAX_CHUNK_BYTES = 16 * 1024 * 1024  # a receiver refuses bigger chunks (senders use 1 MiB)
_FIELDS = ("seq", "offset", "total", "crc", "epoch")


@dataclass(frozen=True)
class ChunkMeta:
    """What one chunk request says about itself (its query string)."""

    sender: str
    sender_epoch: int
    seq: int
    offset: int
    total: int
    crc32: int

    @property
    def stream(self) -> tuple:
        """What identifies the stream a chunk belongs to."""
        return self.sender, self.seq, self.total, self.crc32


def chunk_query(meta: ChunkMeta) -> str:
    """The query string (without ``?``) that carries ``meta``."""
    return urllib.parse.urlencode({"seq": meta.seq, "offset": meta.offset, "total": meta.total,
                                   "crc": meta.crc32, "epoch": meta.sender_epoch, "from": meta.sender})


def parse_chunk_query(query: Mapping[str, str]) -> ChunkMeta:
    """:class:`ChunkMeta` from a parsed query (one value per name); :class:`CodecError`
    (answered 400) when a field is missing, not a non-negative integer, or inconsistent."""
    values = {}
    for name in _FIELDS:
        raw = query.get(name)
        if isinstance(raw, list):
            raw = raw[0] if len(raw) == 1 else None
        if raw is None or not str(raw).isdigit():
            raise CodecError(f"snapshot chunk needs a non-negative integer {name!r}, got {raw!r}")
        values[name] = int(raw)
    sender = query.get("from")
    if isinstance(sender, list):
        sender = sender[0] if len(sender) == 1 else None
    if not sender:
        raise CodecError("snapshot chunk needs 'from' (the sender's id)")
    if values["offset"] > values["total"] or values["crc"] > 0xFFFFFFFF:
        raise CodecError(f"snapshot chunk offset {values['offset']} beyond total {values['total']} "
                         f"or crc out of range")
    return ChunkMeta(str(sender), values["epoch"], values["seq"], values["offset"], values["total"],
                     values["crc"])


class SnapshotAssembler:
    """Joins the chunks of one snapshot stream into a verified :class:`Snapshot`.

    Thread-safe (HTTP handler threads call it). Holds at most one stream, in a temp file,
    so memory stays bounded by one chunk while receiving: unnamed in the system's temp dir
    when ``directory`` is None (in-memory nodes); named ``snapshot-recv-*.snap.tmp`` in
    ``directory`` otherwise — give the node's data dir, and its storage installs the
    verified file by renaming it (it is fsynced here, on the HTTP thread, before the node
    sees it). ``max_total_bytes`` refuses bigger snapshots.
    """

    def __init__(self, directory: str | None = None, max_total_bytes: int | None = None) -> None:
        self.directory = directory
        self.max_total_bytes = max_total_bytes
        self._lock = threading.Lock()
        self._meta: ChunkMeta | None = None  # the stream in progress
        self._file = None
        self._parser: SnapshotParser | None = None
        self._want = 0
        self._crc = 0

    def want_for(self, meta: ChunkMeta) -> int:
        """The offset wanted next in ``meta``'s stream (0 when it is not the one held)."""
        with self._lock:
            return self._want if self._meta is not None and self._meta.stream == meta.stream else 0

    def accept(self, meta: ChunkMeta, chunk: bytes) -> Snapshot | None:
        """Take one chunk. Returns the whole snapshot when this chunk completed it (the
        assembler is then empty again), else ``None``; :meth:`want_for` says what to send next.

        :class:`CodecError` for a chunk that cannot belong to any valid stream (too big,
        past ``total``) or a verified stream that does not parse as a snapshot.
        """
        return self.accept_and_want(meta, chunk)[0]

    def accept_and_want(self, meta: ChunkMeta, chunk: bytes) -> tuple[Snapshot | None, int]:
        """:meth:`accept`, plus the offset wanted next in ``meta``'s stream, read atomically
        with the chunk taken (what the answer to this chunk must say)."""
        if len(chunk) > MAX_CHUNK_BYTES or meta.offset + len(chunk) > meta.total:
            raise CodecError(f"snapshot chunk of {len(chunk)} bytes at {meta.offset} does not fit "
                             f"in total {meta.total}")
        if self.max_total_bytes is not None and meta.total > self.max_total_bytes:
            raise CodecError(f"snapshot of {meta.total} bytes exceeds the limit of {self.max_total_bytes}")
        with self._lock:
            current = self._meta
            if current is None or current.stream != meta.stream:
                if meta.offset != 0 or (current is not None and current.sender_epoch > meta.sender_epoch):
                    return None, 0  # not a stream we hold: start it from 0 (or give up)
                self._start(meta)
            elif meta.offset == 0 and self._want != 0:
                self._start(meta)  # the sender starts again
            if meta.offset != self._want:
                return None, self._want
            self._file.write(chunk)
            self._crc = crc32(chunk, self._crc)
            self._want += len(chunk)
            try:  # parse while the stream arrives: the work overlaps the transfer
                self._parser.feed(chunk)
            except CorruptStorage as exc:
                log.warning("snapshot at seq %d from %s is damaged (%s); asking for it again",
                            meta.seq, meta.sender, exc)
                self._drop()
                return None, 0
            if self._want < meta.total:
                return None, self._want
            file, crc, parser = self._file, self._crc, self._parser
            self._file, self._parser, self._meta, self._want, self._crc = None, None, None, 0, 0
        # The last steps run outside the lock. The verified file stays attached to the
        # items, so a data dir stores it without encoding the state again.
        named = self.directory is not None
        try:
            if crc != meta.crc32:
                log.warning("snapshot at seq %d from %s failed its checksum; asking for it again",
                            meta.seq, meta.sender)
                _discard(file, named)
                return None, 0
            stored = parser.finish()
            if stored.seq != meta.seq:
                raise CodecError(f"snapshot stream says seq {meta.seq}, its header says {stored.seq}")
            if named:  # durable before the node sees it: installing it is then a rename
                file.flush()
                os.fsync(file.fileno())
        except CorruptStorage as exc:
            _discard(file, named)
            raise CodecError(str(exc)) from None
        except BaseException:
            _discard(file, named)
            raise
        items = SnapshotItems(stored.items).attach(file, (stored.seq, stored.epoch, stored.members),
                                                   meta.total, crc, file.name if named else None)
        return Snapshot(meta.sender_epoch, meta.sender, stored.seq, stored.epoch, stored.members,
                        items), meta.total

    def reset(self) -> None:
        """Drop the stream in progress."""
        with self._lock:
            self._drop()

    close = reset

    def _start(self, meta: ChunkMeta) -> None:
        self._drop()
        if self.directory is None:  # unnamed: nothing to clean up, ever
            self._file = tempfile.TemporaryFile(prefix="dkvs-snapshot-in-")
        else:  # named, so a data dir can adopt it; ``*.tmp`` is removed at the next start
            self._file = tempfile.NamedTemporaryFile(dir=self.directory, prefix="snapshot-recv-",
                                                     suffix=TEMP_SUFFIX, delete=False)
        # Frame CRCs are redundant here: the whole file's crc32 is checked before anything parsed is used.
        self._parser = SnapshotParser(f"snapshot stream from {meta.sender}", check_frames=False)
        self._meta, self._want, self._crc = meta, 0, 0

    def _drop(self) -> None:
        if self._file is not None:
            _discard(self._file, self.directory is not None)
        self._file, self._parser, self._meta, self._want, self._crc = None, None, None, 0, 0


def _discard(file, named: bool) -> None:
    file.close()
    if named:
        try:
            os.remove(file.name)
        except FileNotFoundError:
            pass


def receive_chunk(assembler: SnapshotAssembler, query: Mapping[str, str],
                  body: bytes) -> tuple[Snapshot | None, bytes | None]:
    """What the ``POST /internal/snapshot`` route does with one chunk, minus the node.

    Returns ``(snapshot, None)`` when the chunk completed a verified snapshot: the route
    delivers it to the node and answers ``codec.encode_snapshot_answer(messages=replies)``.
    Otherwise ``(None, answer)``: the route answers 200 with ``answer`` as it is.
    Raises :class:`CodecError` (answer 400) for a malformed query or chunk.
    """
    meta = parse_chunk_query(query)
    snapshot, want = assembler.accept_and_want(meta, body)
    if snapshot is not None:
        return snapshot, None
    return None, encode_snapshot_answer(want=want)
