"""Execute one :class:`~dkvs.driver.Ready` batch against storage, transport and state.

The order is the driver's contract (see :mod:`dkvs.driver.ready`): peers, persist, send,
apply (under the state lock, by the driver), replies, work, notes. Consecutive entry
appends are merged into one ``Storage.append`` call: the group commit, so under
``--fsync always`` a burst of writes shares one fsync.

Both hosts use this class — the threaded runtime and the simulator — so the simulator
runs the same persist → send → apply → reply path as production.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext

from ..core.effects import InstallSnapshot, PersistEntries, PersistState, PersistTruncate
from ..core.log import DATA_OPS
from ..driver import INFO, WARNING, BuildSnapshot, CompactStorage, Ready, StreamSnapshot, note
from ..storage.base import StoredSnapshot

__all__ = ["Executor"]

log = logging.getLogger("dkvs.runtime")
narration = logging.getLogger("dkvs.cluster")


class Executor:
    """``work`` runs long jobs (``build(seq, epoch, members, data)``, ``stream(peer, epoch,
    sender_id)``); ``feed`` is the change feed for watches (or ``None``); ``complete(reply)``
    answers one client request."""

    def __init__(self, driver, storage, transport, work, feed, state_lock=None, *,
                 complete: Callable, on_note: Callable | None = None) -> None:
        self.driver = driver
        self.storage = storage
        self.transport = transport
        self.work = work
        self.feed = feed
        self._lock = state_lock if state_lock is not None else nullcontext()
        self._complete = complete
        self._on_note = on_note  # every note also goes here (the event feed), after the log
        self.rollback_files: list[str] = []

    def run(self, ready: Ready) -> None:
        if not ready:
            return
        driver = self.driver
        if ready.peers is not None:
            self.transport.set_peers(ready.peers)
        if ready.persist:
            self._persist(ready.persist)
            driver.persisted(self.storage.log_bytes())
        send = self.transport.send
        for out in ready.sends:
            send(out.to, out.message, out.send_id)
        for token, messages in ready.responses.items():
            token.messages.extend(messages)
        notes = ready.notes
        if ready.apply or ready.replies:
            with self._lock:
                applied = driver.apply(ready)
            self._record(applied.changes, notes)
            for reply in applied.replies:
                self._complete(reply)
        for job in ready.work:
            self._start(job)
        for note in notes:
            narration.log(logging.INFO if note.level == INFO else logging.WARNING, "%s", note.text)
            if self._on_note is not None:
                self._on_note(note)

    def _persist(self, effects: list) -> None:
        pending: list = []
        storage = self.storage
        for effect in effects:
            kind = type(effect)
            if kind is PersistEntries:
                pending.extend(effect.entries)
                continue
            if pending:
                storage.append(pending)
                pending = []
            if kind is PersistState:
                storage.save_state(effect.epoch, effect.voted_for)
            elif kind is PersistTruncate:
                storage.truncate_after(effect.after_seq)
            elif kind is InstallSnapshot:
                snap = effect.snapshot
                storage.save_snapshot(StoredSnapshot(snap.seq, snap.snap_epoch, tuple(snap.members), snap.data))
        if pending:
            storage.append(pending)

    def _record(self, changes: list, notes: list) -> None:
        feed = self.feed
        for change in changes:
            if change[0] == "apply":
                if feed is not None:
                    feed.record(change[1], change[2])
            elif change[0] == "rollback":
                _, after_seq, discarded = change
                if feed is not None:
                    feed.rollback(after_seq)
                if any(e.op in DATA_OPS for e in discarded):
                    where = self.storage.save_rollback(list(discarded))
                    self.rollback_files.append(where)
                    node = self.driver.node
                    notes.append(note(WARNING, "rollback", node.id, node.epoch,
                                      f"rolled back {len(discarded)} entries after seq {after_seq} that the "
                                      f"master never had; they are kept in {where}",
                                      after_seq=after_seq, entries=len(discarded), file=where))
            elif feed is not None:  # reset: a snapshot replaced the state
                feed.reset(change[1])

    def _start(self, job) -> None:
        kind = type(job)
        driver = self.driver
        if kind is BuildSnapshot:
            seq, epoch, members, data = driver.snapshot_view()
            self.work.build(seq, epoch, members, data)
        elif kind is StreamSnapshot:
            self.work.stream(job.to, driver.node.epoch, driver.node.id)
        elif kind is CompactStorage:
            try:
                self.storage.compact(job.seq)
            except ValueError as exc:  # the log is kept: wasteful, never unsafe
                log.warning("compacting the log up to seq %d failed: %s", job.seq, exc)
            driver.persisted(self.storage.log_bytes())
        else:
            raise AssertionError(f"unknown work {job!r}")
