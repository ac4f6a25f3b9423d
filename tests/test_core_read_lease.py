"""Read lease rules (``CoreConfig.lease_reads``, Raft thesis §6.4.1), one input at a time on
the core: when a master may answer a consistent read with no round, when it may not any
more, and the voters' side the lease rests on (votes held after a contact and after a start).

The master here leads {a, b, c} in epoch 2 (``lease_ticks`` = 25 - 5 = 20 ticks)."""

from __future__ import annotations

import random

from dkvs.core.config import CoreConfig
from dkvs.core.effects import Reply, Send
from dkvs.core.log import OP_MEMBER_ADD, OP_MEMBER_REMOVE, OP_PUT, Entry
from dkvs.core.messages import Append, AppendReply, VoteReply, VoteRequest
from dkvs.core.node import CANDIDATE, MASTER, SLAVE, Node

LEASE = CoreConfig(heartbeat_ticks=5, election_ticks=50, lease_reads=True)
NO_LEASE = CoreConfig(heartbeat_ticks=5, election_ticks=50)
MEMBERS = [Entry(1, 1, OP_MEMBER_ADD, "a", "http://a"), Entry(1, 2, OP_MEMBER_ADD, "b", "http://b"),
           Entry(1, 3, OP_MEMBER_ADD, "c", "http://c")]


def elected(config: CoreConfig = LEASE) -> Node:
    """``a`` won epoch 2 and b and c hold its no-op; their answers were to no read round."""
    node = Node("a", config, random.Random(1), epoch=1, entries=MEMBERS)
    node.commit_seq = 3
    while node.role != CANDIDATE:
        node.tick()
    node.step(VoteReply(1, "b", True, pre_vote=True))
    node.step(VoteReply(2, "b", True))
    assert node.role == MASTER
    for peer in ("b", "c"):
        node.step(AppendReply(2, peer, True, node.log.last_seq, round=0))
    assert node.commit_seq == node.log.last_seq
    return node


def heartbeat(node: Node) -> int:
    """Tick up to the next heartbeat; returns the read round it started (lease reads on)."""
    before = node.read_round
    for _ in range(node.config.heartbeat_ticks):
        node.tick()
    assert node.read_round == before + 1
    return node.read_round


def ack(node: Node, peer: str, round_: int) -> list:
    return node.step(AppendReply(node.epoch, peer, True, node.log.last_seq, round=round_))


def leased_master() -> tuple[Node, int]:
    """``a`` with a lease: b answered the round of the heartbeat sent at the returned tick."""
    node = elected()
    r = heartbeat(node)
    sent_at = node.now
    ack(node, "b", r)
    assert node.read_lease_valid()
    return node, sent_at


def sends(effects) -> list:
    return [e for e in effects if isinstance(e, Send)]


def answered(effects) -> set[int]:
    return {e.request_id for e in effects if isinstance(e, Reply) and e.error is None}


def test_a_leased_read_is_answered_at_once_with_no_message():
    node, _ = leased_master()
    out = node.propose_read(1, 100)
    assert answered(out) == {1} and not sends(out)
    assert out[0].result == {"seq": node.log.last_seq, "epoch": node.epoch}


def test_without_the_flag_every_read_needs_a_round():
    node = elected(NO_LEASE)
    for _ in range(NO_LEASE.heartbeat_ticks):
        node.tick()
    ack(node, "b", node.read_round)
    assert not node.read_lease_valid()
    out = node.propose_read(1, 100)
    assert not answered(out) and sends(out)


def test_the_lease_ends_lease_ticks_after_the_send_not_after_the_answer():
    # The answer arrives late (it sat on the wire): the lease still counts from the send,
    # since the slave may have heard the master as early as that.
    node = elected()
    r = heartbeat(node)
    sent_at = node.now
    for _ in range(15):  # later heartbeats go unanswered
        node.tick()
    ack(node, "b", r)
    while node.now < sent_at + LEASE.lease_ticks - 1:
        node.tick()
    assert node.read_lease_valid()
    node.tick()
    assert not node.read_lease_valid()  # measured from the arrival it would run 15 ticks more
    # 5 ticks short of the voters' hold: 2 of tick granularity, 10% of 25 for clock drift
    assert node.now - sent_at == LEASE.min_election_ticks - 5
    assert not answered(node.propose_read(1, 100))  # back to the read index


def test_a_round_of_one_slave_is_no_majority_of_five():
    node = Node("a", LEASE, random.Random(1), epoch=1, entries=MEMBERS + [
        Entry(1, 4, OP_MEMBER_ADD, "d", "http://d"), Entry(1, 5, OP_MEMBER_ADD, "e", "http://e")])
    node.commit_seq = 5
    while node.role != CANDIDATE:
        node.tick()
    for peer in ("b", "c"):
        node.step(VoteReply(1, peer, True, pre_vote=True))
    for peer in ("b", "c"):
        node.step(VoteReply(2, peer, True))
    for peer in ("b", "c", "d", "e"):
        node.step(AppendReply(2, peer, True, node.log.last_seq, round=0))
    r = heartbeat(node)
    ack(node, "b", r)
    assert not node.read_lease_valid()
    ack(node, "c", r)
    assert node.read_lease_valid()


