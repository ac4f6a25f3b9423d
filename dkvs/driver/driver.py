"""The node driver: everything a node decides, in one deterministic object.

:class:`NodeDriver` owns the protocol :class:`~dkvs.core.node.Node`, the key-value
:class:`~dkvs.core.kvstate.KVState`, the client requests in progress with their verdicts,
the per-peer in-flight table, and the snapshot and compaction state. It is driven by
inputs — messages (:meth:`step`), logical time (:meth:`tick`), client requests
(:meth:`propose`, :meth:`read`), answers and failures of its own sends (:meth:`received`,
:meth:`send_failed`), and completions of work its host did (:meth:`persisted`,
:meth:`snapshot_built`, :meth:`snapshot_streamed`) — and hands back one
:class:`~dkvs.driver.ready.Ready` batch per round (etcd's RawNode/Ready idea). It has no
threads, sockets, clocks or randomness (the core's RNG is injected), so the simulator
runs exactly the code production runs; the threaded runtime only executes batches.

Rules kept here (each one a decision that can be wrong, so it lives where the simulator
runs it):

* a client reply is bound to its request, and a verdict to the request's own log entry
  (:mod:`dkvs.driver.requests`);
* the transport's peer table is updated before any message of the same batch is sent, so
  a brand-new member's first snapshot is never dropped;
* at most ``inflight_window`` replication requests per peer are on the wire (one by
  default); answers are cumulative, a stale answer is dropped (:mod:`dkvs.driver.inflight`);
* snapshots are built off the node thread from a consistent committed view, only when
  the log outgrew both the threshold and the last snapshot *and* the commit point moved
  past the last snapshot (so a stuck commit point never causes whole-state work), one at
  a time; the log is compacted only once the snapshot is durable;
* a snapshot is streamed to a peer at most once at a time;
* every role change, election, membership change, rollback and snapshot is narrated
  once (:mod:`dkvs.driver.narrator`).
"""

from __future__ import annotations

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
from ..core.election import MASTER
from ..core.log import OP_DELETE, OP_LEASE_GRANT, OP_LEASE_REVOKE, OP_PUT, Entry
from ..core.messages import Append
from . import inflight as inflight_table
from .inflight import InFlight
from .leases import LeaseClock
from .narrator import CALL, MESSAGE, TICK, Narrator, note
from .ready import (
    INFO,
    WARNING,
    BuildSnapshot,
    ClientReply,
    CompactStorage,
    OutgoingMessage,
    Ready,
    StreamSnapshot,
)
from .requests import RequestTable

__all__ = ["NodeDriver", "Applied", "DEFAULT_SNAPSHOT_THRESHOLD_BYTES"]

DEFAULT_SNAPSHOT_THRESHOLD_BYTES = 1024 * 1024
_PERSIST = (PersistEntries, PersistState, PersistTruncate)


class Applied:
    """What :meth:`NodeDriver.apply` did, for the host's change feed and rollback files."""

    __slots__ = ("replies", "changes")

    def __init__(self) -> None:
        self.replies: list[ClientReply] = []
        # ("apply", entries, skipped seqs) | ("rollback", after_seq, discarded) | ("reset", seq)
        self.changes: list[tuple] = []


