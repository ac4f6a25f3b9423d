"""Pipelined replication (several batches in flight per slave), driven on the core directly.

What these prove, with a window of 4 batches of 2 entries in {a, b, c}:

* a slave that follows gets up to a window of consecutive batches before any answer, and
  no more until one is answered;
* only what a slave *said* it holds counts towards the commit point: batches still in
  flight (the optimistic ``next_seq``) never do, so a write is acknowledged only once a
  majority confirmed it;
* a lost batch makes the later ones of its window refused; the first refusal drops the
  window and resends at once from ``match_seq + 1``, the stale refusals after it cost
  nothing, and once the resend is confirmed the window opens again;
* with a window of 1 nothing changes: one batch, answered before the next.
"""

from __future__ import annotations

import random

from dkvs.core.config import CoreConfig
from dkvs.core.effects import Reply, Send
from dkvs.core.log import OP_MEMBER_ADD, Entry
from dkvs.core.messages import Append, AppendReply, VoteReply
from dkvs.core.node import CANDIDATE, MASTER, Node

WINDOW = 4
BATCH = 2
CONFIG = CoreConfig(heartbeat_ticks=5, election_ticks=50, max_batch_entries=BATCH, max_inflight_batches=WINDOW)
MEMBERS = [Entry(1, 1, OP_MEMBER_ADD, "a", "http://a"), Entry(1, 2, OP_MEMBER_ADD, "b", "http://b"),
           Entry(1, 3, OP_MEMBER_ADD, "c", "http://c")]


def appends(effects, to):
    return [e.message for e in effects if isinstance(e, Send) and e.to == to and isinstance(e.message, Append)]


def answer(slave: Node, batch: Append) -> AppendReply:
    """What ``slave`` answers to ``batch`` (its one reply)."""
    [reply] = [e.message for e in slave.step(batch) if isinstance(e, Send) and isinstance(e.message, AppendReply)]
    return reply


def cluster(config: CoreConfig = CONFIG) -> tuple[Node, dict[str, Node]]:
    """``a`` just won epoch 2; b and c hold its opening no-op and said so (they follow)."""
    a = Node("a", config, random.Random(1), entries=list(MEMBERS))
    slaves = {p: Node(p, config, random.Random(2), entries=list(MEMBERS)) for p in ("b", "c")}
    while a.role != CANDIDATE:
        a.tick()
    a.step(VoteReply(a.epoch, "b", True, pre_vote=True))
    out = a.step(VoteReply(a.epoch, "b", True))
    assert a.role == MASTER
    for peer, slave in slaves.items():  # the opening batch is refused (optimistic start), then repaired
        batches = appends(out, peer)
        while batches:
            batches = batches[1:] + appends(a.step(answer(slave, batches[0])), peer)
    assert a.commit_seq == a.log.last_seq == 4
    return a, slaves


def write(a: Node, count: int, first_id: int = 100) -> None:
    for i in range(count):
        a.propose(first_id + i, "put", f"k{i}", "v", "majority", 1000)


def test_a_following_slave_gets_a_window_of_consecutive_batches_before_any_answer():
    a, _ = cluster()
    write(a, 20)
    out = a.flush()
    for peer in ("b", "c"):
        sent = appends(out, peer)
        assert len(sent) == WINDOW
        for before, after in zip(sent, sent[1:]):
            assert after.prev_seq == before.prev_seq + len(before.entries) and len(before.entries) == BATCH
    write(a, 5, first_id=200)
    assert appends(a.flush(), "b") == []  # the window is full: nothing more until an answer


def test_only_confirmed_batches_count_towards_the_commit_never_the_optimistic_next_seq():
    a, slaves = cluster()
    write(a, 20)
    out = a.flush()
    first = {peer: appends(out, peer)[0] for peer in slaves}
    assert a.progress["b"].next_seq == 5 + WINDOW * BATCH and a.commit_seq == 4  # sent is not held
    acked = []
    for peer, slave in slaves.items():  # each slave answers only the first batch of its window
        effects = a.step(answer(slave, first[peer]))
        acked += [e for e in effects if isinstance(e, Reply)]
    assert a.progress["b"].match_seq == a.commit_seq == 4 + BATCH
    assert sorted(r.request_id for r in acked) == [100, 101]  # exactly the confirmed writes


def test_a_lost_batch_is_resent_from_match_plus_one_and_its_window_refusals_cost_one_resend():
    a, slaves = cluster()
    b = slaves["b"]
    write(a, 20)
    lost, *later = appends(a.flush(), "b")
    refusals = [answer(b, batch) for batch in later]  # they do not continue b's log
    assert [r.success for r in refusals] == [False] * (WINDOW - 1)
    resent = appends(a.step(refusals[0]), "b")
    assert [(m.prev_seq, len(m.entries)) for m in resent] == [(4, BATCH)]  # from match_seq + 1, alone
    for stale in refusals[1:]:
        assert appends(a.step(stale), "b") == []  # answers of the dropped window: nothing resent
    assert resent[0].entries == lost.entries
    reopened = appends(a.step(answer(b, resent[0])), "b")
    assert len(reopened) == WINDOW  # confirmed: the window is open again, continuing the log
    assert reopened[0].prev_seq == 4 + BATCH
    while reopened:
        batch, *reopened = reopened
        reopened += appends(a.step(answer(b, batch)), "b")
    assert b.log.last_seq == a.log.last_seq == 24
    assert a.commit_seq == 24  # a and b are a majority


def test_a_refusal_after_a_snapshot_or_election_probes_one_batch_at_a_time():
    # Until a success says where the slave is, the master sends one batch at a time: a
    # slave that does not follow would refuse a whole window.
    a, _ = cluster()
    a.progress["b"].probing = True
    write(a, 20)
    assert len(appends(a.flush(), "b")) == 1


def test_with_a_window_of_one_a_batch_is_answered_before_the_next_leaves():
    a, slaves = cluster(CoreConfig(heartbeat_ticks=5, election_ticks=50, max_batch_entries=BATCH))
    write(a, 20)
    [batch] = appends(a.flush(), "b")
    assert appends(a.flush(), "b") == []
    assert len(appends(a.step(answer(slaves["b"], batch)), "b")) == 1


def test_a_heartbeat_does_not_queue_an_empty_batch_behind_batches_in_flight():
    a, _ = cluster()
    write(a, 2)
    assert len(appends(a.flush(), "b")) == 1
    sent = []
    for _ in range(CONFIG.heartbeat_ticks):
        sent += appends(a.tick(), "b")
    assert sent == []


def test_a_window_holds_at_least_one_batch():
    try:
        CoreConfig(max_inflight_batches=0)
    except ValueError:
        return
    raise AssertionError("a window of 0 batches was accepted")
