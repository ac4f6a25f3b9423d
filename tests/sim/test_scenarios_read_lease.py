"""Scenario tests of lease-based consistent reads (``--lease-reads``, dkvs/core/read_lease.py).

Every scenario runs with the check :func:`no_newer_master_during_a_lease` after every step:
while a master believes its lease is valid, no master of a newer epoch exists anywhere.
That is the lease's whole safety claim; the stale read it would allow is checked too."""

from __future__ import annotations

from dkvs.core.config import CoreConfig

from .cluster import SimCluster, SimFailure
from .node_io import Request
from .scenario_helpers import node, wait_done, wait_for, wait_master
from .test_scenarios_transfer import transfer

LEASE = CoreConfig(heartbeat_ticks=5, election_ticks=50, lease_reads=True)
T, HB = LEASE.election_ticks, LEASE.heartbeat_ticks

__all__ = ["no_newer_master_during_a_lease"]


def no_newer_master_during_a_lease(c: SimCluster) -> None:
    """Fail if a master whose clock runs (not paused) holds a valid lease while a master
    of a newer epoch exists."""
    live = [s for s in c.nodes.values() if s.alive and not c.net.paused(s.id) and s.paused_until <= c.now]
    for holder in live:
        if not holder.node.read_lease_valid():
            continue
        for other in c.masters():
            if other.node.epoch > holder.node.epoch:
                raise SimFailure(f"{c.where()}: {holder.id} holds a read lease in epoch {holder.node.epoch} "
                                 f"while {other.id} is master of epoch {other.node.epoch}\n{c.describe()}")


def lease_cluster(seed: int) -> SimCluster:
    c = SimCluster(3, seed=seed, config=LEASE, min_delay=1, max_delay=1)
    c.extra_checks.append(no_newer_master_during_a_lease)
    wait_done(c, c.put("k", "old", acks="majority"))
    assert c.master().id == "n1"
    c.run(2 * HB)  # a heartbeat round answered: n1 holds a lease
    assert node(c, "n1").read_lease_valid()
    return c


def _count_sends(c: SimCluster, frm: str) -> list:
    sent: list = []
    checked = c.net.on_send

    def on_send(sender, to, payload):
        if sender == frm and isinstance(payload, Request):
            sent.append(payload.message)
        checked(sender, to, payload)
    c.net.on_send = on_send
    return sent


def test_a_healthy_master_answers_a_leased_read_at_once_without_a_message():
    c = lease_cluster(31)
    sent = _count_sends(c, "n1")
    for _ in range(3):  # at different points of the heartbeat cycle
        before = len(sent)
        read = c.read("k")
        assert read.done and read.ok and read.read_value[0] == "old"
        assert len(sent) == before, "a leased read sent messages"
        c.run(2)
    c.settle()


def test_an_isolated_master_whose_lease_ran_out_cannot_answer():
    c = lease_cluster(32)
    c.isolate("n1")
    wait_for(c, lambda: not node(c, "n1").read_lease_valid(), LEASE.lease_ticks + 1, "the lease to run out")
    read = c.read("k", via="n1", timeout=T)
    assert not read.done  # back to the read index: a round that no majority will answer
    new_master = wait_master(c, among={"n2", "n3"})
    wait_done(c, c.put("k", "new", acks="majority", via=new_master))
    wait_done(c, read, ticks=2 * T)
    assert not read.ok
    c.settle()


