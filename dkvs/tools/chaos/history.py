"""What the chaos clients saw: outcome classification and the history recorder.

A history is the checker's input (``docs/checker.md``): JSON lines
``{"process", "type", "f", "key", "value", "time"}`` where ``type`` is ``invoke`` when an
operation starts and ``ok``, ``fail`` or ``info`` when its answer came back. The whole
value of a linearizability check rests on one rule, kept in :func:`classify`:

* ``fail`` only when the operation *certainly* had no effect;
* ``info`` whenever there is any doubt (the write may have happened, now or later).

Calling a doubtful write ``fail`` can make a correct system look broken (a read sees a
value "never written"); calling it ``ok`` asserts it happened at a time it may not have.
Reads have no effect, so a read that got no answer is simply ``fail``.

The classification is a table per function (:data:`OUTCOMES`) applied to an
:class:`Answer`: whether the request left this machine, and the HTTP status and body.
A 503 is only certain when dkvs says the node that refused it never handed it to a
master: the two messages in :data:`UNFORWARDED_503_PREFIXES` (``NotMaster`` raised by the
node itself, and a forwarded request that reached a non-master). A 503 from a failed
forward ("the master at ... did not answer") may have reached the master: ``info``.

The :class:`HistoryRecorder` is shared by all client threads; it stamps each event with
``time.monotonic_ns()`` under its lock, so the event list is in time order and each
process's times never run backwards.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "Answer",
    "Classified",
    "HistoryRecorder",
    "OpRecord",
    "OUTCOMES",
    "UNFORWARDED_503_PREFIXES",
    "classify",
    "classify_conditional",
    "classify_txn",
    "describe",
]

# Messages of 503 answers given by a node that did not hand the request to any master.
# `NotMaster`'s default sentence (dkvs/api/service.py) and the refusal of a request that was
# already forwarded once (dkvs/api/handler.py). Any other 503 is treated as doubtful.
UNFORWARDED_503_PREFIXES = (
    "no master is known",
    "this node is not the master and the request was already forwarded once",
)
# Statuses a write gets only when the request was refused before it reached the log.
_REFUSED_STATUSES = frozenset({400, 401, 405, 411, 413, 414, 431})


@dataclass(frozen=True, slots=True)
class Answer:
    """What one HTTP attempt produced.

    ``sent`` is False when the connection could not be made (nothing left this machine);
    ``status`` is None when the request was sent but no answer came back (timeout, reset).
    ``body`` is the decoded JSON answer (``{}`` when absent or not JSON).
    """

    sent: bool
    status: int | None = None
    body: dict = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class Classified:
    """The history outcome of one answer: ``type`` (ok/fail/info), the value read by a get,
    and a delete's ``found`` (True: 200, False: 404, None: not known)."""

    type: str
    value: str | None = None
    found: bool | None = None
    conflict: int | None = None  # a conditional write answered 409: the key's seq then


_FAIL = Classified("fail")
_INFO = Classified("info")


def _error_code(answer: Answer) -> str:
    return str(answer.body.get("error", ""))


def _unforwarded_503(answer: Answer) -> bool:
    message = str(answer.body.get("message", ""))
    return _error_code(answer) == "no_master" and message.startswith(UNFORWARDED_503_PREFIXES)


def _get_outcome(answer: Answer) -> Classified:
    if answer.status == 200 and isinstance(answer.body.get("value"), str):
        return Classified("ok", answer.body["value"])
    if answer.status == 404 and _error_code(answer) == "key_not_found":
        return Classified("ok", None)
    return _FAIL  # a read changes nothing: without an answer it simply did not happen


def _write_outcome(answer: Answer, absent: Classified | None) -> Classified:
    """Shared by put and delete; ``absent`` is how a 404 key_not_found counts."""
    if answer.status == 200:
        return Classified("ok", None, True if absent is not None else None)
    if answer.status == 404 and absent is not None and _error_code(answer) == "key_not_found":
        return absent
    if answer.status in _REFUSED_STATUSES:
        return _FAIL
    if answer.status == 503 and _unforwarded_503(answer):
        return _FAIL
    return _INFO  # 504, 500, a forwarded 503, anything unexpected: it may have happened


def _put_outcome(answer: Answer) -> Classified:
    return _write_outcome(answer, None)


def _delete_outcome(answer: Answer) -> Classified:
    # A delete of an absent key is answered from the master's state without a log entry.
    return _write_outcome(answer, Classified("ok", None, False))


OUTCOMES: dict[str, Callable[[Answer], Classified]] = {
    "get": _get_outcome,
    "put": _put_outcome,
    "delete": _delete_outcome,
}


