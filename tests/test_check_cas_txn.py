"""The checker's multi-key model: compare-and-set, conditional delete, transactions, leases.

Hand-made transcripts, as in ``test_check.py``: each helper builds the two events of one
operation with its invoke and completion times. Seqs are what dkvs would answer: a write's
log position, a read's version. Every test name says what the history proves.
"""

from __future__ import annotations

import itertools
import random

import pytest

from dkvs.check import MalformedHistory, check_history
from dkvs.check.groupsearch import search_group
from dkvs.check.history import pair_events
from dkvs.check.model import ABSENT, INVALID
from dkvs.check.multikey import SeqConflict, compile_group, resolve_seqs

_processes = itertools.count(5000)


def _op(f, key, start, end, invoke_extra=None, done_extra=None, outcome="ok", value=None, process=None):
    process = next(_processes) if process is None else process
    invoke = {"process": process, "type": "invoke", "f": f, "key": key, "value": value, "time": start}
    invoke.update(invoke_extra or {})
    if end is None:
        return [invoke]
    done = {"process": process, "type": outcome, "f": f, "key": key, "value": value, "time": end}
    done.update(done_extra or {})
    return [invoke, done]


def put(value, start, end, seq=None, key="x", if_seq=None, conflict=None, outcome="ok", lease=False):
    invoke = {"if_seq": if_seq} if if_seq is not None else {}
    if lease:
        invoke["lease"] = True
    done = {"seq": seq} if seq is not None else {}
    if conflict is not None:
        done["conflict"] = conflict
    return _op("put", key, start, end, invoke, done, outcome, value)


def get(value, start, end, seq=None, key="x"):
    return _op("get", key, start, end, None, {"seq": seq} if seq is not None else {}, value=value)


def delete(start, end, key="x", if_seq=None, found=None, conflict=None, seq=None):
    done = {k: v for k, v in (("found", found), ("conflict", conflict), ("seq", seq)) if v is not None}
    return _op("delete", key, start, end, {"if_seq": if_seq} if if_seq is not None else {}, done)


def txn(start, end, compare=(), success=(), failure=(), succeeded=True, results=(), seq=None, outcome="ok"):
    body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
    process = next(_processes)
    invoke = {"process": process, "type": "invoke", "f": "txn", "txn": body, "time": start}
    if end is None:
        return [invoke]
    done = {"process": process, "type": outcome, "f": "txn", "time": end}
    if outcome == "ok":
        done.update(succeeded=succeeded, results=list(results), seq=seq)
    return [invoke, done]


def w(key, value):
    return {"op": "put", "key": key, "value": value}


def r(key):
    return {"op": "get", "key": key}


def put_result(key, seq):
    return {"op": "put", "key": key, "seq": seq}


def get_result(key, value, seq):
    if value is None:
        return {"op": "get", "key": key, "found": False, "seq": 0}
    return {"op": "get", "key": key, "found": True, "seq": seq, "value": value}


def check(*operations, budget=100_000):
    events = sorted((e for op in operations for e in op), key=lambda e: e["time"])
    return check_history(events, budget=budget)


def assert_linearizable(*operations):
    result = check(*operations)
    assert result.linearizable is True, result


def assert_not_linearizable(*operations):
    result = check(*operations)
    assert result.linearizable is False, result
    assert result.operations, "a violation must come with a counterexample"
    return result


# -- compare-and-set ----------------------------------------------------------------------


def test_cas_from_the_seq_just_read_succeeds_and_a_racing_cas_gets_409():
    assert_linearizable(put("a", 0, 10, seq=1), get("a", 20, 30, seq=1),
                        put("b", 40, 50, seq=3, if_seq=1), put("c", 41, 49, if_seq=1, conflict=3),
                        get("b", 60, 70, seq=3))


def test_two_cas_from_the_same_seq_cannot_both_succeed():
    result = assert_not_linearizable(put("a", 0, 10, seq=1), put("b", 40, 50, seq=3, if_seq=1),
                                     put("c", 41, 52, seq=4, if_seq=1))
    assert {op.value for op in result.operations} == {"b", "c"}  # shrunk to the two winners
    assert result.key == "x"


