"""dkvs.Client: routing, paging, typed errors, and the retry contract (issue: Python client).

Two kinds of tests, cheapest first (the pure pieces with no sockets — backoff arithmetic,
master choice — are in test_client_pure.py):

* the retry contract against a scripted fake node (a ``socketserver`` on 127.0.0.1:0 that
  plays back canned answers, or reads a request and hangs up), so "was it retried?" is
  counted exactly;
* real nodes through ``LocalCluster`` with the fast timings, including the failover test:
  1,000 ``acks=majority`` puts while the master is SIGKILLed, after which every
  acknowledged write must be on the new master.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time

import pytest

from dkvs.client import (AcksNotReached, Client, Item, Unavailable, WatchEvent, WriteOutcomeUnknown,
                         WriteResult)
from dkvs.errors import (AcksTimeout, BadRequest, Conflict, DkvsError, KeyNotFound, NoMaster,
                         PayloadTooLarge)
from dkvs.tools.local_cluster import FAST_TIMINGS, LocalCluster, wait_for

# Liveness limits, not speed claims: on a machine whose cores are all busy a request that
# takes milliseconds when idle can take seconds. A retry budget this long only matters
# when something is broken; a working test returns as soon as its answer arrives.
LIVENESS_SECONDS = 60.0


# --- a scripted fake node ---------------------------------------------------------------

class ScriptedNode:
    """A fake dkvs node on 127.0.0.1:0 that claims to be master in ``/status`` and answers
    every other request with the next scripted action: ``"close"`` (read the request, hang
    up without answering) or ``(status, body)`` / ``(status, body, headers)``. When the
    script is spent it answers ``default``. ``requests`` records (method, target, headers)
    of everything but ``/status``."""

    def __init__(self, actions=(), default=(500, {"error": "internal", "message": "unscripted"}),
                 port: int = 0):
        self.actions = list(actions)
        self.default = default
        self.requests: list[tuple[str, str, dict]] = []
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        node = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with node.lock:
                    node.connections.append(self.connection)
                while node.serve_one(self.rfile, self.wfile):
                    pass

        self.server = _Server(("127.0.0.1", port), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def serve_one(self, rfile, wfile) -> bool:
        line = rfile.readline()
        if not line.strip():
            return False
        method, target, _ = line.decode().split(" ", 2)
        headers = {}
        while (header := rfile.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        rfile.read(int(headers.get("content-length", 0)))
        if target == "/status":
            return self.answer(wfile, 200, {"id": "fake", "url": self.url, "role": "master",
                                            "epoch": 1, "master": {"id": "fake", "url": self.url},
                                            "members": [{"id": "fake", "url": self.url}]}, {})
        with self.lock:
            self.requests.append((method, target, headers))
            action = self.actions.pop(0) if self.actions else self.default
        if action == "close":
            return False
        status, body, *extra = action
        return self.answer(wfile, status, body, extra[0] if extra else {})

    @staticmethod
    def answer(wfile, status: int, body: dict, headers: dict) -> bool:
        data = json.dumps(body).encode()
        head = [f"HTTP/1.1 {status} X", "Content-Type: application/json",
                f"Content-Length: {len(data)}"] + [f"{k}: {v}" for k, v in headers.items()]
        wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        wfile.flush()
        return True

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.requests]

    def close(self) -> None:
        """Stop listening and hang up every connection, as a crashed node would."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restarted fake binds the port its predecessor had


@pytest.fixture
def fake():
    nodes = []

    def make(*actions, **kwargs) -> ScriptedNode:
        nodes.append(ScriptedNode(actions, **kwargs))
        return nodes[-1]

    yield make
    for node in nodes:
        node.close()


def test_a_put_whose_connection_drops_after_sending_raises_outcome_unknown_and_is_sent_once(fake):
    node = fake("close")
    with Client([node.url], retry_seconds=5.0) as client:
        with pytest.raises(WriteOutcomeUnknown) as caught:
            client.put("k", "v", acks="majority")
    assert caught.value.key == "k" and caught.value.seq is None
    assert node.methods() == ["PUT"]


