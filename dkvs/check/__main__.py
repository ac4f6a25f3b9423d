"""``python -m dkvs.check HISTORY.jsonl [--budget STATES]``: the checker's command line.

Exit status: 0 linearizable, 1 not linearizable (the key and a shrunk set of operations
that cannot be ordered are printed), 2 malformed input, unreadable file, or search budget
exhausted (the answer is unknown). Verdicts go to stdout, problems with the input to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import DEFAULT_BUDGET_STATES, CheckResult, MalformedHistory, Operation, check_history, load_history

__all__ = ["EXIT_LINEARIZABLE", "EXIT_NOT_LINEARIZABLE", "EXIT_UNKNOWN", "describe_operation", "format_operation", "main"]

EXIT_LINEARIZABLE = 0
EXIT_NOT_LINEARIZABLE = 1
EXIT_UNKNOWN = 2  # malformed input or budget exhausted: no verdict


def format_operation(op: Operation) -> str:
    """One line: process, f, what it did and saw, invoke time, complete time."""
    complete = "info" if op.complete_time is None else str(op.complete_time)
    return (f"  process {op.process:<4} {op.f:<6} {describe_operation(op):<20} "
            f"invoke {op.invoke_time:<14} complete {complete}")


def describe_operation(op: Operation) -> str:
    """What an operation asked and was told, short: ``'v3' if_seq=7 -> seq 9``."""
    if op.txn is not None:
        return _describe_txn(op)
    parts = [] if op.f == "delete" else [repr(op.value)]
    if op.found is not None:
        parts.append(f"found={str(op.found).lower()}")
    if op.if_seq is not None:
        parts.append(f"if_seq={op.if_seq}")
    if op.lease:
        parts.append("lease")
    if op.conflict is not None:
        parts.append(f"-> 409 at seq {op.conflict}")
    elif op.seq is not None:
        parts.append(f"seq {op.seq}")
    return " ".join(parts)


def _describe_txn(op: Operation) -> str:
    spec = op.txn
    compare = ", ".join(f"{c.key} {'==' if c.kind != 'exists' else 'exists'} "
                        f"{c.target!r}{' (seq)' if c.kind == 'seq' else ''}" for c in spec.compare)
    if op.succeeded is None:
        branches = f"then {_steps(spec.success)} else {_steps(spec.failure)}"
        return f"[{compare}] {branches} (outcome unknown)"
    results = ", ".join(_result(result) for result in op.results if result.op != "put")
    taken = "then" if op.succeeded else "else"
    seq = f" seq {op.seq}" if op.seq is not None else ""
    return f"[{compare}] {taken} {_steps(spec.branch(op.succeeded))}{seq}" + (f" saw {results}" if results else "")


def _steps(steps) -> str:
    return "{" + ", ".join(f"{s.op} {s.key}" + (f"={s.value!r}" if s.op == "put" else "") for s in steps) + "}"


def _result(result) -> str:
    if result.op == "delete":
        return f"{result.key} found={str(result.found).lower()}"
    return f"{result.key}={result.value!r}" + (f"@{result.seq}" if result.found else "")


def _report_linearizable(result: CheckResult) -> int:
    print(f"linearizable: {result.keys_checked} keys, {result.operations_checked} operations checked")
    return EXIT_LINEARIZABLE


def _report_violation(result: CheckResult) -> int:
    print(f"NOT linearizable: {'keys' if '+' in (result.key or '') else 'key'} {result.key!r}")
    print(result.reason)
    for op in result.operations:
        print(format_operation(op))
    return EXIT_NOT_LINEARIZABLE


def _report_unknown(result: CheckResult) -> int:
    print(f"unknown: {result.reason}")
    return EXIT_UNKNOWN


_REPORTS = {True: _report_linearizable, False: _report_violation, None: _report_unknown}


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dkvs.check",
                                     description="Check a JSON-lines key-value history for linearizability.")
    parser.add_argument("history", help="the history file, one JSON event per line")
    parser.add_argument("--budget", type=_positive, default=DEFAULT_BUDGET_STATES,
                        help=f"maximum search states per key (default {DEFAULT_BUDGET_STATES})")
    arguments = parser.parse_args(argv)
    try:
        result = check_history(load_history(arguments.history), budget=arguments.budget)
    except MalformedHistory as error:
        print(f"malformed history: {error}", file=sys.stderr)
        return EXIT_UNKNOWN
    except OSError as error:
        print(f"cannot read history: {error}", file=sys.stderr)
        return EXIT_UNKNOWN
    return _REPORTS[result.linearizable](result)


if __name__ == "__main__":
    sys.exit(main())
