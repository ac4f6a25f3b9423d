"""Snapshot work done inline, on the calling thread: the simple fallback executor.

Used where no background worker is configured (and by hosts that want every step on one
thread). ``build`` writes the snapshot synchronously; ``stream`` hands the whole snapshot
message to the transport. Completions are reported through the same callbacks a
background worker uses, so the driver cannot tell the difference.
"""

from __future__ import annotations

from ..core.messages import Snapshot
from ..storage.base import StoredSnapshot

__all__ = ["InlineSnapshotWork"]


class InlineSnapshotWork:
    def __init__(self, storage, transport, *, on_built, on_streamed) -> None:
        self.storage = storage
        self.transport = transport
        self.on_built = on_built
        self.on_streamed = on_streamed

    def build(self, seq: int, epoch: int, members: tuple, data) -> None:
        items = [[k, v, s] for k, (v, s) in sorted(data.items())] if isinstance(data, dict) else data
        self.storage.save_snapshot(StoredSnapshot(seq, epoch, members, items))
        self.on_built(seq, sum(len(k) + len(v) + 16 for k, v, _ in items), None)

    def stream(self, peer: str, sender_epoch: int, sender_id: str) -> None:
        stored = self.storage.load_snapshot()
        if stored is None:
            self.on_streamed(peer, 0, "no snapshot is stored")
            return
        self.transport.send_snapshot(peer, Snapshot(sender_epoch, sender_id, stored.seq, stored.epoch,
                                                    tuple(tuple(m) for m in stored.members), stored.items))
        self.on_streamed(peer, stored.seq, None)

    def close(self) -> None:
        pass
