"""The sequential specification for a *group* of keys: compare-and-set, txns, leases.

The single-register model (:mod:`dkvs.check.model`) is kept for plain put/get/delete keys
because it is fast. A key touched by a conditional write (``if_seq``) or a transaction is
checked here instead, jointly with every key a transaction ever tied it to (the *group*,
found in :mod:`dkvs.check.groups`). The state is a tuple: one value per key of the group,
``ABSENT`` (``None``) for a missing key. Every operation compiles to a
:class:`ModelOp` whose ``step(state)`` returns the new state or ``INVALID``.

**Seqs.** A condition names a seq (``if_seq=7``, a txn's ``{"key", "seq": 7}``), but the
state holds values. Every key's seq identifies the write that set it, so the checker
*resolves* a seq to the value that write wrote, from answers that report committed state:
an ``ok`` put's ``seq``, an ``ok`` get's ``(value, seq)``, an ``ok`` txn's ``seq`` for the
keys its branch wrote and its get results. ``if_seq=N`` then means "the key holds the
value seq N wrote" (``0``: absent). Two such answers giving one ``(key, seq)`` two values
are a certain violation (:class:`SeqConflict`). Writes of unknown outcome never resolve a
seq (a rolled-back entry's seq is reused). With a value written twice, "holds the value"
is coarser than "is at that seq": the check gets weaker, never wrong. A seq nothing
resolves makes its condition unknown: an ``ok`` conditional write is then checked as a
plain write, a 409 (``conflict``) observes nothing, a txn's branch is taken as recorded.

**Values nobody observes** collapse into one ``UNSEEN`` token per key (as in the register
search), so states that differ only in unobservable values are memoized as one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .history import Operation
from .model import ABSENT, INVALID
from .txn import TxnSpec

__all__ = ["ModelOp", "Resolution", "SeqConflict", "UNSEEN", "compile_group", "resolve_seqs"]


class _Unseen:
    def __repr__(self) -> str:
        return "UNSEEN"


UNSEEN = _Unseen()
_UNRESOLVED = object()

Step = Callable[[tuple], object]


class SeqConflict(Exception):
    """Two answers gave one key's seq two different values: ``operations`` are both."""

    def __init__(self, key: str, seq: int, operations: tuple[Operation, Operation]) -> None:
        super().__init__(f"key {key!r}: seq {seq} was reported with two different values")
        self.key, self.seq, self.operations = key, seq, operations


@dataclass(frozen=True, slots=True)
class ModelOp:
    """One operation compiled for the group search. ``observing``: legal steps never change
    the state. ``source`` is the recorded operation (for counterexamples). ``effect`` is
    set for a *blind* write, legal in every state and always leaving one key at one value:
    ``(key index, value)``; blind writes with equal effects are interchangeable. ``reads``
    are the key indices whose values the step looks at (empty for a blind write)."""

    invoke: int
    deadline: float
    step: Step
    observing: bool
    source: Operation
    effect: tuple | None = None
    reads: frozenset = frozenset()