def test_cas_only_if_absent_fails_after_a_completed_put():
    assert_not_linearizable(put("a", 0, 10, seq=1), put("b", 20, 30, seq=2, if_seq=0))


def test_cas_only_if_absent_succeeds_on_a_fresh_key():
    assert_linearizable(put("b", 20, 30, seq=2, if_seq=0), get("b", 40, 50, seq=2))


def test_a_409_must_name_the_seq_the_key_really_had():
    assert_not_linearizable(put("a", 0, 10, seq=1), put("b", 20, 30, seq=2),
                            put("c", 40, 50, if_seq=7, conflict=1))


def test_cas_may_follow_an_info_write_whose_seq_a_read_revealed():
    assert_linearizable(put("a", 0, None), get("a", 20, 30, seq=5), put("b", 40, 50, seq=6, if_seq=5))


def test_an_if_seq_nothing_resolves_is_checked_as_a_plain_write():
    assert_linearizable(put("a", 0, 10, seq=1), put("b", 20, 30, seq=9, if_seq=8), get("b", 40, 50, seq=9))


def test_one_seq_reported_with_two_values_is_a_violation():
    result = assert_not_linearizable(put("a", 0, 10, seq=4), get("b", 20, 30, seq=4), put("b", 12, 14, seq=5))
    assert "seq 4" in result.reason


def test_an_info_cas_from_a_version_nobody_read_may_explain_a_read():
    # Found by a long data chaos run: nobody read 'a', only the info CAS names its seq;
    # 'a' must still be told apart from other unread values, or the CAS can never apply.
    assert_linearizable(put("a", 0, 10, seq=1), put("b", 20, None, if_seq=1), get("b", 30, 40, seq=2))


def test_an_info_cas_may_take_effect_late():
    assert_linearizable(put("a", 0, 10, seq=1), put("b", 20, None, if_seq=1), get("a", 30, 40, seq=1),
                        get("b", 50, 60, seq=3))


# -- conditional delete --------------------------------------------------------------------


def test_conditional_delete_at_the_current_seq_deletes():
    assert_linearizable(put("a", 0, 10, seq=1), delete(20, 30, if_seq=1, seq=2), get(None, 40, 50))


def test_two_conditional_deletes_of_one_version_cannot_both_delete():
    assert_not_linearizable(put("a", 0, 10, seq=1), delete(20, 30, if_seq=1, seq=2),
                            put("b", 35, 38, seq=3), delete(40, 50, if_seq=1, seq=4))


def test_conditional_delete_409_and_404_are_observations():
    assert_linearizable(put("a", 0, 10, seq=1), delete(20, 30, if_seq=9, conflict=1),
                        delete(40, 50, found=True, seq=2), delete(60, 70, if_seq=1, found=False))
    assert_not_linearizable(put("a", 0, 10, seq=1), delete(20, 30, if_seq=1, found=False))


# -- transactions ---------------------------------------------------------------------------


def test_a_txn_writes_all_its_keys_at_one_instant():
    assert_linearizable(
        txn(0, 10, success=[w("x", "x1"), w("y", "y1")], results=[put_result("x", 1), put_result("y", 1)], seq=1),
        txn(20, 30, success=[r("x"), r("y")], results=[get_result("x", "x1", 1), get_result("y", "y1", 1)], seq=2),
        get("x1", 25, 35, key="x", seq=1))


def test_a_txn_seen_half_applied_is_caught():
    result = assert_not_linearizable(
        txn(0, 10, success=[w("x", "x1"), w("y", "y1")], results=[put_result("x", 1), put_result("y", 1)], seq=1),
        get("x1", 20, 30, key="x", seq=1), get(None, 40, 50, key="y"))
    assert result.key == "x+y"
    # Shrunk to the two reads that disagree, shown with the txn that wrote what they saw.
    assert [op.f for op in result.operations] == ["txn", "get", "get"]


