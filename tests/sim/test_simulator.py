"""Tests of the simulator itself: failures carry the seed, partitions behave, runs are deterministic."""

from __future__ import annotations

import pytest

from .cluster import SimCluster, SimFailure
from .network import UNREACHABLE, SimNetwork
from .scenario_helpers import node

# -- the simulator itself -------------------------------------------------------------------------

def test_core_assertion_surfaces_with_the_seed(monkeypatch):
    # Proves that an assertion inside the core (e.g. "would truncate committed entries")
    # fails the run with the seed and tick in the message, so it can be replayed.
    c = SimCluster(3, seed=99)
    victim = node(c, "n2")

    def broken_tick():
        raise AssertionError("invariant of the core")
    monkeypatch.setattr(victim, "tick", broken_tick)
    with pytest.raises(SimFailure, match=r"^seed 99, tick \d+: AssertionError: invariant of the core"):
        c.tick()


def test_network_partitions_cuts_and_notices():
    # Proves the network's fault model: partitions block both ways, a one-way cut one way,
    # links are checked at delivery, and a noticed loss reaches the node that made the request.
    net = SimNetwork(1, min_delay=1, max_delay=1, notice_rate=1.0)
    net.partition(["a"], ["b", "c"])
    net.cut("b", "c")
    for frm, to in (("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")):
        net.send(frm, to, f"{frm}->{to}")
    net.now = 1
    assert [(f, t, m) for f, t, m, _ in net.due()] == [("c", "b", "c->b")]
    net.now = 2  # the senders of the three lost requests hear that they failed
    notices = sorted((t, f) for f, t, m, _ in net.due() if m[0] is UNREACHABLE)
    assert notices == [("a", "b"), ("b", "a"), ("b", "c")]
    net.heal()
    net.send("a", "b", "late")
    net.partition(["a"], ["b"])  # cut while in flight: lost at delivery
    net.now = 3
    assert [m for _, _, m, _ in net.due()] == []


def test_network_is_deterministic_per_seed():
    def run(seed):
        net = SimNetwork(seed, min_delay=1, max_delay=5, drop_rate=0.3, dup_rate=0.3)
        for i in range(200):
            net.send("a", "b", i)
        out = []
        for tick in range(1, 7):
            net.now = tick
            out.extend(m for _, _, m, _ in net.due())
        return out
    assert run(5) == run(5) and run(5) != run(6)
    delivered = run(5)
    assert delivered != sorted(delivered)  # reordered
    assert len(set(delivered)) < 200 and len(delivered) > len(set(delivered))  # dropped and duplicated


def test_a_host_that_sends_before_persisting_is_caught(monkeypatch):
    # Proves the persist-before-send check: one simulator step is atomic, so a host that ran
    # the send phase before the persist phase would otherwise look correct. With the check
    # installed (as the random schedules do), the first vote or batch sent early fails.
    from dkvs.runtime.executor import Executor

    in_order = Executor.run

    def sends_first(self, ready):
        sends, ready.sends = ready.sends, []
        in_order(self, type(ready)(peers=ready.peers, sends=sends))
        ready.peers = None
        in_order(self, ready)
    c = SimCluster(3, seed=98)
    monkeypatch.setattr(Executor, "run", sends_first)
    c.crash("n1")
    with pytest.raises(SimFailure, match="before persisting|disk ends at|disk holds epoch"):
        c.run(10 * c.config.election_ticks)


def test_pause_and_hold_keep_messages_until_released():
    # Proves that a paused node or a held link loses nothing: messages wait, then arrive in order.
    net = SimNetwork(2, min_delay=1, max_delay=1)
    net.pause("b")
    net.hold("a", "c")
    for i in range(3):
        net.send("a", "b", i)
        net.send("a", "c", 10 + i)
    net.now = 5
    assert list(net.due()) == [] and net.in_flight() == 6
    net.resume("b")
    net.release("a", "c")
    net.now = 6
    assert [m for _, _, m, _ in net.due()] == [0, 1, 2, 10, 11, 12]
