"""What a master knows about one slave's copy of the log, and what is on the wire to it.

Invariant: ``match_seq < next_seq``; ``match_seq`` only grows within an epoch (it is the
highest seq the slave confirmed to hold, equal to the master's entry). ``next_seq`` is
where the next batch starts; it moves back while searching a fork point.

**Pipelining** (Raft's optimistic ``next`` / etcd's ``Inflights``): up to ``window``
requests may be outstanding to one slave. Each batch advances ``next_seq`` past its
entries at once, so the next one continues it without waiting for an answer. Only
``match_seq``, raised by successful answers, ever counts towards a commit: ``next_seq`` is
a guess. The window is used only while the slave is known to follow (*replicating*):

* after a refusal or a loss, at an election (``next_seq`` starts optimistic) and around a
  snapshot, the progress *probes*: one request at a time, until a success says where the slave is;
* a refusal or a lost request drops everything in flight and resends from
  ``match_seq + 1`` (or the fork-point search's guess): later batches of the old window
  would be refused anyway, since the slave accepts only batches that continue its log;
* while probing, a refusal of any batch but the probe itself is stale (it answers a batch
  of the dropped window) and is ignored, so one lost batch costs one resend, not ``window``.

With ``window == 1`` this is exactly one request in flight, answered before the next.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Progress"]


@dataclass
class Progress:
    next_seq: int
    match_seq: int = 0
    last_heard_tick: int = 0
    acked_round: int = 0
    in_flight: int = 0  # requests outstanding (each answered at most once, in order)
    in_flight_since: int | None = None  # tick of the first send or last answer; None = idle
    resend_from: int = 0  # next_seq to go back to if the outstanding requests are lost
    probing: bool = True  # one request at a time until a success (see the module docstring)
    snapshot: bool = False  # the outstanding request is a snapshot
    view_sent_tick: int = -(10**9)
    round_sent: int = 0  # the read round of the last request sent
    retry_tick: int = 0  # after a failed send: no new request before this tick (backoff)
    caught_up_beats: int = 0  # a learner: consecutive heartbeats it was caught up (promotion)

    def idle(self, now: int, timeout: int, window: int = 1) -> bool:
        """True when a new request may be sent: none outstanding, the outstanding ones
        timed out (then they count as lost), or a replicating slave's window has room."""
        if now < self.retry_tick:
            return False
        if self.in_flight_since is None:
            return True
        if now - self.in_flight_since >= timeout:
            self.lost()
            return True
        return self.in_flight < window and not (self.probing or self.snapshot)

    def sent(self, now: int, next_seq: int, snapshot: bool = False) -> None:
        if self.in_flight == 0:
            self.resend_from = self.next_seq
            self.in_flight_since = now
        self.in_flight += 1
        self.next_seq = next_seq
        self.snapshot = snapshot
        if snapshot:
            self.probing = True  # after it, the tail starts with one batch at a time

    def lost(self) -> None:
        """The outstanding requests are presumed lost: resend from where they started, one
        at a time until the slave answers again (it may be down, or behind)."""
        if self.in_flight_since is not None:
            self.next_seq = max(self.match_seq + 1, self.resend_from)
        self._drop_in_flight()
        self.probing = True

    def confirmed(self, match_seq: int, now: int = 0) -> None:
        """A success: the slave holds the master's log up to ``match_seq``."""
        self.match_seq = max(self.match_seq, match_seq)
        self.next_seq = max(self.next_seq, self.match_seq + 1)
        if self.in_flight > 1:
            self.in_flight -= 1
            self.in_flight_since = now  # progress: the rest get a fresh timeout
            self.resend_from = self.match_seq + 1
        else:
            self._drop_in_flight()
        self.probing = False

    def refused(self, refused_prev: int, next_seq: int) -> bool:
        """A refusal of the batch after ``refused_prev``: drop the window and continue the
        search at ``next_seq``. Returns False (and changes nothing) for a stale refusal."""
        if self.probing and self.in_flight and refused_prev != self.resend_from - 1:
            return False
        self.next_seq = next_seq
        self._drop_in_flight()
        self.probing = True
        return True

    def _drop_in_flight(self) -> None:
        self.in_flight = 0
        self.in_flight_since = None
        self.snapshot = False
