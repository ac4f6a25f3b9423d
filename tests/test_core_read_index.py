"""Read index rules (Raft §6.4), driven directly on the core: when a read round leaves,
which reads share it, and which acknowledgements may release a read.

The master here leads {a, b, c} in epoch 2 and has committed its opening no-op, so only
the read rounds decide when a read is released.
"""

from __future__ import annotations

import random

from dkvs.core.config import CoreConfig
from dkvs.core.effects import Reply, Send
from dkvs.core.log import OP_MEMBER_ADD, Entry
from dkvs.core.messages import Append, AppendReply, VoteReply
from dkvs.core.node import CANDIDATE, MASTER, Node

CONFIG = CoreConfig(heartbeat_ticks=5, election_ticks=50)
MEMBERS = [Entry(1, 1, OP_MEMBER_ADD, "a", "http://a"), Entry(1, 2, OP_MEMBER_ADD, "b", "http://b"),
           Entry(1, 3, OP_MEMBER_ADD, "c", "http://c")]


def idle_master() -> Node:
    """``a`` won epoch 2, its no-op is committed, and no request is outstanding."""
    node = Node("a", CONFIG, random.Random(1), epoch=1, entries=MEMBERS)
    node.commit_seq = 3
    while node.role != CANDIDATE:
        node.tick()
    node.step(VoteReply(1, "b", True, pre_vote=True))
    node.step(VoteReply(2, "b", True))
    assert node.role == MASTER
    for peer in ("b", "c"):
        node.step(AppendReply(2, peer, True, node.log.last_seq, round=node.read_round))
    assert node.commit_seq == node.log.last_seq
    assert all(p.in_flight_since is None for p in node.progress.values())
    return node


def rounds_to(effects, peer: str) -> list[int]:
    return [e.message.round for e in effects
            if isinstance(e, Send) and e.to == peer and isinstance(e.message, Append)]


def released(effects) -> set[int]:
    return {e.request_id for e in effects if isinstance(e, Reply) and e.error is None}


def ack(node: Node, peer: str, round_: int) -> list:
    return node.step(AppendReply(node.epoch, peer, True, node.log.last_seq, round=round_))


def test_a_read_round_leaves_at_once_not_at_the_next_heartbeat():
    # Issue 15: consistent reads waited up to one heartbeat interval for their round.
    node = idle_master()
    out = node.propose_read(1, 100)
    assert rounds_to(out, "b") == rounds_to(out, "c") == [node.read_round]
    assert not released(out)
    assert released(ack(node, "b", node.read_round)) == {1}  # b and a: a majority of 3


def test_a_read_arriving_while_a_slave_is_busy_gets_its_round_when_the_slave_answers():
    node = idle_master()
    for _ in range(CONFIG.heartbeat_ticks):  # a heartbeat leaves: both slaves are busy
        node.tick()
    before = node.read_round
    out = node.propose_read(1, 100)
    assert not rounds_to(out, "b") and not rounds_to(out, "c")  # one request per slave on the wire
    out = ack(node, "b", before)  # the heartbeat's answer: from before the read arrived
    assert not released(out)
    assert rounds_to(out, "b") == [before + 1]  # the read's round follows at once
    assert released(ack(node, "b", before + 1)) == {1}


def test_reads_arriving_while_a_round_is_in_flight_share_the_next_round():
    node = idle_master()
    first = node.propose_read(1, 100)
    r = node.read_round
    assert rounds_to(first, "b") == [r]
    later = node.propose_read(2, 100) + node.propose_read(3, 100)
    assert not rounds_to(later, "b")  # they wait for the next round
    out = ack(node, "b", r)
    assert released(out) == {1}  # the round in flight confirms only the read sent before it
    assert rounds_to(out, "b") == [r + 1]  # one round for both waiting reads
    assert released(ack(node, "b", r + 1)) == {2, 3}
    assert node.read_round == r + 1


def test_an_acknowledgement_of_an_earlier_round_never_releases_a_later_read():
    # The rule that makes a read linearizable: a round acknowledged before the read arrived
    # says nothing about who is master now (a newer master may have committed writes since).
    node = idle_master()
    node.propose_read(1, 100)
    r = node.read_round
    node.propose_read(2, 100)
    out = ack(node, "b", r) + ack(node, "c", r)
    assert released(out) == {1}
    assert 2 not in released(out + node.tick())


