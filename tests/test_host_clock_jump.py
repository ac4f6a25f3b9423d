"""The host tells the driver when it drops ticks (a stall longer than it catches up), so a
read lease measured across the gap is dropped (docs/protocol.md, "Reads: the lease")."""

from __future__ import annotations

import random
import time

from dkvs.core.config import CoreConfig
from dkvs.core.kvstate import KVState
from dkvs.core.node import Node
from dkvs.driver import NodeDriver
from dkvs.runtime import host as host_module
from dkvs.runtime.host import NodeHost
from dkvs.storage.memory import MemoryStorage

from null_transport import NullTransport


class CountingDriver(NodeDriver):
    jumps = 0

    def clock_jumped(self) -> None:
        self.jumps += 1
        super().clock_jumped()


def started_host(tick_seconds: float) -> tuple[NodeHost, CountingDriver]:
    node, effects = Node.bootstrap("a", "http://a", CoreConfig(lease_reads=True), random.Random(1))
    driver = CountingDriver(node, KVState())
    host = NodeHost(driver, MemoryStorage(), NullTransport(), tick_seconds)
    host.start(effects)
    return host, driver


def test_a_stall_longer_than_the_catch_up_is_reported_as_a_clock_jump():
    host, driver = started_host(tick_seconds=0.01)
    try:
        assert host.propose("put", "k", "v", "1", 5.0).error is None
        assert driver.jumps == 0
        stalled = (host_module.MAX_CATCH_UP_TICKS + 10) * host.tick_seconds
        host._next_tick = time.monotonic() - stalled  # the node thread was stalled that long
        assert host.propose("put", "k", "w", "1", 5.0).error is None
        assert driver.jumps == 1
    finally:
        host.stop()


def test_a_short_stall_is_caught_up_tick_by_tick_not_reported():
    host, driver = started_host(tick_seconds=0.01)
    try:
        before = driver.node.now
        host._next_tick = time.monotonic() - 0.5  # 50 ticks owed, well under the catch-up bound
        assert host.propose("put", "k", "v", "1", 5.0).error is None
        assert driver.jumps == 0 and driver.node.now - before >= 50
    finally:
        host.stop()
