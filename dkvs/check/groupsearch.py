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
* One blind write per effect. A *blind* write (a plain put or delete: legal anywhere, it
  sets one key to one value) is interchangeable with another of the same effect, as in
  the register search: the completed one with the earliest deadline is tried, else the
  latest-invoked info one, and an info one not at all when a completed twin is on offer.
* Blind info writes on demand. Take a witness with a blind info write W of key k; move W
  later past every operation that does not read k (a blind write of another key, or any
  operation whose step ignores k: they commute), and drop it at a blind write of k (which
  overwrites it). W ends up dropped, or right before a *reader* of k (possibly after other
  blind info writes that the same reader needs). So W is tried at a node only when a
  candidate there reads k: a waiting read, a conditional write, or a conditional info
  write (which may in turn be needed by a read, so chains are found). A reader of k alone
  must moreover accept the state W leaves (and W must change what it does), since no
  other write could complete what W starts without overwriting it.
* Order: completed writes by earliest deadline, then conditional info writes, then the
  blind info writes that matter. A depth-first search backtracks from the deepest node
  first, so an info write a later read needs is tried right before that read.

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
        self.effect = [op.effect for op in completed]
        self.ops = completed
        self.unknown_invoke = [op.invoke for op in self.unknown]
        self.conditional_info = [index for index, op in enumerate(self.unknown) if op.effect is None]
        self.blind_info: dict[tuple, tuple[list[int], list[int]]] = {}  # effect -> (invokes, indices)
        for index, op in enumerate(self.unknown):
            if op.effect is not None:
                invokes, indices = self.blind_info.setdefault(op.effect, ([], []))
                invokes.append(op.invoke)
                indices.append(index)

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
            legal_reads, writes, waiting = [], [], []
            bits, number = window, low
            while number < count and invoke[number] <= earliest:
                if not bits & 1:
                    if deadline[number] < earliest:
                        earliest = deadline[number]
                    if not observing[number]:
                        writes.append(number)
                    elif step[number](state) is not INVALID:
                        legal_reads.append(number)
                    else:
                        waiting.append(number)
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
        blind: dict[tuple, int] = {}  # effect -> the completed blind write worth trying
        ranked = []
        for number in writes:
            effect = self.effect[number]
            if effect is None:
                ranked.append(number)
            elif effect not in blind or deadline[number] < deadline[blind[effect]]:
                blind[effect] = number
        ranked.extend(blind.values())
        choices = []
        for number in sorted(ranked, key=lambda n: (deadline[n], n)):
            new_state = step[number](state)
            if new_state is not INVALID:
                choices.append((number, new_state))
        readers = [self.ops[n] for n in waiting] + [self.ops[n] for n in writes if self.effect[n] is None]
        for index in self.conditional_info:
            if self.unknown_invoke[index] > earliest:
                break
            if not (unknown >> index) & 1:
                readers.append(self.unknown[index])
                new_state = self.unknown[index].step(state)
                if new_state is not INVALID:
                    choices.append((count + index, new_state))
        self.offer_blind_info(choices, blind, readers, unknown, state, earliest)
        return node, choices

    def offer_blind_info(self, choices: list, blind: dict, readers: list, unknown: int, state: tuple,
                         earliest: float) -> None:
        """Per effect, the latest-invoked unused blind info write, if it matters to a reader."""
        for effect, (invokes, indices) in self.blind_info.items():
            if effect in blind:
                continue  # a completed twin is on offer
            chosen = None
            for position in range(bisect.bisect_right(invokes, earliest) - 1, -1, -1):
                if not (unknown >> indices[position]) & 1:
                    chosen = indices[position]
                    break
            if chosen is None:
                continue
            write = self.unknown[chosen].step
            new_state = write(state)
            if new_state != state and any(_matters(reader, state, new_state, write) for reader in readers):
                choices.append((self.count + chosen, new_state))


def _matters(reader: ModelOp, state: tuple, written: tuple, write) -> bool:
    """Whether a blind write taking ``state`` to ``written`` (of key ``effect[0]``) matters
    to ``reader``; see the module docstring."""
    key = next(i for i in range(len(state)) if state[i] != written[i])
    if key not in reader.reads:
        return False
    if len(reader.reads) > 1:
        return True  # it may need several blind writes: this one is a part
    after = reader.step(written)
    if after is INVALID:
        return False
    before = reader.step(state)
    if before is INVALID:
        return True
    return after != before and after != write(before)
