"""What a finished run means: counts, lost writes, unavailability (pure functions).

Inputs are the clients' :class:`~.history.OpRecord` list, the final value of every key (a
consistent read on the master after healing and convergence), the nodes' rollback entries
and the fault windows; nothing here touches a process or a socket.

Three independent ways to prove that an acknowledged write P did not survive:

1. **Nothing could have overwritten it.** A write W may take effect after P only if W is
   not a ``fail``, is not P, and completed (or never did: ``info``) after P was invoked.
   With no such W, P was the last write to its key, so the final value must be P's.
2. **The final log cannot hold it.** P's answer gave its log position ``seq``; the final
   read of its key gives the seq of the key's last write. If that is older than P's seq
   (or is P's seq with another value), P's entry is not in the final log.
3. **A node rolled it back**: its value is in a ``rollback/`` file (puts only).

* A **lost majority write** is an acknowledged ``acks=majority`` put (or delete that found
  the key) proven lost by any of the three: dkvs promises it never happens (a committed
  entry is never rolled back). The checker's verdict covers the subtler cases.
* Compare-and-set, transactions and leased puts (:mod:`.dataops`) count as writes that
  may overwrite the keys they touch, so they never make a plain write look lost; they are
  not judged here themselves: the checker's verdict covers them.
* An **acks=1 write** acknowledged but never observed (by a read, a final read or a final
  listing) is *unobserved*; *lost* if proven lost by 1 or 2; *rolled back* if 3 holds.
  Losing these is allowed.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from .history import OpRecord

__all__ = [
    "count_outcomes",
    "failure_reasons",
    "lost_writes",
    "operation_class",
    "unavailability",
]

OUTCOME_TYPES = ("ok", "fail", "info")
DATA_CLASSES = ("cas", "cas-delete", "txn", "lease-put")  # from .dataops; judged by the checker alone


def operation_class(op: OpRecord) -> str:
    """The row of the report an operation counts in."""
    if op.f == "put":
        return f"put acks={op.acks}"
    return op.f


def count_outcomes(ops: Iterable[OpRecord]) -> dict[str, dict[str, int]]:
    """``{class: {"ok", "fail", "info"}}`` by the classified outcome (before the acks=1
    rewrite), plus a ``"total"`` row."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOME_TYPES, 0))
    for op in ops:
        counts[operation_class(op)][op.outcome] += 1
        counts["total"][op.outcome] += 1
    order = ["get", "put acks=majority", "put acks=1", "delete", *DATA_CLASSES, "total"]
    return {name: counts[name] for name in order if name in counts}


def failure_reasons(ops: Iterable[OpRecord], top: int = 8) -> dict[str, dict[str, int]]:
    """The most frequent reasons of ``fail`` and ``info`` outcomes: ``{"fail": {...}, "info": {...}}``
    keyed ``"<class>: <reason>"``."""
    tallies: dict[str, Counter] = {"fail": Counter(), "info": Counter()}
    for op in ops:
        if op.outcome in tallies:
            tallies[op.outcome][f"{operation_class(op)}: {op.reason}"] += 1
    return {outcome: dict(tally.most_common(top)) for outcome, tally in tallies.items()}


def _is_write(op: OpRecord) -> bool:
    """An operation that may have changed its key (a delete that found nothing did not)."""
    return op.f != "get" and op.outcome != "fail" and op.found is not False


class _KeyWrites:
    """The writes of one key, indexed to answer "could another write follow this one?"."""

    def __init__(self) -> None:
        self.infos = 0
        self.completions: list[int] = []  # of the writes that completed ok, sorted at seal()

    def add(self, op: OpRecord) -> None:
        if op.outcome == "info":
            self.infos += 1
        else:
            self.completions.append(op.complete_ns)

    def seal(self) -> None:
        self.completions.sort()

    def could_overwrite(self, op: OpRecord) -> bool:
        """Whether a write other than the completed ``op`` may take effect after it."""
        if self.infos:
            return True  # an info write may take effect at any time after its invoke
        later = len(self.completions) - bisect.bisect_right(self.completions, op.invoke_ns)
        return later > 1  # ``op`` itself completed after its own invoke


def _expected(op: OpRecord) -> str | None:
    return op.value if op.f == "put" else None


def _brief(op: OpRecord) -> dict:
    return {"process": op.process, "f": op.f, "key": op.key, "value": op.value, "acks": op.acks, "seq": op.seq,
            "invoke_ns": op.invoke_ns, "complete_ns": op.complete_ns, "node": op.node}


