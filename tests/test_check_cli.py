"""``python -m dkvs.check``: exit codes, what it prints, and malformed input.

Exit 0 linearizable, 1 not linearizable, 2 no verdict (malformed input, unreadable file,
budget exhausted). The CLI runs in a subprocess, as a user would run it; the malformed
cases also go through :func:`load_history` + :func:`check_history` directly, which is
faster and pins the exact ``file:line`` and reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dkvs.check import MalformedHistory, check_history, load_history

REPO_ROOT = Path(__file__).resolve().parent.parent


def event(process, type_, f, key="x", value=None, time=0, **extra):
    return {"process": process, "type": type_, "f": f, "key": key, "value": value, "time": time, **extra}


def write_lines(path: Path, lines) -> Path:
    """Write events (dicts) or raw strings, one per line."""
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def run_checker(*arguments):
    return subprocess.run([sys.executable, "-m", "dkvs.check", *map(str, arguments)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)


VALID = [
    event(1, "invoke", "put", value="1", time=0),
    event(1, "ok", "put", value="1", time=10),
    event(2, "invoke", "get", time=20),
    event(2, "ok", "get", value="1", time=30),
]

STALE = [
    event(1, "invoke", "put", value="1", time=0),
    event(1, "ok", "put", value="1", time=10),
    event(2, "invoke", "get", key="y", time=12),
    event(2, "ok", "get", key="y", value=None, time=14),
    event(2, "invoke", "get", time=20),
    event(2, "ok", "get", value=None, time=30),
]


def test_cli_exits_0_and_summarises_a_linearizable_history(tmp_path):
    completed = run_checker(write_lines(tmp_path / "h.jsonl", VALID))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "linearizable: 1 keys, 2 operations checked"


def test_cli_exits_1_and_prints_the_key_and_the_operations_that_cannot_be_ordered(tmp_path):
    completed = run_checker(write_lines(tmp_path / "h.jsonl", STALE))
    assert completed.returncode == 1, completed.stderr
    assert "NOT linearizable: key 'x'" in completed.stdout
    lines = [line.split() for line in completed.stdout.splitlines() if line.startswith("  process")]
    assert lines == [
        ["process", "1", "put", "'1'", "invoke", "0", "complete", "10"],
        ["process", "2", "get", "None", "invoke", "20", "complete", "30"],
    ]


def test_cli_exits_2_when_the_budget_runs_out(tmp_path):
    concurrent = [
        event(1, "invoke", "put", value="1", time=0),
        event(2, "invoke", "put", value="2", time=0),
        event(1, "ok", "put", value="1", time=100),
        event(2, "ok", "put", value="2", time=100),
    ]
    completed = run_checker(write_lines(tmp_path / "h.jsonl", concurrent), "--budget", 1)
    assert completed.returncode == 2
    assert "key 'x'" in completed.stdout and "budget" in completed.stdout


def test_cli_exits_2_and_names_file_and_line_of_malformed_input(tmp_path):
    path = write_lines(tmp_path / "h.jsonl", VALID[:2] + ["", "{not json"])
    completed = run_checker(path)
    assert completed.returncode == 2
    assert f"{path}:4: not JSON" in completed.stderr


def test_cli_exits_2_for_a_completion_without_invoke(tmp_path):
    path = write_lines(tmp_path / "h.jsonl", [event(3, "ok", "get", time=5)])
    completed = run_checker(path)
    assert completed.returncode == 2
    assert f"{path}:1:" in completed.stderr and "without an outstanding invoke" in completed.stderr


def test_cli_exits_2_for_a_missing_file(tmp_path):
    completed = run_checker(tmp_path / "absent.jsonl")
    assert completed.returncode == 2
    assert "cannot read history" in completed.stderr


# -- malformed input, line by line ---------------------------------------------------------

GET_OK_WITHOUT_VALUE = {"process": 1, "type": "ok", "f": "get", "key": "x", "time": 1}

MALFORMED = {
    "bad_json": (['{"process": 1,'], 1, "not JSON"),
    "not_an_object": (["[1, 2]"], 1, "must be a JSON object"),
    "missing_field": ([{"process": 1, "type": "invoke", "f": "get", "key": "x"}], 1, "missing field 'time'"),
    "unknown_type": ([event(1, "begin", "get")], 1, "unknown type 'begin'"),
    "unknown_f": ([event(1, "invoke", "cas")], 1, "unknown f 'cas'"),
    "process_not_int": ([event("p1", "invoke", "get")], 1, "process must be an integer"),
    "time_not_int": ([event(1, "invoke", "get", time=1.5)], 1, "time must be an integer"),
    "value_not_string": ([event(1, "invoke", "put", value=7)], 1, "value must be a string or null"),
    "completion_without_invoke": ([event(1, "ok", "get")], 1, "without an outstanding invoke"),
    "mismatched_f": ([event(1, "invoke", "get"), event(1, "ok", "put", value="1", time=1)], 2,
                     "does not match"),
    "mismatched_key": ([event(1, "invoke", "get"), event(1, "ok", "get", key="y", time=1)], 2,
                       "does not match"),
    "second_invoke_while_outstanding": ([event(1, "invoke", "get"), event(1, "invoke", "get", time=1)], 2,
                                        "while its get of 'x' is outstanding"),
    "time_runs_backwards": ([event(1, "invoke", "get", time=10), event(1, "ok", "get", time=5)], 2,
                            "runs backwards"),
    "put_without_value": ([event(1, "invoke", "put")], 1, "must carry the value written"),
    "get_ok_without_value": ([event(1, "invoke", "get"), GET_OK_WITHOUT_VALUE], 2, "must carry the value read"),
    "found_on_a_put": ([event(1, "invoke", "put", value="1", found=True)], 1, "found only applies to delete"),
    "found_not_bool": ([event(1, "invoke", "delete"), event(1, "ok", "delete", time=1, found="yes")], 2,
                       "found must be true, false or null"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_history_is_reported_with_file_line_and_reason(tmp_path, case):
    lines, line_number, why = MALFORMED[case]
    path = write_lines(tmp_path / "h.jsonl", lines)
    with pytest.raises(MalformedHistory) as raised:
        check_history(load_history(path))
    assert raised.value.where == f"{path}:{line_number}"
    assert why in raised.value.why


def test_blank_lines_are_skipped_but_still_counted_in_line_numbers(tmp_path):
    path = write_lines(tmp_path / "h.jsonl", ["", VALID[0], "   ", VALID[1], event(1, "ok", "get", time=20)])
    with pytest.raises(MalformedHistory) as raised:
        check_history(load_history(path))
    assert raised.value.where == f"{path}:5"


def test_fail_and_info_completions_still_require_a_matching_invoke(tmp_path):
    for outcome in ("fail", "info"):
        path = write_lines(tmp_path / f"{outcome}.jsonl", [event(1, "invoke", "get"),
                                                            event(1, outcome, "delete", time=1)])
        with pytest.raises(MalformedHistory, match="does not match"):
            check_history(load_history(path))