def test_a_delete_whose_connection_drops_after_sending_is_not_retried_either(fake):
    node = fake("close")
    with Client([node.url], retry_seconds=5.0) as client:
        with pytest.raises(WriteOutcomeUnknown):
            client.delete("k")
    assert node.methods() == ["DELETE"]


def test_a_get_whose_connection_drops_is_retried(fake):
    node = fake("close", (200, {"key": "k", "value": "v", "seq": 3}))
    with Client([node.url], retry_seconds=LIVENESS_SECONDS) as client:
        assert client.get_item("k") == Item("k", "v", 3)
    assert node.methods() == ["GET", "GET"]


def test_a_504_to_a_write_is_acks_not_reached_with_its_seq_and_is_not_retried(fake):
    node = fake((504, {"error": "acks_timeout", "message": "late", "seq": 9, "replicas": 1}))
    with Client([node.url]) as client:
        with pytest.raises(AcksNotReached) as caught:
            client.put("k", "v", acks="all", timeout=0.5)
    error = caught.value
    assert isinstance(error, WriteOutcomeUnknown) and isinstance(error, AcksTimeout)
    assert error.seq == 9 and error.key == "k" and error.details["replicas"] == 1
    assert node.methods() == ["PUT"]
    assert "acks=all" in node.requests[0][1] and "timeout=0.5" in node.requests[0][1]


def test_a_503_to_a_write_is_retried_after_retry_after_and_writes_never_ask_for_forwarding(fake):
    node = fake((503, {"error": "no_master", "message": "election"}, {"Retry-After": "1"}),
                (200, {"key": "k", "seq": 5, "epoch": 2, "replicas": 3}))
    with Client([node.url], retry_seconds=LIVENESS_SECONDS) as client:
        started = time.monotonic()
        assert client.put("k", "v") == WriteResult("k", 5, 2, 3)
        assert time.monotonic() - started >= 1.0
    assert node.methods() == ["PUT", "PUT"]
    assert all(headers.get("x-dkvs-forwarded") == "1" for _, _, headers in node.requests)


def test_a_409_is_conflict_with_the_current_seq(fake):
    node = fake((409, {"error": "conflict", "message": "seq is 4", "seq": 4}))
    with Client([node.url]) as client:
        with pytest.raises(Conflict) as caught:
            client.put("k", "v", if_seq=0)
    assert caught.value.current_seq == 4
    assert node.requests[0][1] == "/kv/k?if_seq=0"


def test_an_unknown_error_code_keeps_its_status_and_code(fake):
    node = fake((411, {"error": "length_required", "message": "say how long"}))
    with Client([node.url]) as client:
        with pytest.raises(DkvsError) as caught:
            client.put("k", "v")
    assert (caught.value.status, caught.value.code) == (411, "length_required")


def test_watch_carries_the_index_forward_and_skips_polls_that_saw_no_change(fake):
    node = fake((200, {"key": "k/ü", "value": None, "seq": 0, "changed": False, "index": 5}),
                (200, {"key": "k/ü", "value": "a", "seq": 6, "changed": True, "index": 7}),
                (200, {"key": "k/ü", "value": None, "seq": 8, "changed": True, "index": 8}))
    with Client([node.url]) as client:
        watch = client.watch(key="k/ü", wait=2)
        assert next(watch) == WatchEvent("k/ü", "a", 6)
        assert next(watch) == WatchEvent("k/ü", None, 8)
        watch.close()
    targets = [target for _, target, _ in node.requests]
    assert targets == [f"/kv/k%2F%C3%BC?wait=2&after_seq={n}" for n in (0, 5, 7)]


def test_prefix_watch_yields_changes_in_order_and_marks_a_reset(fake):
    node = fake((200, {"changes": [{"key": "a/1", "value": "x", "seq": 3},
                                   {"key": "a/2", "value": None, "seq": 4}], "index": 4, "reset": False}),
                (200, {"changes": [{"key": "a/3", "value": "y", "seq": 90}], "index": 95, "reset": True}),
                default=(200, {"changes": [], "index": 95, "reset": False}))
    with Client([node.url]) as client:
        events = []
        for event in client.watch(prefix="a/", after_seq=2, wait=1):
            events.append(event)
            if len(events) == 3:
                break
    assert events == [WatchEvent("a/1", "x", 3), WatchEvent("a/2", None, 4),
                      WatchEvent("a/3", "y", 90, reset=True)]
    assert node.requests[1][1] == "/kv?prefix=a%2F&wait=1&after_seq=4"


