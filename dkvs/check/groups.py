"""Splitting a history into independently checkable parts, and checking one part.

Linearizability is compositional (P-compositionality, as Knossos and Porcupine use it):
a history is linearizable exactly when the sub-history of every independent object is.
With only single-key operations every key is an object. A transaction makes its keys one
object, because it must appear to act on all of them at one instant: a union-find over
the keys each transaction touches yields the *groups*, and each group is checked as one
multi-key state. Keep transactions within small, fixed groups of keys (the chaos runner
does); the search cost grows with what a group holds, not with the number of groups.

A part with only plain put/get/delete goes to the fast single-register search
(:mod:`dkvs.check.search`); a part with a conditional write or a transaction goes to the
group search (:mod:`dkvs.check.groupsearch`) with the model of :mod:`dkvs.check.multikey`.

**Leases.** A put with a lease may vanish at any later moment, when the lease expires or
is revoked, on the master's clock, which no client sees. Each leased put therefore brings
one *expiry*: a delete of its key with an unknown outcome, invoked with the put. That is
exactly what an expiry is to a client: at most one deletion, at some time after the put,
or none. It is weaker than the truth (a later plain put detaches the key from the lease,
but the expiry may still be placed after it), so it can hide a bug, never invent one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .groupsearch import search_group
from .history import Operation
from .model import ABSENT
from .multikey import SeqConflict, compile_group, resolve_seqs
from .search import SearchOutcome, search_register
from .shrink import shrink_counterexample

__all__ = ["Group", "GroupOutcome", "check_group", "partition", "with_expiries"]


@dataclass(frozen=True, slots=True)
class Group:
    """Keys checked together and their operations; ``plain`` when the register search fits."""

    keys: tuple[str, ...]
    operations: tuple[Operation, ...]
    plain: bool = True

    @property
    def name(self) -> str:
        return "+".join(self.keys)


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    linearizable: bool | None
    counterexample: tuple[Operation, ...] = ()
    reason: str = ""


def with_expiries(operations: Sequence[Operation]) -> list[Operation]:
    """``operations`` plus one info delete per key a leased put wrote (see the docstring)."""
    expiries = []
    for op in operations:
        if not op.lease and op.txn is None:
            continue
        keys = [op.key] if op.txn is None else sorted({s.key for s in op.txn.success + op.txn.failure if s.lease})
        expiries.extend(Operation(op.process, "delete", key, None, op.invoke_time, None) for key in keys)
    return list(operations) + expiries


def partition(operations: Sequence[Operation]) -> list[Group]:
    """The groups, sorted by their first key. Only transactions join keys, so the
    union-find runs over their keys alone; any other key is its own group."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.get(key, key) != key:
            parent[key] = parent.get(parent[key], parent[key])
            key = parent[key]
        return key

    for op in operations:
        if op.txn is not None:
            first, *others = op.keys
            for key in others:
                top, other = root(first), root(key)
                if top != other:
                    parent[other] = top
    ops: dict[str, list[Operation]] = {}
    keys: dict[str, set[str]] = {}
    special: set[str] = set()  # groups with a conditional write or a txn
    for op in operations:
        top = root(op.keys[0]) if parent else op.key
        ops.setdefault(top, []).append(op)
        if op.txn is not None or top != op.key:
            keys.setdefault(top, {top}).update(op.keys)
        if op.txn is not None or op.if_seq is not None:
            special.add(top)
    groups = [Group(tuple(sorted(keys.get(top, (top,)))), tuple(members), top not in special and top not in keys)
              for top, members in ops.items()]
    return sorted(groups, key=lambda group: group.keys)


def _general_writes(op: Operation) -> bool:
    """Whether ``op`` may change state in the group model (else it is a read)."""
    if op.txn is not None:
        return op.txn.writes
    return op.f != "get" and op.conflict is None and op.found is not False


def check_group(group: Group, budget: int, shrink_budget: int) -> GroupOutcome:
    """Search one group; on a violation, shrink it to a counterexample. Seqs that answers
    reported are cross-checked first, in every group (a cheap, certain refutation)."""
    try:
        resolution = resolve_seqs(group.operations)
    except SeqConflict as conflict:
        return GroupOutcome(False, tuple(sorted(conflict.operations, key=lambda op: op.invoke_time)),
                            f"{conflict}: a seq names one write, so both answers cannot be true")
    if group.plain:
        outcome = search_register(group.operations, budget)
        if outcome.linearizable is False:
            return GroupOutcome(False, shrink_counterexample(group.operations, shrink_budget))
        return GroupOutcome(outcome.linearizable)
    initial = (ABSENT,) * len(group.keys)

    def search(operations: Sequence[Operation], states: int) -> SearchOutcome:
        completed, unknown = compile_group(group.keys, operations, resolution)
        return search_group(completed, unknown, initial, states)

    outcome = search(group.operations, budget)
    if outcome.linearizable is False:
        shrunk = shrink_counterexample(group.operations, shrink_budget, search=search, writes=_general_writes)
        return GroupOutcome(False, _with_writers(shrunk, group.operations))
    return GroupOutcome(outcome.linearizable)


def _written_pairs(op: Operation) -> set[tuple[str, str]]:
    if op.txn is not None:
        branches = (op.txn.success, op.txn.failure) if op.succeeded is None else (op.txn.branch(op.succeeded),)
        return {(step.key, step.value) for branch in branches for step in branch if step.op == "put"}
    return {(op.key, op.value)} if op.f == "put" and op.conflict is None else set()


def _with_writers(counterexample: tuple[Operation, ...], operations: Sequence[Operation]) -> tuple[Operation, ...]:
    """The shrunk set plus the writes of the values it read, for a person to read: with
    transactions the minimal set often holds only reads (a txn seen half-applied shrinks to
    the two reads that disagree), and the txn that wrote them is what explains it. A
    superset of a failing set fails too, so the result is still a sound counterexample."""
    seen = set()
    for op in counterexample:
        if op.txn is not None and op.results is not None:
            seen |= {(r.key, r.value) for r in op.results if r.op == "get" and r.found}
        elif op.f == "get" and op.value is not None:
            seen.add((op.key, op.value))
    chosen = {id(op) for op in counterexample}
    writers = [op for op in operations if id(op) not in chosen and _written_pairs(op) & seen]
    return tuple(sorted((*counterexample, *writers), key=lambda op: (op.invoke_time, op.process)))
