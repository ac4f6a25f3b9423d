"""Safety scenarios: the classic ways a consensus protocol loses committed data, replayed.

Each test is a transcript named for what it proves, and each is the killer of at least one
mutant of ``scripts/mutation_test.py`` (docs/simulation.md, "Mutation testing"): delete
the rule and the scenario breaks an invariant of :mod:`tests.sim.invariants` (a committed
entry overwritten, an acknowledged durable write lost, two masters in one epoch) or a
stated outcome.
"""

from __future__ import annotations

from dkvs.core.config import CoreConfig
from dkvs.core.messages import Snapshot
from dkvs.core.node import CANDIDATE

from .cluster import SimCluster
from .node_io import Request
from .scenario_helpers import HB, MASTER, SLAVE, T, node, wait_done, wait_for, wait_master


def test_figure_8_old_epoch_entry_on_a_majority_is_not_committed_by_count():
    # Proves Raft's current-epoch commit rule (the "figure 8" case). X is written in epoch 1
    # and reaches n2 only. n5 wins epoch 2 without it and appends its own no-op (n5 only).
    # n2 wins epoch 3 and copies X to n3 and n4: X is now on a majority (n2, n3, n4), but
    # n2's own no-op of epoch 3 is not. Counting replicas would commit X; n2 must not. n2
    # dies, and n5, whose log ends in epoch 2, is fresher than everyone left: it wins epoch
    # 4 and overwrites X. Had X been committed, a committed entry would change here.
    config = CoreConfig(heartbeat_ticks=5, election_ticks=50, max_batch_entries=1)
    c = SimCluster(5, seed=21, config=config, min_delay=1, max_delay=1)
    c.run(2 * T)
    base = node(c, "n1").log.last_seq
    for peer in ("n3", "n4", "n5"):
        c.cut("n1", peer)
    x = c.put("x", "epoch-1 value", acks="1")
    wait_for(c, lambda: node(c, "n2").log.last_seq == base + 1, T, "X reaching n2")
    c.crash("n1")
    c.crash("n2")
    c.net.heal()

    # Epoch 2: n5 (highest id among equal logs) wins and appends its no-op, which goes nowhere.
    wait_for(c, lambda: c.master() is not None, 10 * T, "a master among n3, n4, n5")
    assert c.master().id == "n5" and node(c, "n5").epoch == 2
    c.isolate("n5")
    c.run(HB)
    c.crash("n5")
    assert node(c, "n3").log.last_seq == base  # n5's no-op reached no one

    # Epoch 3: n2 (it holds X: fresher than n3, n4) wins; X reaches n3 and n4, its no-op not.
    def hold_back_the_no_op(cluster):
        m = cluster.nodes["n2"].node
        if m is None or m.role != MASTER:
            return
        for peer in ("n3", "n4"):
            p = m.progress.get(peer)
            if p is not None and p.match_seq >= base + 1:
                cluster.cut("n2", peer)  # the next batch (the no-op) is lost
    c.extra_checks.append(hold_back_the_no_op)
    c.restart("n2")

    def x_acknowledged_by_n3_and_n4():
        m = node(c, "n2")
        return m.role == MASTER and all(m.progress[p].match_seq >= base + 1 for p in ("n3", "n4"))
    wait_for(c, x_acknowledged_by_n3_and_n4, 20 * T, "n3 and n4 confirming X to master n2")
    c.run(2 * T)  # time for a (wrong) commit to show
    n2 = node(c, "n2")
    assert n2.epoch == 3 and n2.log.epoch_at(base + 1) == 1 and n2.log.last_seq == base + 2
    assert n2.commit_seq <= base  # X is on a majority but not committed: it is not of epoch 3

    # Epoch 4: n2 dies; n5's log (ends in epoch 2) is fresher than n3's and n4's: it wins.
    c.extra_checks.remove(hold_back_the_no_op)
    c.crash("n2")
    c.net.heal()
    c.restart("n5")
    assert wait_master(c, among={"n5"}, ticks=20 * T) == "n5"
    assert node(c, "n5").log.epoch_at(base + 1) == 2  # X was overwritten: rightly, never committed
    c.settle()
    assert c.nodes["n5"].state.get("x") is None and x.ok
    assert (base + 1, 1) in c.inv.rolled_back["n1"]  # n1 acknowledged X: it keeps a rollback record


