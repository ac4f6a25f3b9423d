"""A linearizability checker for recorded key-value histories.

``python -m dkvs.check HISTORY.jsonl`` answers one question about a history that clients
recorded against dkvs: is there a single order of all the operations, consistent with
real time (an operation that completed before another was invoked comes first) and with
the behaviour of the store, that explains every answer the clients got?

The history is split into independent parts (:mod:`dkvs.check.groups`): a key on its own,
or a group of keys that transactions tie together. A plain key (put/get/delete) is one
register, searched fast (:mod:`dkvs.check.search`, rules in :mod:`dkvs.check.model`); a
part with compare-and-set or transactions is searched with the multi-key model
(:mod:`dkvs.check.groupsearch`, :mod:`dkvs.check.multikey`). A failing part is shrunk to a
few operations that cannot be ordered (:mod:`dkvs.check.shrink`). Reading and pairing
events lives in :mod:`dkvs.check.history` and :mod:`dkvs.check.txn`. The format, exit
codes and limits are described in ``docs/checker.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .groups import check_group, partition, with_expiries
from .history import History, MalformedHistory, Operation, load_history, pair_events
from .shrink import SHRINK_BUDGET_STATES

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
    operations = pair_events(events)
    groups = partition(with_expiries(operations))
    key_count = sum(len(group.keys) for group in groups)
    exhausted = None
    for group in groups:
        outcome = check_group(group, budget, min(budget, SHRINK_BUDGET_STATES))
        if outcome.linearizable is False:
            counterexample = outcome.counterexample
            what = "key" if len(group.keys) == 1 else "keys"
            return CheckResult(
                False, group.name, counterexample,
                outcome.reason or f"{what} {group.name!r}: these {len(counterexample)} operations cannot be "
                "put in any order that respects real time and the store's semantics, even if every other "
                f"write to the {what} took effect at any moment after its invoke, or never",
                key_count, len(operations),
            )
        if outcome.linearizable is None and exhausted is None:
            exhausted = group.name
    if exhausted is not None:
        return CheckResult(
            None, exhausted, (),
            f"key {exhausted!r}: search budget of {budget} states ran out before an answer; "
            "rerun with a larger --budget",
            key_count, len(operations),
        )
    summary = f"linearizable: {key_count} keys, {len(operations)} operations checked"
    return CheckResult(True, None, (), summary, key_count, len(operations))
