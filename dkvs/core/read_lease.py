"""Lease-based consistent reads (``--lease-reads``): the classic leader lease, Raft thesis §6.4.1.

A read-index read (:mod:`dkvs.core.master`) costs one round trip to a majority. With a
lease, a master that a majority confirmed *recently enough* answers a consistent read at
once, with no message at all: no other master can exist yet.

Why no other master can exist (each rule below is one step of the argument):

* **Send tick, not answer tick.** Every read round is numbered, and the master records the
  tick its first message left (``_round_ticks``); a slave's answer echoes the round. An
  answer to round ``r`` therefore proves the slave heard this master at or after the tick
  ``t_r``: the slave heard it *no earlier* than the send. (Measuring from the answer's
  arrival would stretch the lease by the answer's time on the wire.) With lease reads on,
  every heartbeat starts a round, so the lease renews without any read traffic.
* **The voters hold their votes.** A voter that heard its master refuses real votes for
  ``min_election_ticks`` of its own clock (stickiness, :mod:`dkvs.core.election`); with
  lease reads on it does so whatever its role (a candidate, a slave that saw a newer epoch
  and forgot its master) and, since a restart forgets the last contact, for
  ``min_election_ticks`` after it starts. It starts no election of its own in that time
  either (that would be a vote for itself). Pre-votes are not votes.
* **So the lease.** When voters that make a majority with the master (it counts itself)
  have answered rounds sent at ticks ``t``, the master may answer reads alone while
  ``now < t_k + lease_ticks``, ``t_k`` being the oldest send of the most recent majority and
  ``lease_ticks = min_election_ticks - margin``. The margin covers counting in whole ticks
  (2 ticks) and clock drift (``LEASE_DRIFT_PERCENT`` of ``min_election_ticks``, rounded
  up): any majority that elects another master shares a voter with this one, and that
  voter holds its vote until after the lease ended.
* **Commit first.** A leased read is answered once ``commit_seq`` covers everything the
  master had appended when the read arrived, as the read index does; that includes the
  opening no-op of its epoch, so a new master never answers before it knows what is
  committed. A read that must wait is answered by the lease or by its read round,
  whichever comes first.

The lease is **dropped** (answers of rounds sent before do not count any more) when this
node becomes master, when the member list changes (a majority of a new list is another
set of voters), and when the host reports a clock jump (:meth:`ReadLeaseMixin.clock_jumped`:
ticks dropped after a long stall make the master's clock run slow). It is **off for the
rest of the epoch** once a leadership transfer starts: the target's vote requests are
granted despite stickiness, and a ``TimeoutNow`` still on the wire could start such an
election long after the transfer was given up. A master that is no longer master holds no
lease.

**Clock assumption** (docs/protocol.md, "Reads: the lease"): between any two nodes, tick
rates differ by less than ``LEASE_DRIFT_PERCENT`` over one election timeout, and no process
stall goes unseen by its host (a stall is either caught up tick by tick or reported as a
clock jump). Every node of the cluster must run with lease reads on.
"""

from __future__ import annotations

from .election import MASTER
from .quorum import majority

__all__ = ["ReadLeaseMixin"]


class ReadLeaseMixin:
    """The read lease of :class:`dkvs.core.node.Node` (master side; the voter side is
    :meth:`dkvs.core.election.ElectionMixin.vote_held`)."""

    def _init_read_lease(self) -> None:
        self._round_ticks: dict[int, int] = {}  # read round -> tick its first message left
        self._lease_floor_round = 0  # answers of rounds below this do not count
        self._lease_off_epoch = -1  # a transfer started in this epoch: no lease until the next

    def _round_started(self) -> None:
        """A new read round just left (``read_round``): remember when; forget rounds too old
        to give a lease."""
        ticks = self._round_ticks
        ticks[self.read_round] = self.now
        horizon = self.now - self.config.min_election_ticks
        while ticks:
            oldest = next(iter(ticks))
            if ticks[oldest] >= horizon:
                break
            del ticks[oldest]

    def read_lease_valid(self) -> bool:
        """Whether this master may answer a consistent read without a round (see above)."""
        if not self.config.lease_reads or self.role != MASTER:
            return False
        if self.transfer_target is not None or self._lease_off_epoch == self.epoch:
            return False
        voters = self.voters()
        if self.id not in voters:
            return False
        need = majority(len(voters)) - 1  # this master counts itself
        if need <= 0:
            return True  # the only voter: nobody else can be elected
        floor, ticks = self._lease_floor_round, self._round_ticks
        sent = sorted((ticks[p.acked_round] for peer, p in self.progress.items()
                       if p.acked_round >= floor and p.acked_round in ticks and peer not in self.learners),
                      reverse=True)
        return len(sent) >= need and self.now < sent[need - 1] + self.config.lease_ticks

    def drop_read_lease(self) -> None:
        """Answers of rounds sent before now no longer give a lease."""
        self._lease_floor_round = self.read_round + 1

    def end_read_lease_for_epoch(self) -> None:
        """A leadership transfer starts: no lease again in this epoch (module docstring)."""
        self._lease_off_epoch = self.epoch
        self.drop_read_lease()

    def clock_jumped(self) -> None:
        """The host dropped ticks (a stall longer than it catches up): this node's clock ran
        slow, so time measured across the jump is too short. Drop the lease."""
        self.drop_read_lease()
