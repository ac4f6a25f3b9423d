"""Leadership transfer rules, one input at a time on :class:`~dkvs.core.node.Node` (no network),
and the new message on the wire. The scenarios in tests/sim/test_scenarios_transfer.py
check the same rules end to end under faults."""

from __future__ import annotations

import random

from dkvs.core.config import CoreConfig
from dkvs.core.effects import PersistState, Reply, Send
from dkvs.core.log import OP_MEMBER_ADD, OP_PUT, Entry
from dkvs.core.messages import Append, AppendReply, TimeoutNow, VoteReply, VoteRequest
from dkvs.core.node import CANDIDATE, MASTER, SLAVE, Node
from dkvs.transport import codec

CONFIG = CoreConfig(heartbeat_ticks=5, election_ticks=50)
MEMBERS = [Entry(1, 1, OP_MEMBER_ADD, "a", "http://a"), Entry(1, 2, OP_MEMBER_ADD, "b", "http://b"),
           Entry(1, 3, OP_MEMBER_ADD, "c", "http://c")]


def sends(effects, kind):
    return [e for e in effects if isinstance(e, Send) and isinstance(e.message, kind)]


def follower(node_id="b") -> Node:
    """A slave of {a, b, c} that just heard master ``a`` in epoch 1."""
    node = Node(node_id, CONFIG, random.Random(1), epoch=1, entries=MEMBERS)
    node.step(Append(1, "a", 3, 1, (), 3))
    assert node.role == SLAVE and node.master_id == "a"
    return node


def master_a() -> Node:
    """``a``, master of epoch 2 of {a, b, c}, with b and c confirmed up to its no-op."""
    node = Node("a", CONFIG, random.Random(1), epoch=1, entries=MEMBERS)
    while node.role != CANDIDATE:  # its election timer runs out: pre-vote
        node.tick()
    node.step(VoteReply(1, "b", True, pre_vote=True))
    node.step(VoteReply(2, "b", True))
    assert node.role == MASTER and node.epoch == 2
    for peer in ("b", "c"):
        node.step(AppendReply(2, peer, True, node.log.last_seq))
    return node


def test_timeout_now_from_its_master_starts_a_real_election_at_once():
    node = follower()
    out = node.step(TimeoutNow(1, "a"))
    assert node.role == CANDIDATE and not node.pre_voting and node.epoch == 2
    assert PersistState(2, "b") in out
    requests = [s.message for s in sends(out, VoteRequest)]
    assert {r.sender for r in requests} == {"b"} and all(r.transfer and not r.pre_vote for r in requests)


def test_timeout_now_from_anyone_but_its_master_is_ignored():
    node = follower()
    assert node.step(TimeoutNow(1, "c")) == [] and node.role == SLAVE and node.epoch == 1


def test_a_voter_that_hears_its_master_grants_a_transfer_vote_only():
    plain, handed = follower("c"), follower("c")
    refused = plain.step(VoteRequest(2, "b", 3, 1))
    granted = handed.step(VoteRequest(2, "b", 3, 1, transfer=True))
    assert not sends(refused, VoteReply)[0].message.granted and plain.epoch == 1
    assert sends(granted, VoteReply)[0].message.granted and handed.voted_for == "b"


def test_a_transfer_vote_still_needs_an_up_to_date_log():
    node = follower("c")
    node.step(Append(1, "a", 3, 1, (Entry(1, 4, OP_PUT, "k", "v"),), 3))
    out = node.step(VoteRequest(2, "b", 3, 1, transfer=True))
    assert not sends(out, VoteReply)[0].message.granted


def test_master_transfers_refuses_writes_and_resumes_at_the_deadline():
    node = master_a()
    assert node.transfer_candidate() in ("b", "c")
    out = node.transfer_leadership(7, to="c", timeout_ticks=10)
    assert [s.message for s in sends(out, TimeoutNow)] == [TimeoutNow(2, "a")]  # c is caught up
    assert node.propose(8, OP_PUT, "k", "v") == [Reply(8, error="transfer_in_progress")]
    assert node.transfer_leadership(9)[0].error == "transfer_in_progress"
    replies = []
    for _ in range(10):
        replies += [e for e in node.tick() if isinstance(e, Reply)]
    assert [(r.request_id, r.error) for r in replies] == [(7, "transfer_timeout")]
    assert node.role == MASTER and node.propose(10, OP_PUT, "k", "v")[-1].error is None


def test_the_master_steps_down_for_its_target_and_answers_the_transfer():
    node = master_a()
    node.transfer_leadership(7, to="b")
    out = node.step(VoteRequest(3, "b", node.log.last_seq, 2, transfer=True))
    assert node.role == SLAVE and node.epoch == 3
    assert Reply(7, {"from": "a", "to": "b", "epoch": 3}) in out
    assert sends(out, VoteReply)[0].message.granted


def test_no_target_and_not_master_are_refused():
    assert follower().transfer_leadership(1) == [Reply(1, error="not_master")]
    node = master_a()
    assert node.transfer_leadership(2, to="zz")[0].error == "no_transfer_target"
    assert node.transfer_leadership(3, to="a")[0].error == "no_transfer_target"


def test_codec_round_trips_the_transfer_messages():
    for message in (TimeoutNow(4, "a"), VoteRequest(5, "b", 9, 4, transfer=True), VoteRequest(5, "b", 9, 4)):
        assert codec.decode(codec.encode(message)) == message
