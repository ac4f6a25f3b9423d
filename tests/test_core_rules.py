"""Single protocol rules, driven directly on :class:`~dkvs.core.node.Node` (no network).

Each test pins one rule that the randomized simulator reaches too rarely to prove: it
builds a node in the exact state where the rule decides, feeds it one input and checks the
effects. ``scripts/mutation_test.py`` deletes each rule in turn; these tests are what make
those mutants fail (see docs/simulation.md, "Mutation testing").
"""

from __future__ import annotations

import random

from dkvs.core.config import CoreConfig
from dkvs.core.effects import InstallSnapshot, PersistState, Reply, Send
from dkvs.core.log import OP_MEMBER_ADD, OP_NOOP, OP_PUT, Entry
from dkvs.core.messages import Append, AppendReply, Snapshot, VoteReply, VoteRequest
from dkvs.core.node import CANDIDATE, MASTER, SLAVE, Node

CONFIG = CoreConfig(heartbeat_ticks=5, election_ticks=50)
MEMBERS = [Entry(1, 1, OP_MEMBER_ADD, "a", "http://a"), Entry(1, 2, OP_MEMBER_ADD, "b", "http://b"),
           Entry(1, 3, OP_MEMBER_ADD, "c", "http://c")]


def slave(node_id="b", entries=(), epoch=1, **kw) -> Node:
    """A member of {a, b, c} holding the member list plus ``entries``."""
    return Node(node_id, CONFIG, random.Random(1), epoch=epoch, entries=MEMBERS + list(entries), **kw)


def sends(effects, kind=None):
    return [e.message for e in effects if isinstance(e, Send) and (kind is None or isinstance(e.message, kind))]


def replies(effects):
    return [e for e in effects if isinstance(e, Reply)]


def heartbeat(epoch=1, master="a", prev=3, prev_epoch=1, commit=3, entries=()) -> Append:
    return Append(epoch, master, prev, prev_epoch, tuple(entries), commit)


def elected_master(node_id="a") -> tuple[Node, list]:
    """``node_id`` just won epoch 2 in {a, b, c}; its opening no-op is not committed yet."""
    node = slave(node_id)
    node.commit_seq = 3
    while node.role != CANDIDATE:
        node.tick()
    assert node.pre_voting
    node.step(VoteReply(1, "b", True, pre_vote=True))
    assert node.epoch == 2 and not node.pre_voting
    out = node.step(VoteReply(2, "b", True))
    assert node.role == MASTER
    return node, out


# -- pre-vote keeps the known master (issue 10, deliverable 3) --------------------------------------

def test_a_slave_in_pre_vote_still_knows_its_master_until_a_new_epoch_starts():
    # Regression: pre-vote cleared master_id, so a slave that merely missed heartbeats
    # (starved under load) answered writes with 503 "no master" while the master was
    # healthy. The master stays known until this node really starts a new epoch.
    node = slave()
    node.step(heartbeat())
    assert node.master_id == "a"
    while node.role != CANDIDATE:
        node.tick()
    assert node.pre_voting and node.master_id == "a" and not node.hears_master()
    assert node.status()["master"]["id"] == "a"
    node.step(VoteReply(1, "c", False, pre_vote=True, fresher=True))  # defers to a fresher node
    assert node.role == SLAVE and node.master_id == "a" and not node.hears_master()
    while not (node.role == CANDIDATE and not node.pre_voting):
        node.tick()
        if node.role == CANDIDATE and node.pre_voting:
            node.step(VoteReply(1, "c", True, pre_vote=True))
    assert node.epoch == 2 and node.master_id is None  # a real election: the old master is gone


def test_the_master_returning_during_pre_vote_is_followed_again():
    node = slave()
    node.step(heartbeat())
    while node.role != CANDIDATE:
        node.tick()
    node.step(heartbeat())
    assert node.role == SLAVE and node.master_id == "a" and node.hears_master()


# -- votes --------------------------------------------------------------------------------------------

def test_a_voter_that_hears_its_master_refuses_a_real_vote_and_keeps_its_epoch():
    # Vote stickiness (Raft thesis §4.2.3): a candidate that passed pre-vote elsewhere (or
    # skipped it) cannot depose a master this voter still hears.
    node = slave("c")
    node.step(heartbeat())
    out = node.step(VoteRequest(2, "b", 9, 1))
    assert [m.granted for m in sends(out, VoteReply)] == [False]
    assert node.epoch == 1 and node.voted_for is None and node.master_id == "a"


def test_a_voter_refuses_a_candidate_with_a_staler_log():
    node = slave("c", [Entry(1, 4, OP_PUT, "k", "v")])  # restarted: hears no master
    out = node.step(VoteRequest(2, "b", 3, 1))
    assert [m.granted for m in sends(out, VoteReply)] == [False]
    assert node.voted_for is None


def test_a_voter_grants_one_candidate_per_epoch():
    node = slave("c")
    assert [m.granted for m in sends(node.step(VoteRequest(2, "a", 3, 1)), VoteReply)] == [True]
    assert [m.granted for m in sends(node.step(VoteRequest(2, "b", 3, 1)), VoteReply)] == [False]
    assert node.voted_for == "a"