def test_a_leased_read_still_waits_for_what_the_master_appended():
    node, _ = leased_master()
    node.propose(7, OP_PUT, "k", "v", "1")  # acks=1: appended, not committed
    out = node.propose_read(1, 100)
    assert not answered(out)
    # b confirms the write; no read round is acknowledged, the lease answers it.
    out = node.step(AppendReply(node.epoch, "b", True, node.log.last_seq, round=node.progress["b"].acked_round))
    assert answered(out) == {1}


def test_starting_a_transfer_drops_the_lease_for_the_rest_of_the_epoch():
    node, _ = leased_master()
    out = node.transfer_leadership(9, "b", timeout_ticks=10)  # b holds everything: TimeoutNow leaves
    assert any(type(e.message).__name__ == "TimeoutNow" for e in sends(out))
    assert not node.read_lease_valid()
    for _ in range(11):  # the transfer times out; b never took over
        node.tick()
    assert node.transfer_target is None and node.role == MASTER
    r = heartbeat(node)
    ack(node, "b", r)
    ack(node, "c", r)
    assert not node.read_lease_valid()  # a delayed TimeoutNow could still make b campaign
    out = node.propose_read(1, 100)
    assert not answered(out) and sends(out)


def test_a_membership_change_drops_the_lease_even_when_the_answers_would_still_count():
    # Removing c leaves {a, b}: b's answer alone would make a majority of the new list. The
    # lease is dropped all the same (conservative: a new list earns its own lease).
    node, _ = leased_master()
    node.propose(7, OP_MEMBER_REMOVE, "c", None, "1")
    assert node.voters() == ["a", "b"] and not node.read_lease_valid()
    ack(node, "b", heartbeat(node))
    assert node.read_lease_valid()


def test_a_membership_change_and_a_clock_jump_drop_the_lease():
    node, _ = leased_master()
    node.propose(7, OP_MEMBER_ADD, "d", "http://d", "1")
    assert not node.read_lease_valid()
    node.step(AppendReply(node.epoch, "b", True, node.log.last_seq, round=node.read_round))
    r = heartbeat(node)
    ack(node, "b", r)
    ack(node, "c", r)
    assert node.read_lease_valid()  # a majority (3 of 4) of the new list answered a new round
    node.clock_jumped()
    assert not node.read_lease_valid()


def test_a_deposed_master_holds_no_lease():
    node, _ = leased_master()
    node.step(Append(node.epoch + 1, "c", node.log.last_seq, node.log.last_epoch, (), 0))
    assert node.role == SLAVE and not node.read_lease_valid()


# -- the voters' side ---------------------------------------------------------------------------

def follower(config: CoreConfig = LEASE) -> Node:
    node = Node("b", config, random.Random(1), epoch=1, entries=MEMBERS)
    return node


def vote_request(epoch: int = 2, sender: str = "c", transfer: bool = False) -> VoteRequest:
    return VoteRequest(epoch, sender, 3, 1, transfer=transfer)


def granted(effects) -> bool:
    return any(isinstance(e, Send) and isinstance(e.message, VoteReply) and e.message.granted for e in effects)


def test_a_restarted_voter_grants_no_vote_within_min_election_ticks():
    node = follower()  # just started: the contact before the restart is forgotten
    while node.now < LEASE.min_election_ticks - 1:
        node.tick()
        node.election_deadline = node.now + 100  # not campaigning itself
    assert not granted(node.step(vote_request()))
    node.tick()
    assert granted(node.step(vote_request()))


def test_without_the_flag_a_restarted_voter_grants_at_once():
    assert granted(follower(NO_LEASE).step(vote_request()))


def test_a_transfer_vote_passes_the_hold():
    assert granted(follower().step(vote_request(transfer=True)))


def test_a_voter_that_forgot_its_master_still_holds_its_vote():
    # A stray answer from a newer epoch makes b a slave of nobody (no stickiness any more);
    # the hold still counts from b's last contact with a.
    node = follower()
    for _ in range(LEASE.min_election_ticks):
        node.tick()
    node.step(Append(1, "a", 3, 1, (), 3))
    node.step(AppendReply(5, "d", False, 0))
    assert node.role == SLAVE and node.master_id is None and node.epoch == 5
    assert not granted(node.step(vote_request(epoch=5)))
    for _ in range(LEASE.min_election_ticks):
        node.tick()
        node.election_deadline = node.now + 100
    assert granted(node.step(vote_request(epoch=5)))


def test_a_voter_starts_no_election_of_its_own_while_it_holds_its_vote():
    node = follower()
    for _ in range(LEASE.min_election_ticks):
        node.tick()
    node.step(Append(1, "a", 3, 1, (), 3))  # heard a: holds its vote from now
    node.step(AppendReply(5, "d", False, 0))  # ... and forgot a
    node._start_pre_vote([])
    out = node.step(VoteReply(1, "c", True, pre_vote=True))  # a majority of pre-votes
    assert node.role == CANDIDATE and node.pre_voting and node.epoch == 5
    assert not any(isinstance(e, Send) and isinstance(e.message, VoteRequest) for e in out)
