"""Elections: bully by freshness, decided by a majority, fenced by epochs.

Rules this module implements (DESIGN §3):

* A slave that has not heard its master for a random timeout in [T/2, 3T/2) becomes a
  candidate and first runs a **pre-vote**: it asks for votes for ``epoch + 1`` without
  changing anyone's epoch. A voter grants a pre-vote only if it, too, has lost the master
  (no message within T/2) and the candidate's log is at least as fresh as its own. So a
  node that is merely cut off cannot depose a healthy master.
* **Bully by rank.** Rank is ``(last_epoch, last_seq, node_id)``. A voter that outranks
  the candidate refuses with ``fresher`` and starts its own pre-vote; the candidate
  defers. The most up-to-date live node wins, and the id breaks ties.
* After a majority of pre-votes the candidate increments its epoch, votes for itself
  (persisted before any request leaves) and asks for real votes. A voter grants at most
  one vote per epoch (persisted), only to a candidate whose ``(last_epoch, last_seq)`` is at
  least its own, and ignores vote requests while it still hears a live master. A majority
  of votes makes the candidate master; an entry held by a majority is therefore in the log
  of every future master.
* **Lease reads** (``CoreConfig.lease_reads``, :mod:`dkvs.core.read_lease`): a master's
  lease rests on its voters holding their votes, so with lease reads on a node grants no
  real vote and starts no election of its own within ``min_election_ticks`` of its last
  contact with a master *whatever its role*, nor within ``min_election_ticks`` of its own
  start (a restart forgets the last contact; nothing new is persisted for it). Only a
  ``transfer`` request passes (its master handed over, and gave up its lease first).
* **Voters only** (:mod:`dkvs.core.membership`): "a majority" is of the voters in the
  candidate's own log. A learner never campaigns and never claims to be fresher; it does
  answer vote requests (a candidate whose log holds its promotion counts it), but a
  candidate counts no vote of a member that is a learner in its log.
"""

from __future__ import annotations

from .effects import Effect, PersistState, Send
from .messages import VoteReply, VoteRequest
from .quorum import majority

__all__ = ["ElectionMixin", "MASTER", "SLAVE", "CANDIDATE"]

MASTER, SLAVE, CANDIDATE = "master", "slave", "candidate"


