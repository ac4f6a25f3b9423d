"""A lost majority looks like one, not like a short election (issue 12, deliverable 6):
the survivor's 503 and ``/status`` say "no majority: 1 of 3 members reachable, 2 needed",
dead members are ``alive: false``, and ``dkvs.Client`` gives up at once with that message
instead of retrying for its whole budget."""

import pytest

from dkvs.client import Client
from dkvs.client.errors import NoMajority

from .procs import put, status, wait_until

MESSAGE = "no majority: 1 of 3 members reachable, 2 needed"


def test_a_lost_majority_is_named_in_503_status_and_client(procs):
    nodes = procs.cluster(3)
    survivor = nodes[-1] if procs.master() is not nodes[-1] else nodes[0]
    for node in nodes:
        if node is not survivor:
            node.kill()
    code, body = wait_until(lambda: (lambda a: a if MESSAGE in a[1].get("message", "") else None)(
        put(survivor.url, "k", "v")), what="the survivor to say that the majority is lost")
    assert code == 503 and body["quorum"]["ok"] is False
    st = status(survivor.url)
    assert {k: st["quorum"][k] for k in ("members", "reachable", "needed", "ok")} == \
        {"members": 3, "reachable": 1, "needed": 2, "ok": False}
    dead = [m for m in st["members"] if m["id"] != survivor.id]
    assert all(m["alive"] is False and "last_seen" in m for m in dead)
    client = Client([survivor.url], timeout=600.0)  # a budget it must not spend
    with pytest.raises(NoMajority, match=MESSAGE):
        client.put("k", "v")
