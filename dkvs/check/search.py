"""Is one key's history linearizable? A memoized depth-first search for a witness order.

This is the Wing & Gong tree search with Lowe's memoization, as in Knossos and Porcupine.
A *node* is a set of operations already linearized plus the register state they leave.
From a node, an operation may be linearized next when it is a *candidate*: not yet
linearized, and invoked no later than the earliest deadline (completion time) among the
completed operations still waiting. Anything invoked after that deadline must come after
the waiting operation in every legal order, so it is not a candidate yet; this "linearize
only what time forces" rule is the just-in-time idea of Lowe's refinement, and keeps the
branching to the operations that are truly concurrent. The history is linearizable when
some path reaches a node in which every completed operation is linearized; operations of
unknown outcome (info) may be linearized on the way, or never.

Node encoding, chosen so a node is a small hashable tuple even when the key has 100,000
operations: completed operations are numbered by invocation order, and a node is
``(low, window, unknown, state)`` where every operation numbered below ``low`` is
linearized, ``window`` is a bitset (a Python int) of the linearized ones from ``low`` up,
``unknown`` a bitset over the info writes, and ``state`` the register value. Every node
reached is remembered in ``visited``; reaching one again proves nothing new, so it is cut.
The ``budget`` bounds ``len(visited)``.

Two reductions keep the tree small without losing any linearization:

* An *observing* operation (a get, a delete with found=false) that is a candidate and
  legal in the current state is linearized at once, without branching. Moving it to the
  front of any witness order stays legal: nothing unlinearized must precede it (it is a
  candidate), and it changes no state, so every later step sees the same value.
* An info write that nothing could have observed is dropped before the search: an info
  put whose value no get read (when no delete demands a present key), an info delete
  when no get read absent and no delete found the key absent. Taking such a write out of
  a witness order leaves every observation as it was. Info gets are dropped too.

The search is iterative (an explicit stack), so a long history cannot hit Python's
recursion limit. Writes are tried in a helpful order: first those producing a value some
waiting read needs, then by deadline, info writes last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .history import Operation
from .model import ABSENT, INVALID, argument, is_observing, is_write, required_state, step_for

__all__ = ["SearchOutcome", "search_register", "observable_unknown_writes"]

INFINITY = float("inf")


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """``linearizable`` is ``None`` when the budget ran out first; ``states`` counts nodes
    visited; ``reason`` explains a ``False`` found before any search."""

    linearizable: bool | None
    states: int
    reason: str = ""


def search_register(operations: Sequence[Operation], budget_states: int) -> SearchOutcome:
    """Decide whether one key's operations (completed and info) can be linearized."""
    completed = [op for op in operations if not op.is_info]
    unread = _first_unexplained_read(completed, operations)
    if unread is not None:
        return SearchOutcome(False, 0, f"get by process {unread.process} read {unread.value!r}, "
                                       "which no put could have written before the get completed")
    return _Search(completed, observable_unknown_writes(operations)).run(budget_states)


def observable_unknown_writes(operations: Sequence[Operation]) -> list[Operation]:
    """The info writes whose effect some completed operation could have observed."""
    completed = [op for op in operations if not op.is_info]
    values_read = {op.value for op in completed if op.f == "get"}
    absent_seen = ABSENT in values_read or any(op.found is False for op in completed)
    presence_needed = any(op.found is True for op in completed)
    keep = []
    for op in operations:
        if not op.is_info or not is_write(op):
            continue
        if op.f == "put" and (op.value in values_read or presence_needed):
            keep.append(op)
        elif op.f == "delete" and absent_seen:
            keep.append(op)
    return keep


def _first_unexplained_read(completed: list[Operation], operations: Sequence[Operation]) -> Operation | None:
    """A get of a value no put wrote early enough: a cheap certain refutation."""
    first_written: dict[str, int] = {}
    for op in operations:
        if op.f == "put":
            first_written[op.value] = min(op.invoke_time, first_written.get(op.value, op.invoke_time))
    for op in sorted(completed, key=lambda o: o.complete_time):
        if op.f == "get" and op.value is not ABSENT:
            written = first_written.get(op.value)
            if written is None or written > op.complete_time:
                return op
    return None


def _normalize(low: int, window: int) -> tuple[int, int]:
    """Fold the window's run of low set bits into ``low`` so equal sets encode equally."""
    if window & 1:
        run = (~window & (window + 1)).bit_length() - 1
        return low + run, window >> run
    return low, window


class _Search:
    """One key's operations as parallel arrays, numbered: completed ops by invocation
    order (``0 .. count-1``), then the observable info writes (``count ..``)."""

    def __init__(self, completed: list[Operation], unknown: list[Operation]) -> None:
        completed = sorted(completed, key=lambda op: (op.invoke_time, op.complete_time))
        unknown = sorted(unknown, key=lambda op: op.invoke_time)
        numbered = completed + unknown
        self.count = len(completed)
        self.unknown_count = len(unknown)
        self.invoke = [op.invoke_time for op in numbered]
        self.deadline = [op.complete_time for op in completed] + [INFINITY] * len(unknown)
        self.step = [step_for(op) for op in numbered]
        self.argument = [argument(op) for op in numbered]
        self.observing = [is_observing(op) for op in numbered]
        self.required = [required_state(op) if is_observing(op) else None for op in numbered]

    def run(self, budget_states: int) -> SearchOutcome:
        root, choices = self.expand((0, 0, 0, ABSENT))
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

    def linearize(self, node: tuple, number: int, new_state: object) -> tuple:
        low, window, unknown, _ = node
        if number < self.count:
            low, window = _normalize(low, window | (1 << (number - low)))
        else:
            unknown |= 1 << (number - self.count)
        return (low, window, unknown, new_state)

    def expand(self, node: tuple) -> tuple[tuple, list | None]:
        """Linearize every legal observing candidate, then list the legal writes to branch
        on as ``(number, new_state)``, best first. ``None`` instead of a list means every
        completed operation is linearized: the search is over."""
        low, window, unknown, state = node
        count, invoke, deadline = self.count, self.invoke, self.deadline
        step, argument, observing = self.step, self.argument, self.observing
        while True:
            earliest = INFINITY
            legal_reads = []
            writes = []
            waiting = set()
            bits, number = window, low
            while number < count and invoke[number] <= earliest:
                if not bits & 1:
                    if deadline[number] < earliest:
                        earliest = deadline[number]
                    if not observing[number]:
                        writes.append(number)
                    elif step[number](state, argument[number]) is not INVALID:
                        legal_reads.append(number)
                    else:
                        waiting.add(self.required[number])
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
        for offset in range(self.unknown_count):
            number = count + offset
            if invoke[number] > earliest:
                break
            if not (unknown >> offset) & 1:
                writes.append(number)
        ranked = []
        for number in writes:
            new_state = step[number](state, argument[number])
            if new_state is not INVALID:
                ranked.append((new_state not in waiting, deadline[number], number, new_state))
        ranked.sort(key=lambda choice: choice[:3])
        return node, [(number, new_state) for _, _, number, new_state in ranked]