def test_watch_against_a_node_without_watch_support_fails_instead_of_spinning(fake):
    node = fake(default=(200, {"key": "k", "value": "v", "seq": 1}))
    with Client([node.url]) as client:
        with pytest.raises(DkvsError, match="does not support watching"):
            next(client.watch(key="k", wait=1))


# --- real nodes -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three():
    with LocalCluster(*FAST_TIMINGS) as cluster:
        nodes = cluster.start_cluster(3)
        with Client([n.url for n in nodes], timeout=LIVENESS_SECONDS, retry_seconds=LIVENESS_SECONDS) as client:
            yield nodes, client


def test_crud_round_trip_with_non_ascii_keys_and_values(three):
    _, client = three
    key, value = "usér/42 ?#%&/ключ", "Ada ✓ 数据\n"
    written = client.put(key, value, acks="majority")
    assert written.key == key and written.seq > 0 and written.replicas >= 2
    assert client.get(key) == value
    assert client.get_item(key, consistent=True) == Item(key, value, written.seq)
    assert client.put(key, "", acks="all").seq > written.seq
    assert client.get(key) == ""
    deleted = client.delete(key, acks="majority")
    assert deleted.seq > written.seq
    with pytest.raises(KeyNotFound):
        client.get(key)
    with pytest.raises(KeyNotFound):
        client.delete(key)


def test_items_pages_transparently_in_key_order(three):
    _, client = three
    keys = [f"page/{i:03d}" for i in range(250)]
    for key in keys:
        client.put(key, key.upper())
    client.put("pagf", "outside the prefix")
    listed = list(client.items("page/", page_size=100))
    assert [item.key for item in listed] == keys
    assert all(item.value == item.key.upper() for item in listed)
    assert len(list(client.items("page/1", page_size=7))) == 100


def test_server_errors_arrive_as_typed_exceptions(three):
    _, client = three
    with pytest.raises(PayloadTooLarge):
        client.put("k" * 2000, "v")
    with pytest.raises(PayloadTooLarge):
        client.put("big", "x" * (1024 * 1024 + 1))
    with pytest.raises(BadRequest):
        client.put("", "v")
    with pytest.raises(BadRequest) as caught:
        list(client.items(page_size=0))
    assert caught.value.details["parameter"] == "limit"
    with pytest.raises(ValueError):
        client.put("k", "v", acks="two")


def test_status_comes_from_the_master(three):
    nodes, client = three
    status = client.status()
    assert status["role"] == "master"
    assert sorted(m["url"] for m in status["members"]) == sorted(n.url for n in nodes)


def test_one_client_is_shared_safely_by_many_threads(three):
    _, client = three
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(25):
                key = f"threads/{worker}/{i}"
                client.put(key, str(i))
                assert client.get(key) == str(i)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5 * LIVENESS_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a worker never finished"
    assert errors == []
    assert len(list(client.items("threads/"))) == 200


def test_writes_go_to_the_master_even_when_the_client_is_given_a_slave():
    with LocalCluster(*FAST_TIMINGS) as cluster:
        nodes = cluster.start_cluster(3)
        master = wait_for(cluster.master, LIVENESS_SECONDS)
        slave = next(n for n in nodes if n is not master)
        with Client([slave.url], timeout=LIVENESS_SECONDS, retry_seconds=0) as client:
            assert client.put("k", "1").seq > 0
            slave.kill()
            # No retries allowed: this only succeeds if nothing is sent through the slave.
            assert client.put("k", "2", acks="majority", timeout=LIVENESS_SECONDS).seq > 0
            assert client.get("k", consistent=True) == "2"


