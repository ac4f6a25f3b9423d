"""A bounded feed of recent key changes, for watches (long polls, docs/watch.md).

The executor records every applied put/delete here (on the node's thread); HTTP
threads wait on the condition until a change newer than their ``after_seq`` shows up.
Only the last ``MAX_CHANGES`` changes are kept: a watcher that fell further behind gets
``None`` from :meth:`since` and must re-list (a "reset"). Rolled-back changes are removed
from the feed (a watcher may already have seen them: like an ``acks=1`` read, a watch
shows applied state, not only committed state).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ..core.log import OP_DELETE, OP_PUT

__all__ = ["ChangeFeed", "Change", "MAX_CHANGES"]

MAX_CHANGES = 10_000

Change = tuple  # (seq, key, value or None)


class ChangeFeed:
    def __init__(self, max_changes: int = MAX_CHANGES) -> None:
        self._changes: deque[Change] = deque(maxlen=max_changes)
        self._cond = threading.Condition()
        self.index = 0  # highest applied seq seen
        self._floor = 0  # changes at or below this seq may have been dropped

    def record(self, entries, skipped: set[int]) -> None:
        """Entries just applied; ``skipped`` holds seqs that changed nothing (404/409)."""
        with self._cond:
            changes = self._changes
            for entry in entries:
                if entry.op in (OP_PUT, OP_DELETE) and entry.seq not in skipped:
                    if len(changes) == changes.maxlen:
                        self._floor = changes[0][0]
                    changes.append((entry.seq, entry.key, entry.value if entry.op == OP_PUT else None))
                if entry.seq > self.index:
                    self.index = entry.seq
            self._cond.notify_all()

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
            self._cond.notify_all()

    def wait_index(self, seq: int, timeout: float) -> bool:
        """Block until an entry at or after ``seq`` is applied (or ``timeout``); whether it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.index < seq:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

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
                self._cond.wait(remaining)
