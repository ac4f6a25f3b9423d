"""The per-peer in-flight table: which request to each peer is on the wire.

The core keeps at most one batch outstanding per slave and resends a batch it considers
lost after ``append_timeout`` ticks. The transport, though, may still be waiting for the
first request (a slow or paused peer): a resend then queued behind it, and its late answer
looked like the answer to the resend. Here every outgoing message gets a ``send_id``; a
replication message to a peer whose previous one is still on the wire (and younger than
the transport's own request timeout) is not sent again — to the core that is a lost
message, which it already tolerates — and an answer to a request that is no longer the
peer's current one is recognised as stale and dropped.
"""

from __future__ import annotations

__all__ = ["InFlight"]


class InFlight:
    def __init__(self, expiry_ticks: int) -> None:
        self.expiry_ticks = expiry_ticks
        self._next_id = 0
        self._current: dict[str, tuple[int, int]] = {}  # peer -> (send_id, tick sent)
        self._tracked: set[int] = set()  # replication requests not yet completed
        self.suppressed = 0  # resends not sent because the previous request was still out
        self.stale = 0  # answers dropped because they answered an abandoned request

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def busy(self, peer: str, now: int) -> bool:
        """Is a tracked request to ``peer`` still on the wire (and not yet expired)?"""
        current = self._current.get(peer)
        return current is not None and now - current[1] < self.expiry_ticks

    def sent(self, peer: str, send_id: int, now: int) -> None:
        """A replication request left; it is the peer's current one."""
        self._current[peer] = (send_id, now)
        self._tracked.add(send_id)

    def completed(self, peer: str, send_id: int) -> bool:
        """The request ``send_id`` to ``peer`` ended (answered or failed). Returns whether its
        answer counts: untracked requests (votes) always count; a replication request only
        while it is still the peer's current one (a newer one replaced it after expiry)."""
        if send_id not in self._tracked:
            return True
        self._tracked.discard(send_id)
        current = self._current.get(peer)
        if current is not None and current[0] == send_id:
            del self._current[peer]
            return True
        self.stale += 1
        return False

    def reset(self) -> None:
        """A role change: no request on the wire is current any more (ids keep counting)."""
        self._current.clear()
        self._tracked.clear()
