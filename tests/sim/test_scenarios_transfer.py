"""Leadership transfer scenarios (dkvs.core.transfer): handovers under load and under faults.

Each test is a transcript named for what it proves. The simulator's invariants hold at
every step (one master per epoch, committed entries never change, acknowledged
``acks=majority`` writes survive); on top, a clean handover must roll back no acknowledged
``acks=1`` write, and a failed one must give the master back its writes at the deadline.
Several of these kill the transfer mutants of ``tests/sim/mutants.py``.
"""

from __future__ import annotations

from dkvs.core.messages import TimeoutNow

from .cluster import ClientOp, SimCluster
from .scenario_helpers import HB, MASTER, T, node, wait_done, wait_for, wait_master


def transfer(c: SimCluster, to: str | None = None, via: str | None = None, timeout: int | None = None) -> ClientOp:
    """Ask the master (or ``via``) to hand leadership to ``to`` (None: it picks)."""
    op = ClientOp(0, "transfer", to or "", None, "", None, c.now)
    return c._request(op, via, lambda driver, rid: driver.transfer(rid, to, timeout))


def write_under_load(c: SimCluster, ticks: int, ops: list, tag: str, until=None) -> None:
    """One write per tick to whoever is master, alternating acks=1 and acks=majority."""
    for i in range(ticks):
        if until is not None and until():
            return
        if c.master() is not None:
            ops.append(c.put(f"{tag}{i % 7}", f"{tag}-{i}", acks="1" if i % 2 else "majority"))
        c.tick()


def no_acks_one_write_rolled_back(c: SimCluster) -> bool:
    acked = {(nid, seq, epoch) for nid, seq, epoch, _ in c.inv.one_acks}
    rolled = {(nid, seq, epoch) for nid, got in c.inv.rolled_back.items() for seq, epoch in got}
    return not (acked & rolled)


_PHASES = (("handing leadership over to", "started"), ("handed leadership over to", "done"),
           ("abandoned", "abandoned"), ("handed leadership over: campaigning", "campaign"))


def transfer_notes(caplog, node_id: str) -> list[str]:
    """The leadership_transfer notes ``node_id`` logged, as phases."""
    found = []
    for record in caplog.records:
        text = record.getMessage()
        if record.name == "dkvs.cluster" and text.startswith(f"node {node_id} "):
            found += [phase for words, phase in _PHASES if words in text]
    return found


def test_transfer_under_writes_hands_over_to_the_freshest_slave_and_loses_nothing(caplog):
    # Writes flow every tick, half of them acks=1. The master hands over: new writes are
    # refused while it does (transfer_in_progress), the target gets everything, wins epoch
    # + 1 at once, and no acknowledged write — not even an acks=1 one — is rolled back.
    caplog.set_level("INFO", logger="dkvs.cluster")
    c = SimCluster(3, seed=3)
    first = wait_master(c)
    epoch = node(c, first).epoch
    ops: list = []
    write_under_load(c, 3 * HB, ops, "a")
    handover = transfer(c)
    write_under_load(c, 2 * T, ops, "b", until=lambda: handover.done)
    wait_done(c, handover)
    assert handover.ok, handover.error
    target = handover.result["to"]
    assert target != first and handover.result["from"] == first
    assert wait_master(c) == target and node(c, target).epoch == epoch + 1
    write_under_load(c, T, ops, "c")
    wait_done(c, *[op for op in ops if c.is_pending(op)])
    refused = [op for op in ops if op.error == "transfer_in_progress"]
    assert all(op.ok for op in ops if op not in refused and op.acks == "majority")
    c.settle()
    assert no_acks_one_write_rolled_back(c), c.inv.rolled_back
    assert transfer_notes(caplog, first) == ["started", "done"]
    assert transfer_notes(caplog, target) == ["campaign"]