def test_stale_consistent_read_after_a_long_pause_of_the_master_is_refused():
    # Proves the read-index round: the master is paused (a long GC or a starved thread: it
    # neither ticks nor hears anything) for longer than the election timeout; n2 and n3 elect
    # a new master and overwrite the key. The old master wakes up believing it still leads
    # and is asked for a consistent read before it hears the news. Without a majority round
    # that starts after the read arrived it would answer with the overwritten value.
    c = SimCluster(3, seed=23)
    wait_done(c, c.put("k", "old", acks="majority"))
    c.run(2 * HB)
    c.nodes["n1"].rate = 0.0  # paused: no ticks, so no check-quorum either
    c.isolate("n1")  # ...and nothing reaches it
    new_master = wait_master(c, among={"n2", "n3"}, ticks=10 * T)
    wait_done(c, c.put("k", "new", acks="majority", via=new_master))
    assert node(c, "n1").role == MASTER  # still believes it leads
    read = c.read("k", via="n1")  # the first thing it does when it wakes up
    c.nodes["n1"].rate = 1.0
    wait_done(c, read, ticks=4 * T)
    assert not read.ok, f"stale read answered: {read.read_value}"
    c.net.heal()
    c.settle()


def test_a_slave_that_misses_heartbeats_keeps_forwarding_to_the_healthy_master():
    # Regression (issue 10): a slave under load misses heartbeats and starts a pre-vote; the
    # other nodes still hear the master and refuse, so no epoch changes. Throughout, the
    # slave must still know the master (the host forwards writes to it) instead of
    # answering "no master".
    c = SimCluster(3, seed=24)
    c.run(2 * T)
    c.cut("n1", "n3")  # n3 hears nothing from the master; the master is healthy
    wait_for(c, lambda: node(c, "n3").role == CANDIDATE, 3 * T, "n3 starting a pre-vote")
    for _ in range(3 * T):
        c.tick()
        assert node(c, "n3").master_id == "n1", f"n3 forgot its master at tick {c.now}"
    assert node(c, "n1").role == MASTER and node(c, "n3").epoch == node(c, "n1").epoch
    c.net.heal()
    wait_for(c, lambda: node(c, "n3").role == SLAVE, 2 * T, "n3 following n1 again")
    c.settle()


# -- late vote requests ------------------------------------------------------------------------------

def _late_vote_request(seed: int) -> SimCluster:
    """n3 passes a pre-vote with n2's help while both miss the master n1, then asks n2 for
    its real vote for epoch 2; that request is held on the n3 → n2 link, and n2 hears n1
    again. Returns the cluster in that state (release with ``net.release("n3", "n2")``)."""
    c = SimCluster(3, seed=seed, min_delay=1, max_delay=1)
    c.run(2 * T)
    c.cut("n1", "n3")
    c.net.hold("n1", "n2")  # n2 misses n1 too (nothing is lost: it arrives on release)
    c.nodes["n3"].rate = 2.0  # n3 campaigns while n1 is still master (before check-quorum)

    def hold_the_real_vote_request(cluster):
        n3 = cluster.nodes["n3"].node
        if n3.role == CANDIDATE and not n3.pre_voting:
            cluster.net.hold("n3", "n2")
    c.extra_checks.append(hold_the_real_vote_request)
    wait_for(c, lambda: node(c, "n3").epoch == 2, T, "n3 asking for real votes in epoch 2")
    c.extra_checks.remove(hold_the_real_vote_request)
    assert node(c, "n1").role == MASTER and node(c, "n1").epoch == 1
    c.net.release("n1", "n2")
    wait_for(c, lambda: node(c, "n2").hears_master(), HB, "n2 hearing n1 again")
    return c