def test_the_old_master_never_answers_a_stale_read_after_a_new_master_wrote():
    # The dangerous case: n1 is cut off, n2 and n3 elect a new master and commit "new". n1
    # is asked for k every tick all along; each answer it gives must come before the new
    # master existed, and none may be "old" after "new" was acknowledged.
    c = lease_cluster(33)
    c.isolate("n1")
    reads = []
    new_write = None
    for _ in range(6 * T):
        reads.append((c.now, c.read("k", via="n1", timeout=T)))
        if new_write is None and c.master() is not None and c.master().id != "n1":
            new_write = c.put("k", "new", acks="majority", via=c.master().id)
        c.run(1)
        if new_write is not None and new_write.done:
            break
    assert new_write is not None and new_write.ok
    acknowledged_at = new_write.completed
    c.run(2 * T)
    for invoked, read in reads:
        if read.ok and invoked >= acknowledged_at:
            assert read.read_value[0] == "new", f"n1 answered {read.read_value} at {read.completed}"
    assert any(read.ok for _, read in reads)  # n1 did serve from its lease while it lasted
    c.settle()


def test_a_restarted_voter_does_not_elect_a_new_master_during_the_lease():
    # n3 has lost n1 and campaigns; n2 restarts (forgetting that it just heard n1) and hears
    # nothing from n1 yet. Without the hold after a start n2 would vote for n3 at once,
    # and n3 would commit a write while n1 still answers reads from its lease.
    c = lease_cluster(34)
    c.cut("n1", "n3")
    c.cut("n3", "n1")
    c.net.hold("n3", "n2")
    wait_for(c, lambda: node(c, "n3").role == "candidate", 3 * T, "n3 to campaign")
    c.run(1)
    wait_for(c, lambda: node(c, "n1").progress["n2"].in_flight_since is None, HB, "n2 to answer n1")
    c.crash("n2")
    c.restart("n2")
    c.net.hold("n1", "n2")
    c.net.release("n3", "n2")
    for _ in range(T // 2):
        c.run(1)
        masters = [m.id for m in c.masters()]
        if "n3" in masters:
            break
    write = c.put("k", "new", acks="majority", via="n3") if "n3" in [m.id for m in c.masters()] else None
    read = c.read("k", via="n1")
    if read.done and read.ok and write is not None:
        wait_done(c, write)
        assert not write.ok, "n3 committed while n1 answered from its lease"
    c.net.release("n1", "n2")
    c.settle()


def test_a_transfer_drops_the_lease_and_the_handover_leaves_no_stale_read():
    c = lease_cluster(35)
    transfer(c, to="n2", timeout=T)
    assert not node(c, "n1").read_lease_valid()
    read = c.read("k", via="n1")
    assert not read.done  # a read-index round, not the lease
    new_master = wait_master(c, among={"n2"})
    wait_done(c, c.put("k", "new", acks="majority", via=new_master))
    wait_done(c, read)
    assert not read.ok or read.read_value[0] == "old"
    late = c.read("k", via="n1")
    wait_done(c, late)
    assert not late.ok  # n1 is a slave now
    c.settle()


def test_a_timeout_now_delivered_after_the_transfer_was_given_up_meets_no_lease():
    # Why a transfer ends the lease for the rest of the epoch: n1's TimeoutNow to n2 is held
    # on the wire until the transfer's deadline passed and n1 took writes (and, without the
    # rule, leased reads on n3's answers) again. When it arrives, n2 campaigns with transfer
    # votes, which n3 grants although it still hears n1: a new master while n1's lease runs.
    c = lease_cluster(36)
    c.net.hold("n1", "n2")
    handover = transfer(c, to="n2", timeout=2 * HB)
    wait_for(c, lambda: handover.done, 4 * HB, "the transfer to give up")
    assert handover.error == "transfer_timeout" and node(c, "n1").role == "master"
    c.run(HB)  # n3 answered fresh heartbeat rounds: n1 would hold a lease again
    assert not node(c, "n1").read_lease_valid()
    c.net.hold("n2", "n1")  # n1 will not hear n2's vote request itself (a slow link)
    c.net.release("n1", "n2")  # the TimeoutNow arrives: n2 takes over with n3's vote
    wait_for(c, lambda: node(c, "n2").role == "master", 2 * T, "n2 to take over")
    c.net.release("n2", "n1")
    c.settle()
