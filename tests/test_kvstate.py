"""The key-value state machine: apply, undo, rollback, snapshots, listing (dkvs.core.kvstate)."""

from __future__ import annotations

import random

import pytest

from dkvs.core.kvstate import KVState
from dkvs.core.log import OP_DELETE, OP_MEMBER_ADD, OP_NOOP, OP_PUT, Entry


def put(seq: int, key: str, value: str, epoch: int = 1) -> Entry:
    return Entry(epoch, seq, OP_PUT, key, value)


def delete(seq: int, key: str, epoch: int = 1) -> Entry:
    return Entry(epoch, seq, OP_DELETE, key)


def test_apply_puts_and_deletes():
    state = KVState()
    missing = state.apply([put(1, "a", "1"), put(2, "b", "2"), put(3, "a", "3"), delete(4, "b"),
                           delete(5, "zz")], commit_seq=0)
    assert state.data == {"a": ("3", 3)}
    assert missing == [(5, 0)]  # a delete that found nothing changes nothing (404)
    assert state.applied_seq == 5 and len(state) == 1


def test_compare_and_set_applies_only_when_the_key_seq_matches():
    state = KVState()
    rejected = state.apply([Entry(1, 1, OP_PUT, "a", "first", cond=0),   # absent: holds
                            Entry(1, 2, OP_PUT, "a", "lost", cond=0),    # no longer absent
                            Entry(1, 3, OP_PUT, "a", "second", cond=1),  # key last set at seq 1
                            Entry(1, 4, OP_PUT, "a", "stale", cond=1)], commit_seq=0)
    assert state.data == {"a": ("second", 3)}
    assert rejected == [(2, 1), (4, 3)]  # with the key's current seq, for the 409 answer
    assert state.applied_seq == 4
    state.rollback(1)  # a rejected entry leaves nothing to undo
    assert state.data == {"a": ("first", 1)} and state.applied_seq == 1


def test_non_data_entries_advance_applied_seq_only():
    state = KVState()
    state.apply([Entry(1, 1, OP_MEMBER_ADD, "n1", "http://x"), Entry(1, 2, OP_NOOP)], commit_seq=2)
    assert state.data == {} and state.applied_seq == 2 and state.commit_seq == 2


def test_replayed_entries_are_skipped():
    # After a restart the host may replay entries already applied: applying is idempotent.
    state = KVState()
    state.apply([put(1, "a", "1"), put(2, "a", "2")], commit_seq=0)
    state.apply([put(1, "a", "1"), put(2, "a", "2"), put(3, "b", "3")], commit_seq=0)
    assert state.data == {"a": ("2", 2), "b": ("3", 3)}


def test_rollback_restores_previous_values():
    state = KVState()
    state.apply([put(1, "a", "old"), put(2, "gone", "x")], commit_seq=2)
    state.apply([put(3, "a", "new"), delete(4, "gone"), put(5, "fresh", "f")], commit_seq=2)
    state.rollback(2)
    assert state.data == {"a": ("old", 1), "gone": ("x", 2)}
    assert state.applied_seq == 2
    assert list(state.keys.iter_from("")) == ["a", "gone"]


def test_partial_rollback_then_new_entries():
    state = KVState()
    state.apply([put(1, "a", "1"), put(2, "a", "2"), put(3, "a", "3")], commit_seq=1)
    state.rollback(2)
    assert state.get("a") == ("2", 2)
    state.apply([put(3, "a", "other", epoch=2)], commit_seq=1)
    assert state.get("a") == ("other", 3)


def test_rollback_below_commit_is_refused():
    state = KVState()
    state.apply([put(1, "a", "1"), put(2, "a", "2")], commit_seq=2)
    with pytest.raises(AssertionError):
        state.rollback(1)


def test_commit_prunes_undo_and_never_passes_applied():
    state = KVState()
    state.apply([put(1, "a", "1"), put(2, "b", "2"), put(3, "c", "3")], commit_seq=0)
    state.set_commit(2)
    assert state.commit_seq == 2
    state.rollback(2)  # only seq 3 is undone
    assert state.data == {"a": ("1", 1), "b": ("2", 2)}
    state.set_commit(10)  # the commit point never claims more than is applied
    assert state.commit_seq == 2
    state.set_commit(1)  # and never moves back
    assert state.commit_seq == 2


def test_snapshot_items_are_taken_at_the_commit_point():
    # A snapshot must never contain a write that can still be rolled back.
    state = KVState()
    state.apply([put(1, "a", "1"), put(2, "b", "2")], commit_seq=2)
    state.apply([put(3, "a", "uncommitted"), delete(4, "b"), put(5, "c", "new")], commit_seq=2)
    seq, items = state.snapshot_items()
    assert seq == 2
    assert items == [["a", "1", 1], ["b", "2", 2]]
    assert state.get("a") == ("uncommitted", 3)  # the live state is untouched


