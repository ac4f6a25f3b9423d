"""A master's batch leaves before its own fsync: its copy counts only once it is on disk.

The executor sends a master's entry-only batch first and persists it after (Raft thesis
§10.2.1), so a write costs one fsync of latency instead of the master's and the slaves'
in series. These transcripts fail the master's persist (``SimDisk.full``) after the batch
left and check the one rule that makes that safe: the master counts itself in a commit
only up to its durable seq, so the entry commits exactly when a majority of *other*
durable copies holds it. ``master_counts_durable_seq_only`` in tests/sim/mutants.py is the
mutant they kill (a master that counts its in-memory log commits with one slave copy).
"""

from __future__ import annotations

from dkvs.core.config import CoreConfig

from .cluster import SimCluster
from .scenario_helpers import HB, T, node, wait_done, wait_for, wait_master

CONFIG = CoreConfig(heartbeat_ticks=5, election_ticks=50)


def _cluster(n: int, seed: int) -> SimCluster:
    c = SimCluster(n, seed=seed, config=CONFIG, min_delay=1, max_delay=1, snapshot_threshold_bytes=1 << 40)
    wait_master(c, ticks=6 * CONFIG.election_ticks)
    c.run(2 * CONFIG.heartbeat_ticks)
    return c


def _write_on_a_full_master(c: SimCluster, reach: int):
    """The master's disk fills; a write reaches ``reach`` slaves (the others are cut off).
    Returns the master, the write and its seq once those slaves hold the entry."""
    m = c.master()
    slaves = sorted(s for s in c.nodes if s != m.id)
    for cut in slaves[reach:]:
        c.cut(m.id, cut)
    m.storage.full = True
    seq = m.node.log.last_seq + 1
    op = c.put("k", "on slaves only", acks="majority")
    wait_for(c, lambda: all(node(c, s).log.last_seq >= seq for s in slaves[:reach]), 2 * HB,
             f"the entry reaching {reach} slaves")
    c.run(2 * HB)  # their answers are back at the master
    assert m.runner.backlog, "the master's persist should have failed"
    assert m.node.durable_seq < seq
    return m, op, seq


def test_entry_the_master_could_not_persist_commits_through_two_slave_copies():
    # 3 nodes, majority 2: both slaves hold the entry on disk, the master does not. Two
    # durable copies are a majority, so the entry commits (the client still hears
    # disk_full: the master cannot vouch for it), and it survives the master's crash.
    c = _cluster(3, seed=5)
    m, op, seq = _write_on_a_full_master(c, reach=2)
    assert m.node.commit_seq >= seq
    wait_done(c, op)
    assert op.error == "disk_full"
    c.crash(m.id)  # its memory, the only other place the entry was, is gone
    survivor = wait_master(c, ticks=6 * T)
    assert survivor != m.id and node(c, survivor).log.epoch_at(seq) is not None
    read = c.read("k")
    wait_done(c, read)
    assert read.ok and read.read_value[0] == "on slaves only"


def test_entry_on_one_slave_only_does_not_commit_while_the_master_cannot_persist():
    # 3 nodes: one slave holds the entry, the master's copy is in memory only. Counting the
    # master's log would make that a majority of 2 and commit an entry a crash of the
    # master can erase; counting its disk, the entry waits.
    c = _cluster(3, seed=6)
    m, op, seq = _write_on_a_full_master(c, reach=1)
    c.run(HB)
    assert m.node.commit_seq < seq
    wait_done(c, op)
    assert op.error == "disk_full"
    m.storage.full = False  # the disk accepts writes again: the retry persists the backlog
    wait_for(c, lambda: not m.runner.backlog and m.node.durable_seq >= seq, 4 * HB, "the retried persist")
    c.settle()  # and everything converges, with the invariants checked at the end


def test_five_nodes_commit_through_three_slave_copies_but_not_two():
    # 5 nodes, majority 3. Without the master's copy three slaves are needed.
    c = _cluster(5, seed=7)
    m, _, seq = _write_on_a_full_master(c, reach=2)
    c.run(HB)
    assert m.node.commit_seq < seq  # master (memory only) + 2 slaves: not 3 durable copies
    c2 = _cluster(5, seed=8)
    m2, _, seq2 = _write_on_a_full_master(c2, reach=3)
    assert m2.node.commit_seq >= seq2


def test_the_master_commits_once_its_own_persist_succeeded():
    # The ordinary path: with a working disk a write commits as before (the master's copy
    # counts once persisted; slaves' answers arriving after that find it durable).
    c = _cluster(3, seed=9)
    m = c.master()
    op = c.put("k", "v", acks="majority")
    wait_done(c, op)
    assert op.ok and m.node.durable_seq == m.node.log.last_seq >= op.result["seq"]
