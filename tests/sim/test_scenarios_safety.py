"""Safety scenarios: the classic ways a consensus protocol loses committed data, replayed.

Each test is a transcript named for what it proves, and each is the killer of at least one
mutant of ``scripts/mutation_test.py`` (docs/simulation.md, "Mutation testing"): delete
the rule and the scenario breaks an invariant of :mod:`tests.sim.invariants` (a committed
entry overwritten, an acknowledged durable write lost, two masters in one epoch) or a
stated outcome.
"""

from __future__ import annotations

from dkvs.core.config import CoreConfig
from dkvs.core.node import CANDIDATE

from .cluster import SimCluster
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
