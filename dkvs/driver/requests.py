"""Client requests the driver is answering, and the verdicts bound to them.

A write is applied when its entry is, and only then is it known whether it changed
anything (a delete of an absent key, a compare-and-set whose condition failed): every
replica decides that the same way at apply time. The verdict belongs to the *request*.
The table records which log entry ``(epoch, seq)`` each proposal created; an apply that
rejects exactly that entry marks that request. A rollback can hand the same seq to
another write in a later epoch, but never the same ``(epoch, seq)``, so a stale verdict
can no longer reach a write that succeeded (the bug this table replaces: verdicts kept by
seq alone survived two failovers and answered a later, applied write with 404/409).

Multi-key entries (prefix delete, transaction) also have an *apply result* (how many keys
were deleted; whether the transaction's comparisons held, and what its gets read). It is
bound the same way (:meth:`RequestTable.applied`) and handed back with the verdict.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RequestTable", "MAX_TRACKED_REQUESTS"]

MAX_TRACKED_REQUESTS = 100_000  # a bound, not a limit users meet: the core answers every request


class RequestTable:
    def __init__(self, max_tracked: int = MAX_TRACKED_REQUESTS) -> None:
        self._entry_of: OrderedDict[int, tuple[int, int]] = OrderedDict()  # request -> (epoch, seq)
        self._request_at: dict[tuple[int, int], int] = {}
        self._verdicts: dict[int, int] = {}
        self._results: dict[int, object] = {}
        self._max = max_tracked

    def __len__(self) -> int:
        return len(self._entry_of)

    def proposed(self, request_id: int, epoch: int, seq: int) -> None:
        """``request_id`` created the log entry ``(epoch, seq)``."""
        self._entry_of[request_id] = (epoch, seq)
        self._request_at[(epoch, seq)] = request_id
        while len(self._entry_of) > self._max:
            old, entry = self._entry_of.popitem(last=False)
            self._request_at.pop(entry, None)
            self._verdicts.pop(old, None)
            self._results.pop(old, None)

    def rejected(self, epoch: int, seq: int, current_seq: int) -> None:
        """The entry ``(epoch, seq)`` was applied and changed nothing."""
        request_id = self._request_at.get((epoch, seq))
        if request_id is not None:
            self._verdicts[request_id] = current_seq

    def applied(self, epoch: int, seq: int, result) -> None:
        """The entry ``(epoch, seq)`` was applied with this apply result."""
        request_id = self._request_at.get((epoch, seq))
        if request_id is not None:
            self._results[request_id] = result

    def pending(self) -> dict[int, tuple[int, int]]:
        """Requests not answered yet, with the entry ``(epoch, seq)`` each created."""
        return dict(self._entry_of)

    def answered(self, request_id: int) -> int | None:
        """Forget ``request_id``; returns its verdict (the key's current seq) if rejected."""
        return self.answered_with_result(request_id)[0]

    def answered_with_result(self, request_id: int) -> tuple[int | None, object]:
        """Forget ``request_id``; returns ``(verdict, apply result)`` (each None when unset)."""
        entry = self._entry_of.pop(request_id, None)
        if entry is not None:
            self._request_at.pop(entry, None)
        # Most writes have neither (a plain put): skip the lookups on the write path.
        verdict = self._verdicts.pop(request_id, None) if self._verdicts else None
        result = self._results.pop(request_id, None) if self._results else None
        return verdict, result
