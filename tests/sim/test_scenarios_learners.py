"""Scenario tests: learners, the members that are replicated to but count in no quorum.

Each test names what it proves (docs/protocol.md, "Learners"); the mutants in
tests/sim/mutants.py under "learners" are the rules these scenarios must catch.
"""

from __future__ import annotations

from dkvs.core.config import CoreConfig
from dkvs.core.master import PROMOTE_AFTER_HEARTBEATS

from .cluster import SimCluster
from .scenario_helpers import HB, MASTER, T, node, wait_done, wait_for, wait_master

CANDIDATE = "candidate"


def _promotions(c: SimCluster, member: str) -> list:
    """Every ``member_promote`` of ``member`` in the current master's retained log."""
    return [e for e in c.master().node.log.entries if e.op == "member_promote" and e.key == member]


def _never_campaigns(*learners: str):
    """An extra check: none of ``learners`` is ever a candidate or master while a learner."""
    def check(c: SimCluster) -> None:
        for sim in c.nodes.values():
            n = sim.node
            if n is not None and sim.id in learners and sim.id in n.learners:
                assert n.role not in (CANDIDATE, MASTER), f"{c.where()}: learner {sim.id} became {n.role}"
                assert n.elections_started == 0, f"{c.where()}: learner {sim.id} started an election"
    return check


# -- a learner counts in no quorum ---------------------------------------------------------------

def test_learner_ack_never_commits_an_entry():
    # Proves that a learner's copy does not count towards the commit point: the master and a
    # fully caught-up read replica (2 of 4 members, 1 of 3 voters + the replica) are cut off
    # from the other two voters; an acks=majority write reaches the replica but is never
    # committed and never acknowledged, a consistent read is not confirmed by the replica's
    # answers, and the master steps down (check-quorum counts voters only).
    c = SimCluster(3, seed=31)
    c.join_learner("n4", stay=True)
    wait_for(c, lambda: node(c, "n4").log.last_seq == node(c, "n1").log.last_seq, 4 * T, "n4 catching up")
    c.partition(["n1", "n4"], ["n2", "n3"])
    read = c.read("k", timeout=2 * T)  # nothing uncommitted before it: only the round decides
    write = c.put("k", "minority", acks="majority", timeout=2 * T)
    seq = node(c, "n1").log.last_seq  # the write's entry, appended at once
    c.extra_checks.append(lambda c: _assert_not_committed(c, "n1", seq))
    wait_for(c, lambda: node(c, "n4").log.last_seq >= seq, T, "the replica holding the write")
    wait_done(c, write, read)
    assert write.error == "not_master"  # stepped down: check-quorum heard 1 of 3 voters
    assert read.error in ("read_timeout", "not_master")  # the replica confirmed no read round
    assert node(c, "n4").log.last_seq >= seq  # the learner held it all along
    c.extra_checks.clear()
    c.heal()
    wait_master(c, among={"n2", "n3"})
    c.settle()


def _assert_not_committed(c: SimCluster, nid: str, seq: int) -> None:
    n = c.nodes[nid].node
    if n is not None:
        assert n.commit_seq < seq, f"{c.where()}: {nid} committed seq {seq} with a learner's ack"


def test_partitioned_learner_does_not_block_writes():
    # Proves that a learner cut off from everyone changes no quorum: with three voters and
    # an isolated read replica, acks=majority and acks=all writes are answered at once, and
    # in a one-voter cluster a learner isolated before it caught up is never promoted and
    # never delays an acks=majority write.
    c = SimCluster(3, seed=32)
    c.join_learner("n4", stay=True)
    c.isolate("n4")
    c.run(2 * T)  # long enough for n4 to count as dead
    for acks in ("majority", "all"):
        op = c.put(f"k-{acks}", "v", acks=acks)
        wait_done(c, op, ticks=4 * HB)
        assert op.ok, (acks, op.error)
    c.heal()
    wait_for(c, lambda: node(c, "n4").log.last_seq == node(c, "n1").log.last_seq, 4 * T, "n4 catching up")
    # A slow learner (alive, but its batches held up) does not hold acks=all writes either:
    # acks=all means every live *voter*.
    c.net.hold("n1", "n4")
    op = c.put("k-slow", "v", acks="all")
    wait_done(c, op, ticks=4 * HB)
    assert op.ok, op.error
    c.net.release("n1", "n4")
    c.settle()

    solo = SimCluster(1, seed=33)
    for i in range(50):
        solo.put(f"pre{i}", "x")
    solo.join_learner("n2")
    solo.isolate("n2")
    for i in range(20):
        op = solo.put(f"k{i}", "v", acks="majority")
        wait_done(solo, op, ticks=2 * HB)
        assert op.ok
        solo.run(HB)
    assert "n2" in node(solo, "n1").learners  # not caught up: not promoted
    solo.heal()
    wait_for(solo, lambda: not node(solo, "n1").learners, 10 * T, "n2 promoted after the partition healed")
    solo.settle()


