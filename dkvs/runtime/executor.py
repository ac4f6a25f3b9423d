"""Execute one :class:`~dkvs.driver.Ready` batch against storage, transport and state.

The order is the driver's contract (see :mod:`dkvs.driver.ready`): peers, persist, send,
apply (under the state lock, by the driver), replies, work, notes. Consecutive entry
appends are merged into one ``Storage.append`` call: the group commit, so under
``--fsync always`` a burst of writes shares one fsync.

One exception (Raft thesis §10.2.1, what etcd's leader does): a *master* whose batch
persists only log entries sends first, then persists, so its slaves write their copies
while it writes its own and a write costs one fsync of latency, not two in series. That
is safe because the core counts the master's own copy in a commit only once the host
reports it durable (:meth:`NodeDriver.persisted` with ``flushed``; see
``DurableCopyMixin._own_durable_seq`` in :mod:`dkvs.core.durable`): an entry whose master fsync fails commits only if a
majority of *other* durable copies holds it. Everything else waits for the persist as
before: answers to an incoming message, applies and replies, and every send of a batch
that persists an epoch, a vote, a truncation or a snapshot (those must be on disk before
any message leaves). After a successful persist the driver learns that the log is
durable; if the commit point moved, that commit is applied and answered in the same batch.

Both hosts use this class — the threaded runtime and the simulator — so the simulator
runs the same persist → send → apply → reply path as production.

A persist that fails with an ``OSError`` (disk full, read-only or vanished data dir, I/O
error) does not stop the node. The effects not yet persisted become the *backlog*; while
there is one, nothing that could depend on them leaves the node: every send and every
in-exchange response is dropped (to peers that is message loss, which the protocol
tolerates; a master that cannot persist thus stops heartbeating and a member that can
takes over), every successful client reply becomes ``disk_full`` (507, "may or may
not be applied"), and applies wait (a single node commits its own entries at once: applied
now, a write nobody acknowledged could be read and then vanish in a crash). The driver is
told (:meth:`NodeDriver.persist_failed`): it answers the waiting writes and refuses new
proposals. Every :data:`RETRY_TICKS` ticks the backlog is retried,
in order, before the new batch; once it is on disk the node writes again by itself.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import replace
from contextlib import nullcontext

from ..core.effects import Apply, InstallSnapshot, PersistEntries, PersistState, PersistTruncate
from ..core.election import MASTER
from ..core.log import DATA_OPS
from ..driver import INFO, WARNING, BuildSnapshot, CompactStorage, Ready, StreamSnapshot, note
from ..storage.base import StoredSnapshot

__all__ = ["Executor", "RETRY_TICKS"]

RETRY_TICKS = 5  # how often (logical ticks) a failed persist is retried

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
        self.backlog: list = []  # persist effects not on disk yet, in order (see the module docstring)
        self.deferred: list = []  # applies held back while there is a backlog
        self.dropped_sends = 0  # sends dropped while the backlog was not empty
        self._retry_at = 0
        self._failing = False
        # Requests answered disk_full when a persist failed; the core still answers each once
        # more (its acks=1 reply in the same batch, or a commit, timeout or step-down later):
        # that second answer is dropped here, so each client request is answered once.
        self._answered_early: set[int] = set()
        self._committed: list = []  # what the last persist let the master commit (Apply, Reply)
        driver.node.durable_reported = True  # this host reports each persist (persisted(flushed=True))

    def run(self, ready: Ready) -> None:
        if not ready and not self.backlog:  # an idle tick still retries a failed persist
            return
        driver = self.driver
        if ready.peers is not None:
            self.transport.set_peers(ready.peers)
        early = ready.sends and not self.backlog and self.sends_first(ready)
        if early:
            self._send(ready.sends)
        if ready.persist:
            self.backlog.extend(ready.persist)
        failed = self._flush() if self.backlog else []
        if self._committed:  # the persist moved the commit point: apply and answer it in this batch
            self._add_committed(ready)
        for reply in failed:  # the writes waiting when the persist failed: answered once, now
            self._answered_early.add(reply.request_id)
            self._complete(reply)
        if self.backlog:
            self.dropped_sends += (0 if early else len(ready.sends)) + len(ready.responses)
        else:
            if not early:
                self._send(ready.sends)
            for token, messages in ready.responses.items():
                token.messages.extend(messages)
        notes = ready.notes
        if self.deferred and not self.backlog:  # on disk now: apply what waited, in order
            with self._lock:
                applied = driver.apply(Ready(apply=self.deferred))
            self.deferred = []
            self._record(applied.changes, notes)
        if self.backlog and ready.apply:
            self.deferred.extend(ready.apply)
            ready = Ready(replies=ready.replies)
        if ready.apply or ready.replies:
            with self._lock:
                applied = driver.apply(ready)
            self._record(applied.changes, notes)
            answered = self._answered_early
            for reply in applied.replies:
                if answered and reply.request_id in answered:  # told disk_full already
                    answered.discard(reply.request_id)
                    continue
                if self.backlog and reply.error is None:  # it may rest on what is not on disk
                    reply = replace(reply, error="disk_full", rejected=None)
                self._complete(reply)
        for job in ready.work:
            self._start(job)
        for told in notes:
            narration.log(logging.INFO if told.level == INFO else logging.WARNING, "%s", told.text)
            if self._on_note is not None:
                self._on_note(told)

    def _add_committed(self, ready: Ready) -> None:
        """Add what the persist let the master commit to this batch. A bare commit point
        (``Apply((), seq)``) right after the batch's own entries is folded into their
        Apply: the same state, without undo records for entries committed as they apply."""
        applies, replies = ready.apply, ready.replies
        for effect in self._committed:
            if type(effect) is not Apply:
                replies.append(effect)
            elif not effect.entries and applies and type(applies[-1]) is Apply:
                applies[-1] = Apply(applies[-1].entries, max(applies[-1].commit_seq, effect.commit_seq))
            else:
                applies.append(effect)
        self._committed = []

    def sends_first(self, ready: Ready) -> bool:
        """Whether this batch's sends may leave before its persist: the node is master and
        the batch persists log entries only (see the module docstring)."""
        if self.driver.node.role != MASTER:
            return False
        return all(type(effect) is PersistEntries for effect in ready.persist)

    def _send(self, sends: list) -> None:
        send = self.transport.send
        for out in sends:
            send(out.to, out.message, out.send_id)

    def _flush(self) -> list:
        """Persist the backlog (this batch's effects, after any left by a failure). On an
        ``OSError`` keep what is left, tell the driver on the first failure, and return
        the replies it fails; while failing, try again only every :data:`RETRY_TICKS`."""
        driver = self.driver
        if self._failing and driver.node.now < self._retry_at:
            return []
        try:
            self._persist(self.backlog)
        except OSError as exc:
            self._retry_at = driver.node.now + RETRY_TICKS
            if self._failing:
                return []
            self._failing = True
            reason = f"{exc.strerror or exc} ({errno_name(exc)})"
            log.error("cannot persist: %s; writes are refused until it works again (retried every %d ticks)",
                      reason, RETRY_TICKS)
            return driver.persist_failed(reason)
        self._committed = driver.persisted(self.storage.log_bytes(), flushed=True)
        if self._failing:
            self._failing = False
            log.warning("storage accepts writes again (%d sends were dropped meanwhile)", self.dropped_sends)
            driver.persist_recovered()
        return []

    def _persist(self, effects: list) -> None:
        """Persist ``effects`` in order, removing each from the list once it is on disk
        (so that a retry after an error starts exactly where this one stopped)."""
        storage = self.storage
        if len(effects) == 1 and type(effects[0]) is PersistEntries:  # the common batch: one write
            storage.append(list(effects[0].entries))
            effects.clear()
            return
        while effects:
            kind = type(effects[0])
            if kind is PersistEntries:
                count = 1
                while count < len(effects) and type(effects[count]) is PersistEntries:
                    count += 1
                storage.append([entry for effect in effects[:count] for entry in effect.entries])
                del effects[:count]
                continue
            effect = effects[0]
            if kind is PersistState:
                storage.save_state(effect.epoch, effect.voted_for)
            elif kind is PersistTruncate:
                storage.truncate_after(effect.after_seq)
            elif kind is InstallSnapshot:
                snap = effect.snapshot
                storage.save_snapshot(StoredSnapshot(snap.seq, snap.snap_epoch, tuple(snap.members), snap.data))
            del effects[0]

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
                                      f"rolled back {len(discarded)} uncommitted entries after seq {after_seq} "
                                      f"to follow the master (those it also holds come back from its "
                                      f"log or snapshot); they are kept in {where}",
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
            except (ValueError, OSError) as exc:  # the log is kept: wasteful, never unsafe
                log.warning("compacting the log up to seq %d failed: %s", job.seq, exc)
            driver.persisted(self.storage.log_bytes())
        else:
            raise AssertionError(f"unknown work {job!r}")


def errno_name(exc: OSError) -> str:
    """``ENOSPC``, ``EROFS``, ... for the log and the driver's note."""
    return errno.errorcode.get(exc.errno or 0, "error") if exc.errno else type(exc).__name__
