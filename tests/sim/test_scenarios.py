"""Protocol scenarios in the simulator, each a short transcript named for what it proves.

Every scenario runs on :class:`~tests.sim.cluster.SimCluster`, so all the invariants of
:mod:`tests.sim.invariants` (one master per epoch, no acknowledged durable write lost,
log matching, monotonic commit, memory = disk) are also checked after every step.
Timings are the production defaults (``heartbeat_ticks=5``, ``election_ticks=50``,
i.e. 0.1 s and 1 s) and messages take one or two ticks.
"""

from __future__ import annotations

import pytest

from dkvs.core.config import CoreConfig

from .cluster import SimCluster
from .scenario_helpers import HB, MASTER, SLAVE, T, node, wait_done, wait_for, wait_master

# -- elections ------------------------------------------------------------------------------------

def test_master_crash_elects_freshest_slave():
    # Proves the bully-by-freshness rule: when the master dies, the slave holding the most
    # complete log wins, even though a staler slave with a higher id times out first.
    c = SimCluster(3, seed=1)
    c.run(2 * T)  # everyone holds the member list: n3 is a member that will campaign
    c.cut("n1", "n3")  # n3 stops hearing the master: it falls behind
    writes = [c.put(f"k{i}", f"v{i}", acks="majority") for i in range(5)]
    wait_done(c, *writes)
    assert all(w.ok for w in writes)
    assert node(c, "n2").log.last_seq > node(c, "n3").log.last_seq

    c.crash("n1")
    c.net.heal()
    c.nodes["n3"].rate = 1.5  # n3's clock runs fast: it campaigns first
    assert wait_master(c) == "n2"
    assert "n3" not in c.inv.masters_by_epoch.values() and node(c, "n3").elections_started == 0
    c.settle()
    for w in writes:
        assert c.nodes["n3"].state.get(w.key) == (w.value, w.result["seq"])


def test_stale_node_cannot_win():
    # Proves the vote rule that makes acks=majority durable: voters refuse a candidate whose
    # log is behind theirs, so two stale nodes cannot elect one of themselves even though
    # together with the fresh survivor they are a majority, and they time out first.
    c = SimCluster(5, seed=2)
    c.run(2 * T)
    c.cut("n1", "n4")
    c.cut("n1", "n5")
    writes = [c.put(f"k{i}", "v", acks="majority") for i in range(4)]
    wait_done(c, *writes)
    assert all(w.ok for w in writes)  # held by n1, n2, n3

    c.crash("n1")
    c.crash("n2")
    c.net.heal()
    c.nodes["n4"].rate = c.nodes["n5"].rate = 1.5
    assert wait_master(c) == "n3"
    assert not {"n4", "n5"} & set(c.inv.masters_by_epoch.values())
    for w in writes:
        assert node(c, "n3").log.epoch_at(w.result["seq"]) == w.result["epoch"]


@pytest.mark.parametrize("seed", range(5))
def test_tie_broken_by_node_id(seed):
    # Proves the bully tie-break: with equal logs the highest id wins, whichever candidate
    # times out first (n2's clock runs fast, so it always tries first).
    c = SimCluster(3, seed=seed)
    c.put("k", "v", acks="all")
    c.run(2 * T)
    assert node(c, "n2").log.last_seq == node(c, "n3").log.last_seq
    c.crash("n1")
    c.nodes["n2"].rate = 1.5
    assert wait_master(c) == "n3"
    assert node(c, "n2").elections_won == 0


def test_split_vote_resolves():
    # Proves that a split vote (two candidates in one epoch, neither with a majority)
    # resolves: randomized timeouts break the symmetry, a later epoch elects one master.
    # n4 and n5 cannot hear each other, so the bully rule cannot make one defer before
    # both ask n2 and n3 for votes; across seeds this produces genuine splits.
    splits = []
    for seed in range(40):
        c = SimCluster(5, seed=seed)
        c.run(2 * T)
        c.crash("n1")
        c.cut("n4", "n5")
        c.cut("n5", "n4")
        wait_master(c, ticks=20 * T)
        if c.inv.split_votes():
            splits.append((seed, c.inv.split_votes()))
        c.settle()
        assert len(c.masters()) == 1
    assert splits, "no seed produced a split vote: the scenario no longer shows what it claims"


