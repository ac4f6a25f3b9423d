"""Conditional and prefix deletes, transactions and binary values in the pure layers:
the state machine decides at apply time and rolls back; every encoding carries the ops and
every byte value (issue 14)."""

import random

import pytest

from dkvs.core.kvstate import KVState
from dkvs.core.log import OP_DELETE, OP_DELETE_PREFIX, OP_PUT, OP_TXN, Entry
from dkvs.core.messages import Append, Snapshot
from dkvs.core.txn import TxnError, encode_txn, parse_txn
from dkvs.core.values import from_bytes, is_text, to_bytes, value_fields, value_from_fields
from dkvs.storage.records import decode_entry, encode_entries
from dkvs.storage.records import FRAME_BYTES
from dkvs.transport import codec

ALL_BYTES = bytes(range(256))


def txn(doc):
    return encode_txn(parse_txn(doc, max_key_bytes=100, max_value_bytes=1000))


def state_with(*pairs):
    state = KVState()
    state.apply([Entry(1, i + 1, OP_PUT, k, v) for i, (k, v) in enumerate(pairs)], commit_seq=len(pairs))
    return state


def test_conditional_delete_holds_only_at_the_current_seq_and_absent_is_rejected_with_zero():
    state = state_with(("a", "1"), ("b", "2"))
    rejected = state.apply([Entry(1, 3, OP_DELETE, "a", cond=2),   # a is at seq 1: refused
                            Entry(1, 4, OP_DELETE, "a", cond=1),   # holds
                            Entry(1, 5, OP_DELETE, "a", cond=1)], commit_seq=2)  # absent now
    assert rejected == [(3, 1), (5, 0)]
    assert state.get("a") is None and state.get("b") == ("2", 2)


def test_prefix_delete_is_one_entry_with_its_count_and_rolls_back_whole():
    state = state_with(("app/a", "1"), ("app/b", "2"), ("apple", "3"), ("b", "4"))
    results = {}
    state.apply([Entry(1, 5, OP_DELETE_PREFIX, "app/")], commit_seq=4, results=results)
    assert results[5] == ({"deleted": 2}, [("app/a", None), ("app/b", None)])
    assert [k for k, _, _ in state.items("", None, 10)[0]] == ["apple", "b"]
    assert state.get_committed("app/a") == ("1", 1)
    state.rollback(4)
    assert [k for k, _, _ in state.items("", None, 10)[0]] == ["app/a", "app/b", "apple", "b"]
    results = {}
    state.apply([Entry(1, 5, OP_DELETE_PREFIX, "")], commit_seq=5, results=results)
    assert results[5][0] == {"deleted": 4} and len(state) == 0


def test_txn_compares_at_apply_time_runs_one_branch_and_rolls_back():
    state = state_with(("n", "1"))
    program = txn({"compare": [{"key": "n", "seq": 1}, {"key": "m", "exists": False}],
                   "success": [{"op": "put", "key": "n", "value": "2"}, {"op": "get", "key": "n"},
                               {"op": "delete", "key": "zz"}],
                   "failure": [{"op": "get", "key": "n"}]})
    results = {}
    state.apply([Entry(1, 2, OP_TXN, "", program), Entry(1, 3, OP_TXN, "", program)], commit_seq=1,
                results=results)
    ok, changes = results[2]
    assert ok["succeeded"] and changes == [("n", "2")]
    assert ok["results"][1] == {"op": "get", "key": "n", "found": True, "value": "2", "seq": 2}
    assert ok["results"][2]["deleted"] == 0
    failed, changes = results[3]  # n is at seq 2 now: the failure branch ran, nothing changed
    assert not failed["succeeded"] and changes == [] and failed["results"][0]["value"] == "2"
    state.rollback(1)
    assert state.get("n") == ("1", 1)


@pytest.mark.parametrize("doc, where, status", [
    ({"compare": [], "succes": []}, "txn.succes", 400),
    ({"compare": [{"key": "k", "seq": "1"}]}, "compare[0].seq", 400),
    ({"compare": [{"key": "k", "seq": 1, "exists": True}]}, "compare[0]", 400),
    ({"success": [{"op": "put", "key": "k"}]}, "success[0].value", 400),
    ({"success": [{"op": "upsert", "key": "k"}]}, "success[0].op", 400),
    ({"success": [{"op": "get", "key": ""}]}, "success[0].key", 400),
    ({"success": [{"op": "delete_prefix", "prefix": ""}]}, "success[0].prefix", 400),
    ({"success": [{"op": "put", "key": "k", "value": "v" * 1001}]}, "success[0].value", 413),
    ({"failure": [{"op": "get", "key": "k"}] * 10_001}, "failure", 413),
    ({"success": [{"op": "put", "key": "k", "value": "\ud800"}]}, "success[0].value", 400),
    ([], "txn", 400),
])
def test_bad_transactions_are_refused_naming_the_place(doc, where, status):
    with pytest.raises(TxnError) as caught:
        parse_txn(doc, max_key_bytes=100, max_value_bytes=1000)
    assert (caught.value.where, caught.value.status) == (where, status)


