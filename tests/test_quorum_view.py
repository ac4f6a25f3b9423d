"""What a node tells a client when it knows no master: a lost majority, or an election
(issue 12, deliverable 6). Decided from the node's own state by
:func:`dkvs.driver.narrator.quorum_view`, with no sockets and no clock."""

import random

from dkvs.core.config import CoreConfig
from dkvs.core.log import OP_MEMBER_ADD, Entry
from dkvs.core.node import Node
from dkvs.driver.narrator import quorum_view, reachable_members

CONFIG = CoreConfig(heartbeat_ticks=2, election_ticks=10)


def _member_of_three(now: int) -> Node:
    entries = [Entry(1, i + 1, OP_MEMBER_ADD, name, f"http://{name}") for i, name in enumerate("abc")]
    node = Node("a", CONFIG, random.Random(1), epoch=1, entries=entries)
    node.now = now
    return node


def test_alone_after_an_election_timeout_is_no_majority():
    view = quorum_view(_member_of_three(now=30), heard={"b": 5})  # b heard long ago
    assert view == {"ok": False, "reachable": 1, "members": 3, "needed": 2,
                    "reason": "no majority: 1 of 3 members reachable, 2 needed"}


def test_a_peer_heard_lately_makes_it_an_election():
    node = _member_of_three(now=30)
    view = quorum_view(node, heard={"b": 25})
    assert view["ok"] and view["reachable"] == 2 and view["reason"] == "election in progress"
    assert reachable_members(node, {"b": 25}) == {"a", "b"}


def test_just_started_is_not_called_a_lost_majority():
    view = quorum_view(_member_of_three(now=3), heard={})
    assert not view["ok"] and view["reason"] == "election in progress"


def test_a_stale_master_report_does_not_count():
    node = _member_of_three(now=30)
    node.master_id, node.last_master_contact = "b", 2  # heard long ago; its view said all alive
    assert reachable_members(node, {}) == {"a"}


def test_right_after_the_master_went_silent_it_is_an_election_not_a_lost_majority():
    # Regression (transfer_bench, SIGKILL round): slaves do not hear each other while a
    # master lives, so one election timeout after the master's death a slave had heard
    # only itself and told clients "no majority", who then gave up at once.
    node = _member_of_three(now=30)
    node.master_id, node.last_master_contact = "b", 18  # silent for more than one timeout
    assert quorum_view(node, heard={})["reason"] == "election in progress"
    node.now = 40  # two timeouts: the survivors' pre-votes would have been heard by now
    assert quorum_view(node, heard={})["reason"].startswith("no majority")
