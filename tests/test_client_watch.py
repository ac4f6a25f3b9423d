"""dkvs.Client against a real node: watch (long polling, docs/watch.md) and compare-and-set
(``PUT /kv/{key}?if_seq=N``). These need the server side of both features; the client side
alone is covered by the scripted-node tests in test_client.py."""

from __future__ import annotations

import re
import threading

import pytest

from dkvs.client import Client, WatchEvent
from dkvs.errors import Conflict
from dkvs.tools.local_cluster import FAST_TIMINGS, LocalCluster, http_call, wait_for

LIVENESS_SECONDS = 60.0  # a limit for what must happen, not a claim about speed
KEY_GETS = re.compile(r'^dkvs_http_requests_total\{route="/kv/\{key\}",method="GET",status="200"\} (\d+)$', re.M)


@pytest.fixture(scope="module")
def node():
    with LocalCluster(*FAST_TIMINGS) as cluster:
        yield cluster.start()


@pytest.fixture(scope="module")
def client(node):
    with Client([node.url], timeout=LIVENESS_SECONDS, retry_seconds=LIVENESS_SECONDS) as client:
        yield client


def key_polls(node) -> int:
    """How many ``GET /kv/{key}`` the node has answered 200: each key-watch poll is one.
    Counting polls tells "woken by a change" from "its wait ran out", without a clock."""
    code, body = http_call(node.url, "GET", "/metrics", timeout=LIVENESS_SECONDS)
    assert code == 200, body
    found = KEY_GETS.search(body["raw"])
    return int(found.group(1)) if found else 0


def soon(action) -> threading.Thread:
    """Run ``action`` on another thread now (while the caller blocks in a watch)."""
    thread = threading.Thread(target=action)
    thread.start()
    return thread


# --- watch ------------------------------------------------------------------------------

def test_a_key_watch_reports_the_current_state_then_wakes_up_for_each_change(client, node):
    first = client.put("w/ключ", "a")
    watch = client.watch(key="w/ключ", wait=60)
    try:
        assert next(watch) == WatchEvent("w/ключ", "a", first.seq)
        # The node counts a request just after answering it: let the first poll be counted
        # before taking the count (the first test of the module: it is this node's first GET).
        assert wait_for(lambda: key_polls(node) >= 1, LIVENESS_SECONDS)
        polls = key_polls(node)
        writer = soon(lambda: client.put("w/ключ", "b"))
        event = next(watch)
        writer.join(LIVENESS_SECONDS)
        assert (event.key, event.value) == ("w/ключ", "b") and event.seq > first.seq
        # One poll of 60 s answered it: woken by the write, not by the wait running out.
        # (The node counts a request just after answering it, hence the wait; the watch
        # sends no further poll while the generator is suspended.)
        assert wait_for(lambda: key_polls(node) >= polls + 1, LIVENESS_SECONDS)
        assert key_polls(node) == polls + 1
        deleted = client.delete("w/ключ")
        assert next(watch) == WatchEvent("w/ключ", None, deleted.seq)
    finally:
        watch.close()


def test_a_key_watch_keeps_polling_through_waits_that_expire(client, node):
    watch = client.watch(key="w/quiet", after_seq=client.status()["last_seq"], wait=0.2)
    polls = key_polls(node)
    expired_first = []

    def write_after_two_expired_polls():
        # Write even if the polls never show up, so that the watch below always ends.
        expired_first.append(bool(wait_for(lambda: key_polls(node) >= polls + 2, LIVENESS_SECONDS)))
        client.put("w/quiet", "finally")

    writer = soon(write_after_two_expired_polls)
    try:
        event = next(watch)
        assert expired_first == [True], "the watch did not poll again after its waits ran out"
        assert event.value == "finally"
        # Two polls ran out empty, a later one saw the write.
        assert wait_for(lambda: key_polls(node) >= polls + 3, LIVENESS_SECONDS)
    finally:
        writer.join(LIVENESS_SECONDS)
        watch.close()


def test_a_prefix_watch_sees_only_its_prefix_in_seq_order_with_deletes(client):
    start = client.status()["last_seq"]
    client.put("w/p/1", "1")
    client.put("w/q/1", "other prefix")
    client.put("w/p/2", "2")
    client.delete("w/p/1")
    events = []
    for event in client.watch(prefix="w/p/", after_seq=start, wait=60):
        events.append(event)
        if len(events) == 3:
            break
    assert [(e.key, e.value) for e in events] == [("w/p/1", "1"), ("w/p/2", "2"), ("w/p/1", None)]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert not any(e.reset for e in events)


def test_a_prefix_watch_started_at_a_seq_repeats_nothing_before_it(client):
    client.put("w/r/1", "old")
    start = client.status()["last_seq"]
    writer = soon(lambda: client.put("w/r/2", "new"))
    watch = client.watch(prefix="w/r/", after_seq=start, wait=60)
    try:
        assert next(watch).key == "w/r/2"
    finally:
        writer.join(LIVENESS_SECONDS)
        watch.close()


# --- compare-and-set --------------------------------------------------------------------

def test_if_seq_zero_writes_only_when_the_key_is_absent(client):
    created = client.put("cas/new", "first", if_seq=0)
    with pytest.raises(Conflict) as caught:
        client.put("cas/new", "second", if_seq=0)
    assert caught.value.current_seq == created.seq
    assert client.get("cas/new") == "first"
    client.delete("cas/new")
    assert client.put("cas/new", "again", if_seq=0).seq > created.seq


def test_if_seq_writes_only_over_that_exact_seq(client):
    first = client.put("cas/k", "a")
    second = client.put("cas/k", "b", if_seq=first.seq)
    with pytest.raises(Conflict) as caught:
        client.put("cas/k", "c", if_seq=first.seq)
    assert caught.value.current_seq == second.seq
    assert client.get_item("cas/k").value == "b"


def test_concurrent_compare_and_set_increments_lose_no_update(client):
    client.put("cas/counter", "0")
    errors: list[BaseException] = []

    def add_ten() -> None:
        try:
            for _ in range(10):
                for _attempt in range(1000):
                    item = client.get_item("cas/counter", consistent=True)
                    try:
                        client.put("cas/counter", str(int(item.value) + 1), if_seq=item.seq)
                        break
                    except Conflict:
                        continue
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=add_ten) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5 * LIVENESS_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "an incrementer never finished"
    assert errors == []
    assert client.get("cas/counter", consistent=True) == "40"