def test_every_byte_value_round_trips_through_values_records_codec_and_snapshots():
    rng = random.Random(14)
    values = [from_bytes(ALL_BYTES), from_bytes(b"\xff\x00\xfe"),
              from_bytes(bytes(rng.randrange(256) for _ in range(300))), "text ✓"]
    for b in range(256):
        values.append(from_bytes(bytes([b])))
    assert to_bytes(values[0]) == ALL_BYTES and not is_text(values[0]) and is_text("text ✓")
    assert value_from_fields(value_fields(values[0])) == values[0] and "value_base64" in value_fields(values[0])
    entries = [Entry(1, i + 1, OP_PUT, f"k{i}", v) for i, v in enumerate(values)]
    entries.append(Entry(1, len(entries) + 1, OP_DELETE, "k0", cond=1))
    entries.append(Entry(1, len(entries) + 1, OP_DELETE_PREFIX, "k1"))
    entries.append(Entry(1, len(entries) + 1, OP_TXN, "", txn({"success": [
        {"op": "put", "key": "b", "value_base64": "AAEC/w=="}]})))
    data, _ = encode_entries(entries, 1, 0)
    decoded, offset = [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset:offset + 4], "little")
        decoded.append(decode_entry(data[offset + FRAME_BYTES:offset + FRAME_BYTES + length]))
        offset += FRAME_BYTES + length
    assert decoded == entries
    message = Append(1, "a", 0, 0, tuple(entries), 0)
    assert codec.decode(codec.encode(message)).entries == tuple(entries)
    assert codec.decode_many(codec.encode_many([message]))[0].entries == tuple(entries)
    snap = Snapshot(1, "a", 5, 1, (("a", "http://x"),), [[f"k{i}", v, i + 1] for i, v in enumerate(values)])
    assert codec.decode_snapshot(b"".join(codec.encode_snapshot_chunks(snap))).data == snap.data
    state = KVState()
    results = {}
    state.apply(entries, commit_seq=0, results=results)
    assert to_bytes(state.get("b")[0]) == b"\x00\x01\x02\xff"


def test_binary_values_survive_a_snapshot_file_and_the_log_on_disk(tmp_path):
    from dkvs.storage.base import StoredSnapshot
    from dkvs.storage.file import FileStorage
    value = from_bytes(ALL_BYTES)
    storage = FileStorage(tmp_path)
    storage.append([Entry(1, 1, OP_PUT, "k", value), Entry(1, 2, OP_DELETE, "k", cond=1)])
    storage.save_snapshot(StoredSnapshot(1, 1, (("a", "http://x"),), [["k", value, 1]]))
    storage.close()
    again = FileStorage(tmp_path)
    try:
        assert again.load_snapshot().items == [["k", value, 1]]
        assert [e.cond for e in again.load().entries] == [None, 1][-len(again.load().entries):]
    finally:
        again.close()


def test_leases_attach_detach_revoke_roll_back_and_survive_a_snapshot():
    from dkvs.core.leases import lease_id_of
    from dkvs.core.log import OP_LEASE_GRANT, OP_LEASE_REVOKE
    state = KVState()
    lease = lease_id_of(1, 1)
    leased = txn({"success": [{"op": "put", "key": "a", "value": "1", "lease": lease},
                              {"op": "put", "key": "b", "value": "2", "lease": lease}]})
    results = {}
    state.apply([Entry(1, 1, OP_LEASE_GRANT, "", "1500"), Entry(1, 2, OP_TXN, "", leased)], commit_seq=2,
                results=results)
    assert results[1][0] == {"id": lease, "ttl_ms": 1500} and state.leases.keys[lease] == {"a", "b"}
    missing = txn({"success": [{"op": "put", "key": "c", "value": "3", "lease": lease + 1}]})
    state.apply([Entry(1, 3, OP_PUT, "b", "plain"), Entry(1, 4, OP_TXN, "", missing),
                 Entry(1, 5, OP_LEASE_REVOKE, str(lease))], commit_seq=2, results=results)
    assert results[4][0]["lease_not_found"] == lease + 1 and state.get("c") is None
    assert results[5][0] == {"id": lease, "found": True, "deleted": 1}
    assert state.get("a") is None and state.get("b") == ("plain", 3) and not state.leases
    seq, items = state.snapshot_items()  # at commit 2: the lease with both keys
    copy = KVState()
    copy.restore(seq, items)
    assert copy.leases.ttl_ms == {lease: 1500} and copy.leases.keys[lease] == {"a", "b"} and len(copy) == 2
    state.rollback(2)
    assert state.leases.ttl_ms == {lease: 1500} and state.leases.keys[lease] == {"a", "b"}
    assert state.get("b") == ("2", 2) and state.leases.lease_of == {"a": lease, "b": lease}
    data, _ = encode_entries([Entry(1, 1, OP_LEASE_GRANT, "", "1500"), Entry(1, 2, OP_LEASE_REVOKE, str(lease))], 1, 0)
    assert decode_entry(data[FRAME_BYTES:FRAME_BYTES + int.from_bytes(data[:4], "little")]).op == OP_LEASE_GRANT
