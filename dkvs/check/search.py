"""Is one key's history linearizable? A memoized depth-first search for a witness order.

This is the Wing & Gong tree search with Lowe's memoization, as in Knossos and Porcupine.
A *node* is a set of operations already linearized plus the register state they leave.
From a node, an operation may be linearized next when it is a *candidate*: not yet
linearized, and invoked no later than the earliest deadline (completion time) among the
completed operations still waiting. Anything invoked after that deadline must follow the
waiting operation in every legal order, so it is not a candidate yet: in the spirit of
Lowe's just-in-time linearization, the search only ever chooses among operations that are
truly concurrent at the point reached. The history is linearizable when some path reaches
a node in which every completed operation is linearized; operations of unknown outcome
(info) may be linearized on the way, or never. Two times that are equal count as
concurrent (the checker gives the benefit of the doubt).

Node encoding, chosen so a node is a small hashable tuple even when the key has 100,000
operations: completed operations are numbered by invocation order, and a node is
``(low, window, unknown, state)``: every operation numbered below ``low`` is linearized,
``window`` is a bitset (a Python int) of the linearized ones from ``low`` up, ``unknown`` a
bitset over the info writes, ``state`` the register value. Every node reached is kept in
``visited``; reaching one again proves nothing new, so it is cut. ``budget`` bounds
``len(visited)``. The search is iterative (an explicit stack): no recursion limit.

Reductions, each of which loses no linearization (the argument is given with each):

* Observers first. A candidate get (or delete with found=false) legal in the current state
  is linearized at once, without branching: moved to the front of any witness it is still
  legal, since nothing unlinearized must precede it and it changes no state.
* One write per effect. Writes that leave the same state are interchangeable, so a node
  branches on one per effect: the completed one with the earliest deadline (swapping it
  with a later-deadline twin keeps both inside their intervals), else the latest-invoked
  info one (which leaves the more flexible twins for later). Puts of values that no get
  read all leave the same state, ``UNSEEN``; this also merges nodes in ``visited``.
* Info writes on demand. An info write is tried only when a candidate waits for the state
  it leaves (a read, or a found=true delete facing an absent key). Otherwise nothing can
  observe it before the next write, and a witness without it is as good. Info writes that
  nothing in the whole key could observe, and info gets, are dropped before the search.
* Dead ends early. A node is abandoned when a waiting read needs a state no unlinearized
  write can produce; and a write is not tried when it would leave a state that some
  unlinearized operation still has to observe, with nothing left that could restore it.

Order matters for correct histories, where the first path should succeed: completed
writes before info writes, earliest deadline first. (Preferring writes that a waiting read
wants looked clever, but spent info writes early and failed only thousands of steps on.)
"""

from __future__ import annotations

import bisect
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


class _Unseen:
    """The value of a put that no get read: all such values are alike to the search."""

    def __repr__(self) -> str:
        return "UNSEEN"


UNSEEN = _Unseen()