def test_transfer_to_a_lagging_slave_waits_until_it_caught_up():
    # The target missed many writes (cut off from the master). The master must bring it
    # fully up to date before telling it to campaign: sent too early, the target's log
    # would be behind the other voters' and it could not win.
    c = SimCluster(3, seed=5)
    first = wait_master(c)
    target = next(n for n in ("n1", "n2", "n3") if n != first)
    c.cut(first, target)
    ops: list = []
    write_under_load(c, 2 * T // 3, ops, "lag")
    c.heal()
    handover = transfer(c, to=target, timeout=4 * T)
    wait_done(c, handover, ticks=6 * T)
    assert handover.ok, handover.error
    assert wait_master(c) == target
    c.settle()
    assert no_acks_one_write_rolled_back(c)


def test_transfer_wins_votes_from_a_voter_that_still_hears_the_master():
    # Once the TimeoutNow is out, the target cannot reach the old master at all: its only
    # other vote is the third node's, which still hears the master's heartbeats. Vote
    # stickiness must give way to a candidate the master handed leadership to.
    c = SimCluster(3, seed=7)
    first = wait_master(c)
    target, third = [n for n in ("n1", "n2", "n3") if n != first]

    def cut_target_from_master_once_told(cluster):
        m = cluster.nodes[first].node
        if m is not None and m.role == MASTER and m.transfer_sent:
            cluster.cut(target, first)
    c.extra_checks.append(cut_target_from_master_once_told)
    handover = transfer(c, to=target)
    wait_for(c, lambda: c.master() is not None and c.master().id == target, T, f"{target} elected by transfer")
    c.extra_checks.remove(cut_target_from_master_once_told)
    assert node(c, target).voted_for == target and node(c, third).voted_for == target
    c.heal()
    wait_done(c, handover)
    c.settle()


def test_transfer_racing_a_crash_of_the_target():
    # The target dies at every moment of the handover in turn: before it caught up, after
    # the TimeoutNow left, mid-campaign. Either it won before dying (and a new master
    # follows) or the master resumes taking writes at the deadline; nothing acknowledged
    # is lost either way.
    for delay in range(0, 8):
        c = SimCluster(3, seed=100 + delay)
        first = wait_master(c)
        target = next(n for n in ("n1", "n2", "n3") if n != first)
        ops: list = []
        write_under_load(c, 2 * HB, ops, "x")
        handover = transfer(c, to=target)
        c.run(delay)
        c.crash(target)
        wait_done(c, handover, ticks=3 * T)
        if handover.ok:
            assert wait_master(c, ticks=10 * T) != target
        else:
            assert handover.error == "transfer_timeout"
            assert c.master() is not None and c.master().id == first
        after = c.put("after", "crash", acks="majority")
        wait_done(c, after, ticks=10 * T)
        assert after.ok, f"delay {delay}: {after.error}"  # the cluster takes writes again
        c.restart(target)
        c.settle()
        assert no_acks_one_write_rolled_back(c)


def test_transfer_during_a_partition_times_out_and_the_master_resumes(caplog):
    # The target is cut off when the transfer starts: it can never catch up. At the
    # deadline the master resumes (it still has a majority with the third node) and its
    # writes succeed again; after the heal the target simply follows.
    caplog.set_level("INFO", logger="dkvs.cluster")
    c = SimCluster(3, seed=11)
    first = wait_master(c)
    target = next(n for n in ("n1", "n2", "n3") if n != first)
    c.isolate(target)
    refused = c.put("k", "during", acks="majority")
    handover = transfer(c, to=target, timeout=T)
    during = c.put("k", "during", acks="majority")
    wait_done(c, handover, ticks=2 * T)
    assert handover.error == "transfer_timeout" and during.error == "transfer_in_progress"
    assert refused.done and c.master().id == first
    resumed = c.put("k", "resumed", acks="majority")
    wait_done(c, resumed)
    assert resumed.ok
    assert transfer_notes(caplog, first) == ["started", "abandoned"]
    c.heal()
    c.settle()


def test_target_partitioned_mid_campaign_does_not_split_the_brain():
    # The TimeoutNow reaches the target, then the target is isolated: its campaign for
    # epoch + 1 cannot win, the old master resumes at the deadline, and when the target
    # returns with its higher epoch a normal election follows. One master per epoch.
    c = SimCluster(3, seed=13)
    first = wait_master(c)
    target = next(n for n in ("n1", "n2", "n3") if n != first)

    def isolate_target_once_it_campaigns(cluster):
        t = cluster.nodes[target].node
        if t is not None and t.transfer_campaigns:
            cluster.isolate(target)
    c.extra_checks.append(isolate_target_once_it_campaigns)
    handover = transfer(c, to=target)
    wait_done(c, handover, ticks=3 * T)
    c.extra_checks.remove(isolate_target_once_it_campaigns)
    c.settle()  # the target's higher epoch forces one more election; then all agree
    write = c.put("after", "heal", acks="majority")
    wait_done(c, write, ticks=10 * T)
    assert write.ok
    c.settle()


def test_a_second_transfer_while_one_runs_is_refused_and_one_after_it_works():
    c = SimCluster(3, seed=17)
    first = wait_master(c)
    one = transfer(c)
    two = transfer(c, via=first)
    wait_done(c, one, two)
    assert two.error == "transfer_in_progress" and one.ok
    second = wait_master(c)
    back = transfer(c, to=first)  # and back again
    wait_done(c, back)
    assert back.ok and wait_master(c) == first
    assert node(c, first).epoch == node(c, second).epoch
    slave_asked = transfer(c, via=second)
    wait_done(c, slave_asked)
    assert slave_asked.error == "not_master"
    c.settle()


def test_transfer_waits_for_the_commit_so_pending_majority_writes_are_answered():
    # Five nodes; three of them stall for a while (a scheduling pause), so acks=majority
    # writes wait. The target catches up at once, but the master hands over only once its
    # log is committed: every write it accepted before the transfer is answered OK, none
    # with "the master stepped down; it may or may not survive".
    c = SimCluster(5, seed=19)
    first = wait_master(c)
    others = [n for n in ("n1", "n2", "n3", "n4", "n5") if n != first]
    target, slow = others[0], others[1:]
    for peer in slow:
        c.pause(peer, 4 * HB)
    pending = [c.put(f"p{i}", "v", acks="majority") for i in range(3)]
    c.run(HB)
    handover = transfer(c, to=target, timeout=3 * T)
    c.run(2 * HB)
    assert not any(op.done for op in pending)
    wait_done(c, handover, *pending, ticks=4 * T)
    assert handover.ok and all(op.ok for op in pending), [op.error for op in pending]
    c.settle()


def test_transfer_whose_timeout_now_is_always_lost_expires_and_the_master_loses_nothing():
    # The target is reachable and fully caught up, but every TimeoutNow to it is lost (the
    # master sends it again each heartbeat). At the deadline the master gives the transfer
    # up: still master of the same epoch, it takes writes again. Every write acknowledged
    # before, during (refused ones were never applied) and after is on every member once
    # the cluster settles, no acks=1 write is rolled back, and a later transfer works (the
    # abandoned one left nothing behind).
    c = SimCluster(3, seed=23)
    first = wait_master(c)
    target = next(n for n in ("n1", "n2", "n3") if n != first)
    epoch = node(c, first).epoch
    lost: list = []
    real_send = c.net.send

    def lose_timeout_now(frm, to, payload):
        if isinstance(getattr(payload, "message", None), TimeoutNow):
            lost.append((frm, to))
            c.net._lost(frm, to, payload)  # a dropped request, reported like any other loss
            return
        real_send(frm, to, payload)

    ops: list = []

    def write(tag: str, ticks: int, until=None) -> None:
        for i in range(ticks):  # one write per tick, each to its own key, both acks levels
            if until is not None and until():
                return
            ops.append(c.put(f"{tag}/{i}", f"{tag}-{i}", acks="1" if i % 2 else "majority"))
            c.tick()

    write("before", 2 * HB)
    c.net.send = lose_timeout_now
    handover = transfer(c, to=target, timeout=T)
    write("during", 2 * T, until=lambda: handover.done)
    wait_done(c, handover, ticks=2 * T)
    assert handover.error == "transfer_timeout", handover.error
    assert len(lost) >= 2 and node(c, target).transfer_campaigns == 0
    assert c.master().id == first and node(c, first).epoch == epoch and node(c, first).transfer_target is None
    c.net.send = real_send
    write("after", 2 * HB)
    wait_done(c, *[op for op in ops if c.is_pending(op)])
    refused = [op for op in ops if op.error == "transfer_in_progress"]
    assert refused and all(op.key.startswith("during/") for op in refused)
    assert all(op.ok for op in ops if op not in refused), [(op.key, op.error) for op in ops if not op.ok]
    c.settle()
    assert no_acks_one_write_rolled_back(c), c.inv.rolled_back
    for sim in c.nodes.values():
        held = {op.key: (sim.state.get(op.key) or (None,))[0] for op in ops}
        assert all(held[op.key] == op.value for op in ops if op.ok), sim.id
        assert all(held[op.key] is None for op in refused), sim.id
    again = transfer(c, to=target)
    wait_done(c, again)
    assert again.ok and wait_master(c) == target
    c.settle()


def test_a_learner_is_never_a_transfer_target():
    # A caught-up read replica ranks first by (replicated seq, id) but cannot win an election
    # (it never campaigns, and its vote would not count): handing over to it would only end
    # at the transfer's deadline. The master picks the voter instead, and refuses the
    # replica when it is named.
    c = SimCluster(2, seed=5)
    first = wait_master(c)
    c.join_learner("n3", stay=True)
    wait_for(c, lambda: node(c, "n3").log.last_seq == node(c, first).log.last_seq, 4 * T, "n3 catching up")
    named = transfer(c, to="n3")
    wait_done(c, named)
    assert named.error == "no_transfer_target"
    assert wait_master(c) == first
    handover = transfer(c)
    wait_done(c, handover)
    assert handover.ok and handover.result["to"] != "n3", (handover.error, handover.result)
    assert wait_master(c) == handover.result["to"]