def test_a_snapshot_read_cannot_mix_two_txns():
    write = [w("x", "x1"), w("y", "y1")]
    assert_not_linearizable(
        txn(0, 10, success=write, results=[put_result("x", 1), put_result("y", 1)], seq=1),
        txn(5, 60, success=[w("x", "x2"), w("y", "y2")], results=[put_result("x", 2), put_result("y", 2)], seq=2),
        txn(20, 50, success=[r("x"), r("y")], results=[get_result("x", "x2", 2), get_result("y", "y1", 1)], seq=3))


def test_a_snapshot_read_may_need_two_info_writes_at_once():
    # Found by the first chaos run of the data workload: neither info put alone makes the
    # txn's reads legal, both together do (a demand test per single write missed it).
    assert_linearizable(
        put("x1", 0, None, key="x"), put("y1", 1, None, key="y"),
        txn(20, 30, success=[r("x"), r("y")], results=[get_result("x", "x1", 5), get_result("y", "y1", 6)], seq=7))
    assert_linearizable(
        put("x0", 0, 5, key="x", seq=1),
        put("x1", 10, None, key="x"), put("y1", 11, None, key="y"),
        txn(20, 30, compare=[{"key": "x", "seq": 1}], success=[w("x", "x2")], failure=[r("x"), r("y")],
            succeeded=False, results=[get_result("x", "x1", 5), get_result("y", "y1", 6)], seq=7))


def test_txn_compare_on_seq_picks_the_branch():
    assert_linearizable(
        put("a", 0, 10, key="x", seq=1),
        txn(20, 30, compare=[{"key": "x", "seq": 1}], success=[w("x", "b"), w("y", "c")], failure=[r("x")],
            results=[put_result("x", 2), put_result("y", 2)], seq=2),
        txn(40, 50, compare=[{"key": "x", "seq": 1}], success=[w("x", "d")], failure=[r("x")], succeeded=False,
            results=[get_result("x", "b", 2)], seq=3))


def test_a_txn_comparing_an_unresolved_seq_may_have_failed_or_succeeded():
    # Found by a long data chaos run: seq 99 names a write nobody saw the value of (a 409
    # reported it), so the comparison is unknown and the recorded branch must be allowed.
    for succeeded in (False, True):
        steps = [get_result("x", "a", 1)] if not succeeded else [put_result("x", 100)]
        assert_linearizable(
            put("a", 0, 10, key="x", seq=1),
            txn(20, 30, compare=[{"key": "x", "seq": 99}], success=[w("x", "b")], failure=[r("x")],
                succeeded=succeeded, results=steps, seq=100))
    assert_not_linearizable(  # a resolved comparison that fails still refutes a success
        put("a", 0, 10, key="x", seq=1),
        txn(20, 30, compare=[{"key": "x", "seq": 99}, {"key": "x", "seq": 0}], success=[w("x", "b")],
            results=[put_result("x", 100)], seq=100))


def test_txn_claiming_success_on_a_stale_seq_is_caught():
    assert_not_linearizable(
        put("a", 0, 10, key="x", seq=1), put("b", 15, 18, key="x", seq=2),
        txn(20, 30, compare=[{"key": "x", "seq": 1}], success=[w("x", "c")], results=[put_result("x", 3)], seq=3))


def test_an_info_txn_may_have_applied_both_keys_or_none():
    body = [w("x", "x1"), w("y", "y1")]
    assert_linearizable(txn(0, None, success=body), get("x1", 20, 30, key="x", seq=1),
                        get("y1", 40, 50, key="y", seq=1))
    assert_not_linearizable(txn(0, None, success=body), get("x1", 20, 30, key="x", seq=1),
                            get(None, 40, 50, key="y"))


def test_a_txn_with_delete_prefix_is_refused_as_not_modelled():
    with pytest.raises(MalformedHistory, match="not modelled"):
        check(txn(0, 10, success=[{"op": "delete_prefix", "prefix": "a"}], results=[{}]))


