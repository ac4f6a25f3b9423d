"""A master restarted at a new address corrects its own row in the member list.

Found by hand: a single node with a data dir, stopped and started on another port, kept
announcing its old URL in ``/status`` (members, master) forever — nobody else can fix a
master's own row, and slaves of a larger cluster would forward writes to the dead address.
"""

import random

from dkvs.core.config import CoreConfig
from dkvs.core.log import OP_MEMBER_ADD, OP_NOOP
from dkvs.core.node import Node

CONFIG = CoreConfig(heartbeat_ticks=5, election_ticks=50)


def restarted(node_id: str, entries, own_url):
    """A node rebuilt from ``entries`` (as after a restart), serving at ``own_url``."""
    node = Node(node_id, CONFIG, random.Random(7), epoch=1, voted_for=node_id, entries=entries)
    node.own_url = own_url
    return node


def run_until_master(node, limit=10 * CONFIG.election_ticks):
    for _ in range(limit):
        node.tick()
        if node.role == "master":
            return
    raise AssertionError(f"{node.id} never became master (role {node.role})")


def first_log():
    node, _ = Node.bootstrap("a", "http://127.0.0.1:7001", CONFIG, random.Random(1))
    node.propose(1, "put", "k", "v")
    return list(node.log.entries)


def test_a_lone_master_restarted_on_another_port_corrects_its_row_and_keeps_its_data():
    node = restarted("a", first_log(), "http://127.0.0.1:7002")
    assert node.members == {"a": "http://127.0.0.1:7001"}
    run_until_master(node)
    opening = node.log.entries[-1]
    assert (opening.op, opening.key, opening.value) == (OP_MEMBER_ADD, "a", "http://127.0.0.1:7002")
    assert node.members == {"a": "http://127.0.0.1:7002"}
    assert node.voters() == ["a"]  # still the one voter: only the address changed
    assert node.commit_seq == opening.seq  # a majority of one: committed at once
    assert node.status()["master"]["url"] == "http://127.0.0.1:7002"


def test_a_master_at_its_listed_address_opens_its_epoch_with_a_no_op():
    node = restarted("a", first_log(), "http://127.0.0.1:7001")
    run_until_master(node)
    assert node.log.entries[-1].op == OP_NOOP


def test_a_host_that_does_not_know_its_url_changes_nothing():
    node = restarted("a", first_log(), None)
    run_until_master(node)
    assert node.log.entries[-1].op == OP_NOOP
    assert node.members == {"a": "http://127.0.0.1:7001"}
