"""The per-peer in-flight table: which replication requests to each peer are on the wire.

The core resends a batch it considers lost after ``append_timeout`` ticks. The transport,
though, may still be carrying the first request (a slow or paused peer): a resend queued
behind it, and its late answer looked like the answer to the resend. Here every outgoing
message gets a ``send_id``, and per peer at most ``window`` replication requests are
tracked as on the wire:

* a replication message to a peer whose window is full (of requests younger than
  ``expiry_ticks``) is not sent — to the core that is a lost message, which it already
  tolerates; an expired request makes room, and from then on is *abandoned*;
* answers are cumulative: the transport delivers a peer's answers in send order (one
  connection, or one stream, which may hand several answers over at once under the last
  id), so the answer to request N also ends every earlier request in the peer's window;
* an answer to an abandoned request is stale and dropped.

None of this is a safety rule: the core takes any answer, late or duplicated, safely (an
acknowledgement only ever raises what it knows a slave holds, to what that slave said it
persisted). It keeps resends from piling up behind a slow peer.

``window`` is 1 unless the host asks for more. The host gives it the core's
``CoreConfig.max_inflight_batches`` (``--replication-window``): a pipelining core keeps
up to that many batches outstanding per slave, and each must reach the wire, or the
core would wait for it to time out. The simulator runs windows of 1 and 4.
"""

from __future__ import annotations

__all__ = ["InFlight", "DEFAULT_WINDOW"]

DEFAULT_WINDOW = 1


class InFlight:
    def __init__(self, expiry_ticks: int, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError("the in-flight window holds at least one request")
        self.expiry_ticks = expiry_ticks
        self.window = window
        self._next_id = 0
        self._current: dict[str, dict[int, int]] = {}  # peer -> {send_id: tick sent}, oldest first
        self._tracked: set[int] = set()  # replication requests not yet completed
        self.suppressed = 0  # sends not made because the peer's window was full
        self.stale = 0  # answers dropped because they answered an abandoned request

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def busy(self, peer: str, now: int) -> bool:
        """Is ``peer``'s window full of requests still on the wire (and not yet expired)?
        Expired requests are abandoned here, to make room."""
        out = self._current.get(peer)
        if not out or len(out) < self.window:
            return False
        for send_id, tick in list(out.items()):
            if now - tick >= self.expiry_ticks:
                del out[send_id]  # still tracked: its late answer is recognised as stale
        return len(out) >= self.window

    def sent(self, peer: str, send_id: int, now: int) -> None:
        """A replication request left; it joins the peer's window."""
        self._current.setdefault(peer, {})[send_id] = now
        self._tracked.add(send_id)

    def outstanding(self, peer: str) -> int:
        return len(self._current.get(peer, ()))

    def completed(self, peer: str, send_id: int) -> bool:
        """The request ``send_id`` to ``peer`` ended (answered or failed). Returns whether its
        answer counts: untracked requests (votes) always count; a replication request only
        while it is in the peer's window, and then it ends every earlier one too."""
        if send_id not in self._tracked:
            return True
        self._tracked.discard(send_id)
        out = self._current.get(peer)
        if out is not None and send_id in out:
            for earlier in list(out):
                del out[earlier]
                self._tracked.discard(earlier)
                if earlier == send_id:
                    break
            return True
        self.stale += 1
        return False

    def reset(self) -> None:
        """A role change: no request on the wire is current any more (ids keep counting)."""
        self._current.clear()
        self._tracked.clear()
