"""A bounded feed of recent key changes, for watches (long polls, docs/watch.md).

The executor records every applied put/delete here (on the node's thread); HTTP
threads wait on the condition until a change newer than their ``after_seq`` shows up.
Only the last ``MAX_CHANGES`` changes are kept: a watcher that fell further behind gets
``None`` from :meth:`since` and must re-list (a "reset"). Rolled-back changes are removed
from the feed (a watcher may already have seen them: like an ``acks=1`` read, a watch
shows applied state, not only committed state).

Read-your-writes through a slave (:mod:`dkvs.api.handler`) must answer a forwarded write
only once this node applied it. With 1,000 clients a thread per parked answer was the
bottleneck, so :meth:`ChangeFeed.call_when_applied` parks a *callback* instead: a heap of
``(seq, n, callback)`` that ``record``/``reset`` pop when the index reaches ``seq``. One
lazy thread runs them (the applying thread holds the node lock, and a callback sends an
answer to a client), and also the ones whose deadline passed first: exactly one call per
callback, always outside the lock; callbacks must be quick and must not raise. Blocking
waiters (``wait_index``, ``wait``) are only notified when some are waiting: an applied
batch no longer wakes a crowd.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ..core.log import OP_DELETE, OP_PUT

__all__ = ["ChangeFeed", "Change", "MAX_CHANGES"]

log = logging.getLogger("dkvs.runtime")

MAX_CHANGES = 10_000

Change = tuple  # (seq, key, value or None)


class ChangeFeed:
    def __init__(self, max_changes: int = MAX_CHANGES) -> None:
        self._changes: deque[Change] = deque(maxlen=max_changes)
        self._lock = threading.RLock()  # record() takes it directly: no Condition.__enter__ call
        self._cond = threading.Condition(self._lock)
        self.index = 0  # highest applied seq seen
        self._floor = 0  # changes at or below this seq may have been dropped
        self._waiting = 0  # threads blocked in wait_index / wait: notify only if any
        self._parked: list = []  # heap of (seq, n, entry): callbacks waiting for the index
        self._deadlines: list = []  # heap of (deadline, n, entry): the same, by deadline
        self._numbers = itertools.count()
        self._timer: threading.Thread | None = None
        self._timer_wake = threading.Event()
        self._timer_due = float("inf")  # the deadline the timer thread sleeps towards
        self._due: list = []  # (callback, applied) for the timer thread to run

    def call_when_applied(self, seq: int, callback: Callable[[bool], None], timeout: float) -> None:
        """Call ``callback(True)`` once an entry at or after ``seq`` is applied, or
        ``callback(False)`` after ``timeout`` s; exactly once, never under the feed's lock
        (at once, on this thread, if ``seq`` is already applied)."""
        with self._cond:
            if self.index < seq:
                deadline = time.monotonic() + timeout
                entry = [callback]  # emptied by whoever runs it first: the index or the timer
                n = next(self._numbers)
                heapq.heappush(self._parked, (seq, n, entry))
                heapq.heappush(self._deadlines, (deadline, n, entry))
                self._arm_timer(deadline)
                return
        _run(callback, True)

    def _arm_timer(self, deadline: float) -> None:
        """With the lock held: make the timer thread wake by ``deadline``."""
        if self._timer is None:
            self._timer = threading.Thread(target=self._time_out_parked, name="dkvs-feed-timer",
                                           daemon=True)
            self._timer_due = deadline
            self._timer.start()
        elif deadline < self._timer_due:
            self._timer_due = deadline
            self._timer_wake.set()

    def _time_out_parked(self) -> None:
        """The timer thread: runs parked callbacks whose deadline passed (with False); it
        ends when nothing is parked and ``call_when_applied`` starts another when needed."""
        while True:
            with self._cond:
                due, self._due = self._due, []
                now = time.monotonic()
                deadlines = self._deadlines
                while deadlines and (deadlines[0][0] <= now or not deadlines[0][2]):
                    entry = heapq.heappop(deadlines)[2]
                    if entry:
                        due.append((entry.pop(), False))
                if not deadlines and not due:  # nothing parked: the thread ends until needed
                    self._timer = None
                    return
                self._timer_due = deadlines[0][0] if deadlines else now
                self._timer_wake.clear()
                sleep = self._timer_due - now
            for callback, applied in due:
                _run(callback, applied)
            if not due:
                self._timer_wake.wait(sleep)

    def _hand_over_applied(self) -> None:
        """With the lock held: the parked callbacks the index now covers go to the timer
        thread, which runs them (the applying thread holds the node lock: not there)."""
        parked, index, due = self._parked, self.index, self._due
        while parked and parked[0][0] <= index:
            entry = heapq.heappop(parked)[2]
            if entry:
                due.append((entry.pop(), True))
        if due:
            self._timer_wake.set()

    def _notify(self) -> None:
        if self._waiting:
            self._cond.notify_all()

    def record(self, entries, skipped: set[int]) -> None:
        """Entries just applied; ``skipped`` holds seqs that changed nothing (404/409)."""
        with self._lock:
            changes = self._changes
            for entry in entries:
                if entry.op in (OP_PUT, OP_DELETE) and entry.seq not in skipped:
                    if len(changes) == changes.maxlen:
                        self._floor = changes[0][0]
                    changes.append((entry.seq, entry.key, entry.value if entry.op == OP_PUT else None))
                if entry.seq > self.index:
                    self.index = entry.seq
            self._notify()
            if self._parked:
                self._hand_over_applied()

    def rollback(self, after_seq: int) -> None:
        with self._cond:
            while self._changes and self._changes[-1][0] > after_seq:
                self._changes.pop()
            self.index = min(self.index, after_seq)

    def reset(self, seq: int) -> None:
        """A snapshot replaced the state: older changes can no longer be listed."""
        with self._cond:
            self._changes.clear()
            self._floor = self.index = seq
            self._notify()
            if self._parked:
                self._hand_over_applied()

    def wait_index(self, seq: int, timeout: float) -> bool:
        """Block until an entry at or after ``seq`` is applied (or ``timeout``); whether it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.index < seq:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._blocked_wait(remaining)
            return True

    def _blocked_wait(self, seconds: float) -> None:
        self._waiting += 1
        try:
            self._cond.wait(seconds)
        finally:
            self._waiting -= 1

    def since(self, after_seq: int, match: Callable[[str], bool]) -> list[Change] | None:
        """Matching changes with seq > ``after_seq``; ``None`` if some may be missing."""
        with self._cond:
            if after_seq < self._floor:
                return None
            return [c for c in self._changes if c[0] > after_seq and match(c[1])]

    def wait(self, after_seq: int, match: Callable[[str], bool], timeout: float) -> list[Change] | None:
        """Block until :meth:`since` has something (or is ``None``), at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.since(after_seq, match)
                if found is None or found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._blocked_wait(remaining)


def _run(callback: Callable[[bool], None], applied: bool) -> None:
    try:
        callback(applied)
    except Exception:  # a callback's bug must not break the applying thread
        log.exception("a read-your-writes callback failed")