def test_a_vote_request_arriving_after_the_voter_hears_its_master_again_is_refused():
    # Proves vote stickiness: n3's request for epoch 2 reaches n2 only once n2 hears the
    # healthy master n1 again. n2 must refuse it and stay in epoch 1; granting would elect
    # n3 and depose a master that a majority can still reach.
    c = _late_vote_request(seed=31)
    c.net.release("n3", "n2")
    c.run(2 * HB)
    assert node(c, "n2").epoch == 1 and node(c, "n2").voted_for is None
    assert c.master().id == "n1" and 2 not in c.inv.masters_by_epoch
    c.settle()


def test_a_restarted_voter_refuses_a_candidate_that_missed_a_commit():
    # Proves the voter's freshness check on real votes. n3 passed its pre-vote while its log
    # equalled n2's; then n1 commits a durable write with n2, and n2 restarts (so it hears
    # no master) just before n3's late request for epoch 2 arrives. n3 lacks the write: n2
    # must refuse, or n3 becomes master without an acknowledged acks=majority write.
    c = _late_vote_request(seed=32)
    write = c.put("k", "committed by n1 and n2", acks="majority", via="n1")
    wait_done(c, write, ticks=T)
    assert write.ok and node(c, "n3").log.last_seq < write.result["seq"]
    c.net.hold("n1", "n2")  # n2 restarts hearing no master...
    c.crash("n2")
    c.restart("n2")
    c.net.release("n3", "n2")  # ...and the first thing it gets is n3's request
    c.run(2 * HB)
    assert 2 not in c.inv.masters_by_epoch or c.inv.masters_by_epoch[2] != "n3"
    c.net.release("n1", "n2")
    c.settle()


# -- membership and snapshots --------------------------------------------------------------------

def test_two_membership_changes_at_once_could_split_the_majority():
    # Proves the single-change rule. n1 leads {n1, n2, n3}, cut off from n2 and n3, and tries
    # to add n4 and n5 at once. Were both appended, n1, n4 and n5 would be a majority of the
    # five-member list and could commit a durable write that n2 and n3 (still a majority of
    # the three-member list) never see; they would then elect a master without it.
    c = SimCluster(3, seed=33)
    c.run(2 * T)
    n4, n5 = c.add_node("n4"), c.add_node("n5")
    c.cut("n1", "n2")
    c.cut("n1", "n3")
    first = c.propose("member_add", "n4", n4.url, acks="majority", timeout=4 * T)
    second = c.propose("member_add", "n5", n5.url, acks="majority", timeout=4 * T)
    write = c.put("k", "v", acks="majority", timeout=4 * T)
    c.run(T // 2)
    c.crash("n1")
    wait_master(c, among={"n2", "n3"}, ticks=10 * T)  # the invariants fail here without the rule
    c.run(T)
    assert second.error == "membership_change_in_progress"
    assert not first.ok and not write.ok
    c.settle()


def test_a_late_duplicate_of_a_snapshot_is_ignored():
    # Proves the snapshot install guard: a copy of a snapshot the slave installed long ago
    # (a duplicated or retried delivery) arrives after the slave has moved past it and
    # compacted its own log. Installing it would move the commit point back.
    c = SimCluster(3, seed=34)
    c.run(2 * T)
    c.crash("n3")
    wait_done(c, *[c.put(f"k{i}", "v", acks="majority") for i in range(10)])
    assert c.compact("n1")
    sent = []
    original = c.net.send

    def record(frm, to, payload):
        if isinstance(payload, Request) and isinstance(payload.message, Snapshot):
            sent.append((frm, to, payload.message))
        original(frm, to, payload)
    c.net.send = record
    c.restart("n3")
    wait_for(c, lambda: sent and node(c, "n3").log.snapshot_seq == sent[0][2].seq, 4 * T, "n3 installing the snapshot")
    wait_done(c, *[c.put(f"j{i}", "v", acks="all") for i in range(5)])
    wait_for(c, lambda: node(c, "n3").commit_seq == node(c, "n1").log.last_seq, 2 * T, "n3 committing the writes")
    assert c.compact("n3") and node(c, "n3").log.snapshot_seq > sent[0][2].seq
    frm, to, snapshot = sent[0]
    original(frm, to, Request(-10**6, snapshot))  # the late copy
    c.run(2 * HB)
    assert node(c, "n3").log.snapshot_seq > snapshot.seq
    c.settle()
