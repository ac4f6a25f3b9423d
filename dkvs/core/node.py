"""The dkvs node: one member's protocol state and the three inputs that change it.

``Node`` is a pure state machine. The host feeds it messages (:meth:`step`), logical time
(:meth:`tick`) and client requests (``propose*``), and carries out the effects each call
returns (see :mod:`dkvs.core.effects` for the order). It never reads a clock, a socket
or a random source of its own: the random number generator is injected and seeded.

Roles and their transitions, all made by the ``become_*`` methods of this file:

* slave → candidate: the election timer expired (:mod:`dkvs.core.election`);
* candidate → master: a majority voted for it in its epoch;
* candidate → slave: it lost, deferred to a fresher node, or saw a newer epoch;
* master → slave: it saw a newer epoch, or lost contact with a majority (check-quorum).

Fencing is a single rule applied before any handler runs (:meth:`_fence`): messages from
older epochs are refused, newer epochs are adopted. Role-specific rules live in
:mod:`election <dkvs.core.election>`, :mod:`master <dkvs.core.master>` and
:mod:`slave <dkvs.core.slave>`.
"""

from __future__ import annotations

from collections.abc import Iterable

from .config import CoreConfig
from .effects import Apply, Effect, PersistEntries, PersistState, Reply, Send
from .election import CANDIDATE, MASTER, SLAVE, ElectionMixin
from .log import MEMBERSHIP_OPS, OP_MEMBER_ADD, Entry, Log
from .master import MasterMixin
from .membership import LEARNER, Membership, apply_membership, fold_members
from .messages import Append, AppendReply, Message, Snapshot, TimeoutNow, VoteReply, VoteRequest
from .durable import DurableCopyMixin
from .read_lease import ReadLeaseMixin
from .slave import SlaveMixin
from .transfer import TransferMixin

__all__ = ["Node", "MASTER", "SLAVE", "CANDIDATE"]