class ElectionMixin:
    """Candidate and voter behaviour of :class:`dkvs.core.node.Node`."""

    def _init_election_state(self) -> None:
        self.pre_voting = False
        self.votes: set[str] = set()

    # -- timers ----------------------------------------------------------------------------
    def _tick_election(self, out: list[Effect]) -> None:
        if self.now < self.election_deadline:
            return
        if not self.is_voter():
            # Not (yet) a member, or a learner: it waits for the master to reach it and
            # never campaigns (a learner counts in no quorum, its own vote included).
            self.election_deadline = self.now + self.random_election_timeout()
            return
        self._start_pre_vote(out)

    def hears_master(self) -> bool:
        """True while this node is, or recently heard, a live master (vote stickiness)."""
        if self.role == MASTER:
            return True
        return (self.role == SLAVE and self.master_id is not None
                and self.last_master_contact is not None
                and self.now - self.last_master_contact < self.config.min_election_ticks)

    def vote_held(self) -> bool:
        """Lease reads only: True within ``min_election_ticks`` of the last contact with a
        master or of this node's start, whatever the role (:mod:`dkvs.core.read_lease`)."""
        if not self.config.lease_reads:
            return False
        if self.last_master_contact is None:  # since the start: a restart forgot the last contact
            return self.now < self.config.min_election_ticks
        return self.now - self.last_master_contact < self.config.min_election_ticks

    def rank(self) -> tuple[int, int, str]:
        return (self.log.last_epoch, self.log.last_seq, self.id)

    # -- campaigning -------------------------------------------------------------------------
    def _start_pre_vote(self, out: list[Effect]) -> None:
        # ``master_id`` stays: until a new epoch starts, the last master may well be alive
        # (this node may only have missed heartbeats under load), so writes keep being
        # forwarded to it; ``hears_master()`` is false all the same (we are no slave now).
        self.role = CANDIDATE
        self.pre_voting = True
        self.votes = {self.id}
        self.election_deadline = self.now + self.random_election_timeout()
        request = VoteRequest(self.epoch + 1, self.id, self.log.last_seq, self.log.last_epoch, pre_vote=True)
        for peer in self.peers():
            out.append(Send(peer, request))
        self._maybe_win(out)

    def _start_election(self, out: list[Effect], transfer: bool = False) -> None:
        if not self.is_voter():  # a learner asked to take over (TimeoutNow): it cannot
            self.become_slave(self.epoch, self.master_id, out)
            return
        self.pre_voting = False
        self.master_id = None  # a new epoch: the last master is no longer ours
        self.epoch += 1
        self.voted_for = self.id
        self.elections_started += 1
        out.append(PersistState(self.epoch, self.id))
        self.votes = {self.id}
        self.election_deadline = self.now + self.random_election_timeout()
        request = VoteRequest(self.epoch, self.id, self.log.last_seq, self.log.last_epoch, transfer=transfer)
        for peer in self.peers():
            out.append(Send(peer, request))
        self._maybe_win(out)

    def _maybe_win(self, out: list[Effect]) -> bool:
        """Move to the next stage when a majority of current voters agreed (a learner may
        grant a vote — it may be a voter in our log already — but only voters count)."""
        granted = sum(1 for member in self.votes if self.is_voter(member))
        if granted < majority(len(self.voters())):
            return False
        if self.pre_voting:
            if self.vote_held():  # our own vote is held too: retry at the next timeout
                return False
            self._start_election(out)
        else:
            self.become_master(out)
        return True

    def _defer(self, out: list[Effect]) -> None:
        """Bully rule: a fresher node is campaigning; wait a full timeout for it. Same epoch,
        so the last master stays known (for forwarding) without counting as heard."""
        last_master = self.master_id
        self.become_slave(self.epoch, None, out)
        self.master_id = last_master

    # -- voting ------------------------------------------------------------------------------
    def handle_vote_request(self, msg: VoteRequest, out: list[Effect]) -> None:
        # Log freshness alone decides, never the voter's member list: that list may be stale
        # (a new member it has not heard of yet, or a joiner that knows no members at all).
        # A removed node cannot win anyway: a majority of the new member list holds the
        # entry that removed it, so its log is behind theirs; and while a master is alive,
        # pre-vote keeps it from disturbing anyone.
        up_to_date = (msg.last_epoch, msg.last_seq) >= (self.log.last_epoch, self.log.last_seq)
        if msg.pre_vote:
            self._answer_pre_vote(msg, up_to_date, out)
            return
        # A candidate the master handed leadership to is granted despite stickiness: that
        # guard is for liveness only; the epoch and freshness rules below keep it safe
        # (dkvs.core.transfer).
        if self.hears_master() and not msg.transfer:
            out.append(Send(msg.sender, VoteReply(self.epoch, self.id, False)))
            return
        if not msg.transfer and self.vote_held():  # a master may hold a read lease on our vote
            out.append(Send(msg.sender, VoteReply(self.epoch, self.id, False)))
            return
        if msg.epoch > self.epoch:
            self.become_slave(msg.epoch, None, out)
        grant = (msg.epoch == self.epoch and up_to_date
                 and self.voted_for in (None, msg.sender) and self.role != MASTER)
        if grant and self.voted_for is None:
            self.voted_for = msg.sender
            out.append(PersistState(self.epoch, msg.sender))
        if grant:
            self.election_deadline = self.now + self.random_election_timeout()
        out.append(Send(msg.sender, VoteReply(self.epoch, self.id, grant)))

    def _answer_pre_vote(self, msg: VoteRequest, eligible: bool, out: list[Effect]) -> None:
        lost_master = not self.hears_master()
        fresher = (lost_master and self.is_voter()
                   and self.rank() > (msg.last_epoch, msg.last_seq, msg.sender))
        grant = eligible and lost_master and msg.epoch > self.epoch and not fresher
        out.append(Send(msg.sender, VoteReply(self.epoch, self.id, grant, pre_vote=True, fresher=fresher)))
        if fresher and not (self.role == CANDIDATE and self.pre_voting):
            self._start_pre_vote(out)

    def handle_vote_reply(self, msg: VoteReply, out: list[Effect]) -> None:
        if self.role != CANDIDATE or msg.pre_vote != self.pre_voting:
            return
        if msg.granted and (msg.pre_vote or msg.epoch == self.epoch):
            self.votes.add(msg.sender)
            self._maybe_win(out)
        elif msg.pre_vote and msg.fresher:
            self._defer(out)