def classify_conditional(f: str, answer: Answer) -> Classified:
    """A put or delete with ``if_seq`` (or a leased put): a 409 is an ``ok`` that wrote
    nothing and saw the key at another seq (decided at apply time, in log order); a 404
    ``lease_not_found`` wrote nothing (``fail``); the rest as for a plain write."""
    if answer.sent and answer.status == 409 and isinstance(answer.body.get("seq"), int):
        return Classified("ok", conflict=answer.body["seq"])
    if answer.status == 404 and _error_code(answer) == "lease_not_found":
        return _FAIL
    return classify(f, answer)


def classify_txn(answer: Answer) -> Classified:
    """A transaction is one log entry: classified as a put (its results are in the body)."""
    if answer.sent and answer.status == 200 and not isinstance(answer.body.get("results"), list):
        return _INFO  # a 200 we cannot read: it happened, but we cannot say what it saw
    return classify("put", answer)


def describe(answer: Answer) -> str:
    """A short reason for the report's tally of failures: ``"503 no_master (forwarded)"``."""
    if not answer.sent:
        return f"not sent ({answer.error})"
    if answer.status is None:
        return f"no answer ({answer.error})"
    if answer.status == 200:
        return "200"
    reason = f"{answer.status} {_error_code(answer) or '?'}"
    if answer.status == 503:
        reason += " (not forwarded)" if _unforwarded_503(answer) else " (forwarded or other)"
    return reason


def classify(f: str, answer: Answer) -> Classified:
    """The history outcome of ``answer`` to an operation ``f`` (get, put or delete)."""
    if not answer.sent:
        return _FAIL  # connection refused: the request never left
    if answer.status is None:
        return _FAIL if f == "get" else _INFO
    return OUTCOMES[f](answer)


@dataclass(frozen=True, slots=True)
class OpRecord:
    """One operation with everything the report needs (the history keeps only its part).

    ``outcome`` is the classification of the answer; ``recorded`` what the history says
    (an acknowledged ``acks=1`` put is recorded as ``info``: dkvs does not promise it
    survives, so the checker may not assume it took effect). ``complete_ns`` is the time
    of the completion event; ``seq`` the log position an acknowledged write got.
    """

    process: int
    f: str
    key: str
    value: str | None
    acks: str | None
    invoke_ns: int
    complete_ns: int
    outcome: str
    recorded: str
    found: bool | None = None
    status: int | None = None
    node: str = ""
    reason: str = ""
    seq: int | None = None
    keys: tuple[str, ...] = ()  # every key the operation may write, when more than ``key``


class HistoryRecorder:
    """Thread-safe event list; every event is stamped under one lock (time order).

    ``clock`` returns nanoseconds (default ``time.monotonic_ns``). ``operations`` collects
    the :class:`OpRecord` of every completed operation, for the analysis.
    """

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._events: list[dict] = []
        self._operations: list[OpRecord] = []

    def invoke(self, process: int, f: str, key: str | None, value: str | None, **extra) -> int:
        """Record an invoke (a put carries its value; ``extra`` fields such as ``if_seq``,
        ``lease`` or ``txn`` are added when not None); returns its time."""
        event = {"process": process, "type": "invoke", "f": f, "key": key, "value": value}
        event.update((name, item) for name, item in extra.items() if item is not None)
        return self._append(event)

    def complete(self, process: int, type_: str, f: str, key: str | None, value: str | None,
                 found: bool | None = None, **extra) -> int:
        """Record a completion; ``found`` is added for deletes that know it, ``extra``
        fields (``seq``, ``conflict``, a txn's ``succeeded`` and ``results``) when not None."""
        event = {"process": process, "type": type_, "f": f, "key": key, "value": value}
        if found is not None:
            event["found"] = found
        event.update((name, item) for name, item in extra.items() if item is not None)
        return self._append(event)

    def add_operation(self, record: OpRecord) -> None:
        with self._lock:
            self._operations.append(record)

    def events(self) -> list[dict]:
        with self._lock:
            return list(self._events)

    def operations(self) -> list[OpRecord]:
        with self._lock:
            return list(self._operations)

    def write(self, path: str) -> None:
        """Save the events as JSON lines."""
        with open(path, "w", encoding="utf-8") as handle:
            for event in self.events():
                handle.write(json.dumps(event, ensure_ascii=False) + "\n")

    def _append(self, event: dict) -> int:
        with self._lock:
            now = self._clock()
            event["time"] = now
            self._events.append(event)
            return now