def test_prevote_prevents_disruption_by_flapping_node():
    # Proves pre-vote: a node whose link flaps times out and campaigns again and again,
    # but the others still hear their master and refuse, so it never raises the epoch
    # and the master is never deposed.
    c = SimCluster(3, seed=3)
    epoch = node(c, "n1").epoch
    for _ in range(5):
        c.isolate("n3")
        c.run(3 * T)  # long enough to time out more than once
        assert node(c, "n3").role != MASTER
        c.net.heal()
        c.put("k", "v", acks="all")
        c.run(T)
        assert c.master().id == "n1" and node(c, "n1").epoch == epoch
    assert node(c, "n3").epoch == epoch and node(c, "n3").elections_started == 0
    assert c.inv.masters_by_epoch == {epoch: "n1"}
    c.settle()


def test_partitioned_master_steps_down_within_election_timeout():
    # Proves check-quorum and fencing: a master cut off from both slaves stops being master
    # within one election timeout, the majority side elects a new one, and acks=majority
    # writes sent to the old master are never acknowledged.
    c = SimCluster(3, seed=4)
    c.put("k", "before", acks="majority")
    c.run(T)
    isolated = c.now
    c.isolate("n1")
    doomed = c.put("k", "doomed", acks="majority", via="n1")
    wait_for(c, lambda: node(c, "n1").role != MASTER, T + HB, "the isolated master stepping down")
    assert c.now - isolated <= T + 2  # its last answer came at most one round trip before
    assert wait_master(c, among={"n2", "n3"}) in {"n2", "n3"}
    wait_done(c, doomed)
    assert doomed.error in ("not_master", "acks_timeout") and not doomed.ok
    c.settle()
    assert c.master().state.get("k")[0] == "before"


def test_two_node_cluster_has_no_failover():
    # Proves the documented limit: with two members a majority is two, so a dead master is
    # not replaced (writes fail with no master) until it returns; a dead slave does not stop
    # the master (check-quorum does not apply below three members), but acks=majority waits.
    c = SimCluster(2, seed=5)
    c.crash("n1")
    c.run(10 * T)
    assert c.masters() == []
    assert c.put("k", "v").error == "no_master"
    c.restart("n1")
    wait_master(c)
    c.settle()

    slave = next(s.id for s in c.nodes.values() if s.node.role == SLAVE)
    master = c.master().id
    c.crash(slave)
    fast = c.put("k", "acks-1")
    slow = c.put("k2", "acks-majority", acks="majority", timeout=3 * T)
    c.run(10 * T)
    assert c.master().id == master and fast.ok
    assert slow.error == "acks_timeout"
    c.settle()


# -- replication and durability -----------------------------------------------------------------

def test_old_master_rejoins_and_rolls_back():
    # Proves the divergence repair: an isolated old master's acks=1 writes (acknowledged,
    # never replicated) are rolled back when it rejoins, kept in a rollback record and not
    # dropped silently; acks=majority writes are never lost.
    c = SimCluster(3, seed=6)
    kept_before = c.put("durable", "1", acks="majority")
    wait_done(c, kept_before)
    c.isolate("n1")
    lost = [c.put(f"lost{i}", "x", acks="1", via="n1") for i in range(3)]
    assert all(w.ok for w in lost)  # acks=1: answered on append, before any replication
    refused = c.put("never", "x", acks="majority", via="n1")
    new_master = wait_master(c, among={"n2", "n3"})
    kept_after = c.put("durable", "2", acks="majority", via=new_master)
    wait_done(c, kept_after)
    assert kept_after.ok

    c.net.heal()
    c.settle()
    old = c.nodes["n1"]
    assert old.node.role == SLAVE and not refused.ok
    rolled_back = {e.key for batch in old.storage.rollbacks for e in batch}
    assert {"lost0", "lost1", "lost2", "never"} <= rolled_back
    assert old.runner.rollback_files, "the runner must report where the rolled back entries went"
    assert all(k not in old.state.data for k in rolled_back)
    for s in c.nodes.values():
        assert s.state.get("durable") == ("2", kept_after.result["seq"])


