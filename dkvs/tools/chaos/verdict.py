"""Asking the linearizability checker (:mod:`dkvs.check`) about a recorded history.

In-process through ``dkvs.check.check_history`` when it imports; otherwise through its
command line (``python -m dkvs.check FILE``) in a subprocess; when neither exists the
verdict is ``"unavailable"`` and the run says so instead of failing.

Verdicts: ``linearizable``, ``not linearizable`` (with the key and the shrunk
counterexample), ``unknown`` (search budget exhausted, or a history the checker refused —
the latter is a bug in the recorder), ``unavailable``.

**A second, relaxed pass.** A delete that answered 200 is recorded with ``found: true``:
the key must have been present. That constraint is cheap to record and expensive to search
(every write of unknown outcome may then be the one that made the key present), so on a
delete-heavy history the budget can run out. When it does, the history is checked again
with ``found: true`` dropped — deletes that found the key become plain deletes. That
history allows *more* orders than the real one, so if even it is not linearizable, neither
is the real one: the verdict is then a certain ``not linearizable`` (``relaxed`` says so).
If the relaxed history is linearizable the verdict stays ``unknown``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["check_linearizability", "VERDICTS"]

VERDICTS = ("linearizable", "not linearizable", "unknown", "unavailable")
_CLI_VERDICTS = {0: "linearizable", 1: "not linearizable", 2: "unknown"}


def check_linearizability(events: Sequence[dict], history_path: str | None, budget: int,
                          timeout_s: float | None = None) -> dict:
    """The checker's verdict on ``events`` (also saved at ``history_path`` for the CLI)."""
    started = time.monotonic()
    try:
        from dkvs.check import MalformedHistory, check_history
    except ImportError:
        doc = _check_by_cli(history_path, budget, timeout_s)
    else:
        try:
            doc = _verdict(check_history(events, budget=budget))
            if doc["verdict"] == "unknown":
                relaxed = _verdict(check_history(_without_found_true(events), budget=budget))
                if relaxed["verdict"] == "not linearizable":
                    doc = dict(relaxed, relaxed=True, reason="even with deletes' found=true ignored, "
                               + relaxed["reason"])
                else:
                    doc["reason"] += f"; with deletes' found=true ignored: {relaxed['verdict']}"
        except MalformedHistory as exc:
            doc = {"verdict": "unknown", "linearizable": None, "reason": f"the checker refused the history: {exc}"}
    doc["seconds"] = round(time.monotonic() - started, 3)
    return doc


def _verdict(result) -> dict:
    return {"verdict": _VERDICT_OF[result.linearizable], "linearizable": result.linearizable,
            "reason": result.reason, "key": result.key, "keys": result.keys_checked,
            "operations": result.operations_checked, "relaxed": False,
            "counterexample": [_operation(op) for op in result.operations]}


def _without_found_true(events: Sequence[dict]) -> list[dict]:
    """The events with ``found: true`` removed (a weaker claim: the delete happened)."""
    return [{k: v for k, v in event.items() if k != "found"} if event.get("found") is True else event
            for event in events]


_VERDICT_OF = {True: "linearizable", False: "not linearizable", None: "unknown"}


def _operation(op) -> dict:
    from dkvs.check.__main__ import describe_operation
    return {"process": op.process, "f": op.f, "key": op.key, "value": op.value, "found": op.found,
            "what": describe_operation(op),
            "invoke": op.invoke_time, "complete": op.complete_time}


def _check_by_cli(history_path: str | None, budget: int, timeout_s: float | None) -> dict:
    if history_path is None:
        return {"verdict": "unavailable", "linearizable": None, "reason": "dkvs.check is not importable"}
    try:
        done = subprocess.run([sys.executable, "-m", "dkvs.check", history_path, "--budget", str(budget)],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"verdict": "unknown", "linearizable": None, "reason": "the checker ran out of time"}
    if "No module named" in done.stderr:
        return {"verdict": "unavailable", "linearizable": None, "reason": "dkvs.check is not installed"}
    verdict = _CLI_VERDICTS.get(done.returncode, "unknown")
    linearizable = {"linearizable": True, "not linearizable": False}.get(verdict)
    return {"verdict": verdict, "linearizable": linearizable,
            "reason": (done.stdout.strip() or done.stderr.strip())[:4000]}