def test_get_committed_ignores_writes_that_may_roll_back():
    # Regression: consistent reads returned uncommitted writes (seed 1438 of the
    # randomized simulation); get_committed is what a linearizable read may answer.
    state = KVState()
    state.apply([put(1, "a", "1"), put(2, "b", "2")], commit_seq=2)
    state.apply([put(3, "a", "x"), put(4, "a", "y"), delete(5, "b"), put(6, "c", "new")], commit_seq=2)
    assert state.get_committed("a") == ("1", 1)
    assert state.get_committed("b") == ("2", 2)
    assert state.get_committed("c") is None
    assert state.get_committed("absent") is None
    state.set_commit(4)
    assert state.get_committed("a") == ("y", 4) and state.get_committed("b") == ("2", 2)
    state.set_commit(6)
    assert state.get_committed("b") is None and state.get_committed("c") == ("new", 6)


def test_restore_replaces_everything():
    state = KVState()
    state.apply([put(1, "old", "x"), put(2, "a", "y")], commit_seq=1)
    state.restore(7, [["a", "1", 3], ["b", "2", 7]])
    assert state.data == {"a": ("1", 3), "b": ("2", 7)}
    assert state.applied_seq == state.commit_seq == 7
    assert list(state.keys.iter_from("")) == ["a", "b"]
    state.apply([put(8, "c", "3")], commit_seq=7)
    state.rollback(7)  # undo works again after a restore
    assert sorted(state.data) == ["a", "b"]


def test_snapshot_restore_round_trip():
    state = KVState()
    state.apply([put(i, f"k{i % 7}", f"v{i}") for i in range(1, 40)], commit_seq=30)
    seq, items = state.snapshot_items()
    copy = KVState()
    copy.restore(seq, items)
    copy.apply([put(i, f"k{i % 7}", f"v{i}") for i in range(31, 40)], commit_seq=30)
    assert copy.data == state.data


def listing_state() -> KVState:
    state = KVState()
    keys = ["a", "app", "apple", "apply", "b", "ba", "banana", "c"]
    state.apply([put(i, k, k.upper()) for i, k in enumerate(keys, start=1)], commit_seq=len(keys))
    return state


def test_items_with_prefix():
    state = listing_state()
    rows, nxt = state.items("ap", None, 10)
    assert [k for k, _, _ in rows] == ["app", "apple", "apply"] and nxt is None
    assert rows[0] == ("app", "APP", 2)


def test_items_paginates_with_after_and_limit():
    state = listing_state()
    rows, nxt = state.items("", None, 3)
    assert [k for k, _, _ in rows] == ["a", "app", "apple"] and nxt == "apple"
    rows, nxt = state.items("", nxt, 3)
    assert [k for k, _, _ in rows] == ["apply", "b", "ba"] and nxt == "ba"
    rows, nxt = state.items("", nxt, 3)
    assert [k for k, _, _ in rows] == ["banana", "c"] and nxt is None


def test_items_exact_page_reports_no_next():
    state = listing_state()
    rows, nxt = state.items("b", None, 3)
    assert [k for k, _, _ in rows] == ["b", "ba", "banana"] and nxt is None


def test_items_after_outside_prefix():
    state = listing_state()
    # ``after`` before the prefix starts the listing at the prefix; after it, nothing.
    assert [k for k, _, _ in state.items("b", "a", 10)[0]] == ["b", "ba", "banana"]
    assert state.items("a", "zzz", 10) == ([], None)
    assert [k for k, _, _ in state.items("b", "ba", 10)[0]] == ["banana"]


def test_items_against_a_model_with_random_histories():
    # Seeded: apply, commit and roll back at random; the listing and the data always agree
    # with a plain dict replayed from the surviving entries.
    for seed in range(30):
        rng = random.Random(seed)
        state, log, commit = KVState(), [], 0
        for _ in range(200):
            roll = rng.random()
            if roll < 0.6:
                seq = len(log) + 1
                key = f"k{rng.randint(0, 15):02d}"
                entry = put(seq, key, f"v{seq}") if rng.random() < 0.75 else delete(seq, key)
                log.append(entry)
                state.apply([entry], commit)
            elif roll < 0.8:
                commit = rng.randint(commit, len(log))
                state.set_commit(commit)
            else:
                cut = rng.randint(commit, len(log))
                del log[cut:]
                state.rollback(cut)
        model: dict = {}
        for entry in log:
            if entry.op == OP_PUT:
                model[entry.key] = (entry.value, entry.seq)
            else:
                model.pop(entry.key, None)
        assert state.data == model, f"seed {seed}"
        rows, _ = state.items("k", None, 1000)
        assert [(k, (v, s)) for k, v, s in rows] == sorted(model.items()), f"seed {seed}"
