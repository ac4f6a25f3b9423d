"""Master behaviour: ordering writes, shipping batches, counting acknowledgements.

Replication rules (DESIGN §3):

* Per slave the master keeps a :class:`~dkvs.core.progress.Progress`; up to
  ``CoreConfig.max_inflight_batches`` requests are outstanding per slave (1 by default;
  more only while the slave follows, see :mod:`dkvs.core.progress`). Each carries the
  consecutive entries from ``next_seq`` (bounded by count and bytes) and continues
  ``(prev_epoch, prev_seq)``. When a batch is answered the next one leaves at once, so a
  busy master streams pipelined batches; when idle it sends empty batches (heartbeats)
  every ``heartbeat_ticks``, carrying the commit point and a read round. Only confirmed
  copies (``match_seq``) count towards the commit point, never batches in flight.
* A refused batch carries the slave's fork hint: the first seq of its conflicting
  epoch, or its end. ``next_seq`` moves strictly back each time, so the search ends.
  A slave behind the retained log gets the stored snapshot instead.
* ``commit_seq`` is the highest seq held by a majority *and written in this epoch*
  (an older-epoch entry becomes committed only under a newer one, as in Raft). The
  master's own copy counts only once it is on its disk (``durable_seq``): its batches
  leave before its own fsync.
* Durability levels: ``1`` is answered on append; ``majority`` when committed; ``all``
  when committed and held by every live member.
* Read index (Raft §6.4): a consistent read is registered for the *next* read round, and
  that round leaves at once to every idle slave (to a busy one as soon as its outstanding
  request is answered), not at the next heartbeat. Reads registered while a round is in
  flight share the next one: a round number is taken when its first message is sent, so
  an acknowledgement of round ``r`` proves this node was still master after every read
  registered for ``r``. A read is released once a majority (this node included) has
  acknowledged its round *and* everything this node had appended when the read arrived is
  committed (which includes the opening no-op of its epoch).
* Check-quorum: with 3+ members, a master that heard from no majority within T steps down.
* Membership changes go one at a time, and only once this master has committed an entry
  of its own epoch (its opening no-op).
* Learners (:mod:`dkvs.core.membership`) are replicated to like any slave but count in no
  quorum: not in the commit point, ``acks=majority``, ``acks=all``, read rounds or
  check-quorum. **Promotion**: at each heartbeat the master checks every learner that may be
  promoted (``learner_add``, not ``replica_add``); one that answered within the last two
  heartbeats and confirmed holding the log up to at most one batch
  (``CoreConfig.max_batch_entries``) behind the master's last seq is *caught up*. After
  ``PROMOTE_AFTER_HEARTBEATS`` consecutive caught-up heartbeats the master appends
  ``member_promote`` for it — a membership change like the others (one at a time, after
  its own first commit, never during a leadership transfer). Once promoted the new voter
  is at most one batch behind, so a write waiting for a majority that now includes it waits
  about one round trip, not for a whole catch-up.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from .effects import Apply, Effect, Reply, Send, SendSnapshot
from .log import MEMBERSHIP_OPS, OP_MEMBER_ADD, OP_MEMBER_PROMOTE, OP_NOOP, Entry
from .membership import LEARNER
from .messages import Append, AppendReply, PeerView
from .progress import Progress
from .quorum import majority, quorum_seq

__all__ = ["MasterMixin", "ACKS_ONE", "ACKS_MAJORITY", "ACKS_ALL", "PROMOTE_AFTER_HEARTBEATS"]

ACKS_ONE, ACKS_MAJORITY, ACKS_ALL = "1", "majority", "all"
MASTER = "master"
# A learner is promoted after this many consecutive heartbeats within one batch
# (``CoreConfig.max_batch_entries``) of the master's last seq: a moment of luck under a
# burst is not enough, a learner that keeps up is.
PROMOTE_AFTER_HEARTBEATS = 3


@dataclass(slots=True)
class _PendingWrite:
    seq: int
    request_id: int
    deadline: int


@dataclass(slots=True)
class _PendingRead:
    round: int
    read_seq: int
    request_id: int
    deadline: int


class MasterMixin:
    """The master half of :class:`dkvs.core.node.Node`."""

    def _init_master_state(self) -> None:
        self.progress: dict[str, Progress] = {}
        self.pending_writes: dict[str, deque[_PendingWrite]] = {ACKS_MAJORITY: deque(), ACKS_ALL: deque()}
        self.pending_reads: list[_PendingRead] = []
        self.read_round = 0  # the last read round sent; pending reads wait for a later one
        self._read_round_wanted = False  # a read waits for a round not sent yet
        self._heartbeat_elapsed = 0

    # -- becoming master ---------------------------------------------------------------------
    def become_master(self, out: list[Effect], first_entry: Entry | None = None) -> None:
        """Take over: fresh progress for every slave, then open the epoch with an entry
        (a no-op) whose commit also commits every older entry. Its batch is the
        coordinator announcement."""
        assert self.role == "candidate" and not self.pre_voting, self.role
        self.role = MASTER
        self.master_id = self.id
        self.elections_won += 1
        self.progress = {}
        self._heartbeat_elapsed = 0
        self.drop_read_lease()  # a new tenure earns its own lease (dkvs.core.read_lease)
        entry = first_entry or self._opening_entry()
        self._append_to_log([entry])
        self._sync_progress()
        self._maybe_commit(out, emit=False)
        self._emit_appended((entry,), out)
        self._broadcast(out, heartbeat=True)

    def _opening_entry(self) -> Entry:
        """The entry that opens a new epoch: a no-op, or — when this node now serves at
        another URL than its row in the member list says (a restart on a new port or
        host) — that row corrected. A member corrects other members' rows when they
        rejoin through it, but a master's own row has no one else to fix it: a lone node
        would go on announcing its dead address, and slaves would forward to it. Only the
        URL changes; the voters stay the same, so it is no membership change to wait for."""
        seq = self.log.last_seq + 1
        listed = self.members.get(self.id)
        if self.own_url and listed is not None and listed != self.own_url:
            return Entry(self.epoch, seq, OP_MEMBER_ADD, self.id, self.own_url)
        return Entry(self.epoch, seq, OP_NOOP)

    def _sync_progress(self, joined: bool = False) -> None:
        """One Progress per current peer (membership may have changed).

        At an election every peer starts optimistic (``next_seq`` past our end; refusals
        walk it back). A member added while we lead (``joined``) holds nothing yet: it
        starts at our first retained entry, or at the snapshot when the log is compacted.
        """
        if joined:
            start = self.log.first_seq if self.log.snapshot_seq == 0 else self.log.snapshot_seq
        else:
            start = self.log.last_seq + 1
        for peer in self.peers():
            if peer not in self.progress:
                self.progress[peer] = Progress(next_seq=start, last_heard_tick=self.now)
        for peer in [p for p in self.progress if p not in self.members]:
            del self.progress[peer]

    # -- client requests -----------------------------------------------------------------------
    def propose(self, request_id: int, op: str, key: str, value: str | None, acks: str = ACKS_ONE,
                timeout_ticks: int = 0, cond: int | None = None) -> list[Effect]:
        """Order one write. Replies at once for ``acks=1``, later for stronger levels."""
        if self.role != MASTER:
            return self._reply_not_master(request_id)
        if self.transfer_target is not None:  # handing over: the log must stop growing
            return [Reply(request_id, error="transfer_in_progress")]
        if op in MEMBERSHIP_OPS and self._membership_change_pending():
            return [Reply(request_id, error="membership_change_in_progress")]
        out: list[Effect] = []
        entry = self._append_own(Entry(self.epoch, self.log.last_seq + 1, op, key, value, cond), out)
        if acks == ACKS_ONE:
            out.append(Reply(request_id, self._write_result(entry.seq)))
        else:
            self.pending_writes[acks].append(_PendingWrite(entry.seq, request_id, self.now + timeout_ticks))
            self._release_writes(out)
        return out

    def _append_own(self, entry: Entry, out: list[Effect]) -> Entry:
        """Append an entry this master wrote; with no other voter it is committed at once
        (once it is on disk, where the host reports persists: :meth:`persisted` commits it)."""
        self._append_to_log([entry])
        if not self.durable_reported and len(self.voters()) <= 1:
            self._maybe_commit(out, emit=False)
        self._emit_appended((entry,), out)
        return entry

    def propose_read(self, request_id: int, timeout_ticks: int) -> list[Effect]:
        """Linearizable read barrier (read index): answered once a majority confirmed this
        node is still master *after* the request arrived, and everything it had applied
        is committed. The host then reads its local state. With a read lease (dkvs.core.read_lease)
        and everything committed: at once, no round; else by its round or the lease, first wins."""
        if self.role != MASTER:
            return self._reply_not_master(request_id)
        if self.read_lease_valid() and self.commit_seq >= self.log.last_seq:
            return [Reply(request_id, {"seq": self.log.last_seq, "epoch": self.epoch})]
        out: list[Effect] = []
        self.pending_reads.append(_PendingRead(self.read_round + 1, self.log.last_seq, request_id,
                                               self.now + timeout_ticks))
        self._read_round_wanted = True
        self._release_reads(out)  # a cluster of one is its own majority
        if self.pending_reads:
            self._broadcast(out, heartbeat=True)  # the round starts now, not at the next heartbeat
        return out

    def _membership_change_pending(self) -> bool:
        """One change at a time, and none before this master committed an entry of its own
        epoch: until then an uncommitted change of a deposed master may still win an
        election in the old member list, and two changes would not overlap in a majority
        (Raft's single-server membership rule)."""
        if self.log.epoch_at(self.commit_seq) != self.epoch:
            return True
        return any(e.op in MEMBERSHIP_OPS for e in self.log.entries[self.commit_seq - self.log.snapshot_seq:])

    def _write_result(self, seq: int) -> dict:
        replicas = 1 + sum(1 for p in self.progress.values() if p.match_seq >= seq)
        return {"seq": seq, "epoch": self.epoch, "replicas": replicas}

    # -- shipping ------------------------------------------------------------------------------
    def _broadcast(self, out: list[Effect], heartbeat: bool) -> None:
        for peer, progress in self.progress.items():
            self._send_append(peer, progress, out, heartbeat)

    def _send_append(self, peer: str, p: Progress, out: list[Effect], heartbeat: bool = False) -> None:
        """Ship what ``peer`` lacks, as many batches as its window has room for (one while
        it probes); with ``heartbeat`` an empty batch too, if nothing else is in flight."""
        while self._send_one(peer, p, out, heartbeat) and p.next_seq <= self.log.last_seq:
            heartbeat = False

    def _send_one(self, peer: str, p: Progress, out: list[Effect], heartbeat: bool) -> bool:
        timeout = self.config.snapshot_timeout if p.snapshot else self.config.append_timeout
        if not p.idle(self.now, timeout, self.config.max_inflight_batches):
            return False
        if p.next_seq <= self.log.snapshot_seq:
            out.append(SendSnapshot(peer))
            p.sent(self.now, p.next_seq, snapshot=True)
            return True
        has_entries = p.next_seq <= self.log.last_seq
        if not has_entries:
            # Batches in flight already carry a heartbeat; only a new read round is worth
            # an empty one behind them (its round starts now, not when they are answered).
            if not heartbeat or (p.in_flight and not (self._read_round_wanted or p.round_sent < self.read_round)):
                return False
        entries = tuple(self.log.slice(p.next_seq, self.config.max_batch_entries,
                                       self.config.max_batch_bytes)) if has_entries else ()
        prev = p.next_seq - 1
        view = ()
        if self.now - p.view_sent_tick >= self.config.heartbeat_ticks:
            view = self.build_view()
            p.view_sent_tick = self.now
        if self._read_round_wanted:  # the first message of a new read round
            self.read_round += 1
            self._read_round_wanted = False
            self._round_started()
        out.append(Send(peer, Append(self.epoch, self.id, prev, self.log.epoch_at(prev), entries,
                                     self.commit_seq, self.read_round, view)))
        p.round_sent = self.read_round
        p.sent(self.now, p.next_seq + len(entries))
        return True

    def build_view(self) -> tuple[PeerView, ...]:
        """Every member's last seq and liveness as this master sees them."""
        alive_window = self.config.election_ticks
        view = [PeerView(self.id, self.log.last_seq, True)]
        for peer, p in self.progress.items():
            view.append(PeerView(peer, p.match_seq, self.now - p.last_heard_tick < alive_window))
        return tuple(view)

    # -- answers -------------------------------------------------------------------------------
    def handle_append_reply(self, msg: AppendReply, out: list[Effect]) -> None:
        if self.role != MASTER:
            return
        p = self.progress.get(msg.sender)
        if p is None:
            return
        p.last_heard_tick = self.now
        p.acked_round = max(p.acked_round, msg.round)
        if msg.success:
            p.confirmed(msg.match_seq, self.now)
            self._maybe_commit(out)
            self._release_writes(out)
            self._maybe_send_timeout_now(out)
        elif not p.refused(msg.match_seq, self._next_after_refusal(p, msg)):
            self._release_reads(out)
            return  # a stale refusal (of a dropped window): the probe's own answer decides
        self._release_reads(out)
        # A read waiting for a round this slave has not acknowledged: send it the round now
        # (the slave was busy when the read arrived), not at the next heartbeat.
        reads = self.pending_reads
        self._send_append(msg.sender, p, out, heartbeat=bool(reads) and p.acked_round < reads[-1].round)

    def _next_after_refusal(self, p: Progress, msg: AppendReply) -> int:
        """Fork-point search step: strictly before the refused ``prev`` (``msg.match_seq``)."""
        if msg.hint_epoch:
            end = self.log.last_seq_of_epoch(msg.hint_epoch)
            candidate = end + 1 if end is not None else msg.hint_seq
        else:
            candidate = msg.hint_seq
        return max(p.match_seq + 1, min(candidate, msg.match_seq), 1)

    def _maybe_commit(self, out: list[Effect], emit: bool = True) -> None:
        """Advance the commit point; ``emit=False`` when an Apply that carries it follows."""
        matches = {peer: p.match_seq for peer, p in self.progress.items()}
        matches[self.id] = self._own_durable_seq()  # ignored once this master removed itself (no voter)
        candidate = quorum_seq(matches, self.voters())
        if candidate > self.commit_seq and self.log.epoch_at(candidate) == self.epoch:
            self.commit_seq = candidate
            if emit:
                out.append(Apply((), candidate))

    def _all_live_seq(self) -> int:
        """Highest seq held by every live voter (and committed). Learners do not count: a
        catching-up learner would hold every ``acks=all`` write for its whole catch-up."""
        held = [self._own_durable_seq()]
        for peer, p in self.progress.items():
            if peer in self.learners:
                continue
            if self.now - p.last_heard_tick < self.config.election_ticks:
                held.append(p.match_seq)
        return min(min(held), self.commit_seq)

    def _release_writes(self, out: list[Effect]) -> None:
        for acks, threshold in ((ACKS_MAJORITY, self.commit_seq), (ACKS_ALL, None)):
            queue = self.pending_writes[acks]
            if not queue:
                continue
            if threshold is None:
                threshold = self._all_live_seq()
            while queue and queue[0].seq <= threshold:
                pending = queue.popleft()
                out.append(Reply(pending.request_id, self._write_result(pending.seq)))

    def _release_reads(self, out: list[Effect]) -> None:
        """Answer the reads whose round a majority acknowledged and whose read index is
        committed.

        Pending reads are in arrival order, and both what a read waits for grow along
        that order (its round is the next one when it arrived, its read index the log's
        end), so the releasable reads are a prefix: the scan stops at the first read that
        must wait. (It used to look at every pending read, for every new read and every
        answer: quadratic in the reads in flight, a quarter of a consistent read's cost
        at 16 clients.)"""
        reads = self.pending_reads
        if not reads:
            return
        confirmed = self._majority_acked_round()
        commit_seq = self.commit_seq
        released = 0
        for read in reads:
            if read.round > confirmed or read.read_seq > commit_seq:
                break
            out.append(Reply(read.request_id, {"seq": read.read_seq, "epoch": self.epoch}))
            released += 1
        if released:
            del reads[:released]

    def _majority_acked_round(self) -> float:
        """The highest read round a majority of voters (this master included) has
        acknowledged; infinite under a valid read lease (no round needed:
        dkvs.core.read_lease) or when this master alone is a majority."""
        others_needed = majority(len(self.voters())) - 1
        if others_needed <= 0 or self.read_lease_valid():
            return math.inf
        acked = sorted((p.acked_round for peer, p in self.progress.items() if peer not in self.learners),
                       reverse=True)
        return acked[others_needed - 1] if others_needed <= len(acked) else -1

    # -- time ----------------------------------------------------------------------------------
    def _tick_master(self, out: list[Effect]) -> None:
        if self._check_quorum_lost():
            self.become_slave(self.epoch, None, out)
            return
        self._heartbeat_elapsed += 1
        heartbeat = self._heartbeat_elapsed >= self.config.heartbeat_ticks
        if heartbeat:
            self._heartbeat_elapsed = 0
            if self.config.lease_reads:  # every heartbeat renews the lease: a round of its own
                self._read_round_wanted = True
            self._broadcast(out, heartbeat=True)
            self._maybe_promote(out)
        self._tick_transfer(out, heartbeat)
        self._release_writes(out)  # acks=all may be met once a dead member stops counting
        self._expire_pending(out)

    def _check_quorum_lost(self) -> bool:
        if not self.is_voter():
            return True  # removed from the cluster (or only a learner in it): stop leading it
        voters = self.voters()
        if len(voters) < 3:
            # With 1 or 2 voters no other master can be elected without this node's
            # vote, so staying master cannot split the brain.
            return False
        window = self.config.election_ticks
        heard = 1 + sum(1 for peer, p in self.progress.items()
                        if self.now - p.last_heard_tick < window and peer not in self.learners)
        return heard < majority(len(voters))

    def _maybe_promote(self, out: list[Effect]) -> bool:
        """At a heartbeat: count caught-up heartbeats of each learner to promote, and
        promote the first that kept up for ``PROMOTE_AFTER_HEARTBEATS`` (see the module
        docstring). Returns whether a ``member_promote`` entry was appended."""
        ready = None
        lag = self.config.max_batch_entries
        recent = 2 * self.config.heartbeat_ticks
        for peer, p in self.progress.items():
            if self.learners.get(peer) != LEARNER:
                continue
            caught_up = (p.match_seq > 0 and p.match_seq + lag >= self.log.last_seq
                         and self.now - p.last_heard_tick <= recent)
            p.caught_up_beats = p.caught_up_beats + 1 if caught_up else 0
            if p.caught_up_beats >= PROMOTE_AFTER_HEARTBEATS and ready is None:
                ready = peer
        if ready is None or self.transfer_target is not None or self._membership_change_pending():
            return False
        self._append_own(Entry(self.epoch, self.log.last_seq + 1, OP_MEMBER_PROMOTE, ready), out)
        return True

    def _expire_pending(self, out: list[Effect]) -> None:
        for queue in self.pending_writes.values():
            if queue and any(w.deadline <= self.now for w in queue):
                expired = [w for w in queue if w.deadline <= self.now]
                kept = [w for w in queue if w.deadline > self.now]
                queue.clear()
                queue.extend(kept)
                for w in expired:
                    out.append(Reply(w.request_id, self._write_result(w.seq), error="acks_timeout"))
        if self.pending_reads and any(r.deadline <= self.now for r in self.pending_reads):
            for r in self.pending_reads:
                if r.deadline <= self.now:
                    out.append(Reply(r.request_id, error="read_timeout"))
            self.pending_reads = [r for r in self.pending_reads if r.deadline > self.now]

    def _abandon_pending(self, out: list[Effect]) -> None:
        """Stepping down: nobody will count acknowledgements for these any more."""
        for queue in self.pending_writes.values():
            for w in queue:
                out.append(Reply(w.request_id, {"seq": w.seq, "epoch": self.epoch}, error="not_master"))
            queue.clear()
        for r in self.pending_reads:
            out.append(Reply(r.request_id, error="not_master"))
        self.pending_reads = []
        self.progress = {}