def test_acks_all_waits_for_live_members():
    # Proves acks=all: answered only when every live member holds the write; a member that
    # stopped answering stops counting after one election timeout, so the write completes
    # with the replicas that are left instead of hanging.
    c = SimCluster(3, seed=7)
    first = c.put("k", "v1", acks="all")
    wait_done(c, first)
    assert first.ok and first.result["replicas"] == 3

    c.crash("n3")
    crashed = c.now
    second = c.put("k", "v2", acks="all")
    c.run(T // 2)
    assert not second.done  # n3 was heard from moments ago: it still counts
    wait_done(c, second, ticks=2 * T)
    assert second.ok and second.result["replicas"] == 2
    assert c.now - crashed <= T + 2 * HB

    c.restart("n3")
    c.settle()  # n3 answers again: from now on it counts
    third = c.put("k", "v3", acks="all")
    holders_at_ack = []
    c.extra_checks.append(lambda cl: holders_at_ack.append(
        sum(1 for s in cl.nodes.values() if s.alive and s.node.log.last_seq >= third.result["seq"]))
        if third.ok and not holders_at_ack else None)
    wait_done(c, third)
    assert third.ok and third.result["replicas"] == 3 and holders_at_ack == [3]


def test_slave_far_behind_gets_snapshot():
    # Proves catch-up by snapshot: a slave that missed entries the master has compacted
    # away receives the snapshot, then the tail, and ends with the same data.
    c = SimCluster(3, seed=8)
    c.crash("n3")
    writes = [c.put(f"k{i:02d}", f"v{i}", acks="majority") for i in range(30)]
    wait_done(c, *writes)
    assert c.compact("n1")
    snap_seq = node(c, "n1").log.snapshot_seq
    tail = [c.put(f"t{i}", "tail", acks="majority") for i in range(5)]
    wait_done(c, *tail)
    n3_disk = c.nodes["n3"].storage.entries
    assert (n3_disk[-1].seq if n3_disk else 0) < snap_seq  # n3 (down) misses compacted entries

    c.restart("n3")
    c.settle()
    n3 = c.nodes["n3"]
    assert n3.storage.snapshot is not None and n3.storage.snapshot.seq == snap_seq
    assert n3.node.log.last_seq == node(c, "n1").log.last_seq > snap_seq
    assert n3.state.data == c.nodes["n1"].state.data


def test_new_node_joins_from_snapshot():
    # Proves that a node joining after compaction is brought up by snapshot + tail, with
    # the membership the snapshot carries.
    c = SimCluster(3, seed=9)
    wait_done(c, *[c.put(f"k{i}", "v", acks="majority") for i in range(20)])
    assert c.compact("n1")
    c.join("n4")
    c.settle()
    n4 = c.nodes["n4"]
    assert n4.storage.snapshot is not None
    assert sorted(n4.node.members) == ["n1", "n2", "n3", "n4"]
    assert n4.state.data == c.nodes["n1"].state.data


def test_join_during_writes_converges():
    # Proves membership changes under load: two nodes join one at a time while clients
    # keep writing at every durability level, and all five end with the same log and data.
    c = SimCluster(3, seed=10)
    acks = ("1", "majority", "all")
    joining = ["n4", "n5"]
    joined = []
    pending = None
    for i in range(40 * HB * 8):
        c.put(f"k{i % 17}", f"v{i}", acks=acks[i % 3])
        if pending is None and joining:
            nid = joining.pop(0)
            sim = c.nodes.get(nid) or c.add_node(nid)
            pending = c.propose("member_add", nid, sim.url, acks="majority")
        elif pending is not None and pending.done:
            if pending.ok:
                joined.append(pending.key)
            else:
                joining.insert(0, pending.key)  # refused (e.g. no master): propose again
            pending = None
        c.tick()
        if len(joined) == 2:
            break
    assert joined == ["n4", "n5"]
    c.settle()
    assert len(c.members()) == 5


def test_slaves_are_prefixes_of_master_under_lossy_network():
    # Proves the replication invariant of issue "slaves' applied logs are always prefixes
    # of the master's": with 20% drops, 20% duplicates and heavy reordering, but a stable
    # master (long election timeout), after every step every slave's log (and the state it
    # applied) is a prefix of the master's log, over many seeds.
    config = CoreConfig(heartbeat_ticks=2, election_ticks=200, max_batch_entries=4)

    def prefix_check(c: SimCluster) -> None:
        master = c.nodes["n1"].node
        assert master.role == MASTER, f"{c.where()}: the master changed"
        for s in c.nodes.values():
            n = s.node
            if n is master or not n.members:  # a joining node may not hold anything yet
                continue
            lo = max(n.log.snapshot_seq, master.log.snapshot_seq)
            mine = n.log.entries[lo - n.log.snapshot_seq:]
            theirs = master.log.entries[lo - master.log.snapshot_seq:][:len(mine)]
            assert mine == theirs, f"{c.where()}: {s.id}'s log is not a prefix of the master's"
            assert s.state.applied_seq == n.log.last_seq

    for seed in range(25):
        c = SimCluster(3 if seed % 2 else 5, seed=seed, config=config, min_delay=1, max_delay=6,
                       drop_rate=0.2, dup_rate=0.2, notice_rate=1.0)
        c.extra_checks.append(prefix_check)
        for i in range(150):
            if i % 2 == 0:
                c.put(f"k{i % 11}", f"v{i}", acks=("1", "majority", "all")[i % 3])
            if i == 75:
                c.compact("n1")
            c.tick()
        assert set(c.inv.masters_by_epoch.values()) == {"n1"}
        c.settle()