def test_no_round_is_sent_when_no_read_waits():
    # Heartbeats carry the last round; a new round number is taken only for waiting reads.
    node = idle_master()
    r = node.read_round
    out = []
    for _ in range(3 * CONFIG.heartbeat_ticks):
        out += node.tick()
        for peer in ("b", "c"):
            out += ack(node, peer, r)
    assert node.read_round == r and set(rounds_to(out, "b")) == {r}


def test_a_cluster_of_one_releases_a_read_at_once():
    node, _ = Node.bootstrap("a", "http://a", CONFIG, random.Random(1))
    assert released(node.propose_read(1, 100)) == {1}


def test_a_confirmed_round_waits_for_the_new_masters_first_commit():
    # Raft §6.4: until its opening no-op commits, a new master does not know which older
    # entries are committed, so a read confirmed by a majority round still waits.
    node = Node("a", CONFIG, random.Random(1), epoch=1, entries=MEMBERS)
    node.commit_seq = 3
    while node.role != CANDIDATE:
        node.tick()
    node.step(VoteReply(1, "b", True, pre_vote=True))
    node.step(VoteReply(2, "b", True))
    assert node.role == MASTER and node.commit_seq < node.log.last_seq
    node.propose_read(1, 100)
    # b refuses the no-op batch (a fork hint); the read's round follows at once.
    out = node.step(AppendReply(2, "b", False, node.log.last_seq, hint_seq=4, round=node.read_round))
    assert rounds_to(out, "b") == [node.read_round]
    out = node.step(AppendReply(2, "b", False, 3, hint_seq=4, round=node.read_round))  # round confirmed
    assert node.progress["b"].acked_round == node.read_round and node.commit_seq < node.log.last_seq
    assert not released(out)
    out = node.step(AppendReply(2, "b", True, node.log.last_seq, round=node.read_round))
    assert node.commit_seq == node.log.last_seq and released(out) == {1}


def idle_master_of_five() -> Node:
    """``a`` leads {a, b, c, d, e} in epoch 2, its no-op committed: a read needs two slaves."""
    members = [Entry(1, i + 1, OP_MEMBER_ADD, name, f"http://{name}") for i, name in enumerate("abcde")]
    node = Node("a", CONFIG, random.Random(1), epoch=1, entries=members)
    node.commit_seq = len(members)
    while node.role != CANDIDATE:
        node.tick()
    for voter in ("b", "c"):
        node.step(VoteReply(1, voter, True, pre_vote=True))
    for voter in ("b", "c"):
        node.step(VoteReply(2, voter, True))
    assert node.role == MASTER
    for peer in "bcde":
        node.step(AppendReply(2, peer, True, node.log.last_seq, round=node.read_round))
    assert node.commit_seq == node.log.last_seq
    return node


def test_with_five_voters_one_slaves_acknowledgement_releases_no_read():
    # The master and one slave are two of five: the round needs a third voter.
    node = idle_master_of_five()
    node.propose_read(1, 100)
    r = node.read_round
    assert not released(ack(node, "d", r))
    assert not released(ack(node, "d", r))  # the same slave twice is still one voter
    assert released(ack(node, "b", r)) == {1}


def test_reads_of_successive_rounds_are_released_in_order_as_their_rounds_are_confirmed():
    # Many reads in flight across rounds: each acknowledgement releases exactly the reads of
    # the rounds a majority confirmed, and a read that timed out in between changes nothing.
    node = idle_master()
    node.propose_read(1, 100)
    first = node.read_round
    node.propose_read(2, 100)
    node.propose_read(3, 2)  # times out before its round is confirmed
    node.propose_read(4, 100)
    out = ack(node, "b", first)
    assert released(out) == {1}
    second = node.read_round
    assert second == first + 1  # reads 2-4 share the round that left with b's answer
    node.propose_read(5, 100)  # waits for the round after
    expired = node.tick() + node.tick() + node.tick()
    assert {e.request_id for e in expired if isinstance(e, Reply)} == {3}
    out = ack(node, "b", second)
    assert released(out) == {2, 4}
    assert released(ack(node, "b", node.read_round)) == {5}
    assert node.pending_reads == []
