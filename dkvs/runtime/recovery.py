"""Rebuild a node and its key-value state from storage after a (re)start."""

from __future__ import annotations

from ..core.config import CoreConfig
from ..core.kvstate import KVState
from ..core.node import Node
from ..storage.base import Recovered, Storage

__all__ = ["restore_node"]


def restore_node(node_id: str, storage: Storage, config: CoreConfig, rng,
                 recovered: Recovered | None = None) -> tuple[Node, KVState]:
    """A slave holding everything ``storage`` kept, with its state replayed.

    Every stored entry was applied before the crash (nodes apply on append), so all of
    them are replayed; only the snapshot's seq is known to be committed. The node starts
    as a slave and learns the current master from the next heartbeat, or campaigns.
    """
    rec = recovered if recovered is not None else storage.load()
    snap = rec.snapshot
    state = KVState()
    if snap is not None:
        state.restore(snap.seq, snap.items)
    node = Node(node_id, config, rng, epoch=rec.epoch, voted_for=rec.voted_for,
                snapshot_seq=snap.seq if snap else 0, snapshot_epoch=snap.epoch if snap else 0,
                snapshot_members=snap.members if snap else (), entries=rec.entries)
    state.apply(rec.entries, node.commit_seq)
    return node, state