def _canonical_argument(op: Operation, values_read: set) -> object:
    """A put's value as the search needs it: values nobody read collapse into ``UNSEEN``,
    so that nodes differing only in an unobservable value are memoized as one."""
    if op.f == "put" and op.value not in values_read:
        return UNSEEN
    return argument(op)


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
        values_read = {op.value for op in completed if op.f == "get"}
        self.count = len(completed)
        self.invoke = [op.invoke_time for op in numbered]
        self.deadline = [op.complete_time for op in completed] + [INFINITY] * len(unknown)
        self.step = [step_for(op) for op in numbered]
        self.argument = [_canonical_argument(op, values_read) for op in numbered]
        self.observing = [is_observing(op) for op in numbered]
        self.required = [required_state(op) if is_observing(op) else None for op in numbered]
        self.demands_presence = [op.f == "delete" and op.found is True for op in numbered]
        # The state a write leaves behind; observing operations leave none of their own.
        self.leaves = [None if observing else ABSENT if op.f == "delete" else effect
                       for op, effect, observing in zip(numbered, self.argument, self.observing)]
        # Writes with the same effect are interchangeable; expand branches on one per class.
        classes: dict[tuple, int] = {}
        self.effect_class = [classes.setdefault((op.f, effect), len(classes))
                             for op, effect in zip(numbered, self.argument)]
        self.readers: dict[object, list[int]] = {}  # state -> completed ops observing it
        self.writers: dict[object, list[int]] = {}  # state -> writes leaving it
        self.unknown_by_leaves: dict[object, tuple[list[int], list[int]]] = {}  # -> (invokes, numbers)
        for number, op in enumerate(numbered):
            if self.observing[number]:
                self.readers.setdefault(self.required[number], []).append(number)
                continue
            self.writers.setdefault(self.leaves[number], []).append(number)
            if number >= self.count:
                invokes, numbers = self.unknown_by_leaves.setdefault(self.leaves[number], ([], []))
                invokes.append(op.invoke_time)
                numbers.append(number)

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

    def is_linearized(self, number: int, low: int, window: int, unknown: int) -> bool:
        if number >= self.count:
            return bool((unknown >> (number - self.count)) & 1)
        return number < low or bool((window >> (number - low)) & 1)

    def expand(self, node: tuple) -> tuple[tuple, list | None]:
        """Linearize every legal observing candidate, then list the writes worth branching
        on as ``(number, new_state)``, best first. ``None`` instead of a list means every
        completed operation is linearized: the search is over. ``[]`` is a dead end."""
        low, window, unknown, state = node
        count, invoke, deadline = self.count, self.invoke, self.deadline
        step, argument, observing, effect_class = self.step, self.argument, self.observing, self.effect_class
        while True:
            earliest = INFINITY
            legal_reads = []
            writes = {}  # effect class -> the one write of that class worth trying
            waiting = set()  # states that candidate observers need but do not have
            bits, number = window, low
            while number < count and invoke[number] <= earliest:
                if not bits & 1:
                    if deadline[number] < earliest:
                        earliest = deadline[number]
                    if not observing[number]:
                        rival = writes.get(effect_class[number])
                        if rival is None or deadline[number] < deadline[rival]:
                            writes[effect_class[number]] = number
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
        for needed in waiting:
            if not self.can_still_write(needed, low, window, unknown):
                return node, []
        if len(invoke) > count:
            self.offer_unknown_writes(writes, node, waiting, earliest)
        if self.strands_a_reader(node):
            writes = {cls: number for cls, number in writes.items() if self.leaves[number] == state}
        ranked = []
        for number in writes.values():
            new_state = step[number](state, argument[number])
            if new_state is not INVALID:
                ranked.append((number >= count, deadline[number], number, new_state))
        ranked.sort(key=lambda choice: choice[:3])
        return node, [(number, new_state) for _, _, number, new_state in ranked]

    def offer_unknown_writes(self, writes: dict, node: tuple, waiting: set, earliest: float) -> None:
        """Add the info writes worth trying: one per state some candidate needs (a waiting
        read, or a found=true delete facing an absent key), the latest-invoked unused one,
        unless a completed write of the same effect is already on offer."""
        low, window, unknown, state = node
        wanted = list(waiting)
        if state is ABSENT and any(self.demands_presence[number] for number in writes.values()):
            if self.latest_unused(UNSEEN, earliest, unknown) is not None:
                wanted.append(UNSEEN)  # a put nobody reads serves presence best
            else:
                wanted.extend(leaves for leaves in self.unknown_by_leaves if leaves is not ABSENT)
        for leaves in wanted:
            number = self.latest_unused(leaves, earliest, unknown)
            if number is None:
                continue
            rival = writes.get(self.effect_class[number])
            if rival is None or rival >= self.count:
                writes[self.effect_class[number]] = number

    def latest_unused(self, leaves: object, earliest: float, unknown: int) -> int | None:
        """The latest-invoked unused info write leaving ``leaves`` that is a candidate."""
        invokes, numbers = self.unknown_by_leaves.get(leaves, ((), ()))
        for index in range(bisect.bisect_right(invokes, earliest) - 1, -1, -1):
            if not (unknown >> (numbers[index] - self.count)) & 1:
                return numbers[index]
        return None

    def can_still_write(self, state: object, low: int, window: int, unknown: int) -> bool:
        """Whether some write leaving ``state`` is not yet linearized."""
        writers = self.writers.get(state, ())
        for number in writers[bisect.bisect_left(writers, low):]:
            if not self.is_linearized(number, low, window, unknown):
                return True
        return False

    def strands_a_reader(self, node: tuple) -> bool:
        """Whether leaving the current state would strand a read of it: some unlinearized
        operation observes it and no unlinearized write could bring it back."""
        low, window, unknown, state = node
        readers = self.readers.get(state, ())
        for number in readers[bisect.bisect_left(readers, low):]:
            if not (window >> (number - low)) & 1:
                return not self.can_still_write(state, low, window, unknown)
        return False