def test_a_conflict_without_if_seq_is_malformed():
    with pytest.raises(MalformedHistory, match="conflict only applies"):
        check(put("a", 0, 10, conflict=3))


# -- leases ----------------------------------------------------------------------------------


def test_a_leased_key_may_vanish_at_any_later_time():
    assert_linearizable(put("a", 0, 10, seq=1, lease=True), get("a", 20, 30, seq=1), get(None, 40, 50),
                        get(None, 60, 70))


def test_a_plain_key_may_not_vanish():
    assert_not_linearizable(put("a", 0, 10, seq=1), get("a", 20, 30, seq=1), get(None, 40, 50))


def test_an_expired_key_does_not_come_back():
    assert_not_linearizable(put("a", 0, 10, seq=1, lease=True), get(None, 20, 30), get("a", 40, 50, seq=1))


# -- the group search agrees with a brute force over the same model -------------------------


def _brute_force(completed, unknown, state):
    if not completed:
        return True
    for op in completed + unknown:
        if any(other.deadline < op.invoke for other in completed if other is not op):
            continue
        after = op.step(state)
        if after is not INVALID and _brute_force([o for o in completed if o is not op],
                                                 [o for o in unknown if o is not op], after):
            return True
    return False


def _random_history(rng, kinds=("put", "cas", "get", "txn", "read"), info_rate=0.35):
    """Up to six overlapping operations on x and y; reads pick among values really
    written (or absent), so reads often need info writes, sometimes several at once."""
    operations, seq = [], 0
    written = {"x": [(None, 0)], "y": [(None, 0)]}

    def read(key):
        return rng.choice(written[key])

    for _ in range(rng.randint(1, 6)):
        start = rng.randint(0, 20)
        end = None if rng.random() < info_rate else start + rng.randint(0, 12)
        kind = rng.choice(kinds)
        key = rng.choice("xy")
        seq += 1
        value = f"v{seq}"
        if kind == "put":
            operations.append(put(value, start, end, seq=seq, key=key))
            written[key].append((value, seq))
        elif kind == "cas":
            if_seq = read(key)[1]
            if rng.random() < 0.3:
                operations.append(put(value, start, end, key=key, if_seq=if_seq, conflict=read(key)[1]))
            else:
                operations.append(put(value, start, end, seq=seq, key=key, if_seq=if_seq))
                written[key].append((value, seq))
        elif kind == "get":
            seen, version = read(key)
            operations.append(get(seen, start, end, key=key, seq=version or None))
        elif kind == "txn":
            operations.append(txn(start, end, success=[w("x", value), w("y", value + "y")],
                                  results=[put_result("x", seq), put_result("y", seq)], seq=seq))
            written["x"].append((value, seq))
            written["y"].append((value + "y", seq))
        else:
            results = [get_result(k, *read(k)) for k in "xy"]
            operations.append(txn(start, end, success=[r("x"), r("y")], results=results, seq=seq))
    return operations


@pytest.mark.parametrize("kinds, info_rate", [
    (("put", "cas", "get", "txn", "read"), 0.35),
    (("put", "put", "read"), 0.6),  # snapshot reads that need several info writes at once
], ids=["all-kinds", "info-puts-and-snapshots"])
def test_group_search_agrees_with_brute_force_on_random_small_histories(kinds, info_rate):
    rng = random.Random(14)
    verdicts = {True: 0, False: 0}
    for trial in range(800):
        events = sorted((e for op in _random_history(rng, kinds, info_rate) for e in op), key=lambda e: e["time"])
        operations = pair_events(events)
        try:
            resolution = resolve_seqs(operations)
        except SeqConflict:
            continue  # random reads claimed a seq for two values: refuted before any search
        completed, unknown = compile_group(("x", "y"), operations, resolution)
        expected = _brute_force(completed, unknown, (ABSENT, ABSENT))
        found = search_group(completed, unknown, (ABSENT, ABSENT), 100_000).linearizable
        assert found is expected, f"trial {trial}: {events}"
        verdicts[expected] += 1
    assert min(verdicts.values()) > 40, verdicts
