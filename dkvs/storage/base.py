"""The Storage contract: where a node keeps its log, its snapshot and its vote.

A node's safety rests on three durable facts: the entries it acknowledged, the epoch it
has seen, and the vote it cast in that epoch. ``Storage`` is the one place they are
kept. The core never calls it: the host executes the core's persist effects against it,
always from the single thread that owns the node, so implementations need no locking
for these calls (a background flusher inside an implementation is its own business).

Two exceptions, for whole-state work off the node's thread (``docs/storage.md``,
"Background snapshots"): :meth:`Storage.write_snapshot` runs on a worker thread while
the node's thread keeps appending, and :meth:`Storage.snapshot_reader` may be opened and
read from any thread. Implementations make exactly these two safe to run concurrently
with every other method.

Durability on return: ``save_state`` and ``save_snapshot`` are durable when they return.
``append`` and ``truncate_after`` are durable according to the implementation's fsync
policy; :meth:`sync` forces everything written so far to be durable. Memory storage is
durable for as long as the process lives (and, in the simulator, across simulated
crashes, which is how the simulator models a disk).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..core.log import Entry

__all__ = ["Storage", "StoredSnapshot", "Recovered", "CorruptStorage", "SnapshotSuperseded",
           "SnapshotMeta", "SnapshotReader", "SNAPSHOT_READ_CHUNK_BYTES"]

# Default size of one chunk read from a stored snapshot (and of one streamed request).
SNAPSHOT_READ_CHUNK_BYTES = 8 * 1024 * 1024


class CorruptStorage(Exception):
    """Stored data is damaged beyond a torn tail; the node must not serve from it."""


class SnapshotSuperseded(Exception):
    """A background snapshot finished too late to be kept (see :meth:`Storage.write_snapshot`)."""


@dataclass(frozen=True)
class SnapshotMeta:
    """What a receiver must know about a stored snapshot before its first byte.

    ``size`` is the exact number of bytes :meth:`SnapshotReader.read` yields in total and
    ``crc32`` the ``zlib.crc32`` of all of them, so a receiver checks the whole transfer.
    """

    seq: int
    epoch: int
    members: tuple[tuple[str, str], ...]
    size: int
    crc32: int


class SnapshotReader(abc.ABC):
    """The stored snapshot as bytes (the snapshot file format), read by offset.

    Why by offset: a stream to a slave may restart at any offset the slave asks for, and
    a reader never holds more than one chunk, however big the state. A reader keeps
    reading the snapshot it was opened on even if a newer one replaces it meanwhile.
    Safe to use from any one thread at a time; :meth:`close` it when done.
    """

    meta: SnapshotMeta

    @abc.abstractmethod
    def read(self, offset: int, max_bytes: int = SNAPSHOT_READ_CHUNK_BYTES) -> bytes:
        """Up to ``max_bytes`` bytes from ``offset`` (fewer only at the end; ``b""`` past it)."""

    def chunks(self, start: int = 0, chunk_bytes: int = SNAPSHOT_READ_CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
        """``(offset, bytes)`` pairs from ``start`` to the end, each at most ``chunk_bytes``."""
        offset = start
        while offset < self.meta.size:
            data = self.read(offset, chunk_bytes)
            if not data:
                raise CorruptStorage(f"snapshot ends at {offset}, before its size {self.meta.size}")
            yield offset, data
            offset += len(data)

    def close(self) -> None:
        """Release what the reader holds (a file descriptor)."""

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass(frozen=True)
class StoredSnapshot:
    """The whole state at ``seq`` (committed), as written by :meth:`Storage.save_snapshot`.

    ``items`` is a list of ``[key, value, seq]`` (seq of the write that set the value);
    ``members`` a list of ``[id, url]``.
    """

    seq: int
    epoch: int
    members: tuple[tuple[str, str], ...]
    items: list = field(repr=False)


@dataclass
class Recovered:
    """What :meth:`Storage.load` found: everything needed to rebuild a node after a restart."""

    node_id: str | None = None
    epoch: int = 0
    voted_for: str | None = None
    snapshot: StoredSnapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    cluster_id: str | None = None  # None: a new data dir, or one older than cluster ids


class Storage(abc.ABC):
    """Durable home of one node's log, snapshot and election state.

    Ranges: seqs are positive integers; entries passed to :meth:`append` always continue
    the stored log (first one is ``last stored seq + 1``, or the snapshot seq + 1).
    Errors: ``OSError`` from the disk propagates (the node then stops: better down than
    wrong); :class:`CorruptStorage` from :meth:`load` for damage that cannot be repaired.
    """

    @abc.abstractmethod
    def load(self) -> Recovered:
        """Read back everything stored. Called once, before any other method."""

    @abc.abstractmethod
    def save_node_id(self, node_id: str) -> None:
        """Remember this node's id (durable on return)."""

    def save_cluster_id(self, cluster_id: str) -> None:
        """Remember the id of the cluster this data dir belongs to (durable on return).

        Written once: at bootstrap, or when a new (or older) data dir first hears its
        cluster. A data dir never changes clusters; the runtime refuses to mix them."""
        raise NotImplementedError

    @abc.abstractmethod
    def save_state(self, epoch: int, voted_for: str | None) -> None:
        """Record the current epoch and the vote cast in it (durable on return)."""

    @abc.abstractmethod
    def append(self, entries: list[Entry]) -> None:
        """Append entries that continue the stored log (durable per fsync policy)."""

    @abc.abstractmethod
    def truncate_after(self, seq: int) -> None:
        """Delete stored entries after ``seq`` (never below the snapshot point)."""

    @abc.abstractmethod
    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Atomically store ``snapshot``, then drop log entries up to ``snapshot.seq``.

        If the stored log does not reach ``snapshot.seq`` (a snapshot installed from the
        master), the whole log is dropped. Durable on return.
        """

    @abc.abstractmethod
    def load_snapshot(self) -> StoredSnapshot | None:
        """The newest stored snapshot, or ``None``."""

    @abc.abstractmethod
    def write_snapshot(self, seq: int, epoch: int, members, data: dict,
                       should_stop: Callable[[], bool] | None = None) -> int:
        """Store the state ``data`` (key -> ``(value, seq)``) at committed ``seq``; return
        the bytes stored. Durable on return. Log entries are NOT dropped: :meth:`compact`
        does that, on the node's thread, once this has returned.

        Thread: runs on a worker while the node's thread keeps calling :meth:`append` and
        the rest; ``data`` must be the caller's private copy (``KVState.committed_view``).
        It is sorted and written in bounded pieces, so the node's thread is never held up
        for long by the GIL.
        Errors: :class:`SnapshotSuperseded` when, by the time the snapshot is durable, it
        may no longer be kept: a snapshot was installed (:meth:`save_snapshot`) since it
        began, it is older than the stored log's start or the stored snapshot, or the
        storage was closed; also when ``should_stop()`` turned true. Nothing is changed
        then. ``OSError`` from the disk propagates.
        """

    @abc.abstractmethod
    def compact(self, seq: int) -> None:
        """Drop stored log entries up to ``seq`` (cheap; node's thread).

        ``seq`` must be covered by a durable snapshot (:meth:`write_snapshot` returned)
        and within the stored log; ``ValueError`` otherwise. A ``seq`` at or below the
        current compaction point does nothing.
        """

    @abc.abstractmethod
    def snapshot_reader(self) -> SnapshotReader | None:
        """A reader over the newest stored snapshot, or ``None`` if there is none.

        Callable from any thread; may take time proportional to the snapshot once (to
        learn its size and checksum) on first use after a restart or an install.
        """

    def snapshot_seq(self) -> int:
        """Seq of the newest stored snapshot (0 when none)."""
        snapshot = self.load_snapshot()
        return snapshot.seq if snapshot else 0

    @abc.abstractmethod
    def log_bytes(self) -> int:
        """Approximate size of the stored log since the snapshot: drives compaction."""

    def save_rollback(self, entries: list[Entry]) -> str:
        """Keep entries discarded by a divergence repair; return where they went.

        The default logs them in full (memory storage has nowhere else to put them).
        """
        import logging

        log = logging.getLogger("dkvs.rollback")
        for entry in entries:
            log.warning("rolled back %r", entry)
        return "the log (in-memory node)"

    def sync(self) -> None:
        """Make everything appended so far durable (no-op where that is always true)."""

    def close(self) -> None:
        """Flush and release files. The storage is unusable afterwards."""
