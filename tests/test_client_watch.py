"""dkvs.Client against a real node: watch (long polling, docs/watch.md) and compare-and-set
(``PUT /kv/{key}?if_seq=N``). These need the server side of both features; the client side
alone is covered by the scripted-node tests in test_client.py."""

from __future__ import annotations

import threading
import time

import pytest

from dkvs.client import Client, WatchEvent
from dkvs.errors import Conflict
from dkvs.tools.local_cluster import FAST_TIMINGS, LocalCluster


@pytest.fixture(scope="module")
def client():
    with LocalCluster(*FAST_TIMINGS) as cluster:
        node = cluster.start()
        with Client([node.url], retry_seconds=2.0) as client:
            yield client


def later(seconds: float, action) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


# --- watch ------------------------------------------------------------------------------

def test_a_key_watch_reports_the_current_state_then_wakes_up_for_each_change(client):
    first = client.put("w/ключ", "a")
    watch = client.watch(key="w/ключ", wait=5)
    try:
        assert next(watch) == WatchEvent("w/ключ", "a", first.seq)
        later(0.2, lambda: client.put("w/ключ", "b"))
        started = time.monotonic()
        event = next(watch)
        assert (event.key, event.value) == ("w/ключ", "b") and event.seq > first.seq
        assert time.monotonic() - started < 4  # woken by the write, not by the wait running out
        deleted = client.delete("w/ключ")
        assert next(watch) == WatchEvent("w/ключ", None, deleted.seq)
    finally:
        watch.close()


def test_a_key_watch_keeps_polling_through_waits_that_expire(client):
    watch = client.watch(key="w/quiet", after_seq=client.status()["last_seq"], wait=0.2)
    try:
        timer = later(0.7, lambda: client.put("w/quiet", "finally"))
        started = time.monotonic()
        event = next(watch)
        assert event.value == "finally" and time.monotonic() - started >= 0.6
        timer.join()
    finally:
        watch.close()


def test_a_prefix_watch_sees_only_its_prefix_in_seq_order_with_deletes(client):
    start = client.status()["last_seq"]
    client.put("w/p/1", "1")
    client.put("w/q/1", "other prefix")
    client.put("w/p/2", "2")
    client.delete("w/p/1")
    events = []
    for event in client.watch(prefix="w/p/", after_seq=start, wait=2):
        events.append(event)
        if len(events) == 3:
            break
    assert [(e.key, e.value) for e in events] == [("w/p/1", "1"), ("w/p/2", "2"), ("w/p/1", None)]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert not any(e.reset for e in events)


def test_a_prefix_watch_started_at_a_seq_repeats_nothing_before_it(client):
    client.put("w/r/1", "old")
    start = client.status()["last_seq"]
    later(0.2, lambda: client.put("w/r/2", "new"))
    watch = client.watch(prefix="w/r/", after_seq=start, wait=5)
    try:
        assert next(watch).key == "w/r/2"
    finally:
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
        thread.join(20)
    assert errors == []
    assert client.get("cas/counter", consistent=True) == "40"
