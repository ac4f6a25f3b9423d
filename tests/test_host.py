"""The threaded host: time owed is ticked before new inputs, and deadlines are not cut short."""

from __future__ import annotations

import random
import time

from dkvs.core.config import CoreConfig
from dkvs.core.kvstate import KVState
from dkvs.core.log import OP_MEMBER_ADD
from dkvs.core.node import Node
from dkvs.driver import NodeDriver
from dkvs.runtime.host import NodeHost
from dkvs.storage.memory import MemoryStorage

from null_transport import NullTransport


def two_node_master_host(tick_seconds: float) -> NodeHost:
    """A master of 2 members whose peer never answers: acks=majority can only time out."""
    node, effects = Node.bootstrap("a", "http://a", CoreConfig(), random.Random(1))
    driver = NodeDriver(node, KVState())
    host = NodeHost(driver, MemoryStorage(), NullTransport(), tick_seconds)
    host.start(effects)
    outcome = host.propose(OP_MEMBER_ADD, "b", "http://b", "1", 1.0)
    assert outcome.error is None, outcome.error
    return host


def test_a_ticker_that_fell_behind_does_not_cut_a_new_writes_timeout_short():
    # Proves the catch-up ticks run before the burst's inputs: with the ticker a whole
    # second behind, a write with timeout=0.5 used to get its deadline eaten at once.
    host = two_node_master_host(tick_seconds=0.01)
    try:
        host._next_tick = time.monotonic() - 1.0  # the ticker thread was starved for a second
        started = time.monotonic()
        outcome = host.propose("put", "k", "v", "majority", 0.5)
        elapsed = time.monotonic() - started
    finally:
        host.stop()
    assert outcome.error == "acks_timeout"
    assert elapsed >= 0.5, f"answered 'timed out' after {elapsed:.3f} s of a 0.5 s timeout"


def test_the_ticker_waits_a_tick_while_another_thread_holds_the_node_lock():
    # Proves the ticker does not busy-spin: with a tick overdue and the node lock held
    # elsewhere, it used to retry at once (~48,000 times in 10 s under load). Now each
    # retry waits a tick, so three attempts take at least two ticks (a lower bound only:
    # a loaded machine makes it slower, never faster).
    import threading

    tick_seconds = 0.05
    host = two_node_master_host(tick_seconds=tick_seconds)
    attempts, cond = [], threading.Condition()
    real_combine = host._combine

    def counting_combine(max_bursts, tick=False):
        ran = real_combine(max_bursts, tick)
        with cond:
            attempts.append((time.monotonic(), ran))
            cond.notify_all()
        return ran

    try:
        with host._node_lock:
            host._combine = counting_combine
            host._next_tick = time.monotonic() - 1.0  # a tick is overdue
            with cond:
                assert cond.wait_for(lambda: sum(not ran for _, ran in attempts) >= 3, 30.0)
                failed = [at for at, ran in attempts if not ran]
        assert failed[2] - failed[0] >= 2 * tick_seconds * 0.9, failed
    finally:
        host._combine = real_combine
        host.stop()
