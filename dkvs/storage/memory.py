"""In-memory storage: the default when no data dir is given, and the simulator's disk."""

from __future__ import annotations

import itertools
import threading

from ..core.log import Entry
from ..core.recordtable import pack
from .base import Recovered, SnapshotMeta, SnapshotReader, SnapshotSuperseded, Storage, StoredSnapshot
from .snapshot_blocks import RecordItems
from .snapshot_file import SnapshotItems, encode_snapshot, item_blocks, sorted_item_chunks
from .snapshot_reader import EncodedSnapshotReader, measure

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage):
    """Keeps everything in Python objects; durable as long as the object lives.

    In production a restart loses it all (the node then rejoins empty and resyncs). In
    the simulator the same object survives a simulated crash, playing the part of a disk.

    Threads: :meth:`write_snapshot` sorts on the caller's (worker) thread and publishes the
    result under ``_lock``; :meth:`snapshot_reader` serializes lazily on the reader's thread
    (size and checksum are computed once per snapshot, by a first pass that keeps nothing).
    """

    def __init__(self) -> None:
        self.node_id: str | None = None
        self.cluster_id: str | None = None
        self.epoch = 0
        self.voted_for: str | None = None
        self.snapshot: StoredSnapshot | None = None
        self.entries: list[Entry] = []
        self._bytes = 0
        self._base_seq = 0  # entries up to here are compacted away
        self._lock = threading.Lock()
        self._installs = 0  # save_snapshot calls: a background snapshot begun before one is stale
        self._measured: tuple[StoredSnapshot, int, int] | None = None  # (snapshot, size, crc)

    def load(self) -> Recovered:
        base = self.snapshot.seq if self.snapshot else 0
        return Recovered(self.node_id, self.epoch, self.voted_for, self.snapshot,
                         [e for e in self.entries if e.seq > base], self.cluster_id)

    def save_cluster_id(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id

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
        if isinstance(snapshot.items, SnapshotItems):
            snapshot.items.release()  # a received file: the items are all this storage needs
        with self._lock:
            self.snapshot = snapshot
            self._installs += 1
            self._base_seq = snapshot.seq
        self.entries = [e for e in self.entries if e.seq > snapshot.seq]
        if self.entries and self.entries[0].seq != snapshot.seq + 1:
            self.entries = []
        self._bytes = sum(e.size() for e in self.entries)

    def load_snapshot(self) -> StoredSnapshot | None:
        return self.snapshot

    def snapshot_seq(self) -> int:
        snapshot = self.snapshot
        return snapshot.seq if snapshot else 0

    # -- background snapshots --------------------------------------------------------------------
    def write_snapshot(self, seq, epoch, members, data, should_stop=None) -> int:
        with self._lock:
            installs = self._installs
        try:
            items = RecordItems(chunk if type(chunk[0]) is bytes else [pack(k, v, s) for k, v, s in chunk]
                                for chunk in sorted_item_chunks(data, should_stop) if chunk)
        except InterruptedError as exc:
            raise SnapshotSuperseded(str(exc)) from None
        snapshot = StoredSnapshot(seq, epoch, tuple(tuple(m) for m in members), items)
        with self._lock:
            if installs != self._installs:
                raise SnapshotSuperseded("a snapshot was installed while this one was built")
            current = self.snapshot.seq if self.snapshot else 0
            if seq < max(current, self._base_seq):
                raise SnapshotSuperseded(f"snapshot at {seq} is older than the stored one at {current}")
            self.snapshot = snapshot
        return sum(map(len, itertools.chain.from_iterable(items.record_blocks())))

    def compact(self, seq: int) -> None:
        if seq <= self._base_seq:
            return
        snapshot = self.snapshot
        last = self.entries[-1].seq if self.entries else self._base_seq
        if snapshot is None or seq > snapshot.seq or seq > last:
            raise ValueError(f"cannot compact to {seq}: the snapshot is at "
                             f"{snapshot.seq if snapshot else 0}, the log ends at {last}")
        self._bytes -= sum(e.size() for e in self.entries if self._base_seq < e.seq <= seq)
        self.entries = [e for e in self.entries if e.seq > seq]
        self._base_seq = seq

    def snapshot_reader(self) -> SnapshotReader | None:
        snapshot = self.snapshot
        if snapshot is None:
            return None

        def pieces():
            return encode_snapshot(snapshot.seq, snapshot.epoch, snapshot.members, item_blocks(snapshot.items))

        measured = self._measured
        if measured is None or measured[0] is not snapshot:
            measured = (snapshot, *measure(pieces()))
            self._measured = measured
        meta = SnapshotMeta(snapshot.seq, snapshot.epoch, tuple(tuple(m) for m in snapshot.members),
                            measured[1], measured[2])
        return EncodedSnapshotReader(pieces, meta)

    def log_bytes(self) -> int:
        return self._bytes

    def _base(self) -> int:
        return max(self.snapshot.seq if self.snapshot else 0, self._base_seq)
