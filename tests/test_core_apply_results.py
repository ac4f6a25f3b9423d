"""Apply results of multi-key entries (prefix delete, transaction) reach the request that
proposed that exact entry, through the driver's request table, and watches see each key
they changed (issue 14). Also what the client hears for each (answers.py)."""

from __future__ import annotations

import pytest

from dkvs.core.log import OP_DELETE, OP_DELETE_PREFIX, OP_PUT, OP_TXN
from dkvs.core.txn import encode_txn, parse_txn
from dkvs.errors import Conflict, KeyNotFound
from dkvs.runtime.answers import delete_prefix_answer, txn_answer, write_answer

from test_driver import run, slave_driver, win_election


def program(doc):
    return encode_txn(parse_txn(doc, max_key_bytes=100, max_value_bytes=100))


class Done:
    def __init__(self, reply):
        self.result, self.error, self.rejected = reply.result, reply.error, reply.rejected


def test_each_request_gets_its_own_entrys_apply_result_and_the_feed_sees_each_key():
    d = slave_driver()
    win_election(d)
    d.propose(1, OP_PUT, "p/a", "1", "1", 10)
    d.propose(2, OP_PUT, "p/b", "2", "1", 10)
    d.propose(3, OP_DELETE_PREFIX, "p/", None, "1", 10)
    d.propose(4, OP_TXN, "", program({"compare": [{"key": "p/a", "exists": True}],
                                      "success": [{"op": "put", "key": "x", "value": "no"}],
                                      "failure": [{"op": "put", "key": "x", "value": "yes"},
                                                  {"op": "get", "key": "x"}]}), "1", 10)
    d.propose(5, OP_DELETE_PREFIX, "p/", None, "1", 10)
    ready = d.ready()
    applied = d.apply(ready)
    replies = {r.request_id: r for r in applied.replies}
    assert replies[3].result["applied"] == {"deleted": 2}
    assert replies[5].result["applied"] == {"deleted": 0}
    assert "applied" not in replies[1].result
    txn = txn_answer(Done(replies[4]), "1", 5.0)
    assert txn["succeeded"] is False and txn["results"][1]["value"] == "yes"
    assert delete_prefix_answer("p/", Done(replies[3]), "1", 5.0)["deleted"] == 2
    fed = [(e.seq, e.op, e.key, e.value) for _, entries, _ in applied.changes for e in entries if e.key]
    seq3 = replies[3].result["seq"]
    assert (seq3, OP_DELETE, "p/a", None) in fed and (seq3, OP_DELETE, "p/b", None) in fed
    assert (replies[4].result["seq"], OP_PUT, "x", "yes") in fed


def test_conditional_delete_answers_409_with_the_current_seq_or_404_when_absent():
    d = slave_driver()
    win_election(d)
    d.propose(1, OP_PUT, "k", "v", "1", 10)
    d.propose(2, OP_DELETE, "k", None, "1", 10, cond=1)  # k is at a later seq: refused
    _, replies = run(d)
    seq_k = d.state.get("k")[1]
    assert replies[1].rejected == seq_k
    with pytest.raises(Conflict) as caught:
        write_answer("delete", "k", Done(replies[1]), "1", 5.0, 1)
    assert caught.value.details["seq"] == seq_k
    d.propose(3, OP_DELETE, "k", None, "1", 10, cond=seq_k)
    d.propose(4, OP_DELETE, "k", None, "1", 10, cond=seq_k)
    _, replies = run(d)
    assert replies[0].rejected is None and replies[1].rejected == 0
    with pytest.raises(KeyNotFound):
        write_answer("delete", "k", Done(replies[1]), "1", 5.0, seq_k)
