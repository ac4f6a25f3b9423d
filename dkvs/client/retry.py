"""Bounded exponential backoff inside a total time budget.

One :class:`RetryBudget` lives for one client operation. Delays grow from
:data:`BACKOFF_INITIAL_SECONDS`, doubling up to :data:`BACKOFF_MAX_SECONDS`, each scaled by a
random factor in [0.5, 1] so that many clients do not retry in step. A node's
``Retry-After`` raises the next delay to at least that much. The budget never sleeps past
its deadline: when the next attempt would start after it, :meth:`next_delay` returns None
and the caller raises the last error. So an operation ends at most ``total_seconds`` plus
the length of one attempt after it began.

The clock and the random source are injected, so the arithmetic is tested without sleeping.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

__all__ = ["RetryBudget", "BACKOFF_INITIAL_SECONDS", "BACKOFF_MAX_SECONDS"]

BACKOFF_INITIAL_SECONDS = 0.025
BACKOFF_MAX_SECONDS = 1.0


class RetryBudget:
    """Delays between the attempts of one operation; see the module docstring."""

    def __init__(self, total_seconds: float, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 initial_seconds: float = BACKOFF_INITIAL_SECONDS,
                 max_seconds: float = BACKOFF_MAX_SECONDS) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self.deadline = clock() + max(0.0, total_seconds)
        self._next = initial_seconds
        self._max = max_seconds

    def next_delay(self, at_least_seconds: float = 0.0) -> float | None:
        """Seconds to wait before the next attempt, or None if the budget is spent."""
        delay = max(self._next * self._rng.uniform(0.5, 1.0), at_least_seconds)
        self._next = min(self._next * 2, self._max)
        if self._clock() + delay > self.deadline:
            return None
        return delay

    def remaining(self) -> float:
        return max(0.0, self.deadline - self._clock())
