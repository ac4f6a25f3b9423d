"""Master-side replication timing rules, driven directly on the core (no network)."""

import random

from dkvs.core.config import CoreConfig
from dkvs.core.effects import Send
from dkvs.core.messages import Append
from dkvs.core.node import Node

CONFIG = CoreConfig(heartbeat_ticks=5, election_ticks=50)


def master_with_peer():
    node, _ = Node.bootstrap("a", "http://a", CONFIG, random.Random(1))
    node.propose(1, "member_add", "b", "http://b", "majority", 100)
    return node


def appends_to(effects, peer="b"):
    return [e for e in effects if isinstance(e, Send) and e.to == peer and isinstance(e.message, Append)]


def test_a_peer_reported_unreachable_is_retried_at_the_next_heartbeat_not_after_every_write():
    node = master_with_peer()
    assert appends_to(node.flush())  # the first batch leaves
    node.unreachable("b")
    for i in range(3):  # a burst of writes right after the failure: no new request to b
        node.propose(10 + i, "put", f"k{i}", "v")
        assert not appends_to(node.flush())
    sent = []
    for _ in range(CONFIG.heartbeat_ticks):
        sent += appends_to(node.tick())
    assert len(sent) == 1 and sent[0].message.entries  # retried once, carrying the writes


def test_an_unanswered_batch_is_resent_within_two_heartbeats():
    node = master_with_peer()
    first = appends_to(node.flush())
    assert first
    resent = []
    ticks = 0
    while not resent:
        ticks += 1
        resent = appends_to(node.tick())
    assert ticks <= 2 * CONFIG.heartbeat_ticks < CONFIG.min_election_ticks
    assert resent[0].message.prev_seq == first[0].message.prev_seq  # from where it started