class Resolution:
    """``(key, seq) -> value`` from answers about committed state; see the module docstring."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, int], str] = {}
        self.witness: dict[tuple[str, int], Operation] = {}

    def learn(self, key: str, seq: int | None, value: str | None, op: Operation) -> None:
        if seq is None or seq == 0 or value is None:
            return
        known = self.values.setdefault((key, seq), value)
        self.witness.setdefault((key, seq), op)
        if known != value:
            raise SeqConflict(key, seq, (self.witness[(key, seq)], op))

    def value_at(self, key: str, seq: int) -> object:
        """What the key holds at ``seq``: ``ABSENT`` for 0, a value, or ``_UNRESOLVED``."""
        if seq == 0:
            return ABSENT
        return self.values.get((key, seq), _UNRESOLVED)


def _txn_writes(spec: TxnSpec, succeeded: bool) -> dict[str, str | None]:
    """What the branch that ran left in each key it wrote (None: deleted)."""
    final: dict[str, str | None] = {}
    for op in spec.branch(succeeded):
        if op.op != "get":
            final[op.key] = op.value if op.op == "put" else None
    return final


def resolve_seqs(operations: Sequence[Operation]) -> Resolution:
    """Learn every ``(key, seq) -> value`` the completed operations report; raises
    :class:`SeqConflict`."""
    resolution = Resolution()
    for op in operations:
        if op.seq is None or op.complete_time is None:
            continue  # nothing reported, or nothing known to have happened
        if op.txn is not None:
            for key, value in _txn_writes(op.txn, op.succeeded).items():
                resolution.learn(key, op.seq, value, op)
            for result in op.results:
                if result.op == "get" and result.found:
                    resolution.learn(result.key, result.seq, result.value, op)
        elif op.seq is not None and op.conflict is None and op.f != "delete":
            resolution.learn(op.key, op.seq, op.value, op)
    return resolution


class _Compiler:
    """Turns recorded operations into :class:`ModelOp`; knows the group's key order, the
    resolution and which values and which absences anyone observes."""

    def __init__(self, keys: Sequence[str], operations: Sequence[Operation], resolution: Resolution) -> None:
        self.index = {key: i for i, key in enumerate(keys)}
        self.resolution = resolution
        self.observed: set[tuple[str, object]] = set()
        self.presence: set[str] = set()  # keys whose mere presence someone checks
        for op in operations:
            self._note_observations(op)

    def _note_observations(self, op: Operation) -> None:
        """What ``op`` looks at. An info operation's answer is unknown, but its condition
        still reads the state if it runs, so the values it names must not collapse."""
        seen = self.observed
        if op.is_info:
            if op.if_seq is not None:
                seen.add((op.key, self.resolution.value_at(op.key, op.if_seq)))
            for compare in op.txn.compare if op.txn is not None else ():
                if compare.kind != "exists":
                    seen.add((compare.key, self._target(compare.key, compare.kind, compare.target)))
            return
        if op.txn is not None:
            for compare in op.txn.compare:
                if compare.kind == "exists":
                    (self.presence.add(compare.key) if compare.target else seen.add((compare.key, ABSENT)))
                else:
                    seen.add((compare.key, self._target(compare.key, compare.kind, compare.target)))
            for result in op.results:
                if result.op == "get":
                    seen.add((result.key, result.value))
                elif result.op == "delete":
                    (self.presence.add(result.key) if result.found else seen.add((result.key, ABSENT)))
            return
        if op.f == "get":
            seen.add((op.key, op.value))
        if op.if_seq is not None:
            seen.add((op.key, self.resolution.value_at(op.key, op.if_seq)))
        if op.conflict is not None:
            seen.add((op.key, self.resolution.value_at(op.key, op.conflict)))
        if op.found is True:
            self.presence.add(op.key)
        elif op.found is False:
            seen.add((op.key, ABSENT))

    def _target(self, key: str, kind: str, target: object) -> object:
        return self.resolution.value_at(key, target) if kind == "seq" else target

    def token(self, key: str, value: str | None) -> object:
        if value is None or (key, value) in self.observed:
            return value
        return UNSEEN

    def observable(self, op: Operation) -> bool:
        """Whether some completed operation could see the effect of info write ``op``."""
        if op.txn is not None:
            effects = list(_txn_writes(op.txn, True).items()) + list(_txn_writes(op.txn, False).items())
        else:
            effects = [(op.key, op.value if op.f == "put" else None)]
        for key, value in effects:
            if value is None and (key, ABSENT) in self.observed:
                return True
            if value is not None and (key in self.presence or (key, value) in self.observed):
                return True
        return False

    def compile(self, op: Operation) -> list[ModelOp]:
        """The model of ``op``: none when it constrains nothing (an info read, a 409 whose
        seq nothing resolves); two for an info txn whose comparisons cannot be resolved
        (it may have run either branch)."""
        if op.txn is None:
            model = self._compile_single(op)
            return [] if model is None else [model]
        if op.is_info and not op.txn.writes:
            return []
        deadline = float("inf") if op.is_info else op.complete_time
        reads = frozenset(self.index[c.key] for c in op.txn.compare)
        if op.is_info and self._unresolved(op.txn):
            return [ModelOp(op.invoke_time, deadline, self._txn_step(op, force), False, op, None, reads)
                    for force in (True, False)]
        if not op.is_info:
            reads |= {self.index[r.key] for r in op.results if r.op != "put"}
        return [ModelOp(op.invoke_time, deadline, self._txn_step(op), self._txn_observing(op), op, None, reads)]

    def _unresolved(self, spec: TxnSpec) -> bool:
        return any(self._target(c.key, c.kind, c.target) is _UNRESOLVED for c in spec.compare)

    def _compile_single(self, op: Operation) -> ModelOp | None:
        deadline = float("inf") if op.is_info else op.complete_time
        i = self.index[op.key]
        reads = frozenset((i,))
        if op.f == "get":
            if op.is_info:
                return None
            return ModelOp(op.invoke_time, deadline, _equals(i, self.token(op.key, op.value)), True, op, None, reads)
        if op.conflict is not None:  # a 409: the key was at another seq, nothing written
            seen = self.resolution.value_at(op.key, op.conflict)
            if seen is _UNRESOLVED:
                return None
            return ModelOp(op.invoke_time, deadline, _equals(i, seen), True, op, None, reads)
        required = _UNRESOLVED if op.if_seq is None else self.resolution.value_at(op.key, op.if_seq)
        if op.f == "put":
            value = self.token(op.key, op.value)
            if required is _UNRESOLVED:
                return ModelOp(op.invoke_time, deadline, _put(i, value, required), False, op, (i, value))
            return ModelOp(op.invoke_time, deadline, _put(i, value, required), False, op, None, reads)
        if op.found is False:
            return ModelOp(op.invoke_time, deadline, _equals(i, ABSENT), True, op, None, reads)
        if required is _UNRESOLVED and op.found is not True:
            return ModelOp(op.invoke_time, deadline, _delete(i, required, False), False, op, (i, ABSENT))
        return ModelOp(op.invoke_time, deadline, _delete(i, required, op.found is True), False, op, None, reads)

    def _txn_observing(self, op: Operation) -> bool:
        return not op.is_info and all(step.op == "get" for step in op.txn.branch(op.succeeded))

    def _txn_step(self, op: Operation, force: bool | None = None) -> Step:
        spec, index, token = op.txn, self.index, self.token
        compares = [(index[c.key], c.kind, self._target(c.key, c.kind, c.target)) for c in spec.compare]
        unknown = any(target is _UNRESOLVED for _, _, target in compares)
        branches = {flag: [(step.op, index[step.key], token(step.key, step.value)) for step in spec.branch(flag)]
                    for flag in (True, False)}
        results = None if op.is_info else [(r.found, token(r.key, r.value)) for r in op.results]

        def step(state: tuple) -> object:
            holds = all(_compare(state[i], kind, target) for i, kind, target in compares)  # resolved ones
            if force is not None:  # an info txn with an unresolved comparison: either branch
                if force and not holds:
                    return INVALID
                holds = force
            elif results is not None:
                if unknown and holds:  # the resolved comparisons hold; an unresolved one may not
                    holds = op.succeeded
                if holds != op.succeeded:
                    return INVALID
            work = list(state)
            for number, (kind, i, value) in enumerate(branches[holds]):
                answer = results[number] if results is not None else None
                if kind == "put":
                    work[i] = value
                    continue
                present = work[i] is not ABSENT
                if answer is not None and answer[0] != present:
                    return INVALID
                if kind == "delete":
                    work[i] = ABSENT
                elif answer is not None and present and work[i] != answer[1]:
                    return INVALID
            return tuple(work)
        return step


def _compare(current: object, kind: str, target: object) -> bool:
    if target is _UNRESOLVED:
        return True
    if kind == "exists":
        return (current is not ABSENT) == target
    return current == target


def _equals(i: int, expected: object) -> Step:
    return lambda state: state if state[i] == expected else INVALID


def _put(i: int, value: object, required: object) -> Step:
    def step(state: tuple) -> object:
        if required is not _UNRESOLVED and state[i] != required:
            return INVALID
        return state[:i] + (value,) + state[i + 1:]
    return step


def _delete(i: int, required: object, needs_presence: bool) -> Step:
    def step(state: tuple) -> object:
        if required is not _UNRESOLVED and state[i] != required:
            return INVALID
        if needs_presence and state[i] is ABSENT:
            return INVALID
        return state[:i] + (ABSENT,) + state[i + 1:]
    return step


def compile_group(keys: Sequence[str], operations: Sequence[Operation],
                  resolution: Resolution) -> tuple[list[ModelOp], list[ModelOp]]:
    """(completed, info) model operations of one group; info writes nobody could observe,
    and operations that constrain nothing, are left out."""
    compiler = _Compiler(keys, operations, resolution)
    completed, unknown = [], []
    for op in operations:
        if op.is_info and not compiler.observable(op):
            continue
        (unknown if op.is_info else completed).extend(compiler.compile(op))
    return completed, unknown
