"""Shrinking a non-linearizable key history to a few operations a person can read.

A counterexample is a set ``S`` of completed operations of one key. It is judged by a
*relaxed* history: the operations in ``S`` exactly as recorded, every other write of the
key turned into an info write (it may have taken effect at any time after its invoke, or
never), every other read left out. Relaxing only removes constraints, so:

* if the relaxed history of ``S`` is not linearizable, neither is the real one: ``S`` is a
  sound witness, and no write outside ``S`` could explain it away;
* the test is monotone: a superset of a failing ``S`` fails too.

Monotonicity makes cheap reductions valid: a binary search for the shortest prefix (by
completion time) that still fails, then for the latest start (by invocation time), then a
delta-debugging pass that removes chunks of halving size down to single operations.
After the single-operation pass no operation can be dropped, and by monotonicity no
smaller subset fails either: the result is minimal.

The effort is bounded, so a huge key cannot stall the report: each test is a budgeted
search, and all tests together may spend ``SHRINK_EFFORT`` units (one per operation handed
to a search plus one per search state). A test that runs out of budget, or any test once
the effort is spent, counts as "does not fail": the result stays sound but may then be
only near-minimal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from .history import Operation
from .model import is_write
from .search import SearchOutcome, search_register

Search = Callable[[Sequence[Operation], int], SearchOutcome]

__all__ = ["SHRINK_BUDGET_STATES", "SHRINK_EFFORT", "shrink_counterexample"]

SHRINK_BUDGET_STATES = 50_000  # per test
SHRINK_EFFORT = 3_000_000  # operations + states over all tests; ~10 s of work at worst


def shrink_counterexample(operations: Sequence[Operation], budget_states: int = SHRINK_BUDGET_STATES,
                          effort: int = SHRINK_EFFORT, search: Search = search_register,
                          writes: Callable[[Operation], bool] = is_write) -> tuple[Operation, ...]:
    """A small subset of ``operations`` (one key or group, known not linearizable) that
    still cannot be ordered, sorted by invocation time. ``search`` decides a relaxed
    history; ``writes`` says which operations may change state (the others are reads,
    left out of a relaxed history)."""
    shrinker = _Shrinker(operations, budget_states, effort, search, writes)
    by_completion = sorted(shrinker.completed, key=lambda op: op.complete_time)
    suspects = by_completion[:shrinker.shortest_failing_prefix(by_completion)]
    by_invocation = sorted(suspects, key=lambda op: op.invoke_time)
    suspects = by_invocation[shrinker.latest_failing_start(by_invocation):]
    suspects = shrinker.remove_chunks(suspects)
    return tuple(sorted(suspects, key=lambda op: (op.invoke_time, op.process)))


class _Shrinker:
    """The key's operations, their relaxed writes, and the effort left."""

    def __init__(self, operations: Sequence[Operation], budget_states: int, effort: int,
                 search: Search, writes: Callable[[Operation], bool]) -> None:
        self.search = search
        self.completed = [op for op in operations if not op.is_info]
        self.relaxed_writes = [(id(op), _as_unknown(op)) for op in operations if writes(op)]
        self.budget_states = budget_states
        self.effort_left = effort

    def fails(self, subset: Sequence[Operation]) -> bool:
        """Whether the relaxed history of ``subset`` is certainly not linearizable."""
        if self.effort_left <= 0 or not subset:
            return False
        chosen = {id(op) for op in subset}
        # A write invoked after every chosen operation completed can only be ordered after
        # all of them, so it cannot matter.
        horizon = max(op.complete_time for op in subset)
        relaxed = list(subset)
        relaxed.extend(unknown for identity, unknown in self.relaxed_writes
                       if identity not in chosen and unknown.invoke_time <= horizon)
        outcome = self.search(relaxed, min(self.budget_states, self.effort_left))
        self.effort_left -= len(relaxed) + outcome.states
        return outcome.linearizable is False

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
        """Delta debugging's complement step: drop chunks of halving size while it fails."""
        chunk = max(1, len(suspects) // 2)
        while self.effort_left > 0:
            start = 0
            while start < len(suspects) and self.effort_left > 0:
                candidate = suspects[:start] + suspects[start + chunk:]
                if self.fails(candidate):
                    suspects = candidate
                else:
                    start += chunk
            if chunk == 1:
                break
            chunk //= 2
        return suspects


def _as_unknown(op: Operation) -> Operation:
    if op.is_info:
        return op
    # Dropping a conditional write's condition too only relaxes more (it may then apply in
    # more states), and makes it a blind write, which the group search handles cheaply.
    return dataclasses.replace(op, complete_time=None, found=None, succeeded=None, results=None, seq=None,
                               if_seq=None)
