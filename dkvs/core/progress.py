"""What a master knows about one slave's copy of the log.

Invariant: ``match_seq < next_seq``; ``match_seq`` only grows within an epoch (it is the
highest seq the slave confirmed to hold, equal to the master's entry). ``next_seq`` is
where the next batch starts; it moves back while searching a fork point.
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
    in_flight_since: int | None = None  # tick the outstanding request left; None = idle
    resend_from: int = 0  # next_seq to go back to if the outstanding request is lost
    snapshot: bool = False  # the outstanding request is a snapshot
    view_sent_tick: int = -(10**9)
    retry_tick: int = 0  # after a failed send: no new request before this tick (backoff)
    caught_up_beats: int = 0  # a learner: consecutive heartbeats it was caught up (promotion)

    def idle(self, now: int, timeout: int) -> bool:
        """True when a new request may be sent (none outstanding, or it timed out)."""
        if now < self.retry_tick:
            return False
        if self.in_flight_since is None:
            return True
        if now - self.in_flight_since >= timeout:
            self.lost()
            return True
        return False

    def sent(self, now: int, next_seq: int, snapshot: bool = False) -> None:
        self.resend_from = self.next_seq
        self.next_seq = next_seq
        self.in_flight_since = now
        self.snapshot = snapshot

    def lost(self) -> None:
        """The outstanding request is presumed lost: resend from where it started."""
        if self.in_flight_since is not None:
            self.next_seq = max(self.match_seq + 1, self.resend_from)
        self.in_flight_since = None
        self.snapshot = False

    def confirmed(self, match_seq: int) -> None:
        self.match_seq = max(self.match_seq, match_seq)
        self.next_seq = max(self.next_seq, self.match_seq + 1)
        self.in_flight_since = None
        self.snapshot = False
