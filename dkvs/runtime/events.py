"""The cluster event feed: a bounded ring of what happened to this node, for ``GET /events``.

Sources. The driver narrates every role change, election (with its reason), member added
or removed, quorum lost or regained, snapshot built, sent or installed, and rollback as a
:class:`~dkvs.driver.Note`; the executor logs each one and hands it to :meth:`record`
(its ``on_note`` hook). The host adds what the driver cannot see through :meth:`add`:
slow fsyncs and a full disk (measured around the executor's persist calls, see
:mod:`dkvs.runtime.persist_timing`). Leadership transfers have the reserved kind
``leadership_transfer`` for when the protocol gains them.

Indexes. Every event gets the next index (1, 2, ...); a reader asks for the events after
the last index it saw (``after``) and gets ``next`` to pass back. The ring keeps the last
``capacity`` events: a reader that fell further behind gets the oldest kept ones and
``dropped`` (how many it missed), never an error. Indexes restart at 1 when the process
restarts; ``started`` (the process start, wall clock) tells a reader that happened.

Thread safety: :meth:`record` and :meth:`add` are called from the node's thread and the
fsync flusher; :meth:`since` from HTTP threads, which wait on one condition.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["ClusterEvents", "Event", "EVENT_CAPACITY", "ROLE_HISTORY_CAPACITY", "MAX_EVENTS_PER_ANSWER"]

EVENT_CAPACITY = 1000
ROLE_HISTORY_CAPACITY = 50
MAX_EVENTS_PER_ANSWER = 500

Event = dict  # {"index","time","node","epoch","kind","level","text","details"}


class ClusterEvents:
    """``role_of()`` returns the node's current role; it is read after each note (on the
    node's thread) so role changes are counted and kept in a short history."""

    def __init__(self, role_of: Callable[[], str] | None = None, *, capacity: int = EVENT_CAPACITY,
                 clock: Callable[[], float] = time.time) -> None:
        self._events: deque[Event] = deque(maxlen=capacity)
        self._cond = threading.Condition()
        self._clock = clock
        self._role_of = role_of
        self.started = clock()
        self.last_index = 0
        self.role_changes = 0
        self.rollback_entries = 0
        role = role_of() if role_of is not None else None
        self._role = role
        self._roles: deque[dict] = deque(maxlen=ROLE_HISTORY_CAPACITY)
        if role is not None:
            self._roles.append({"time": self.started, "role": role, "epoch": None})

    # -- writers -------------------------------------------------------------------------------
    def record(self, note) -> None:
        """One driver :class:`~dkvs.driver.Note` (the executor's ``on_note`` hook)."""
        if note.kind == "rollback":
            self.rollback_entries += int(note.details.get("entries", 0) or 0)
        self.add(note.kind, note.level, note.text, note.node_id, note.epoch, **note.details)
        if self._role_of is not None:
            role = self._role_of()
            if role != self._role:
                with self._cond:
                    self._role = role
                    self.role_changes += 1
                    self._roles.append({"time": self._clock(), "role": role, "epoch": note.epoch})

    def add(self, kind: str, level: str, text: str, node_id: str = "", epoch: int = 0, **details) -> Event:
        """Append an event; wake every reader waiting for one."""
        with self._cond:
            self.last_index += 1
            event = {"index": self.last_index, "time": round(self._clock(), 6), "node": node_id,
                     "epoch": epoch, "kind": kind, "level": level, "text": text,
                     "details": {k: _plain(v) for k, v in details.items()}}
            self._events.append(event)
            self._cond.notify_all()
        return event

    # -- readers -------------------------------------------------------------------------------
    def since(self, after: int, wait: float = 0.0, limit: int = MAX_EVENTS_PER_ANSWER) -> dict:
        """Events with an index above ``after``, oldest first, at most ``limit``; with ``wait``
        seconds, block until there is one or the time is up (a long poll).

        ``after`` above the last index (the node restarted, its indexes began again) is
        treated as 0: the reader gets what this process has, not a silent wait."""
        deadline = time.monotonic() + max(0.0, wait)
        with self._cond:
            if after > self.last_index:
                after = 0
            while self.last_index <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            events = [e for e in self._events if e["index"] > after][:limit]
            oldest = self._events[0]["index"] if self._events else self.last_index + 1
            dropped = max(0, oldest - after - 1) if events else 0
            last = events[-1]["index"] if events else max(after, 0)
            return {"events": events, "next": last, "dropped": dropped, "started": round(self.started, 3)}

    def role_history(self) -> list[dict]:
        """The last role changes of this node: ``[{"time", "role", "epoch"}]``, oldest first."""
        with self._cond:
            return list(self._roles)


def _plain(value):
    """Details go out as JSON: keep plain values, stringify the rest."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)
