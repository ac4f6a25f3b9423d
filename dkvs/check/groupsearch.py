"""The witness search for a group of keys (compare-and-set, transactions).

The same Wing & Gong search with Lowe's memoization and just-in-time candidates as
:mod:`dkvs.check.search`, over :class:`~dkvs.check.multikey.ModelOp` steps whose state is a
tuple of values. A node is ``(low, window, unknown, state)``, encoded as there.

Only the reductions that hold for *any* deterministic step are kept, because a
conditional write or a transaction's result depends on the state it meets:

* Observers first: a candidate that is legal now and never changes a state it is legal
  in (a get, a 409, a found=false delete, a txn whose branch only reads) is linearized at
  once; moved to the front of any witness it stays legal and changes nothing.
* Info writes only when observable: :func:`~dkvs.check.multikey.compile_group` has already
  left out info writes whose effect no completed operation could see.
* Order: completed writes by earliest deadline, then info writes (latest invoked first).
  A depth-first search backtracks from the deepest node first, so an info write a later
  read needs is tried right before that read, where it most likely took effect.

The search is exponential in the worst case, like any linearizability check; ``budget``
bounds the states kept, and running out is an honest "unknown".
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from .model import INVALID
from .multikey import ModelOp
from .search import SearchOutcome

__all__ = ["search_group"]

INFINITY = float("inf")


def _normalize(low: int, window: int) -> tuple[int, int]:
    if window & 1:
        run = (~window & (window + 1)).bit_length() - 1
        return low + run, window >> run
    return low, window


def search_group(completed: Sequence[ModelOp], unknown: Sequence[ModelOp], initial: tuple,
                 budget_states: int) -> SearchOutcome:
    """Whether some order of ``completed`` (all) and ``unknown`` (any subset, each at most
    once, none before its invoke) respects real time and every step."""
    return _GroupSearch(completed, unknown).run(initial, budget_states)


class _GroupSearch:
    def __init__(self, completed: Sequence[ModelOp], unknown: Sequence[ModelOp]) -> None:
        completed = sorted(completed, key=lambda op: (op.invoke, op.deadline))
        self.unknown = sorted(unknown, key=lambda op: op.invoke)
        self.count = len(completed)
        self.invoke = [op.invoke for op in completed]
        self.deadline = [op.deadline for op in completed]
        self.step = [op.step for op in completed]
        self.observing = [op.observing for op in completed]
        self.unknown_invoke = [op.invoke for op in self.unknown]

    def run(self, initial: tuple, budget_states: int) -> SearchOutcome:
        root, choices = self.expand((0, 0, 0, initial))
        if choices is None:
            return SearchOutcome(True, 1)
        visited = {root}
        stack = [[root, choices, 0]]
        while stack:
            frame = stack[-1]
            node, choices, tried = frame
            if tried == len(choices):
                stack.pop()
                continue
            frame[2] = tried + 1
            number, new_state = choices[tried]
            child = self.linearize(node, number, new_state)
            if child in visited:
                continue
            visited.add(child)
            closed, child_choices = self.expand(child)
            if child_choices is None:
                return SearchOutcome(True, len(visited))
            if closed != child:
                if closed in visited:
                    continue
                visited.add(closed)
            if len(visited) > budget_states:
                return SearchOutcome(None, len(visited))
            stack.append([closed, child_choices, 0])
        return SearchOutcome(False, len(visited))

    def linearize(self, node: tuple, number: int, new_state: tuple) -> tuple:
        low, window, unknown, _ = node
        if number < self.count:
            low, window = _normalize(low, window | (1 << (number - low)))
        else:
            unknown |= 1 << (number - self.count)
        return (low, window, unknown, new_state)

    def expand(self, node: tuple) -> tuple[tuple, list | None]:
        """Linearize every legal observing candidate, then list the writes to branch on as
        ``(number, new_state)``, best first; ``None``: every completed op is linearized."""
        low, window, unknown, state = node
        count, invoke, deadline, step, observing = self.count, self.invoke, self.deadline, self.step, self.observing
        while True:
            earliest = INFINITY
            legal_reads, writes = [], []
            bits, number = window, low
            while number < count and invoke[number] <= earliest:
                if not bits & 1:
                    if deadline[number] < earliest:
                        earliest = deadline[number]
                    if not observing[number]:
                        writes.append(number)
                    elif step[number](state) is not INVALID:
                        legal_reads.append(number)
                bits >>= 1
                number += 1
            if not legal_reads:
                break
            for number in legal_reads:
                window |= 1 << (number - low)
            low, window = _normalize(low, window)
        node = (low, window, unknown, state)
        if low == count:
            return node, None
        ranked = []
        for number in writes:
            new_state = step[number](state)
            if new_state is not INVALID:
                ranked.append((deadline[number], number, new_state))
        ranked.sort(key=lambda choice: choice[:2])
        choices = [(number, new_state) for _, number, new_state in ranked]
        for index in range(bisect.bisect_right(self.unknown_invoke, earliest) - 1, -1, -1):
            if not (unknown >> index) & 1:
                new_state = self.unknown[index].step(state)
                if new_state is not INVALID:
                    choices.append((count + index, new_state))
        return node, choices
