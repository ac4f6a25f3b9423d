"""The linearizability checker on hand-made and generated histories (Python API).

Each hand-made history is a transcript: ``put``/``get``/``delete`` below build the two
events of one operation, with its invoke and completion times; ``history`` merges them in
time order. Every test name says what the history proves. The command line and malformed
input are covered in ``test_check_cli.py``.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import sys
from pathlib import Path

import pytest

from dkvs.check import CheckResult, MalformedHistory, check_history
from dkvs.check.history import pair_operations

BENCH_PATH = Path(__file__).resolve().parent.parent / "scripts" / "check_bench.py"

_processes = itertools.count(1000)


def _operation(f, key, value, start, end, outcome, process, found=None):
    process = next(_processes) if process is None else process
    invoke = {"process": process, "type": "invoke", "f": f, "key": key,
              "value": value if f == "put" else None, "time": start}
    if end is None:
        return [invoke]  # never completed: counts as info
    done = {"process": process, "type": outcome, "f": f, "key": key,
            "value": value if outcome == "ok" else None, "time": end}
    if found is not None:
        done["found"] = found
    return [invoke, done]


def put(value, start, end, outcome="ok", key="x", process=None):
    return _operation("put", key, value, start, end, outcome, process)


def get(value, start, end, outcome="ok", key="x", process=None):
    return _operation("get", key, value, start, end, outcome, process)


def delete(start, end, found=None, outcome="ok", key="x", process=None):
    return _operation("delete", key, None, start, end, outcome, process, found)


def history(*operations):
    """The events of ``operations`` in time order (the sort is stable, so each invoke stays
    before its own completion)."""
    return sorted((event for operation in operations for event in operation), key=lambda event: event["time"])


def check(*operations, budget=100_000) -> CheckResult:
    return check_history(history(*operations), budget=budget)


def assert_linearizable(*operations):
    result = check(*operations)
    assert result.linearizable is True, result


def assert_not_linearizable(*operations, key="x"):
    result = check(*operations)
    assert result.linearizable is False, result
    assert result.key == key
    assert result.operations, "a violation must come with a counterexample"
    return result


# -- basics -------------------------------------------------------------------------------


def test_empty_history_is_linearizable():
    result = check_history([])
    assert result.linearizable is True
    assert (result.keys_checked, result.operations_checked) == (0, 0)


def test_read_of_initial_state_sees_absent():
    assert_linearizable(get(None, 0, 10))


def test_read_after_completed_put_sees_it():
    assert_linearizable(put("1", 0, 10), get("1", 20, 30))


def test_result_counts_keys_and_operations():
    result = check(put("1", 0, 10, key="a"), get("1", 20, 30, key="a"), put("2", 0, 10, key="b"))
    assert (result.keys_checked, result.operations_checked) == (2, 3)


def test_check_history_accepts_a_plain_generator_of_events():
    events = history(put("1", 0, 10), get("1", 20, 30))
    assert check_history(event for event in events).linearizable is True


# -- stale reads --------------------------------------------------------------------------


def test_stale_read_of_absent_after_completed_put_is_not_linearizable():
    result = assert_not_linearizable(put("1", 0, 10), get(None, 20, 30))
    assert len(result.operations) == 2


def test_stale_read_of_overwritten_value_is_not_linearizable():
    result = assert_not_linearizable(put("1", 0, 10), put("2", 20, 30), get("1", 40, 50))
    assert sorted((op.f, op.value) for op in result.operations) == [("get", "1"), ("put", "1"), ("put", "2")]


def test_read_concurrent_with_a_write_may_see_old_or_new_value():
    assert_linearizable(put("1", 0, 10), put("2", 20, 60), get("1", 30, 40), get("2", 45, 50))
    assert_linearizable(put("1", 0, 10), put("2", 20, 60), get("2", 30, 40))


# -- concurrent writes --------------------------------------------------------------------


def test_concurrent_writes_with_reads_seeing_either_value_are_linearizable():
    assert_linearizable(put("1", 0, 100), put("2", 0, 100), get("2", 10, 20), get("1", 30, 40))
    assert_linearizable(put("1", 0, 100), put("2", 0, 100), get("1", 10, 20), get("2", 30, 40))


def test_reads_cannot_flip_back_to_an_overwritten_value_even_while_writes_overlap():
    assert_not_linearizable(put("1", 0, 100), put("2", 0, 100), get("1", 10, 20), get("2", 30, 40),
                            get("1", 50, 60))


def test_read_going_back_to_older_value_after_overlapping_writes_end_is_not_linearizable():
    assert_not_linearizable(put("1", 0, 10), put("2", 5, 15), get("2", 20, 30), get("1", 40, 50))


def test_equal_times_count_as_concurrent():
    assert_linearizable(put("1", 0, 10), get(None, 10, 20))


# -- info: unknown outcome ----------------------------------------------------------------


def test_info_put_may_take_effect_after_later_operations_complete():
    assert_linearizable(put("1", 0, 5, outcome="info"), put("2", 10, 20), get("2", 30, 40), get("1", 50, 60))


def test_put_never_completed_counts_as_info_and_may_be_read_much_later():
    assert_linearizable(put("1", 0, None, process=1), put("2", 10, 20), get("2", 30, 40), get("1", 500, 600))


def test_info_put_may_never_take_effect():
    assert_linearizable(put("1", 0, 5, outcome="info"), get(None, 10, 20))


def test_info_put_cannot_take_effect_before_its_invoke():
    assert_not_linearizable(get("1", 0, 10), put("1", 20, 30, outcome="info"))


def test_info_put_takes_effect_at_most_once():
    assert_not_linearizable(put("1", 0, 5, outcome="info"), put("2", 10, 20), get("1", 30, 40),
                            get("2", 50, 60), get("1", 70, 80))


def test_info_get_constrains_nothing():
    assert_linearizable(put("1", 0, 10), get(None, 20, 30, outcome="info"), get("1", 40, 50))


def test_info_delete_may_explain_a_later_read_of_absent():
    assert_linearizable(put("1", 0, 10), delete(20, 25, outcome="info"), get(None, 30, 40))


def test_read_of_a_value_never_written_is_not_linearizable():
    result = assert_not_linearizable(put("1", 0, 10), get("7", 20, 30))
    assert [(op.f, op.value) for op in result.operations] == [("get", "7")]


# -- fail: certainly no effect ------------------------------------------------------------


def test_read_of_a_failed_write_is_not_linearizable():
    assert_not_linearizable(put("1", 0, 10, outcome="fail"), get("1", 20, 30))


def test_failed_write_leaves_the_previous_value_readable():
    assert_linearizable(put("1", 0, 10), put("2", 20, 30, outcome="fail"), get("1", 40, 50))


# -- delete and its found answer ----------------------------------------------------------


def test_delete_found_true_after_a_put_is_linearizable():
    assert_linearizable(put("1", 0, 10), delete(20, 30, found=True), get(None, 40, 50))


def test_delete_found_true_on_an_absent_key_is_not_linearizable():
    assert_not_linearizable(delete(0, 10, found=True))


def test_delete_found_false_after_a_completed_put_is_not_linearizable():
    assert_not_linearizable(put("1", 0, 10), delete(20, 30, found=False))


def test_delete_found_false_on_an_absent_key_is_linearizable():
    assert_linearizable(delete(0, 10, found=False), put("1", 20, 30), delete(40, 50, found=True))


def test_delete_without_found_has_no_constraint():
    assert_linearizable(delete(0, 10), put("1", 20, 30), delete(40, 50), get(None, 60, 70))


def test_delete_found_true_may_be_explained_by_a_concurrent_put():
    assert_linearizable(put("1", 0, 100), delete(10, 20, found=True), get(None, 200, 210))


def test_value_found_by_a_delete_cannot_be_read_after_the_delete():
    # found=true pins the put before the delete, so nothing can bring "1" back afterwards.
    assert_not_linearizable(put("1", 0, 100), delete(10, 20, found=True), get("1", 200, 210))


def test_delete_found_true_may_be_explained_by_an_info_put():
    assert_linearizable(put("1", 0, 5, outcome="info"), delete(10, 20, found=True))


def test_two_deletes_cannot_both_find_a_single_put():
    assert_not_linearizable(put("1", 0, 10), delete(20, 30, found=True), delete(40, 50, found=True))


def test_read_after_a_completed_delete_cannot_see_the_deleted_value():
    assert_not_linearizable(put("1", 0, 10), delete(20, 30), get("1", 40, 50))


# -- keys ---------------------------------------------------------------------------------


def test_keys_are_independent_registers():
    result = assert_not_linearizable(put("1", 0, 10, key="a"), get("1", 20, 30, key="b"), key="b")
    assert {op.key for op in result.operations} == {"b"}


def test_counterexample_names_the_offending_key():
    result = check(put("1", 0, 10, key="a"), get("1", 20, 30, key="a"),
                   put("1", 0, 10, key="b"), get(None, 20, 30, key="b"),
                   put("1", 0, 10, key="c"), get("1", 20, 30, key="c"))
    assert (result.linearizable, result.key) == (False, "b")


def test_counterexample_is_shrunk_to_the_operations_of_a_stale_read_among_noise():
    rng = random.Random(3)
    operations = [put("old", 0, 10)]
    for step in range(1, 200):  # a sequential, valid run of writes and reads
        value = f"v{step}"
        operations += [put(value, step * 100, step * 100 + 10), get(value, step * 100 + 20, step * 100 + 30)]
        if rng.random() < 0.1:
            operations.append(delete(step * 100 + 40, step * 100 + 50, found=True))
            operations.append(get(None, step * 100 + 60, step * 100 + 70))
    operations.append(get("old", 50_000, 50_010))
    result = assert_not_linearizable(*operations)
    assert len(result.operations) <= 3
    assert ("get", "old", 50_000) in {(op.f, op.value, op.invoke_time) for op in result.operations}


# -- budget and scale ---------------------------------------------------------------------


def test_exhausted_budget_gives_no_verdict_and_names_the_key():
    result = check(put("1", 0, 100), put("2", 0, 100), get("2", 110, 120), budget=1)
    assert (result.linearizable, result.key) == (None, "x")
    assert "budget" in result.reason


def test_a_violation_on_one_key_wins_over_an_exhausted_budget_on_another():
    result = check(put("1", 0, 100, key="a"), put("2", 0, 100, key="a"), get("2", 110, 120, key="a"),
                   get("9", 0, 10, key="b"), budget=1)
    assert (result.linearizable, result.key) == (False, "b")


def test_deep_single_key_history_needs_no_recursion():
    operations = []
    for step in range(10_000):
        operations += [put(str(step), step * 10, step * 10 + 3, process=1),
                       get(str(step), step * 10 + 5, step * 10 + 8, process=1)]
    assert_linearizable(*operations)


# -- generated histories ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench():
    """scripts/check_bench.py, which simulates a correct register store."""
    spec = importlib.util.spec_from_file_location("check_bench", BENCH_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [7, 8])
def test_generated_history_from_a_correct_register_is_linearizable(bench, seed):
    ops = bench.simulate_history(3_000, keys=20, processes=10, seed=seed, info_rate=0.03, fail_rate=0.02)
    result = check_history(bench.to_events(ops))
    assert result.linearizable is True, f"seed {seed}: {result}"
    assert result.keys_checked == 20


@pytest.mark.parametrize("seed", [7, 8])
def test_generated_history_with_one_injected_stale_read_is_not_linearizable(bench, seed):
    ops = bench.simulate_history(3_000, keys=20, processes=10, seed=seed, info_rate=0.03, fail_rate=0.02)
    stale = bench.inject_stale_read(ops, seed)
    result = check_history(bench.to_events(ops))
    assert (result.linearizable, result.key) == (False, stale.key), f"seed {seed}: {result}"
    assert len(result.operations) <= 4, f"seed {seed}: {result.operations}"


def test_generated_single_key_history_with_heavy_concurrency_is_linearizable(bench):
    ops = bench.simulate_history(2_000, keys=1, processes=20, seed=5, info_rate=0.05, fail_rate=0.01)
    assert check_history(bench.to_events(ops)).linearizable is True


# -- agreement with a brute-force reference -----------------------------------------------


def _brute_force_linearizable(operations):
    """Try every order allowed by real time, with each info write placed or left out."""
    completed = [op for op in operations if op.complete_time is not None]
    unknown = [op for op in operations if op.complete_time is None and op.f != "get"]

    def legal(op, state):
        if op.f == "put":
            return True, op.value
        if op.f == "get":
            return state == op.value, state
        return op.found is None or op.found == (state is not None), None

    def search(left, unused, state):
        if not left:
            return True
        for op in left + unused:
            if any(other.complete_time < op.invoke_time for other in left if other is not op):
                continue
            ok, after = legal(op, state)
            if ok and search([o for o in left if o is not op], [o for o in unused if o is not op], after):
                return True
        return False

    return search(completed, unknown, None)


def _random_operations(rng, count):
    """Small overlapping histories over three values, so values repeat and collide."""
    operations = []
    for process in range(count):
        f = rng.choice(("put", "put", "get", "get", "delete"))
        start, outcome = rng.randint(0, 20), rng.choice(("ok", "ok", "ok", "ok", "info"))
        end = start + rng.randint(0, 12)
        value = rng.choice(("a", "b", "c")) if f == "put" else rng.choice((None, "a", "b", "c"))
        found = rng.choice((None, True, False)) if f == "delete" and outcome == "ok" else None
        operations.append(_operation(f, "k", value, start, end, outcome, process, found))
    return operations


def test_search_agrees_with_brute_force_on_random_small_histories():
    rng = random.Random(20240601)
    verdicts = {True: 0, False: 0}
    for trial in range(400):
        events = history(*_random_operations(rng, rng.randint(1, 6)))
        result = check_history(events)
        expected = _brute_force_linearizable(pair_operations(events).get("k", []))
        assert result.linearizable is expected, f"trial {trial}: {events}"
        verdicts[expected] += 1
    assert min(verdicts.values()) > 50, verdicts  # both verdicts were exercised


def test_malformed_history_raises_with_the_event_number():
    with pytest.raises(MalformedHistory, match=r"event 2: .*without an outstanding invoke"):
        check_history([{"process": 1, "type": "invoke", "f": "get", "key": "x", "value": None, "time": 0},
                       {"process": 2, "type": "ok", "f": "get", "key": "x", "value": None, "time": 1}])