# -- a learner never campaigns, and its vote never counts -----------------------------------------

def test_learner_never_starts_or_wins_an_election():
    # Proves that a learner never campaigns: the only voter of a one-voter cluster crashes and
    # its read replica waits (no pre-vote, no election) until the voter is back. And that a
    # learner's vote does not count: with voters n1, n2 and a replica n3, n2 cut off from n1
    # with only n3 to vote for it stays a slave (a majority of 2 voters is 2).
    c = SimCluster(1, seed=34)
    c.join_learner("n2", stay=True)
    c.extra_checks.append(_never_campaigns("n2"))
    wait_for(c, lambda: node(c, "n2").log.last_seq == node(c, "n1").log.last_seq, 4 * T, "n2 catching up")
    c.crash("n1")
    c.run(10 * T)
    assert c.master() is None and node(c, "n2").elections_started == 0
    c.restart("n1")
    assert wait_master(c) == "n1"
    c.settle()

    c = SimCluster(2, seed=35)
    c.join_learner("n3", stay=True)
    c.extra_checks.append(_never_campaigns("n3"))
    c.partition(["n1"], ["n2", "n3"])
    campaigned = []
    c.extra_checks.append(lambda c: campaigned.append(node(c, "n2").role == CANDIDATE))
    c.run(10 * T)
    assert any(campaigned)  # n2 asked, n3 granted...
    assert [s.id for s in c.masters()] == ["n1"]  # ...but n3's vote does not count: n2 never won
    c.heal()
    c.settle()


# -- promotion -------------------------------------------------------------------------------------

def test_learner_is_promoted_only_once_caught_up_and_writes_never_wait_for_it():
    # Proves the promotion rule: a node joining a one-voter cluster that holds many entries
    # (small batches, so the catch-up takes many round trips) is promoted only when it holds
    # the log to within one batch of the master; meanwhile every acks=majority write to the
    # voter is answered within a heartbeat or two (the issue-13 stall, in logical time).
    config = CoreConfig(max_batch_entries=8)
    c = SimCluster(1, seed=36, config=config, snapshot_threshold_bytes=1 << 40)
    for i in range(600):
        c.put(f"pre{i:04d}", "x" * 20)
    c.run(HB)
    at_promotion: list[tuple[int, int]] = []

    def watch(c: SimCluster) -> None:
        master = c.master()
        if master is None or at_promotion or not _promotions(c, "n2"):
            return
        p = master.node.progress["n2"]
        at_promotion.append((p.match_seq, master.node.log.last_seq))
    c.extra_checks.append(watch)
    c.join_learner("n2")
    slowest, after = 0, 0
    while after < 20:  # writes all through the catch-up, and 20 more once promoted
        op = c.put("k", str(c.now), acks="majority")
        slowest = max(slowest, c.run_until(lambda: op.done, 4 * T))
        assert op.ok, op.error
        c.run(1)
        after += bool(at_promotion)
        assert c.now < 100 * T, "never promoted"
    match, last = at_promotion[0]
    assert last - match <= config.max_batch_entries, at_promotion
    assert slowest <= 2 * HB, f"an acks=majority write waited {slowest} ticks during the catch-up"
    assert not node(c, "n1").learners and sorted(node(c, "n1").voters()) == ["n1", "n2"]
    op = c.put("after", "v", acks="majority")
    wait_done(c, op)
    assert op.ok and op.result["replicas"] == 2
    c.settle()
    assert not node(c, "n2").learners  # every node knows n2 votes now


def test_promotion_is_safe_when_the_master_fails_in_the_middle():
    # Proves that a promotion the master appended but did not commit before dying is safe
    # either way: (a) only the learner got it, so it counts itself a voter (3 voters) while
    # n2 does not (2 voters); it campaigns and n2 elects it, committing the promotion;
    # (b) nobody got it: n2 cannot win alone (it needs n1 of 2 voters) and n1, restarted,
    # commits it. Durable writes made before survive in both, the invariants hold throughout.
    for seed, learner_got_it in ((37, True), (38, False)):
        c = SimCluster(2, seed=seed)
        before = c.put("before", "v", acks="majority")
        wait_done(c, before)
        c.join_learner("n3")
        wait_for(c, lambda: bool(_promotions(c, "n3")), 10 * T, "n1 appending the promotion")
        c.cut("n1", "n2")  # the promotion (in flight) never reaches n2
        if learner_got_it:
            wait_for(c, lambda: "n3" not in node(c, "n3").learners, T, "n3 holding its promotion")
        c.cut("n1", "n3")
        c.crash("n1")
        c.heal()
        if learner_got_it:
            assert wait_master(c, ticks=10 * T) == "n3"  # a voter in its own log, elected by n2
            c.restart("n1")
        else:
            c.run(10 * T)
            assert c.master() is None  # n2 needs n1; n3 is a learner in every log it holds
            c.restart("n1")
            assert wait_master(c, ticks=10 * T) == "n1"
            wait_for(c, lambda: not node(c, "n1").learners, 20 * T, "n3 promoted")
        c.settle()
        assert sorted(c.master().node.voters()) == ["n1", "n2", "n3"]
        read = c.read("before")
        wait_done(c, read)
        assert read.ok and read.read_value[0] == "v"


