"""Which thread runs a burst, and with what: replication answers and the selector's polls.

Answers arrive on the HTTP selector (dkvs.transport.stream_loop), and the selector must
never wait for a disk. An answer persists nothing, so under ``--fsync always`` the thread
it arrives on runs it when it is alone in the queue; when proposals wait with it (their
burst fsyncs), the ticker runs them all. Without ``--fsync always`` the arriving thread
runs whatever is queued.

The selector also holds its own inputs while it handles one poll's events
(``hold_bursts``/``release_bursts``): the requests and answers of that poll then run as one
burst (one storage append), and other threads' inputs are never held.
"""

from __future__ import annotations

import random
import threading

import pytest

from dkvs.core.config import CoreConfig
from dkvs.core.kvstate import KVState
from dkvs.core.log import OP_MEMBER_ADD
from dkvs.core.node import Node
from dkvs.driver import NodeDriver
from dkvs.runtime import host as host_module
from dkvs.runtime.host import NodeHost
from dkvs.storage.memory import MemoryStorage
from dkvs.tools.local_cluster import wait_for

from null_transport import NullTransport

WAIT_SECONDS = 30.0  # liveness bound, not a speed claim


class RecordingStorage(MemoryStorage):
    """Remembers which thread appended (where an fsync would have happened)."""

    def __init__(self, fsync_policy: str) -> None:
        super().__init__()
        self.fsync_policy = fsync_policy
        self.appended_on: list[str] = []

    def append(self, entries) -> None:
        self.appended_on.append(threading.current_thread().name)
        super().append(entries)


def master_host(policy: str) -> tuple[NodeHost, RecordingStorage, list[str]]:
    """A master of {a, b} whose ticker runs only when woken; also the threads that ran bursts."""
    node, effects = Node.bootstrap("a", "http://a", CoreConfig(), random.Random(1))
    storage = RecordingStorage(policy)
    host = NodeHost(NodeDriver(node, KVState()), storage, NullTransport(), tick_seconds=3600.0)
    host.start(effects)
    assert host.propose(OP_MEMBER_ADD, "b", "http://b", "1", 5.0).error is None
    ran_on: list[str] = []
    real_burst = host._burst

    def recording_burst(items):
        ran_on.append(threading.current_thread().name)
        real_burst(items)

    host._burst = recording_burst
    storage.appended_on.clear()
    return host, storage, ran_on


@pytest.mark.parametrize("policy", ["always", "batch"])
def test_an_answer_alone_in_the_queue_runs_on_the_thread_it_arrived_on(policy):
    host, storage, ran_on = master_host(policy)
    try:
        host._answered("b", 1, [])
        assert ran_on == [threading.current_thread().name]
    finally:
        host.stop()


def test_under_fsync_always_an_answer_queued_with_proposals_leaves_them_to_the_ticker():
    host, storage, ran_on = master_host("always")
    try:
        here = threading.current_thread().name
        with host._node_lock:  # a burst elsewhere: the proposal queues behind it
            host._inbox.append((host_module._PROPOSE, ("put", "k", "v", "1", 100, None), host_module.Outcome(99)))
        host._answered("b", 1, [])
        assert wait_for(lambda: storage.appended_on and not host._inbox, WAIT_SECONDS)
        assert here not in ran_on and here not in storage.appended_on
        assert storage.appended_on == ["dkvs-ticker"]
    finally:
        host.stop()


def test_without_fsync_always_an_answer_runs_the_queued_proposals_itself():
    host, storage, ran_on = master_host("batch")
    try:
        here = threading.current_thread().name
        host._inbox.append((host_module._PROPOSE, ("put", "k", "v", "1", 100, None), host_module.Outcome(99)))
        host._answered("b", 1, [])
        assert storage.appended_on == [here]
    finally:
        host.stop()


# -- one burst per poll of the selector (NodeHost.hold_bursts / release_bursts) -------------------
def test_inputs_a_holding_thread_queues_run_as_one_burst_when_it_releases():
    host, storage, ran_on = master_host("batch")
    try:
        done = []
        host.hold_bursts()
        for i in range(3):
            host.propose_async("put", f"k{i}", "v", "1", 5.0, None, done.append)
        host._answered("b", 1, [])
        assert ran_on == [] and len(host._inbox) == 4 and done == []
        host.release_bursts()
        assert ran_on == [threading.current_thread().name]  # one burst, on this thread
        assert [o.error for o in done] == [None, None, None]
        assert len(storage.appended_on) == 1  # the three writes in one append
    finally:
        host.stop()


def test_holding_delays_only_the_holding_threads_own_inputs():
    host, storage, ran_on = master_host("batch")
    try:
        host.hold_bursts()
        done = []
        other = threading.Thread(target=host.propose_async, args=("put", "k", "v", "1", 5.0, None, done.append),
                                 name="other")
        other.start()
        other.join(WAIT_SECONDS)
        assert ran_on == ["other"] and len(done) == 1  # not held: it ran on its own thread
        host.release_bursts()
        assert ran_on == ["other"]  # nothing was held, nothing more runs
    finally:
        host.stop()


def test_under_fsync_always_held_writes_run_on_the_ticker_and_held_answers_where_they_arrived():
    host, storage, ran_on = master_host("always")
    try:
        here = threading.current_thread().name
        host.hold_bursts()
        host._answered("b", 1, [])
        host.release_bursts()
        assert ran_on == [here]  # an answer persists nothing
        done = []
        host.hold_bursts()
        host.propose_async("put", "k", "v", "1", 5.0, None, done.append)
        host._answered("b", 2, [])
        host.release_bursts()
        assert wait_for(lambda: done, WAIT_SECONDS)
        assert storage.appended_on == ["dkvs-ticker"] and ran_on[1:] == ["dkvs-ticker"]
    finally:
        host.stop()