def test_a_vote_is_on_disk_before_it_is_sent_so_a_restart_cannot_vote_twice():
    # The voter grants a, then crashes and restarts from what it persisted. Asked by b for
    # the same epoch it must refuse: two grants in one epoch can elect two masters.
    voter = slave("c")
    out = voter.step(VoteRequest(2, "a", 3, 1))
    assert [m.granted for m in sends(out, VoteReply)] == [True]
    disk = [(1, None)] + [(e.epoch, e.voted_for) for e in out if isinstance(e, PersistState)]
    restarted = slave("c", epoch=disk[-1][0], voted_for=disk[-1][1])
    out = restarted.step(VoteRequest(2, "b", 3, 1))
    assert [m.granted for m in sends(out, VoteReply)] == [False]


def test_a_candidate_persists_its_epoch_and_self_vote_before_asking():
    # A candidate that crashes right after asking for votes in epoch 2 must not, once
    # restarted, grant epoch 2 to someone else: it already voted for itself there.
    node = slave("b")
    effects = []
    while node.role != CANDIDATE:
        effects += node.tick()
    effects += node.step(VoteReply(1, "c", True, pre_vote=True))
    assert node.epoch == 2 and sends(effects, VoteRequest)[-1].epoch == 2
    disk = [(1, None)] + [(e.epoch, e.voted_for) for e in effects if isinstance(e, PersistState)]
    restarted = slave("b", epoch=disk[-1][0], voted_for=disk[-1][1])
    out = restarted.step(VoteRequest(2, "c", 3, 1))
    assert [m.granted for m in sends(out, VoteReply)] == [False]


def test_a_late_pre_vote_grant_is_not_a_real_vote():
    # A pre-vote grant records nothing on the voter: counted as a real vote it would let a
    # candidate win an epoch in which that voter may vote for someone else.
    node = slave("a")
    while node.role != CANDIDATE:
        node.tick()
    node.step(VoteReply(1, "b", True, pre_vote=True))
    assert node.epoch == 2 and not node.pre_voting
    node.step(VoteReply(1, "c", True, pre_vote=True))  # c's pre-vote grant, arriving late
    assert node.role == CANDIDATE


# -- reads ----------------------------------------------------------------------------------------

# -- membership -----------------------------------------------------------------------------------

def test_a_new_master_changes_membership_only_after_committing_its_own_entry():
    # Raft's single-server change bug: until its no-op commits, an uncommitted change of a
    # deposed master may still win in the old member list.
    node, _ = elected_master()
    assert node.log.get(node.log.last_seq).op == OP_NOOP and node.commit_seq < node.log.last_seq
    refused = node.propose(1, OP_MEMBER_ADD, "d", "http://d", "majority", 100)
    assert refused == [Reply(1, error="membership_change_in_progress")]
    node.step(AppendReply(2, "b", True, node.log.last_seq))
    assert node.commit_seq == node.log.last_seq
    assert replies(node.propose(2, OP_MEMBER_ADD, "d", "http://d", "majority", 100)) == []  # accepted


def test_membership_changes_go_one_at_a_time():
    node, _ = elected_master()
    node.step(AppendReply(2, "b", True, node.log.last_seq))
    assert replies(node.propose(1, OP_MEMBER_ADD, "d", "http://d", "majority", 100)) == []
    refused = node.propose(2, OP_MEMBER_ADD, "e", "http://e", "majority", 100)
    assert refused == [Reply(2, error="membership_change_in_progress")]


# -- snapshots ------------------------------------------------------------------------------------

def test_a_snapshot_older_than_the_commit_point_is_not_installed():
    # A duplicated or delayed snapshot may arrive after the slave moved past it (and even
    # compacted its log): installing it would move the commit point back.
    node = slave(entries=[Entry(1, s, OP_PUT, "k", str(s)) for s in range(4, 11)])
    node.step(heartbeat(prev=10, commit=10))
    node.compact(10)
    out = node.step(Snapshot(1, "a", 6, 1, tuple((m.key, m.value) for m in MEMBERS), data=[]))
    assert not [e for e in out if isinstance(e, InstallSnapshot)]
    assert node.commit_seq == 10 and node.log.snapshot_seq == 10
    assert [m.success for m in sends(out, AppendReply)] == [True]


# -- epochs ---------------------------------------------------------------------------------------

def test_a_batch_from_a_deposed_master_is_refused_with_the_newer_epoch():
    # Epoch fencing: a master of epoch 1 that missed the election of epoch 2 can neither
    # write to this slave nor become its master; it is told the newer epoch to step down.
    node = slave("c", epoch=2)
    node.step(heartbeat(epoch=2, master="b"))
    out = node.step(heartbeat(epoch=1, master="a", entries=[Entry(1, 4, OP_PUT, "k", "stale")]))
    assert [(m.epoch, m.success) for m in sends(out, AppendReply)] == [(2, False)]
    assert node.master_id == "b" and node.log.last_seq == 3 and node.epoch == 2