def test_with_every_node_dead_a_get_and_a_put_give_up_instead_of_retrying_forever():
    # That the retries stop within retry_seconds is the budget's arithmetic, checked on a
    # fake clock in test_backoff_grows_to_its_cap_honours_retry_after_and_never_passes_the_deadline;
    # here, that a real client gives up with the right errors once its budget is spent.
    with LocalCluster(*FAST_TIMINGS) as cluster:
        node = cluster.start()
        with Client([node.url], retry_seconds=1.0) as client:
            client.put("k", "v")
            node.kill()
            with pytest.raises(Unavailable):
                client.get("k")
            with pytest.raises(NoMaster):  # refused before sending: retried, then given up
                client.put("k", "w")


def test_a_write_refused_before_sending_is_retried_until_a_master_answers(fake):
    first = fake((200, {"key": "k", "seq": 1, "epoch": 1, "replicas": 1}))
    port = int(first.url.rsplit(":", 1)[1])
    restarted = []
    with Client([first.url], retry_seconds=LIVENESS_SECONDS) as client:
        assert client.put("k", "v").seq == 1
        first.close()  # the "master" dies; connecting is refused until it is back
        # Back after 0.3 s at the earliest (a lower bound: the put below cannot succeed before).
        threading.Timer(0.3, lambda: restarted.append(
            ScriptedNode([(200, {"key": "k", "seq": 2, "epoch": 2, "replicas": 1})], port=port))).start()
        started = time.monotonic()
        try:
            assert client.put("k", "w").seq == 2
            assert time.monotonic() - started >= 0.3
        finally:
            wait_for(lambda: restarted, LIVENESS_SECONDS)
            for node in restarted:
                node.close()
    assert first.methods() == ["PUT"] and restarted[0].methods() == ["PUT"]


def test_failover_every_acknowledged_majority_write_survives_a_master_crash():
    """The issue's "done when": 1,000 sequential acks=majority puts; the master is SIGKILLed
    after ~300 of them, from another thread so that a request may be in flight. Every put
    returns, or raises WriteOutcomeUnknown (may be applied) or NoMaster (was not applied).
    Afterwards every acknowledged write is on the new master, every NoMaster write is
    absent, and every unknown one is either there with its value or absent."""
    with LocalCluster(*FAST_TIMINGS) as cluster:
        nodes = cluster.start_cluster(3)
        old_master = wait_for(cluster.master, LIVENESS_SECONDS)
        assert old_master is not None, "no master"
        kill_now = threading.Event()
        killer = threading.Thread(target=lambda: kill_now.wait(5 * LIVENESS_SECONDS) and old_master.kill())
        killer.start()
        acked, unknown, refused = {}, {}, {}
        # Long client timeouts and retries: on a busy machine a slow answer is not a lost
        # one, and the failover itself may take many election timeouts.
        with Client([n.url for n in nodes], timeout=LIVENESS_SECONDS, acks="majority",
                    retry_seconds=LIVENESS_SECONDS) as client:
            for i in range(1000):
                if i == 300:
                    kill_now.set()
                key, value = f"fo/{i:04d}", f"value {i} ✓"
                try:
                    acked[key] = client.put(key, value, timeout=LIVENESS_SECONDS)
                except WriteOutcomeUnknown:
                    unknown[key] = value
                except NoMaster:
                    refused[key] = value
        kill_now.set()
        killer.join()
        assert len(acked) >= 900, (len(acked), len(unknown), len(refused))
        new_master = wait_for(cluster.master, LIVENESS_SECONDS)
        assert new_master is not None and new_master is not old_master
        assert {r.epoch for r in acked.values()} != {acked["fo/0000"].epoch}  # epochs moved on
        with Client([new_master.url]) as reader:
            for key, result in acked.items():
                assert reader.get_item(key, consistent=True).seq == result.seq, key
            on_master = {item.key: item.value for item in reader.items("fo/", page_size=500)}
        for key, result in acked.items():
            assert on_master[key] == f"value {int(key[3:])} ✓"
        for key, value in unknown.items():
            assert on_master.get(key, value) == value
        for key in refused:
            assert key not in on_master
        print(f"failover: {len(acked)} acknowledged, {len(unknown)} unknown, "
              f"{len(refused)} refused")
