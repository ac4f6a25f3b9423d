"""Shrinking a non-linearizable key history to a few operations a person can read.

A counterexample is a set ``S`` of completed operations of one key. It is judged by a
*relaxed* history: the operations in ``S`` exactly as recorded, every other write of the
key turned into an info write (it may have taken effect at any time after its invoke, or
never), every other read left out. Relaxing only removes constraints, so:

* if the relaxed history of ``S`` is not linearizable, neither is the real one: ``S``
  is a sound witness, and no write outside ``S`` could explain it away;
* the test is monotone: a superset of a failing ``S`` fails too.

Monotonicity makes cheap reductions valid: a binary search for the shortest prefix (by
completion time) that still fails, then for the latest start (by invocation time), then
a delta-debugging pass that removes chunks of halving size down to single operations.
After the single-operation pass no operation can be dropped, and by monotonicity no
smaller subset fails either: the result is minimal. Each test is a budgeted search; a
test that runs out of budget counts as "passes", which keeps the result sound but maybe
not minimal, and ``MAX_SHRINK_TESTS`` bounds the whole effort.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .history import Operation
from .model import is_write
from .search import search_register

__all__ = ["MAX_SHRINK_TESTS", "SHRINK_BUDGET_STATES", "shrink_counterexample"]

MAX_SHRINK_TESTS = 400
SHRINK_BUDGET_STATES = 50_000


def shrink_counterexample(operations: Sequence[Operation], budget_states: int = SHRINK_BUDGET_STATES,
                          max_tests: int = MAX_SHRINK_TESTS) -> tuple[Operation, ...]:
    """A small subset of ``operations`` (one key, known not linearizable) that still
    cannot be ordered, sorted by invocation time."""
    shrinker = _Shrinker(operations, budget_states, max_tests)
    by_completion = sorted(shrinker.completed, key=lambda op: op.complete_time)
    suspects = by_completion[:shrinker.shortest_failing_prefix(by_completion)]
    by_invocation = sorted(suspects, key=lambda op: op.invoke_time)
    suspects = by_invocation[shrinker.latest_failing_start(by_invocation):]
    suspects = shrinker.remove_chunks(suspects)
    return tuple(sorted(suspects, key=lambda op: (op.invoke_time, op.process)))


class _Shrinker:
    """Holds the key's operations and counts the tests spent."""

    def __init__(self, operations: Sequence[Operation], budget_states: int, max_tests: int) -> None:
        self.completed = [op for op in operations if not op.is_info]
        self.writes = [op for op in operations if is_write(op)]
        self.budget_states = budget_states
        self.tests_left = max_tests

    def fails(self, subset: Sequence[Operation]) -> bool:
        """Whether the relaxed history of ``subset`` is certainly not linearizable.
        Once the test allowance is spent, every answer is "no" (keep what we have)."""
        if self.tests_left <= 0 or not subset:
            return False
        self.tests_left -= 1
        chosen = {id(op) for op in subset}
        relaxed = list(subset)
        relaxed.extend(_as_unknown(op) for op in self.writes if id(op) not in chosen)
        return search_register(relaxed, self.budget_states).linearizable is False

    def shortest_failing_prefix(self, ordered: list[Operation]) -> int:
        low, high = 1, len(ordered)  # the whole list is known to fail
        while low < high:
            middle = (low + high) // 2
            if self.fails(ordered[:middle]):
                high = middle
            else:
                low = middle + 1
        return high

    def latest_failing_start(self, ordered: list[Operation]) -> int:
        low, high = 0, len(ordered) - 1  # starting at 0 is known to fail
        while low < high:
            middle = (low + high + 1) // 2
            if self.fails(ordered[middle:]):
                low = middle
            else:
                high = middle - 1
        return low

    def remove_chunks(self, suspects: list[Operation]) -> list[Operation]:
        chunk = max(1, len(suspects) // 2)
        while True:
            start = 0
            while start < len(suspects) and self.tests_left > 0:
                candidate = suspects[:start] + suspects[start + chunk:]
                if self.fails(candidate):
                    suspects = candidate
                else:
                    start += chunk
            if chunk == 1 or self.tests_left <= 0:
                return suspects
            chunk //= 2


def _as_unknown(op: Operation) -> Operation:
    if op.is_info:
        return op
    return dataclasses.replace(op, complete_time=None, found=None)