def test_read_replica_is_never_promoted_and_survives_snapshots_and_restarts():
    # Proves that --learner (replica_add) is kept for good: caught up for many heartbeats it
    # is never promoted; after both nodes compacted their logs (the join entry is gone, only
    # the snapshot's member rows remember it) and restarted, it is still a learner everywhere.
    c = SimCluster(1, seed=39, snapshot_threshold_bytes=1 << 40)
    c.join_learner("n2", stay=True)
    for i in range(20):
        c.put(f"k{i}", "v")
    c.run((PROMOTE_AFTER_HEARTBEATS + 5) * HB)
    assert node(c, "n1").learners == {"n2": "replica"}
    c.settle()
    assert c.compact("n1") and c.compact("n2")
    for nid in ("n2", "n1"):
        c.crash(nid)
        c.restart(nid)
    assert wait_master(c) == "n1"
    c.settle()
    for nid in ("n1", "n2"):
        assert node(c, nid).learners == {"n2": "replica"}, nid
    status = node(c, "n1").status()
    assert [(m["id"], m["voter"]) for m in status["members"]] == [("n1", True), ("n2", False)]


# -- the member rows of snapshots ------------------------------------------------------------------

def test_snapshot_member_rows_keep_learners_and_old_rows_are_voters(tmp_path):
    # Proves the snapshot encoding: a learner's row carries its kind through a snapshot file,
    # the wire codec and a node rebuilt from it; a row without a kind (data dirs older than
    # learners) is a voter, and an unknown kind is dropped rather than trusted.
    from dkvs.core.membership import fold_members, parse_member_rows
    from dkvs.core.messages import Snapshot
    from dkvs.core.node import Node
    from dkvs.storage.base import StoredSnapshot
    from dkvs.storage.snapshot_file import read_snapshot, write_snapshot
    from dkvs.transport import codec

    rows = (("n1", "http://a"), ("n2", "http://b", "learner"), ("n3", "http://c", "replica"))
    path = str(tmp_path / "snap")
    write_snapshot(path, StoredSnapshot(7, 2, rows, [["k", "v", 3]]))
    assert read_snapshot(path).members == rows
    wire = codec.decode_snapshot(b"".join(codec.encode_snapshot_chunks(Snapshot(2, "n1", 7, 2, rows, []))))
    assert wire.members == rows
    node = Node("n1", CoreConfig(), _Rng(), snapshot_seq=7, snapshot_epoch=2, snapshot_members=rows)
    assert node.voters() == ["n1"] and node.learners == {"n2": "learner", "n3": "replica"}
    assert node.member_rows_at(7) == rows
    old = fold_members([("n1", "http://a"), ("n2", "http://b")], ())
    assert old.voters() == ["n1", "n2"] and not old.learners
    assert parse_member_rows([["n1", "http://a", "bogus"]]) == (("n1", "http://a"),)


class _Rng:
    def randrange(self, n: int) -> int:
        return 0


def test_membership_fold_of_learner_entries():
    # Proves the fold's rules: a learner joins as one kind or the other, a promotion makes it
    # a voter, a voter that rejoins (even at a new url) is never demoted, a removal forgets both.
    from dkvs.core.log import Entry
    from dkvs.core.membership import fold_members

    def fold(*ops):
        return fold_members((), [Entry(1, i + 1, op, key, value) for i, (op, key, value) in enumerate(ops)])

    m = fold(("member_add", "a", "u-a"), ("learner_add", "b", "u-b"), ("replica_add", "c", "u-c"))
    assert m.voters() == ["a"] and m.learners == {"b": "learner", "c": "replica"}
    m = fold(("member_add", "a", "u-a"), ("learner_add", "b", "u-b"), ("member_promote", "b", None),
             ("learner_add", "b", "u-b2"), ("member_remove", "c", None))
    assert m.voters() == ["a", "b"] and m.urls["b"] == "u-b2" and not m.learners
    m = fold(("replica_add", "c", "u-c"), ("member_remove", "c", None), ("member_promote", "c", None))
    assert not m.urls and not m.learners
