"""Scenarios of the whole node — driver, executor, transport peer table, snapshot worker,
service answers — each named for the defect it would have caught (issue: "the whole node
under proof"). Each opens with what it proves; all run in logical time."""

from __future__ import annotations

from .cluster import SimCluster
from .scenario_helpers import HB, MASTER, SLAVE, T, node, wait_done, wait_for, wait_master


def test_snapshot_reaches_a_brand_new_member_at_once():
    # Proves the new member's first snapshot is not dropped: its address reaches the
    # transport in the batch that first sends to it (the transport drops messages to unknown
    # peers). Before, catch-up waited for the snapshot timeout (10 election timeouts).
    c = SimCluster(3, seed=11, snapshot_threshold_bytes=1 << 40)
    for i in range(30):
        c.put(f"k{i}", "v" * 10)
    c.run(2 * T)
    assert c.compact("n1")
    joined_at = c.now
    c.join("n4")
    new = c.nodes["n4"]
    wait_for(c, lambda: new.node.log.last_seq == node(c, "n1").log.last_seq, 3 * T, "n4 caught up")
    assert new.state.data == c.nodes["n1"].state.data
    assert c.now - joined_at < 10 * T


def test_master_paused_longer_than_the_election_timeout_steps_down_and_loses_nothing():
    # Proves a long scheduling pause of the master (GC, swap, a starved thread) is a clean
    # failover: the others elect a new master, the old one wakes with a backlog of ticks and
    # messages, steps down, and no acks=majority write is lost (checked after every step).
    c = SimCluster(3, seed=12)
    acked = [c.put(f"k{i}", "v", acks="majority") for i in range(5)]
    wait_done(c, *acked)
    c.pause("n1", 4 * T)
    late = c.put("during-pause", "x", acks="majority", via="n1")  # waits in n1's socket buffer
    new_master = wait_master(c, among={"n2", "n3"})
    c.run(4 * T)
    assert node(c, "n1").role == SLAVE and node(c, "n1").master_id == new_master
    c.settle()
    assert all(op.ok for op in acked)
    assert late.done and (late.ok or late.error in ("not_master", "acks_timeout"))


def test_slave_paused_longer_than_the_election_timeout_does_not_depose_a_healthy_master():
    # Proves a slave that wakes from a long pause (its election timer long expired) asks for
    # pre-votes that the others refuse while they hear the master: no new epoch, and the
    # slave follows the same master again.
    c = SimCluster(3, seed=13)
    wait_done(c, c.put("k", "v", acks="majority"))
    epoch = node(c, "n1").epoch
    c.pause("n3", 5 * T)
    for i in range(10):
        c.put(f"p{i}", "v")
        c.run(HB)
    c.run(6 * T)
    assert node(c, "n1").role == MASTER and node(c, "n1").epoch == epoch
    assert node(c, "n3").master_id == "n1" and node(c, "n3").epoch == epoch
    c.settle()


def test_stuck_commit_point_builds_no_snapshot_and_writes_keep_their_speed():
    # Proves nothing whole-state runs while the commit point cannot move: a 2-node cluster
    # with its slave down keeps taking acks=1 writes; the log outgrows the snapshot threshold
    # many times, yet at most one snapshot (of the last committed state) is built.
    c = SimCluster(2, seed=14, snapshot_threshold_bytes=300)
    wait_done(c, c.put("before", "v", acks="majority"))
    c.crash("n2")
    writes = [c.put(f"k{i}", "v" * 20) for i in range(300)]
    c.run(T)
    assert all(op.ok for op in writes)
    master = c.nodes["n1"]
    assert master.driver.log_bytes > 300 * 20
    assert master.driver.builds_started <= 1 and master.work.pending_build is None


def test_delete_and_compare_and_set_answers_match_what_was_applied_across_failovers():
    # Proves client answers are bound to the request's own entry: deletes of absent keys and
    # failed compare-and-sets are answered 404/409 exactly when their entry changed nothing,
    # through failovers that roll entries back (the simulator checks each answer).
    c = SimCluster(3, seed=15)
    answered = []
    for round_ in range(4):
        master = wait_master(c)
        answered += [c.delete("ghost"), c.put("cas", f"v{round_}", cond=0), c.put("plain", "v")]
        c.isolate(master)
        answered += [c.delete("ghost2", via=master), c.put("cas2", "x", cond=7, via=master)]
        c.run(3 * T)
        c.heal()
        c.run(2 * T)
    c.settle()
    statuses = {op.status for op in answered if op.done}
    assert 404 in statuses and 409 in statuses and 200 in statuses
