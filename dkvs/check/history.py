"""Reading a recorded history and pairing its events into per-key operations.

A history is what clients saw: one *invoke* event when an operation started and one
completion (*ok*, *fail* or *info*) when its answer came back, interleaved across processes.
The search wants something else: operations, each an interval ``[invoke, complete]`` with its
effect. This module does the pairing and refuses anything it cannot pair unambiguously:

* a process has at most one operation outstanding, so a completion belongs to that
  process's outstanding invoke, and must name the same ``f`` and ``key``;
* time never runs backwards within one process (a completion is not earlier than its
  invoke, the next invoke is not earlier than the previous completion);
* ``fail`` means the operation certainly had no effect, so it is dropped here;
* ``info``, and an invoke never completed by the end of the history, mean "unknown": the
  operation becomes an :class:`Operation` whose ``complete_time`` is ``None`` (+infinity).

Conditional writes (``if_seq``), the seqs answers carried, leased puts and multi-key
transactions (``f: "txn"``, parsed by :mod:`dkvs.check.txn`) are paired the same way and
kept on the :class:`Operation`; the fields are listed in ``docs/checker.md``.

The first violation raises :class:`MalformedHistory` naming ``file:line`` (or ``event N``
when the events did not come from a file).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .txn import TxnResult, TxnSpec, parse_results, parse_txn

__all__ = [
    "EVENT_TYPES",
    "FUNCTIONS",
    "History",
    "MalformedHistory",
    "Operation",
    "load_history",
    "pair_events",
    "pair_operations",
]

EVENT_TYPES = ("invoke", "ok", "fail", "info")
FUNCTIONS = ("put", "get", "delete", "txn")


class MalformedHistory(ValueError):
    """The history cannot be read as a sequence of well-paired operations.

    ``where`` is ``"file:line"`` (or ``"event N"``); ``why`` says what rule was broken.
    """

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation on one key, as an interval of time.

    ``value`` is the value written (put) or read (get; ``None`` = absent); ``None`` for a
    delete. ``found`` is a delete's answer when the client recorded it (``True`` = the key
    was present), else ``None``. ``complete_time`` is ``None`` when the outcome is unknown:
    the operation may take effect at any time after ``invoke_time``, or never.
    """

    process: int
    f: str
    key: str
    value: str | None
    invoke_time: int
    complete_time: int | None
    found: bool | None = None
    if_seq: int | None = None  # a conditional put or delete: only if the key is at this seq
    seq: int | None = None  # the seq the answer gave: a write's log position, a read's version
    conflict: int | None = None  # a conditional write answered 409: the key was at this seq
    lease: bool = False  # a put with a lease: the key may vanish at any later time (expiry)
    txn: TxnSpec | None = None
    succeeded: bool | None = None  # a completed txn: which branch ran
    results: tuple[TxnResult, ...] | None = None

    @property
    def is_info(self) -> bool:
        return self.complete_time is None

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys the operation touches: one, or a transaction's."""
        return self.txn.keys if self.txn is not None else (self.key,)

    @property
    def is_plain(self) -> bool:
        """A put, get or delete the single-register search handles (no condition, no txn)."""
        return self.txn is None and self.if_seq is None


@dataclass(frozen=True, slots=True)
class History:
    """Events read from a file, remembering each one's line so errors can point at it.

    Iterating yields the event dicts, so a ``History`` can go wherever an iterable of
    events is accepted.
    """

    source: str
    events: tuple[dict, ...]
    lines: tuple[int, ...]

    def __iter__(self) -> Iterator[dict]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def where(self, index: int) -> str:
        return f"{self.source}:{self.lines[index]}"


def load_history(path: str | Path) -> History:
    """Read a JSON-lines history; blank lines are skipped. Raises :class:`MalformedHistory`
    for a line that is not JSON, and ``OSError`` when the file cannot be read."""
    source = str(path)
    events: list[dict] = []
    lines: list[int] = []
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                events.append(json.loads(text))
            except json.JSONDecodeError as error:
                raise MalformedHistory(f"{source}:{number}", f"not JSON ({error.msg})") from None
            lines.append(number)
    return History(source, tuple(events), tuple(lines))


