"""A linearizability checker for recorded single-key register histories.

``python -m dkvs.check HISTORY.jsonl`` answers one question about a history that clients
recorded against dkvs: is there a single order of all the operations, consistent with
real time (an operation that completed before another was invoked comes first) and with
the behaviour of one register per key, that explains every answer the clients got?

Keys are independent registers, so the history is split by key and each key is searched
on its own (:mod:`dkvs.check.search`); a failing key is shrunk to a few operations that
cannot be ordered (:mod:`dkvs.check.shrink`). Reading and pairing events lives in
:mod:`dkvs.check.history`, the register's rules in :mod:`dkvs.check.model`. The format,
exit codes and limits are described in ``docs/checker.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .history import History, MalformedHistory, Operation, load_history, pair_operations
from .search import search_register
from .shrink import SHRINK_BUDGET_STATES, shrink_counterexample

__all__ = [
    "DEFAULT_BUDGET_STATES",
    "CheckResult",
    "History",
    "MalformedHistory",
    "Operation",
    "check_history",
    "load_history",
]

DEFAULT_BUDGET_STATES = 1_000_000  # per key; a state costs roughly 250 bytes of memory


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on a whole history.

    ``linearizable`` is ``True``, ``False`` (``key`` and ``operations``, the shrunk
    counterexample, say where), or ``None`` when the search budget ran out on ``key``
    before any key was found to be not linearizable. ``reason`` is one human sentence.
    """

    linearizable: bool | None
    key: str | None = None
    operations: tuple[Operation, ...] = ()
    reason: str = ""
    keys_checked: int = 0
    operations_checked: int = 0


def check_history(events: Iterable[dict], budget: int = DEFAULT_BUDGET_STATES) -> CheckResult:
    """Check every key of ``events``; ``budget`` is the maximum number of search states per
    key. Raises :class:`MalformedHistory` when events cannot be paired into operations.

    A definite violation on any key wins over a budget that ran out on another, so every
    key is searched before "unknown" is returned.
    """
    if budget < 1:
        raise ValueError(f"budget must be at least 1 search state, not {budget}")
    by_key = pair_operations(events)
    operation_count = sum(len(ops) for ops in by_key.values())
    exhausted = None
    for key in sorted(by_key):
        outcome = search_register(by_key[key], budget)
        if outcome.linearizable is False:
            counterexample = shrink_counterexample(by_key[key], min(budget, SHRINK_BUDGET_STATES))
            return CheckResult(
                False, key, counterexample,
                f"key {key!r}: these {len(counterexample)} operations cannot be put in any order that "
                "respects real time and register semantics, even if every other write to the key "
                "took effect at any moment after its invoke, or never",
                len(by_key), operation_count,
            )
        if outcome.linearizable is None and exhausted is None:
            exhausted = key
    if exhausted is not None:
        return CheckResult(
            None, exhausted, (),
            f"key {exhausted!r}: search budget of {budget} states ran out before an answer; "
            "rerun with a larger --budget",
            len(by_key), operation_count,
        )
    summary = f"linearizable: {len(by_key)} keys, {operation_count} operations checked"
    return CheckResult(True, None, (), summary, len(by_key), operation_count)