class NodeDriver:
    """Not thread safe: the host calls it from one thread at a time (and :meth:`apply`
    under the lock that guards ``state`` against readers)."""

    def __init__(self, node, state, *, snapshot_threshold_bytes: int = DEFAULT_SNAPSHOT_THRESHOLD_BYTES,
                 inflight_expiry_ticks: int | None = None, log_bytes: int = 0,
                 inflight_window: int | None = None) -> None:
        self.node = node
        self.state = state
        self.requests = RequestTable()
        self.inflight = InFlight(inflight_expiry_ticks or node.config.election_ticks,
                                 inflight_window or inflight_table.DEFAULT_WINDOW)
        self.narrator = Narrator(node)
        self.snapshot_threshold_bytes = snapshot_threshold_bytes
        self.log_bytes = log_bytes
        self.last_snapshot_bytes = 0
        self.building = False
        self.streaming: set[str] = set()
        self.snapshots_taken = 0  # builds that ended in a compaction
        self.builds_started = 0
        self._role = node.role
        self._peers: dict[str, str] | None = None  # what the transport was last given
        self._ready = Ready()
        self.lease_clock = LeaseClock()
        self._next_internal_id = -1  # requests the driver makes itself (lease expiry) are negative
        self.disk_error: str | None = None  # set while storage cannot persist (persist_failed)

    # -- inputs --------------------------------------------------------------------------------
    def step(self, message, token=None) -> None:
        """A message from a peer. With ``token`` (the HTTP exchange it came in), answers
        addressed to its sender go to ``Ready.responses[token]`` instead of a new send."""
        self._take(self.node.step(message), MESSAGE, message.sender, token)

    def tick(self) -> None:
        self._take(self.node.tick(), TICK)
        if self.node.role == MASTER and self.lease_clock.deadlines:
            self._maybe_expire_leases()

    def _maybe_expire_leases(self) -> None:
        """The master writes each lease whose deadline passed to the log as a revoke."""
        clock = self.lease_clock
        for lease_id in clock.expired(self.node.now):
            request_id, self._next_internal_id = self._next_internal_id, self._next_internal_id - 1
            clock.revoking[request_id] = lease_id
            self.propose(request_id, OP_LEASE_REVOKE, str(lease_id), None, "1", self.node.config.election_ticks)

    def lease_keepalive(self, lease_id: int) -> int | None:
        """Renew a lease on the master: its ttl in ms, or None if it is unknown or expiring."""
        ttl = self.state.leases.ttl_ms.get(lease_id)
        if ttl is None or self.node.role != MASTER or not self.lease_clock.keepalive(self.node.now, lease_id, ttl):
            return None
        return ttl

    def lease_info(self, lease_id: int) -> tuple[int, int, list[str]] | None:
        """``(ttl_ms, remaining_ms, keys)`` of a lease, on the master; None if unknown."""
        ttl = self.state.leases.ttl_ms.get(lease_id)
        remaining = self.lease_clock.remaining_ms(self.node.now, lease_id)
        if ttl is None or remaining is None or self.node.role != MASTER:
            return None
        return ttl, remaining, sorted(self.state.leases.keys.get(lease_id, ()))

    def propose(self, request_id: int, op: str, key: str, value, acks: str, timeout_ticks: int,
                cond: int | None = None) -> None:
        if self.disk_error is not None and self.node.role == MASTER:  # nothing would be durable here
            self._ready.replies.append(Reply(request_id, None, "disk_full"))
            return
        log = self.node.log
        before = log.last_seq
        effects = self.node.propose(request_id, op, key, value, acks, timeout_ticks, cond)
        seq = log.last_seq
        if seq > before:  # appended (a refusal appends nothing)
            self.requests.proposed(request_id, log.last_epoch, seq)
        self._take(effects, CALL)

    def read(self, request_id: int, timeout_ticks: int) -> None:
        """A linearizable read barrier (read index, or the read lease when it is on and
        valid); answered once it is safe to read."""
        self._take(self.node.propose_read(request_id, timeout_ticks), CALL)

    def clock_jumped(self) -> None:
        """The host dropped ticks after a long stall: logical time ran slow, so a read lease
        measured across the gap would be too long. The node drops it (dkvs.core.read_lease)."""
        self.node.clock_jumped()

    def transfer(self, request_id: int, to: str | None, timeout_ticks: int | None) -> None:
        """Hand leadership over to ``to`` (None: the most up-to-date slave); answered when
        this node steps down, or at the deadline (:mod:`dkvs.core.transfer`)."""
        self._take(self.node.transfer_leadership(request_id, to, timeout_ticks), CALL)

    def received(self, peer: str, send_id: int, messages) -> None:
        """The answers ``peer`` gave to our request ``send_id`` (in its HTTP response)."""
        if self.inflight.completed(peer, send_id):
            for message in messages:
                self.step(message)

    def send_failed(self, peer: str, send_id: int) -> None:
        """Our request ``send_id`` to ``peer`` was not delivered (refused, timed out)."""
        if self.inflight.completed(peer, send_id):
            self._take(self.node.unreachable(peer), CALL)

    def bootstrap(self, effects: list) -> None:
        """Effects the node produced before the driver existed (:meth:`Node.bootstrap`)."""
        self._take(effects, CALL)

    def persisted(self, log_bytes: int, flushed: bool = False) -> list:
        """Storage holds ``log_bytes`` of log now (after appends or a compaction). With
        ``flushed`` every persist effect handed out so far is on disk: the node's log is
        durable to its end, and a master may commit now. Returns what that commit does —
        ``Apply`` and ``Reply`` effects only, which the host runs with the batch it is
        executing (after its persist, as every apply and reply), not a batch later."""
        self.log_bytes = log_bytes
        if not flushed:
            return []
        return self.node.persisted(self.node.log.last_seq)

    def persist_failed(self, reason: str) -> list[ClientReply]:
        """Storage could not persist a batch (disk full, read-only, vanished): refuse new
        proposals until :meth:`persist_recovered`, and return ``disk_full`` answers for
        the writes waiting now (their entries may still commit later: the answer says so)."""
        self.disk_error = reason
        pending = self.requests.pending()
        waiting = [(request_id, entry) for request_id, entry in pending.items()
                   if request_id >= 0]  # the clients' proposals not answered yet
        for request_id, _ in waiting:
            self.requests.answered(request_id)
        for request_id in [r for r in pending if r < 0]:  # a lease revoke: retried by apply
            self._ready.replies.append(Reply(request_id, None, "disk_full"))
        self._note(WARNING, "disk_full", f"cannot persist: {reason}; writes get 507 until the disk accepts "
                   "them again", error=reason)
        return [ClientReply(request_id, {"seq": seq}, "disk_full") for request_id, (_, seq) in waiting]

    def persist_recovered(self) -> None:
        """The storage persisted the backlog: proposals are accepted again."""
        self.disk_error = None
        self._note(INFO, "disk_ok", "storage accepts writes again")

    def snapshot_view(self) -> tuple[int, int, tuple, object]:
        """``(seq, epoch, members, data)`` for :class:`BuildSnapshot`: the committed state,
        consistent at ``seq``, as a copy the host may write from another thread."""
        state = self.state
        if hasattr(state, "committed_view"):
            seq, data = state.committed_view()
        else:
            seq, data = state.snapshot_items()
        return seq, self.node.log.epoch_at(seq), self.node.member_rows_at(seq), data

    def snapshot_built(self, seq: int, nbytes: int, error: str | None = None) -> None:
        """A :class:`BuildSnapshot` finished: the snapshot at ``seq`` is durable (or failed)."""
        self.building = False
        node = self.node
        if error is not None:
            self._note(WARNING, "snapshot_failed", f"snapshot at seq {seq} failed: {error}; the log is kept",
                       seq=seq, error=error)
            return
        self.last_snapshot_bytes = nbytes
        if node.log.snapshot_seq < seq <= node.commit_seq:
            node.compact(seq)
            self.snapshots_taken += 1
            self._ready.work.append(CompactStorage(seq))
            self._note(INFO, "snapshot_built", f"snapshot at seq {seq} ({nbytes} bytes) is durable; log compacted",
                       seq=seq, bytes=nbytes)

    def snapshot_streamed(self, peer: str, seq: int, error: str | None = None) -> None:
        """A :class:`StreamSnapshot` to ``peer`` ended."""
        self.streaming.discard(peer)
        if error is not None:
            self._note(WARNING, "snapshot_send_failed", f"sending the snapshot (seq {seq}) to {peer} failed: {error}",
                       peer=peer, seq=seq, error=error)
            self._take(self.node.unreachable(peer), CALL)
        else:
            self._note(INFO, "snapshot_sent", f"snapshot at seq {seq} sent to {peer}", peer=peer, seq=seq)

    # -- output --------------------------------------------------------------------------------
    _members_seen: dict | None = None  # the member table ready() last derived peers from

    def ready(self) -> Ready:
        """Everything to do now (see :mod:`dkvs.driver.ready` for the order); clears it."""
        self._take(self.node.flush(), CALL)
        self._maybe_build_snapshot()
        members = self.node.members
        if members != self._members_seen:  # one C comparison per round while nothing changes
            self._members_seen = dict(members)
            peers = {m: u for m, u in members.items() if m != self.node.id}
            if peers != self._peers:
                self._peers = peers
                self._ready.peers = dict(peers)
                for gone in [p for p in self.streaming if p not in peers]:
                    self.streaming.discard(gone)
        ready, self._ready = self._ready, Ready()
        return ready

    def apply(self, ready: Ready) -> Applied:
        """Apply ``ready``'s entries to the state (call under the state lock, after the
        batch's persist and sends) and bind the client replies to their verdicts."""
        done = Applied()
        state = self.state
        for effect in ready.apply:
            kind = type(effect)
            if kind is Apply:
                results: dict = {}
                entries = effect.entries
                rejected = state.apply(entries, effect.commit_seq, results)
                skipped = set()
                if rejected:
                    epochs = {e.seq: e.epoch for e in entries}
                    for seq, current_seq in rejected:
                        self.requests.rejected(epochs[seq], seq, current_seq)
                        skipped.add(seq)
                if results:
                    entries = self._bind_results(entries, results)
                if entries:
                    done.changes.append(("apply", entries, skipped))
            elif kind is Rollback:
                state.rollback(effect.after_seq)
                done.changes.append(("rollback", effect.after_seq, effect.discarded))
            else:
                snap = effect.snapshot
                state.restore(snap.seq, snap.data)
                done.changes.append(("reset", snap.seq))
        for reply in ready.replies:
            if reply.request_id < 0:  # the driver's own request (a lease revoke): no client
                lease_id = self.lease_clock.revoking.pop(reply.request_id, None)
                self.requests.answered(reply.request_id)
                if reply.error is not None and lease_id is not None and self.node.role == MASTER:
                    self.lease_clock.deadlines[lease_id] = self.node.now  # retry at the next tick
                continue
            verdict, applied = self.requests.answered_with_result(reply.request_id)
            result = reply.result
            if applied is not None and result is not None:
                result = {**result, "applied": applied}
            done.replies.append(ClientReply(reply.request_id, result, reply.error,
                                            verdict if reply.error is None else None))
        return done

    def _bind_results(self, entries, results: dict) -> list:
        """Bind each multi-key entry's apply result to its request, and spell its changes
        out as single-key entries (same seq) for the change feed, so watches see each key."""
        out = []
        for entry in entries:
            outcome = results.get(entry.seq)
            if outcome is None:
                out.append(entry)
                continue
            answer, changes = outcome
            self.requests.applied(entry.epoch, entry.seq, answer)
            if entry.op == OP_LEASE_GRANT and self.node.role == MASTER:
                self.lease_clock.granted(self.node.now, answer["id"], answer["ttl_ms"])
            elif entry.op == OP_LEASE_REVOKE:
                self.lease_clock.revoked(answer["id"])
            out.extend(Entry(entry.epoch, entry.seq, OP_DELETE if value is None else OP_PUT, key, value)
                       for key, value in changes)
        return out

    # -- inside --------------------------------------------------------------------------------
    def _take(self, effects: list, cause: str, sender: str | None = None, token=None) -> None:
        ready = self._ready
        node = self.node
        if node.role != self._role:  # nothing on the wire belongs to the new role
            self._role = node.role
            self.inflight.reset()
            if node.role == MASTER:  # every lease starts over with its full ttl
                self.lease_clock.became_master(node.now, self.state.leases.ttl_ms)
            else:
                self.lease_clock.stepped_down()
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                self._route_send(effect, sender, token)
            elif kind in _PERSIST:
                ready.persist.append(effect)
            elif kind is Apply or kind is Rollback:  # a rollback is narrated with its file's name
                ready.apply.append(effect)
            elif kind is Reply:
                ready.replies.append(effect)
            elif kind is SendSnapshot:
                if effect.to not in self.streaming:
                    self.streaming.add(effect.to)
                    ready.work.append(StreamSnapshot(effect.to))
                    self._note(INFO, "snapshot_sending", f"{effect.to} is behind the log: sending it the snapshot at seq "
                               f"{node.log.snapshot_seq}", peer=effect.to, seq=node.log.snapshot_seq)
            elif kind is InstallSnapshot:
                ready.persist.append(effect)
                ready.apply.append(effect)
                self._note(INFO, "snapshot_installed", f"installing the master's snapshot at seq {effect.snapshot.seq}",
                           seq=effect.snapshot.seq)
            else:
                raise AssertionError(f"unknown effect {effect!r}")
        self.narrator.after(node, cause, sender, ready.notes)

    def _route_send(self, effect: Send, sender: str | None, token) -> None:
        if token is not None and effect.to == sender:
            self._ready.responses.setdefault(token, []).append(effect.message)
            return
        inflight = self.inflight
        replicating = type(effect.message) is Append
        if replicating and inflight.busy(effect.to, self.node.now):
            inflight.suppressed += 1  # the peer's window is full: to the core this send is "lost"
            return
        send_id = inflight.new_id()
        if replicating:
            inflight.sent(effect.to, send_id, self.node.now)
        self._ready.sends.append(OutgoingMessage(send_id, effect.to, effect.message))

    def _maybe_build_snapshot(self) -> None:
        """Compact when the log outgrows both the threshold and the last snapshot (Redis's
        AOF rewrite rule) — and only if the commit point moved past the last snapshot."""
        if self.building or self.log_bytes < max(self.snapshot_threshold_bytes, self.last_snapshot_bytes):
            return
        if self.node.commit_seq <= self.node.log.snapshot_seq:
            return
        self.building = True
        self.builds_started += 1
        self._ready.work.append(BuildSnapshot())

    def _note(self, level: str, kind: str, text: str, **details) -> None:
        self._ready.notes.append(note(level, kind, self.node.id, self.node.epoch, text, **details))
