"""Scenario tests: linearizable reads, and membership regressions (each names what it proves)."""

from __future__ import annotations

from .cluster import SimCluster
from .scenario_helpers import HB, T, node, wait_done, wait_for, wait_master

# -- reads ------------------------------------------------------------------------------------------

def test_consistent_read_refused_by_deposed_master():
    # Proves that consistent reads are linearizable across a failover: a master cut off
    # from the majority cannot confirm a read round, so it never answers with data the new
    # master has already overwritten.
    c = SimCluster(3, seed=11)
    wait_done(c, c.put("k", "old", acks="majority"))
    c.isolate("n1")
    stale = c.read("k", via="n1")
    new_master = wait_master(c, among={"n2", "n3"})
    overwrite = c.put("k", "new", acks="majority", via=new_master)
    wait_done(c, overwrite, stale)
    assert overwrite.ok
    assert not stale.ok and stale.error in ("read_timeout", "not_master")
    assert c.read("k", via="n1").error == "not_master"  # it knows it is no longer master
    fresh = c.read("k")
    wait_done(c, fresh)
    assert fresh.ok and fresh.read_value[0] == "new"
    c.settle()


def test_consistent_read_never_returns_uncommitted_write():
    # Regression (randomized seed 1438): the master applies writes on append, so a read
    # answered after a later write was appended but before it committed returned that
    # write; the write was then lost in a failover while the read had shown it (not
    # linearizable). A consistent read answers from the committed state.
    c = SimCluster(3, seed=12, min_delay=2, max_delay=2)
    wait_done(c, c.put("k", "clean", acks="majority"))
    master = c.nodes["n1"]
    wait_for(c, lambda: all(p.in_flight_since is None for p in master.node.progress.values()),
             4 * HB, "an idle moment on the master")
    read = c.read("k")  # its round leaves now, as a heartbeat
    dirty = c.put("k", "dirty", acks="majority")  # appended and applied; waits for the round trip
    wait_done(c, read)
    c.isolate("n1")  # the dirty write never reaches anyone
    assert master.state.get("k")[0] == "dirty"  # applied on the master...
    assert read.ok and read.read_value[0] == "clean"  # ...but not what the read returned
    new_master = wait_master(c, among={"n2", "n3"})
    later = c.read("k", via=new_master)
    wait_done(c, later, dirty)
    assert later.read_value[0] == "clean" and not dirty.ok
    c.settle()


# -- membership regressions --------------------------------------------------------------------------

def test_joining_node_can_vote_before_it_has_synced():
    # Regression (randomized seeds 24 and 10940): a node counts in the majority as soon as
    # its member_add is appended, but it refused every vote while its own log was still
    # empty (it knew no members), and its pre-vote grants carried an older epoch and were
    # dropped as stale. Here a one-node cluster adds n2 and restarts before n2 heard
    # anything: without both fixes no master could ever be elected again.
    c = SimCluster(1, seed=13)
    n2 = c.add_node("n2")
    c.cut("n1", "n2")
    join = c.propose("member_add", "n2", n2.url, acks="majority")
    c.run(HB)
    assert sorted(node(c, "n1").members) == ["n1", "n2"] and not join.done
    assert node(c, "n2").epoch == 0 and node(c, "n2").log.last_seq == 0
    c.crash("n1")
    c.restart("n1")
    c.run(HB)  # heartbeats still in flight from before the crash are lost to the cut
    c.net.heal()
    assert node(c, "n2").epoch == 0  # so n2's pre-vote grants will carry an older epoch
    assert wait_master(c, ticks=10 * T) == "n1"
    c.settle()
    assert sorted(node(c, "n2").members) == ["n1", "n2"]


def test_membership_change_waits_for_the_new_masters_first_commit():
    # Regression (Raft's single-server membership bug): a new master must commit an entry
    # of its own epoch before it changes the membership. Otherwise: the old master n1
    # appends "add n5" (5 members, held by n1 and n5 only) and dies; n4 wins epoch 2 in the
    # old 4-member config and at once removes n1, committing that (3 members: n4 + n3 are a
    # majority) and a durable write; n1 restarts and wins epoch 3 in its 5-member view with
    # n5 and n2 (n2 saw nothing of epoch 2): both committed entries would be overwritten.
    c = SimCluster(4, seed=14)
    c.run(4 * HB)
    n5 = c.add_node("n5")
    for peer in ("n2", "n3", "n4"):
        c.cut("n1", peer)
    c.propose("member_add", "n5", n5.url, acks="majority")
    wait_for(c, lambda: node(c, "n5").log.last_seq == node(c, "n1").log.last_seq, 4 * T, "n5 catching up")
    c.cut("n1", "n5")
    assert c.put("only-on-n1", "x", acks="1").ok  # n1 ends fresher than n5: n5 will vote for it
    c.crash("n1")
    c.run(2)  # what n1 sent before dying is lost to the cuts (else "add n5" reaches n2..n4)
    assert all(node(c, n).log.last_seq < node(c, "n5").log.last_seq for n in ("n2", "n3", "n4"))
    c.net.heal()
    c.isolate("n5")
    wait_for(c, lambda: c.master() is not None, 10 * T, "a master among n2, n3, n4")
    new_master = c.master().id
    lagging, helper = [n for n in ("n2", "n3", "n4") if n != new_master]
    c.cut(new_master, lagging)  # the lagging node gets nothing of the new epoch

    remove = c.propose("member_remove", "n1", acks="majority", via=new_master)
    durable = c.put("k", "committed in epoch 2", acks="majority", via=new_master, timeout=4 * T)
    c.run(2 * T)

    c.net.heal()
    c.partition(["n1", "n5", lagging], [new_master, helper])
    c.restart("n1")
    c.run(10 * T)  # the invariants would fail here if n5 (or n1) could win without the entries
    c.settle()
    assert remove.error == "membership_change_in_progress" and not durable.ok


def test_stale_voter_accepts_a_member_it_has_not_heard_of():
    # Regression (randomized seed 14235): votes are decided by log freshness alone. n3 missed
    # the (committed) entry adding n4, so it did not know n4 and refused to vote for it; with
    # n1 dead, n4 needed n3's vote and n2 deferred to n4 (equal logs, higher id): no master,
    # ever. A voter's member list may be stale; a removed node still cannot win, since a
    # majority of the new member list holds the entry that removed it and refuses it.
    c = SimCluster(3, seed=15)
    c.run(2 * T)
    assert sorted(node(c, "n3").members) == ["n1", "n2", "n3"]
    c.cut("n1", "n3")
    c.join("n4")  # committed by n1, n2 and n4: n3 never hears of n4
    assert "n4" not in node(c, "n3").members
    c.crash("n1")
    c.net.heal()
    assert wait_master(c, ticks=20 * T) == "n4"
    c.settle()
