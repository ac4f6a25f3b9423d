"""In-memory storage: the default when no data dir is given, and the simulator's disk."""

from __future__ import annotations

from ..core.log import Entry
from .base import Recovered, Storage, StoredSnapshot

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage):
    """Keeps everything in Python objects; durable as long as the object lives.

    In production a restart loses it all (the node then rejoins empty and resyncs). In
    the simulator the same object survives a simulated crash, playing the part of a disk.
    """

    def __init__(self) -> None:
        self.node_id: str | None = None
        self.epoch = 0
        self.voted_for: str | None = None
        self.snapshot: StoredSnapshot | None = None
        self.entries: list[Entry] = []
        self._bytes = 0

    def load(self) -> Recovered:
        return Recovered(self.node_id, self.epoch, self.voted_for, self.snapshot, list(self.entries))

    def save_node_id(self, node_id: str) -> None:
        self.node_id = node_id

    def save_state(self, epoch: int, voted_for: str | None) -> None:
        self.epoch, self.voted_for = epoch, voted_for

    def append(self, entries: list[Entry]) -> None:
        if entries:
            expected = (self.entries[-1].seq if self.entries else self._base()) + 1
            assert entries[0].seq == expected, (entries[0].seq, expected)
            self.entries.extend(entries)
            self._bytes += sum(e.size() for e in entries)

    def truncate_after(self, seq: int) -> None:
        keep = [e for e in self.entries if e.seq <= seq]
        self._bytes -= sum(e.size() for e in self.entries[len(keep):])
        self.entries = keep

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        self.snapshot = snapshot
        self.entries = [e for e in self.entries if e.seq > snapshot.seq]
        if self.entries and self.entries[0].seq != snapshot.seq + 1:
            self.entries = []
        self._bytes = sum(e.size() for e in self.entries)

    def load_snapshot(self) -> StoredSnapshot | None:
        return self.snapshot

    def log_bytes(self) -> int:
        return self._bytes

    def _base(self) -> int:
        return self.snapshot.seq if self.snapshot else 0
