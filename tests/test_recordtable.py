"""The state's record table: one bytes record per key, sorted like the keys (seeded, no I/O)."""

from __future__ import annotations

import random

import pytest

from dkvs.core.kvstate import KVState
from dkvs.core.log import OP_DELETE, OP_PUT, Entry
from dkvs.core.recordtable import (CHUNK_RECORDS, SEPARATOR, RecordTable, pack, prefix_bytes, probe,
                                   record_key, unpack, unpack_value)
from dkvs.core.values import from_bytes

# Keys and values that stress the encoding: NUL and 0x01 (the key escape), a key that is a
# prefix of another, non-ASCII text, the empty key, lone surrogates (binary values are held as
# surrogate-escaped text; JSON can carry any lone surrogate).
AWKWARD = ["", "a", "a\x00", "a\x00b", "a\x01", "a\x00\x00", "ab", "a\uffff", "\U0001f600", "é",
           "\udcff", "\ud800", "\udcc3\udca9", "z" * 300]


def test_records_sort_exactly_like_their_keys():
    rng = random.Random(5)
    alphabet = ["\x00", "\x01", "a", "b", "\x7f", "é", "\uffff", "\U0001f600", "\udc80", "\ud800"]
    keys = set(AWKWARD)
    while len(keys) < 3000:
        keys.add("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))))
    keys = sorted(keys)
    records = [pack(k, "v", i) for i, k in enumerate(keys)]
    assert sorted(records) == records, "byte order of records must be the key order"
    for key, record in zip(keys, records):
        assert record.startswith(probe(key))
        assert SEPARATOR not in record  # what lets a snapshot block split in one call
        assert record_key(record) == key
    for prefix in ["", "a", "a\x00", "é", "\udc80"]:
        expected = [k for k in keys if k.startswith(prefix)]
        assert [k for k, r in zip(keys, records) if r.startswith(prefix_bytes(prefix))] == expected
    for other in keys[1:]:  # no record starts with another key's probe
        assert not records[0].startswith(probe(other))


@pytest.mark.parametrize("value", AWKWARD + [from_bytes(bytes(range(256))), "x" * 100_000])
def test_values_and_seqs_round_trip_exactly(value):
    for seq in (0, 1, 2**32 + 7, 2**64 - 1):
        assert unpack(pack("k\x00", value, seq)) == ("k\x00", value, seq)
        assert unpack_value(pack("k", value, seq)) == (value, seq)


def test_a_damaged_record_reads_without_raising():
    # Loading checks order and length, not every byte: decoding must never crash the node.
    for record in [b"no key end at all" * 2, b"k\x00\x00" + b"zz" * 8 + b"\xff\xfe", b"\x00\x00" + b"0" * 16]:
        key, value, seq = unpack(record)
        assert isinstance(key, str) and isinstance(value, str) and isinstance(seq, int)


def test_table_matches_a_dict_under_random_operations():
    rng = random.Random(11)
    table, model = RecordTable(), {}
    keys = [f"k{i:05d}" for i in range(3 * CHUNK_RECORDS)] + AWKWARD
    for step in range(20_000):
        key = rng.choice(keys)
        if rng.random() < 0.7:
            record = pack(key, f"v{step}", step)
            assert table.set(key, record) == model.get(key)
            model[key] = record
        else:
            assert table.pop(key) == model.pop(key, None)
        if step % 997 == 0:
            assert len(table) == len(model)
            assert list(table.iter_from(b"")) == [model[k] for k in sorted(model)]
            start = rng.choice(keys)
            assert [record_key(r) for r in table.iter_from(probe(start), probe(start))] == \
                   sorted(k for k in model if k > start)
    assert all(table.get(k) == model.get(k) for k in keys)
    copy = table.copy()
    table.set("new key", pack("new key", "v", 1))
    assert copy.get("new key") is None  # a copy does not follow the original


def test_state_answers_are_unchanged_for_awkward_keys_and_values():
    state = KVState()
    entries = [Entry(1, i + 1, OP_PUT, key, AWKWARD[-1 - i]) for i, key in enumerate(AWKWARD[1:])]
    state.apply(entries, commit_seq=len(entries))
    for i, key in enumerate(AWKWARD[1:]):
        assert state.get(key) == (AWKWARD[-1 - i], i + 1)
    rows, nxt = state.items("a", None, 100)
    assert [k for k, _, _ in rows] == sorted(k for k in AWKWARD[1:] if k.startswith("a")) and nxt is None
    rows, nxt = state.items("a\x00", "a\x00", 1)
    assert [k for k, _, _ in rows] == ["a\x00\x00"] and nxt == "a\x00\x00"
    state.apply([Entry(1, 100, OP_DELETE, "a\x00", None)], commit_seq=99)
    assert state.get("a\x00") is None and state.get_committed("a\x00") is not None
    seq, items = state.snapshot_items()
    copy = KVState()
    copy.restore(seq, items)
    assert copy.data == {k: v for k, v in state.committed_view()[1].items()}