def pair_events(events: Iterable[dict]) -> list[Operation]:
    """Validate ``events`` and pair them into operations, in completion order.

    Failed operations are left out; info and never-completed ones have
    ``complete_time=None``.
    """
    where: Callable[[int], str] = events.where if isinstance(events, History) else _event_number
    pairing = _Pairing()
    for index, event in enumerate(events):
        try:
            _validate(event)
            _HANDLERS[event["type"]](pairing, event)
        except _Broken as broken:
            raise MalformedHistory(where(index), str(broken)) from None
    pairing.finish()
    return pairing.operations


def pair_operations(events: Iterable[dict]) -> dict[str, list[Operation]]:
    """:func:`pair_events` grouped by ``Operation.key`` (a txn under its keys joined by '+')."""
    by_key: dict[str, list[Operation]] = {}
    for operation in pair_events(events):
        by_key.setdefault(operation.key, []).append(operation)
    return by_key


# -- validation --------------------------------------------------------------------------


class _Broken(Exception):
    """Raised inside this module; turned into MalformedHistory once the location is known."""


def _event_number(index: int) -> str:
    return f"event {index + 1}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(event: object) -> None:
    """Check field presence and types; the pairing rules are checked by the handlers."""
    if not isinstance(event, dict):
        raise _Broken(f"an event must be a JSON object, not {type(event).__name__}")
    for field in ("process", "type", "f", "time"):
        if field not in event:
            raise _Broken(f"missing field {field!r}")
    if "key" not in event and event.get("f") != "txn":
        raise _Broken("missing field 'key'")
    if not _is_int(event["process"]):
        raise _Broken(f"process must be an integer, not {event['process']!r}")
    if event["type"] not in EVENT_TYPES:
        raise _Broken(f"unknown type {event['type']!r} (expected one of {', '.join(EVENT_TYPES)})")
    if event["f"] not in FUNCTIONS:
        raise _Broken(f"unknown f {event['f']!r} (expected one of {', '.join(FUNCTIONS)})")
    if event["f"] != "txn" and not isinstance(event["key"], str):
        raise _Broken(f"key must be a string, not {event['key']!r}")
    if not _is_int(event["time"]):
        raise _Broken(f"time must be an integer, not {event['time']!r}")
    value = event.get("value")
    if value is not None and not isinstance(value, str):
        raise _Broken(f"value must be a string or null, not {value!r}")
    if len(event) > 6:  # the six fields every event has were checked above; the rest are rare
        _validate_optional(event)


def _validate_optional(event: dict) -> None:
    found = event.get("found")
    if found is not None:
        if not isinstance(found, bool):
            raise _Broken(f"found must be true, false or null, not {found!r}")
        if event["f"] != "delete":
            raise _Broken(f"found only applies to delete, not {event['f']}")
    for field in ("if_seq", "seq", "conflict"):
        number = event.get(field)
        if number is not None and not (_is_int(number) and number >= 0):
            raise _Broken(f"{field} must be an integer >= 0, not {number!r}")
    if event.get("if_seq") is not None and event["f"] not in ("put", "delete"):
        raise _Broken(f"if_seq only applies to put and delete, not {event['f']}")


# -- pairing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Invoke:
    f: str
    key: str
    value: str | None
    time: int
    if_seq: int | None = None
    lease: bool = False
    txn: TxnSpec | None = None