class Node(ElectionMixin, MasterMixin, SlaveMixin, TransferMixin, ReadLeaseMixin, DurableCopyMixin):
    """One cluster member. Not thread safe: exactly one thread may call into it."""

    def __init__(self, node_id: str, config: CoreConfig, rng, *, epoch: int = 0,
                 voted_for: str | None = None, snapshot_seq: int = 0, snapshot_epoch: int = 0,
                 snapshot_members: Iterable[tuple[str, str]] = (), entries: Iterable[Entry] = ()) -> None:
        self.id = node_id
        self.config = config
        self.rng = rng  # anything with randrange(); seeded by the host
        self.epoch = epoch
        self.voted_for = voted_for
        self.log = Log(snapshot_seq, snapshot_epoch)
        for entry in entries:
            self.log.append(entry)
        self._base_members = tuple(snapshot_members)
        self._set_membership(fold_members(self._base_members, self.log.entries))
        # Entries up to the snapshot are committed; later ones are not known to be.
        self.commit_seq = snapshot_seq
        # How far this node's own disk holds its log. Entries read back from storage are on
        # it; a host that persists after it sends (the runtime's executor, for a master)
        # sets ``durable_reported`` and reports each persist (:meth:`persisted`), and a
        # master then counts its own copy in a quorum only this far (see master.py).
        self.durable_seq = self.log.last_seq
        self.durable_reported = False
        self.now = 0
        self.role = SLAVE
        self.master_id: str | None = None
        self.last_master_contact: int | None = None
        # Where this node serves now, when its host knows it (None in most tests): a node
        # restarted at another address corrects its own row when it becomes master, since
        # no one else can (see ``become_master``).
        self.own_url: str | None = None
        self.election_deadline = self.now + self.random_election_timeout()
        if self.voters() == [node_id]:
            self.election_deadline = 1  # sole voter after a restart: no one to wait for
        self.view: tuple = ()
        self.elections_started = 0
        self.elections_won = 0
        self._init_election_state()
        self._init_master_state()
        self._init_transfer_state()
        self._init_read_lease()

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def bootstrap(cls, node_id: str, url: str, config: CoreConfig, rng) -> tuple[Node, list[Effect]]:
        """A new cluster of one: this node is its only member and its master in epoch 1."""
        node = cls(node_id, config, rng)
        out: list[Effect] = []
        node.epoch, node.voted_for = 1, node_id
        out.append(PersistState(1, node_id))
        node.role = CANDIDATE
        node.become_master(out, first_entry=Entry(1, 1, OP_MEMBER_ADD, node_id, url))
        return node, out

    # -- inputs ------------------------------------------------------------------------------
    def step(self, message: Message) -> list[Effect]:
        """Handle one message from another node."""
        out: list[Effect] = []
        if message.sender == self.id:
            return out
        if self._fence(message, out):
            self._HANDLERS[type(message)](self, message, out)
        return out

    def tick(self) -> list[Effect]:
        """Advance logical time by one tick: heartbeats, timeouts, elections."""
        out: list[Effect] = []
        self.now += 1
        if self.role == MASTER:
            self._tick_master(out)
        else:
            self._tick_election(out)
        return out

    def flush(self) -> list[Effect]:
        """Ship entries proposed since the last call to idle slaves.

        Proposals only append; the host calls this once after a burst of inputs, so a
        burst travels as one batch per slave instead of one request per write.
        """
        out: list[Effect] = []
        if self.role == MASTER:
            self._broadcast(out, heartbeat=False)
        return out

    def unreachable(self, peer_id: str) -> list[Effect]:
        """The transport could not deliver to ``peer_id``: retry from the last known point."""
        progress = self.progress.get(peer_id) if self.role == MASTER else None
        if progress is not None:
            progress.lost()
            # Retry with the next heartbeat, not the next burst: a dead peer would otherwise
            # be hammered with a new request after every write.
            progress.retry_tick = self.now + self.config.heartbeat_ticks
        return []

    def compact(self, upto_seq: int) -> None:
        """Forget log entries up to ``upto_seq``: the host stored a snapshot covering them."""
        assert upto_seq <= self.commit_seq, "only committed entries may be compacted"
        self._base_members = self.member_rows_at(upto_seq)
        self.log.compact(upto_seq)

    # -- queries -----------------------------------------------------------------------------
    def members_at(self, seq: int) -> dict[str, str]:
        """Every member's url as of ``seq``, learners included."""
        return self._membership_at(seq).urls

    def member_rows_at(self, seq: int) -> tuple[tuple[str, ...], ...]:
        """The member rows of a snapshot taken at ``seq`` (learners carry their kind)."""
        return self._membership_at(seq).rows()

    def _membership_at(self, seq: int) -> Membership:
        return fold_members(self._base_members, (e for e in self.log.entries if e.seq <= seq))

    def peers(self) -> list[str]:
        """Every other member, learners included: all of them are replicated to."""
        return [m for m in self.members if m != self.id]

    def voters(self) -> list[str]:
        """The members that count in quorums (commits, elections, check-quorum, reads)."""
        return [m for m in self.members if m not in self.learners]

    def is_voter(self, member_id: str | None = None) -> bool:
        """Whether ``member_id`` (default: this node) is a member that votes."""
        member_id = self.id if member_id is None else member_id
        return member_id in self.members and member_id not in self.learners

    def status(self) -> dict:
        """The protocol half of ``/status`` (the host adds URLs and its own details)."""
        if self.role == MASTER:
            view = {v.id: v for v in self.build_view()}
        else:
            view = {v.id: v for v in self.view}
        members = []
        for member_id in sorted(self.members):
            known = view.get(member_id)
            if member_id == self.id:
                last_seq, alive = self.log.last_seq, True
            elif known is not None:
                last_seq, alive = known.last_seq, known.alive
            else:
                last_seq, alive = None, None
            role = MASTER if member_id == self.master_id else SLAVE
            if member_id == self.id:
                role = self.role
            entry = {"id": member_id, "url": self.members[member_id], "role": role,
                     "last_seq": last_seq, "alive": alive, "voter": member_id not in self.learners}
            if member_id in self.learners:
                entry["auto_promote"] = self.learners[member_id] == LEARNER
            members.append(entry)
        answer = {
            "id": self.id,
            "role": self.role,
            "voter": self.is_voter(),
            "epoch": self.epoch,
            "master": ({"id": self.master_id, "url": self.members.get(self.master_id)}
                       if self.master_id is not None else None),
            "last_seq": self.log.last_seq,
            "last_epoch": self.log.last_epoch,
            "commit_seq": self.commit_seq,
            "snapshot_seq": self.log.snapshot_seq,
            "members": members,
            "elections_started": self.elections_started,
            "elections_won": self.elections_won,
        }
        if self.config.lease_reads:  # --lease-reads: whether a consistent read needs no round now
            answer["read_lease"] = self.read_lease_valid()
        return answer

    # -- role transitions ----------------------------------------------------------------------
    def become_slave(self, epoch: int, master_id: str | None, out: list[Effect]) -> None:
        """Follow ``master_id`` (``None``: unknown yet) in ``epoch`` (adopted if newer)."""
        was_master, newer = self.role == MASTER, epoch > self.epoch
        if epoch > self.epoch:
            self.epoch, self.voted_for = epoch, None
            out.append(PersistState(epoch, None))
        self.role = SLAVE
        self.master_id = master_id
        self.pre_voting = False
        self.votes = set()
        if master_id is not None:
            self.last_master_contact = self.now
        self.election_deadline = self.now + self.random_election_timeout()
        if was_master:
            self._abandon_pending(out)
            self._end_transfer(out, error=None if newer else "not_master")  # newer epoch: handed over
        assert self.role == SLAVE and (master_id is None or master_id != self.id)

    def heard_from_master(self, master_id: str, out: list[Effect]) -> None:
        """A valid message of the current epoch came from its master: stay (or become) its slave."""
        if self.role != SLAVE or self.master_id != master_id:
            self.become_slave(self.epoch, master_id, out)
        self.last_master_contact = self.now
        self.election_deadline = self.now + self.random_election_timeout()

    def random_election_timeout(self) -> int:
        """A timeout in [T/2, 3T/2): randomized so that candidates rarely collide."""
        base = self.config.election_ticks
        return self.config.min_election_ticks + self.rng.randrange(base)

    # -- shared helpers ------------------------------------------------------------------------
    def _fence(self, message: Message, out: list[Effect]) -> bool:
        """The epoch rule, applied before dispatch. Returns whether to handle ``message``."""
        if isinstance(message, VoteRequest):
            return True  # votes have their own epoch rules (pre-votes carry a future epoch)
        if isinstance(message, VoteReply) and message.pre_vote and message.granted:
            # A pre-vote grant comes from a voter whose epoch may be older than ours (it never
            # adopts the epoch a pre-vote proposes); it still counts towards our epoch + 1.
            return True
        if message.epoch > self.epoch:
            leader = message.sender if isinstance(message, (Append, Snapshot, TimeoutNow)) else None
            self.become_slave(message.epoch, leader, out)
            return True
        if message.epoch < self.epoch:
            if isinstance(message, (Append, Snapshot)):
                # Tell the deposed master about the newer epoch so it steps down.
                out.append(Send(message.sender, AppendReply(self.epoch, self.id, False, 0)))
            return False
        return True

    def _append_to_log(self, entries: Iterable[Entry]) -> list[Entry]:
        """Append to the in-memory log, keeping membership current. Returns the entries."""
        appended = []
        membership_changed = False
        for entry in entries:
            self.log.append(entry)
            if entry.op in MEMBERSHIP_OPS:
                membership_changed |= apply_membership(self.membership, entry)
            appended.append(entry)
        if membership_changed:
            self._members_changed()
        return appended

    def _emit_appended(self, entries: tuple[Entry, ...], out: list[Effect]) -> None:
        out.append(PersistEntries(entries))
        out.append(Apply(entries, self.commit_seq))

    def _recompute_members(self) -> None:
        self._set_membership(fold_members(self._base_members, self.log.entries))
        self._members_changed()

    def _set_membership(self, membership: Membership) -> None:
        """``members`` (id -> url, learners included) and ``learners`` (id -> kind) are the
        two halves of ``membership``, kept as attributes for the many readers of the list."""
        self.membership = membership
        self.members: dict[str, str] = membership.urls
        self.learners: dict[str, str] = membership.learners

    def _members_changed(self) -> None:
        self.drop_read_lease()  # a majority of the new list is another set of voters
        if self.role == MASTER:
            self._sync_progress(joined=True)

    def _reply_not_master(self, request_id: int) -> list[Effect]:
        return [Reply(request_id, error="not_master")]

    _HANDLERS = {}  # filled below: message type -> handler


Node._HANDLERS = {
    Append: SlaveMixin.handle_append,
    Snapshot: SlaveMixin.handle_snapshot,
    AppendReply: MasterMixin.handle_append_reply,
    VoteRequest: ElectionMixin.handle_vote_request,
    VoteReply: ElectionMixin.handle_vote_reply,
    TimeoutNow: TransferMixin.handle_timeout_now,
}