def _not_in_final_log(op: OpRecord, final: dict[str, str | None], final_seqs: dict[str, int]) -> bool:
    """Rule 2: the key's last write in the final log is older than ``op``'s entry, or is
    another entry at ``op``'s seq."""
    if op.seq is None or op.key not in final_seqs:
        return False
    last = final_seqs[op.key]
    return last < op.seq or (last == op.seq and final.get(op.key) != _expected(op))


def lost_writes(ops: Sequence[OpRecord], final: dict[str, str | None], observed: set[str],
                rolled_back: Iterable[dict], final_seqs: dict[str, int] | None = None) -> dict:
    """Lost acknowledged writes, by the rules in the module docstring.

    ``final`` maps each key to its final value (keys missing there are not judged);
    ``final_seqs`` each present key to the seq of its last write; ``observed`` holds every
    value some read or listing returned; ``rolled_back`` the entries of the nodes'
    rollback files.
    """
    final_seqs = final_seqs or {}
    writes_by_key: dict[str, _KeyWrites] = defaultdict(_KeyWrites)
    for op in ops:
        if _is_write(op):
            for key in op.keys if op.f == "txn" else (op.key,):
                writes_by_key[key].add(op)
    for writes in writes_by_key.values():
        writes.seal()
    rolled_values = {entry.get("value") for entry in rolled_back if entry.get("op") == "put"}
    majority, acks1 = [], []
    for op in ops:
        if op.outcome != "ok" or not _is_write(op) or op.f not in ("put", "delete"):
            continue
        (acks1 if op.acks == "1" else majority).append(op)

    lost_majority = []
    for op in majority:
        in_rollback = op.f == "put" and op.value in rolled_values
        overwritten = writes_by_key[op.key].could_overwrite(op)
        wrong_final = op.key in final and final[op.key] != _expected(op) and not overwritten
        not_in_log = _not_in_final_log(op, final, final_seqs)
        if in_rollback or wrong_final or not_in_log:
            lost_majority.append(dict(_brief(op), final=final.get(op.key), final_seq=final_seqs.get(op.key),
                                      rolled_back=in_rollback, not_in_final_log=not_in_log))

    unobserved = [op for op in acks1 if op.value not in observed]
    lost1 = [op for op in unobserved if _not_in_final_log(op, final, final_seqs)
             or (op.key in final and not writes_by_key[op.key].could_overwrite(op))]
    rolled1 = [op for op in acks1 if op.value in rolled_values]
    return {
        "majority_acknowledged": len(majority),
        "lost_majority": lost_majority,
        "acks1": {"acknowledged": len(acks1), "unobserved": len(unobserved), "lost": len(lost1),
                  "rolled_back": len(rolled1), "lost_examples": [_brief(op) for op in lost1[:5]]},
    }


def _longest_gap(points: Sequence[int], start: int, end: int) -> tuple[int, int]:
    """Longest interval inside [start, end] with no point; (length, its start) in ns."""
    low, high = bisect.bisect_right(points, start), bisect.bisect_left(points, end)
    marks = [start, *points[low:high], end]
    best = (0, start)
    for a, b in zip(marks, marks[1:]):
        if b - a > best[0]:
            best = (b - a, a)
    return best


def unavailability(ops: Iterable[OpRecord], windows: Sequence, run_start: int, run_end: int) -> dict:
    """Longest stretches without any successful operation: overall, and per fault event.

    An event's stretch is measured from the moment its fault began to the next event's
    start (or the end of the run): the outage it caused plus its recovery.
    """
    oks = sorted(op.complete_ns for op in ops if op.outcome == "ok")
    length, at = _longest_gap(oks, run_start, run_end)
    events = []
    for number, window in enumerate(windows):
        end = windows[number + 1].start_ns if number + 1 < len(windows) else run_end
        gap, gap_at = _longest_gap(oks, window.start_ns, end)
        events.append({"number": window.number, "fault": window.name, "actions": window.actions,
                       "start_s": round((window.start_ns - run_start) / 1e9, 3),
                       "held_s": round((window.heal_ns - window.start_ns) / 1e9, 3),
                       "longest_gap_s": round(gap / 1e9, 3),
                       "gap_after_fault_start_s": round((gap_at - window.start_ns) / 1e9, 3)})
    by_kind: dict[str, list[float]] = defaultdict(list)
    for event in events:
        by_kind["combo" if "+" in event["fault"] else event["fault"]].append(event["longest_gap_s"])
    return {
        "longest_gap_s": round(length / 1e9, 3),
        "longest_gap_at_s": round((at - run_start) / 1e9, 3),
        "by_fault": {kind: {"events": len(gaps), "max_gap_s": max(gaps),
                            "median_gap_s": round(statistics.median(gaps), 3)}
                     for kind, gaps in sorted(by_kind.items())},
        "events": events,
    }
