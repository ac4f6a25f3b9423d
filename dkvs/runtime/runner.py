"""Carry out the core's effects against storage, state and transport, phase by phase.

Both hosts use this class: the threaded runtime (:mod:`dkvs.runtime.host`) and the
deterministic simulator (``tests/sim``), so the simulator exercises the same persist →
send → apply → reply path as production.

Effects of one batch are bucketed by phase and executed in phase order; consecutive
``PersistEntries`` are merged into one ``Storage.append`` call, which is the group commit:
under ``--fsync always`` a burst of writes shares one fsync.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext

from ..core.effects import (
    Apply,
    InstallSnapshot,
    PersistEntries,
    PersistState,
    PersistTruncate,
    Reply,
    Rollback,
    Send,
    SendSnapshot,
)
from ..core.kvstate import KVState
from ..core.messages import Snapshot
from ..storage.base import Storage, StoredSnapshot

__all__ = ["EffectRunner"]

log = logging.getLogger("dkvs.runtime")

REJECTED_KEPT = 10_000


class EffectRunner:
    """Executes effect lists. Call :meth:`run` from the node's thread only.

    ``send(to, message)`` and ``send_snapshot(to, message)`` are the transport's;
    ``reply(request_id, result, error)`` completes client requests. ``state_lock``
    guards ``state`` against concurrent readers (HTTP threads).
    """

    def __init__(self, node_ref: Callable, storage: Storage, state: KVState, *,
                 send: Callable, send_snapshot: Callable, reply: Callable, state_lock=None,
                 feed=None) -> None:
        self._node = node_ref
        self.storage = storage
        self.state = state
        self._send = send
        self._send_snapshot = send_snapshot
        self._reply = reply
        self._lock = state_lock if state_lock is not None else nullcontext()
        # Entries that changed nothing (delete of an absent key → 404, failed compare-and-set
        # → 409), by seq, with the key's current seq; bounded memory.
        self.rejected: OrderedDict[int, int] = OrderedDict()
        self.rollback_files: list[str] = []
        self.feed = feed  # a ChangeFeed for watches, or None

    def run(self, effects: list) -> None:
        if not effects:
            return
        persist, send, apply, reply = [], [], [], []
        buckets = (persist, send, apply, reply)
        for effect in effects:
            for phase in effect.phases:
                buckets[phase].append(effect)
        if persist:
            self._run_persist(persist)
        for effect in send:
            self._run_send(effect)
        if apply:
            with self._lock:
                for effect in apply:
                    self._APPLY[type(effect)](self, effect)
        for effect in reply:
            self._reply(effect.request_id, effect.result, effect.error)

    # -- persist --------------------------------------------------------------------------------
    def _run_persist(self, effects: list) -> None:
        pending: list = []
        for effect in effects:
            if type(effect) is PersistEntries:
                pending.extend(effect.entries)
                continue
            if pending:
                self.storage.append(pending)
                pending = []
            if type(effect) is PersistState:
                self.storage.save_state(effect.epoch, effect.voted_for)
            elif type(effect) is PersistTruncate:
                self.storage.truncate_after(effect.after_seq)
            elif type(effect) is InstallSnapshot:
                snap = effect.snapshot
                self.storage.save_snapshot(StoredSnapshot(snap.seq, snap.snap_epoch, tuple(snap.members),
                                                          snap.data))
        if pending:
            self.storage.append(pending)

    # -- send -----------------------------------------------------------------------------------
    def _run_send(self, effect) -> None:
        if type(effect) is Send:
            self._send(effect.to, effect.message)
            return
        assert type(effect) is SendSnapshot
        stored = self.storage.load_snapshot()
        if stored is None:
            log.error("asked to send a snapshot to %s but none is stored", effect.to)
            return
        node = self._node()
        self._send_snapshot(effect.to, Snapshot(node.epoch, node.id, stored.seq, stored.epoch,
                                                tuple(tuple(m) for m in stored.members), stored.items))

    # -- apply ----------------------------------------------------------------------------------
    def _apply_entries(self, effect: Apply) -> None:
        rejected = self.state.apply(effect.entries, effect.commit_seq)
        for seq, current_seq in rejected:
            self.rejected[seq] = current_seq
            if len(self.rejected) > REJECTED_KEPT:
                self.rejected.popitem(last=False)
        if self.feed is not None and effect.entries:
            self.feed.record(effect.entries, {seq for seq, _ in rejected})

    def _apply_rollback(self, effect: Rollback) -> None:
        self.state.rollback(effect.after_seq)
        if self.feed is not None:
            self.feed.rollback(effect.after_seq)
        data_ops = [e for e in effect.discarded if e.op in ("put", "delete")]
        if data_ops:
            where = self.storage.save_rollback(list(effect.discarded))
            self.rollback_files.append(where)
            log.warning("rolled back %d entries after seq %d that the new master never had; kept in %s",
                        len(effect.discarded), effect.after_seq, where)

    def _apply_snapshot(self, effect: InstallSnapshot) -> None:
        snap = effect.snapshot
        self.state.restore(snap.seq, snap.data)
        if self.feed is not None:
            self.feed.reset(snap.seq)
        log.info("installed a snapshot at seq %d (%d keys)", snap.seq, len(self.state))

    _APPLY = {Apply: _apply_entries, Rollback: _apply_rollback, InstallSnapshot: _apply_snapshot}
