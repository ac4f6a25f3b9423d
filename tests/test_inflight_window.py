"""The in-flight table with a window: how many replication requests per peer may be on the
wire, which answers count, and which are stale — pure, no sockets, logical ticks."""

from __future__ import annotations

import random

import pytest

from dkvs.core.config import CoreConfig
from dkvs.core.kvstate import KVState
from dkvs.core.log import OP_MEMBER_ADD, Entry
from dkvs.core.messages import Append, AppendReply, VoteReply
from dkvs.core.node import Node
from dkvs.driver import NodeDriver
from dkvs.driver.inflight import InFlight

EXPIRY = 10


def send(table: InFlight, peer: str, now: int) -> int | None:
    """What the driver does for a replication message: suppressed when busy, else sent."""
    if table.busy(peer, now):
        table.suppressed += 1
        return None
    send_id = table.new_id()
    table.sent(peer, send_id, now)
    return send_id


def test_a_window_of_one_keeps_one_request_on_the_wire():
    table = InFlight(EXPIRY)
    first = send(table, "b", 0)
    assert send(table, "b", 5) is None and table.suppressed == 1
    assert table.completed("b", first) and table.outstanding("b") == 0


def test_an_expired_request_makes_room_and_its_late_answer_is_stale():
    table = InFlight(EXPIRY)
    first = send(table, "b", 0)
    second = send(table, "b", EXPIRY)  # the first expired: it is abandoned
    assert second is not None
    assert not table.completed("b", first) and table.stale == 1
    assert table.completed("b", second)


def test_a_window_of_three_holds_three_and_answers_are_cumulative():
    table = InFlight(EXPIRY, window=3)
    ids = [send(table, "b", 0) for _ in range(3)]
    assert None not in ids and send(table, "b", 1) is None
    assert table.completed("b", ids[1])  # the stream is ordered: ids[0] was answered too
    assert table.outstanding("b") == 1
    assert send(table, "b", 2) is not None and send(table, "b", 2) is not None
    assert send(table, "b", 2) is None


def test_peers_have_windows_of_their_own():
    table = InFlight(EXPIRY, window=2)
    assert send(table, "b", 0) and send(table, "b", 0) and send(table, "b", 0) is None
    assert send(table, "c", 0) is not None


def test_expired_requests_leave_the_window_only_when_it_is_full():
    table = InFlight(EXPIRY, window=2)
    old = send(table, "b", 0)
    send(table, "b", 8)
    assert send(table, "b", EXPIRY) is not None  # the expired one made room
    assert not table.completed("b", old) and table.stale == 1


def test_untracked_messages_always_count_and_a_role_change_forgets_the_window():
    table = InFlight(EXPIRY, window=2)
    assert table.completed("b", table.new_id())  # a vote: never tracked
    send(table, "b", 0)
    send(table, "b", 0)
    table.reset()
    assert table.outstanding("b") == 0 and send(table, "b", 0) is not None


def test_a_window_holds_at_least_one_request():
    with pytest.raises(ValueError):
        InFlight(EXPIRY, window=0)


def test_a_driver_with_a_window_sends_the_resend_behind_a_slow_batch_and_counts_both_answers():
    # With window 2 the core's resend (after 2 heartbeats) travels behind the first batch
    # instead of being suppressed; on an ordered stream the answer to the resend also ends
    # the first request, whose own answer, arriving first, counts as usual.
    members = (("n1", "http://n1"), ("n2", "http://n2"), ("n3", "http://n3"))
    node = Node(
        "n1", CoreConfig(heartbeat_ticks=1, election_ticks=200), random.Random(1),
        entries=[Entry(1, i + 1, OP_MEMBER_ADD, m, u) for i, (m, u) in enumerate(members)])
    state = KVState()
    state.apply(node.log.entries, 0)
    d = NodeDriver(node, state, inflight_expiry_ticks=30, inflight_window=2)
    while not node.pre_voting:
        d.tick()
    d.step(VoteReply(node.epoch, "n3", True, pre_vote=True))
    d.step(VoteReply(node.epoch, "n3", True))
    first = [out for out in d.ready().sends if out.to == "n2" and type(out.message) is Append]
    for _ in range(5):
        d.tick()
    resent = [out for out in d.ready().sends if out.to == "n2"]
    assert len(first) == 1 and len(resent) == 1 and type(resent[0].message) is Append
    assert d.inflight.outstanding("n2") == 2  # a window of 2: full now, later resends wait
    last = node.log.last_seq
    d.received("n2", first[-1].send_id, [AppendReply(node.epoch, "n2", True, last)])
    assert node.progress["n2"].match_seq == last and d.inflight.outstanding("n2") == 1
    d.received("n2", resent[-1].send_id, [AppendReply(node.epoch, "n2", True, last)])
    assert d.inflight.outstanding("n2") == 0 and d.inflight.stale == 0