class _Pairing:
    """Outstanding invokes per process, last time seen per process, and the result."""

    def __init__(self) -> None:
        self.outstanding: dict[int, _Invoke] = {}
        self.last_time: dict[int, int] = {}
        self.operations: list[Operation] = []

    def advance_clock(self, process: int, time: int) -> None:
        last = self.last_time.get(process)
        if last is not None and time < last:
            raise _Broken(f"time {time} runs backwards for process {process} (last was {last})")
        self.last_time[process] = time

    def take_outstanding(self, event: dict) -> _Invoke:
        process = event["process"]
        invoke = self.outstanding.pop(process, None)
        if invoke is None:
            raise _Broken(f"{event['type']} of {event['f']} without an outstanding invoke "
                          f"for process {process}")
        if invoke.f != event["f"] or (invoke.txn is None and invoke.key != event["key"]):
            raise _Broken(
                f"{event['type']} of {event['f']} {event['key']!r} does not match process {process}'s "
                f"outstanding invoke of {invoke.f} {invoke.key!r}"
            )
        return invoke

    def record(self, process: int, invoke: _Invoke, value: str | None, complete: int | None,
               found: bool | None = None, seq: int | None = None, conflict: int | None = None,
               succeeded: bool | None = None, results: tuple | None = None) -> None:
        self.operations.append(Operation(process, invoke.f, invoke.key, value, invoke.time, complete, found,
                                         invoke.if_seq, seq, conflict, invoke.lease, invoke.txn, succeeded, results))

    def finish(self) -> None:
        """Invokes never completed count as info: they may or may not have taken effect."""
        for process, invoke in self.outstanding.items():
            self.record(process, invoke, _written(invoke), None)
        self.outstanding.clear()


def _written(invoke: _Invoke) -> str | None:
    return invoke.value if invoke.f == "put" else None


def _on_invoke(pairing: _Pairing, event: dict) -> None:
    process = event["process"]
    pending = pairing.outstanding.get(process)
    if pending is not None:
        raise _Broken(f"process {process} invokes {event['f']} while its {pending.f} of {pending.key!r} "
                      "is outstanding")
    if event["f"] == "put" and event.get("value") is None:
        raise _Broken("a put's invoke must carry the value written")
    pairing.advance_clock(process, event["time"])
    if len(event) == 6 and event["f"] != "txn":  # the common case: no condition, no lease, no txn
        pairing.outstanding[process] = _Invoke(event["f"], event["key"], event.get("value"), event["time"])
        return
    spec = None
    if event["f"] == "txn":
        try:
            spec = parse_txn(event.get("txn"))
        except ValueError as error:
            raise _Broken(str(error)) from None
    key = "+".join(spec.keys) if spec is not None else event["key"]
    lease = event.get("lease") is not None and event.get("lease") is not False
    pairing.outstanding[process] = _Invoke(event["f"], key, event.get("value"), event["time"],
                                           event.get("if_seq"), lease, spec)


def _on_ok(pairing: _Pairing, event: dict) -> None:
    invoke = pairing.take_outstanding(event)
    pairing.advance_clock(event["process"], event["time"])
    if invoke.f == "get":
        if "value" not in event:
            raise _Broken("a get's ok must carry the value read (null when absent)")
        value = event["value"]
    else:
        value = _written(invoke)
    if len(event) == 6:  # nothing optional: the common case, kept fast
        pairing.operations.append(Operation(event["process"], invoke.f, invoke.key, value, invoke.time,
                                            event["time"], None, invoke.if_seq, None, None, invoke.lease, invoke.txn))
        return
    conflict, results = event.get("conflict"), None
    if conflict is not None and invoke.if_seq is None:
        raise _Broken("conflict only applies to a put or delete with if_seq")
    if invoke.txn is not None:
        try:
            results = parse_results(invoke.txn, event.get("succeeded"), event.get("results"))
        except ValueError as error:
            raise _Broken(str(error)) from None
    pairing.record(event["process"], invoke, value, event["time"], event.get("found"), event.get("seq"),
                   conflict, event.get("succeeded"), results)


def _on_fail(pairing: _Pairing, event: dict) -> None:
    pairing.take_outstanding(event)
    pairing.advance_clock(event["process"], event["time"])


def _on_info(pairing: _Pairing, event: dict) -> None:
    invoke = pairing.take_outstanding(event)
    pairing.advance_clock(event["process"], event["time"])
    pairing.record(event["process"], invoke, _written(invoke), None, seq=event.get("seq"))


_HANDLERS: dict[str, Callable[[_Pairing, dict], None]] = {
    "invoke": _on_invoke,
    "ok": _on_ok,
    "fail": _on_fail,
    "info": _on_info,
}
