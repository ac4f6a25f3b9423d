"""dkvs.Client's pure pieces, no sockets: the retry budget's backoff arithmetic and the
choice of the master from the nodes' /status answers (discovery)."""

from __future__ import annotations

import random

import pytest

from dkvs.client import Unavailable
from dkvs.client.cluster import ClusterView, choose_master
from dkvs.client.retry import BACKOFF_MAX_SECONDS, RetryBudget
from dkvs.errors import NoMaster


# --- pure pieces ------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_grows_to_its_cap_honours_retry_after_and_never_passes_the_deadline():
    clock = FakeClock()
    budget = RetryBudget(10.0, random.Random(7), clock)
    delays = []
    while (delay := budget.next_delay()) is not None:
        delays.append(delay)
        clock.now += delay
    assert delays[0] <= 0.025 and max(delays) <= BACKOFF_MAX_SECONDS
    assert delays[-1] > delays[0] * 8  # it did grow
    assert sum(delays) <= 10.0
    clock2 = FakeClock()
    budget2 = RetryBudget(3.0, random.Random(7), clock2)
    assert budget2.next_delay(at_least_seconds=2.0) == 2.0
    clock2.now += 2.0
    assert budget2.next_delay(at_least_seconds=2.0) is None  # would end after the deadline


def _status(node_id, role, epoch, master_id):
    return {"id": node_id, "role": role, "epoch": epoch,
            "master": {"id": master_id, "url": "u"} if master_id else None}


def test_master_is_the_claimant_with_the_highest_epoch_unless_a_newer_epoch_follows_another():
    assert choose_master([("a", _status("a", "slave", 3, "b")),
                          ("b", _status("b", "master", 3, "b"))]) == "b"
    # b was deposed (epoch 3) while a and c moved on to epoch 4 under c, unreachable to us.
    assert choose_master([("a", _status("a", "slave", 4, "c")),
                          ("b", _status("b", "master", 3, "b"))]) is None
    # An election is running: nobody is master.
    assert choose_master([("a", _status("a", "candidate", 5, None))]) is None


def _fake_fetch(statuses: dict, asked: list):
    def fetch(url: str) -> dict:
        asked.append(url)
        if statuses.get(url) is None:
            raise Unavailable(f"{url} refused")
        return statuses[url]
    return fetch


def test_discovery_from_one_slave_asks_the_members_it_names_and_finds_the_master():
    members = [{"url": u} for u in ("http://a:1", "http://b:1", "http://c:1")]
    statuses = {"http://a:1": {**_status("a", "slave", 2, "b"), "members": members},
                "http://b:1": {**_status("b", "master", 2, "b"), "members": members},
                "http://c:1": {**_status("c", "slave", 2, "b"), "members": members}}
    view, asked = ClusterView(["http://a:1"]), []
    assert view.discover(_fake_fetch(statuses, asked)) == "http://b:1"
    assert sorted(asked) == ["http://a:1", "http://b:1", "http://c:1"]
    assert view.master() == "http://b:1"


def test_discovery_skips_nodes_that_just_failed_once_a_master_is_found():
    statuses = {"http://a:1": _status("a", "master", 3, "a"), "http://dead:1": None}
    view, asked = ClusterView(["http://dead:1", "http://a:1"]), []
    view.mark_failed("http://dead:1")
    assert view.discover(_fake_fetch(statuses, asked)) == "http://a:1"
    assert asked == ["http://a:1"]
    view.forget_master("http://a:1")
    statuses["http://a:1"] = _status("a", "candidate", 4, None)
    with pytest.raises(NoMaster):  # no master among the healthy: the failed one is asked too
        view.discover(_fake_fetch(statuses, asked))
    assert asked[1:] == ["http://a:1", "http://dead:1"]
