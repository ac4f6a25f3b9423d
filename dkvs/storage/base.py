"""The Storage contract: where a node keeps its log, its snapshot and its vote.

A node's safety rests on three durable facts: the entries it acknowledged, the epoch it
has seen, and the vote it cast in that epoch. ``Storage`` is the one place they are
kept. The core never calls it: the host executes the core's persist effects against it,
always from the single thread that owns the node, so implementations need no locking
for these calls (a background flusher inside an implementation is its own business).

Durability on return: ``save_state`` and ``save_snapshot`` are durable when they return.
``append`` and ``truncate_after`` are durable according to the implementation's fsync
policy; :meth:`sync` forces everything written so far to be durable. Memory storage is
durable for as long as the process lives (and, in the simulator, across simulated
crashes, which is how the simulator models a disk).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from ..core.log import Entry

__all__ = ["Storage", "StoredSnapshot", "Recovered", "CorruptStorage"]


class CorruptStorage(Exception):
    """Stored data is damaged beyond a torn tail; the node must not serve from it."""


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
