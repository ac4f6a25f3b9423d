"""Batched forwarding at the HTTP layer: the batch format, the master's route, the slave's batcher.

The format is checked whole before anything runs (bad input: 400/413, nothing applied);
the route answers every write as if it had come alone (its own status, error, headers);
a slave's forwarded writes travel in batches and each client gets its own answer.
"""

from __future__ import annotations

import json
import threading

import pytest
from api_clients import ApiClient
from fake_service import FakeService

from dkvs.api.auth import Authenticator, Grant
from dkvs.api.forward import batchable
from dkvs.api.forward_batch import (BatchWrite, BrokenBatch, MAX_BATCH_WRITES, decode_answers, decode_writes,
                                    encode_answers, encode_writes)
from dkvs.api.response import Reply, error_reply, written_reply
from dkvs.errors import BadRequest, NoMaster, PayloadTooLarge
from dkvs.tools.local_cluster import wait_for

BOUND_SECONDS = 30.0


def _post_batch(url: str, writes: list[BatchWrite] | None = None, body: bytes | None = None,
                headers: dict | None = None):
    data = body if body is not None else encode_writes(writes)
    return ApiClient(url).request("POST", "/internal/forward", data, {"Content-Type": "application/json",
                                                                      **(headers or {})})


def _answers(answer) -> list[tuple[int, dict, dict]]:
    assert answer.status == 200, answer.body
    return [(status, json.loads(text), dict(headers)) for status, _, headers, text in answer.json()["r"]]


# --- the format ------------------------------------------------------------------------

def test_writes_survive_encoding_text_binary_and_deletes():
    writes = [BatchWrite("PUT", "/kv/a%2Fb?acks=majority", "text/plain", "Bearer t", "vé".encode()),
              BatchWrite("PUT", "/kv/bin", "application/octet-stream", None, b"\xff\x00\xfe"),
              BatchWrite("DELETE", "/kv/gone?if_seq=3", None, None, None)]
    assert decode_writes(encode_writes(writes)) == writes


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'{"w": []}', b'{"w": {}}', b'{"w": [1]}',
    b'{"w": [{"m": "GET", "t": "/kv/a"}]}',
    b'{"w": [{"m": "PUT", "t": "/status", "b": "x"}]}',
    b'{"w": [{"m": "PUT", "t": "/internal/raft", "b": "x"}]}',
    b'{"w": [{"m": "PUT", "t": "/kv/a"}]}',                      # a PUT without a body
    b'{"w": [{"m": "DELETE", "t": "/kv/a", "b": "x"}]}',         # a DELETE with one
    b'{"w": [{"m": "PUT", "t": "/kv/a", "b": "x", "x": "eA=="}]}',
    b'{"w": [{"m": "PUT", "t": "/kv/a", "x": "not base64!"}]}',
    b'{"w": [{"m": "PUT", "t": "/kv/a", "b": 5}]}',
    b'{"w": [{"m": "PUT", "t": "/kv/a", "b": "\\ud800"}]}',      # a lone surrogate is no text
    b'{"w": [{"m": "PUT", "t": "/kv/a", "b": "x", "c": "a\\r\\nb"}]}',
    b'{"w": [{"m": "PUT", "t": "/kv/a", "b": "x", "z": 1}]}',
    b'{"w": [{"m": "PUT", "t": "/kv/a", "b": "x"}, {"m": "PUT"}]}',  # one bad write spoils the batch
])
def test_a_malformed_batch_is_a_bad_request(body):
    with pytest.raises(BadRequest):
        decode_writes(body)


def test_a_batch_over_its_limits_is_too_large():
    many = encode_writes([BatchWrite("DELETE", f"/kv/k{i}", None, None, None) for i in range(MAX_BATCH_WRITES + 1)])
    with pytest.raises(PayloadTooLarge):
        decode_writes(many)


def test_answers_survive_encoding_with_the_headers_that_matter():
    replies = [written_reply({"key": "a", "seq": 7, "epoch": 1, "replicas": 2}),
               error_reply(NoMaster("no master", retry_after=2.0)),
               Reply(409, b'{"error":"conflict"}', "application/json", (("X-Other", "dropped"),))]
    back = decode_answers(encode_answers(replies), 3)
    assert [r.status for r in back] == [200, 503, 409]
    assert back[0].headers == (("X-Dkvs-Seq", "7"),) and back[1].headers == (("Retry-After", "2"),)
    assert back[2].headers == () and back[0].body == replies[0].body


@pytest.mark.parametrize("body, count", [
    (b"", 1), (b"{}", 1),
    (b'{"r": [[200, "a", [], "x"]]}', 2),                      # one answer for two writes
    (b'{"r": [["200", "a", [], "x"]]}', 1),
    (b'{"r": [[200, "a", [], 5], [200, "a", [], "x"]]}', 2),
    (b'{"r": [[99, "a", [], "x"]]}', 1),
])
def test_a_broken_answer_is_detected(body, count):
    with pytest.raises(BrokenBatch):
        decode_answers(body, count)


@pytest.mark.parametrize("method, target, body, headers, ok", [
    ("PUT", "/kv/a", b"v", {}, True),
    ("PUT", "/kv/a?acks=majority&timeout=2&if_seq=0", b"v", {"Authorization": "Bearer t"}, True),
    ("DELETE", "/kv/a", None, {}, True),
    ("PUT", "/kv/a?ttl=5", b"v", {}, False),                 # leases go alone
    ("PUT", "/kv/a?lease=3", b"v", {}, False),
    ("POST", "/txn", b"{}", {}, False),
    ("DELETE", "/kv?prefix=a", None, {}, False),
    ("PUT", "/kv/a", b"v" * (64 * 1024 + 1), {}, False),    # big values go alone
    ("PUT", "/kv/a", b"v", {"X-Dkvs-Secret": "s"}, False),  # headers the batch does not carry
])
def test_which_writes_a_slave_batches(method, target, body, headers, ok):
    assert (batchable(method, target, body, headers) is not None) == ok


# --- the master's route ----------------------------------------------------------------

def test_each_write_of_a_batch_gets_its_own_answer(start_server):
    fake = FakeService()
    master = start_server(fake)
    fake.put("taken", "x", acks="1", timeout=1.0)
    answers = _answers(_post_batch(master.url, [
        BatchWrite("PUT", "/kv/a?acks=majority&timeout=2", None, None, b"1"),
        BatchWrite("PUT", "/kv/" + "k" * 2000, None, None, b"2"),               # key over the limit
        BatchWrite("PUT", "/kv/b?acks=most", None, None, b"3"),                 # bad acks
        BatchWrite("DELETE", "/kv/absent", None, None, None),
        BatchWrite("DELETE", "/kv/taken?if_seq=99", None, None, None),          # the condition fails
        BatchWrite("PUT", "/kv/c?nope=1", None, None, b"4"),                    # strict query
        BatchWrite("PUT", "/kv/bin", "application/octet-stream", None, b"\xff"),
        BatchWrite("PUT", "/kv/leased?ttl=5", None, None, b"5"),                # leases go alone
    ]))
    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 413, 400, 404, 409, 400, 200, 400]
    assert answers[0][1]["key"] == "a" and answers[0][2] == {"X-Dkvs-Seq": str(answers[0][1]["seq"])}
    assert answers[4][1]["error"] == "conflict"
    data, _ = fake.snapshot()
    assert set(data) == {"a", "taken", "bin"}
    counted = master.metrics.render([])  # each write counted under its own route, as if alone
    assert 'dkvs_http_requests_total{route="/kv/{key}",method="PUT",status="200"} 2' in counted
    assert 'dkvs_http_requests_total{route="/kv/{key}",method="DELETE",status="409"} 1' in counted


def test_a_malformed_batch_applies_nothing(start_server):
    fake = FakeService()
    master = start_server(fake)
    before = fake.snapshot()
    answer = _post_batch(master.url, body=b'{"w": [{"m": "PUT", "t": "/kv/a", "b": "x"}, {"m": "PUT"}]}')
    assert answer.status == 400 and answer.json()["error"] == "bad_request"
    assert fake.snapshot() == before


def test_a_batch_to_a_node_that_is_not_the_master_answers_each_write_with_503(start_server):
    fake = FakeService()
    node = start_server(fake)
    fake.raise_not_master = "http://127.0.0.1:1"  # another node leads now: no second hop
    answers = _answers(_post_batch(node.url, [BatchWrite("PUT", "/kv/a", None, None, b"1"),
                                              BatchWrite("DELETE", "/kv/b", None, None, None)]))
    assert [(status, body["error"]) for status, body, _ in answers] == [(503, "no_master")] * 2
    assert all("Retry-After" in headers for _, _, headers in answers)
    assert fake.snapshot() == ({}, 0)


def test_client_tokens_are_checked_per_write_on_the_master(start_server):
    fake = FakeService()
    master = start_server(fake)
    master.auth = Authenticator(entries=[(b"w-app", Grant("write", ("app/",))), (b"reader", Grant("read"))])
    answers = _answers(_post_batch(master.url, [
        BatchWrite("PUT", "/kv/app/1", None, "Bearer w-app", b"1"),
        BatchWrite("PUT", "/kv/other", None, "Bearer w-app", b"2"),   # outside its prefixes
        BatchWrite("PUT", "/kv/app/2", None, "Bearer reader", b"3"),  # too weak a role
        BatchWrite("PUT", "/kv/app/3", None, None, b"4"),             # no token
    ]))
    assert [status for status, _, _ in answers] == [200, 403, 403, 401]
    assert set(fake.snapshot()[0]) == {"app/1"}


# --- the slave's side: many clients, batches, each its own answer ------------------------

@pytest.fixture
def batching_pair(start_server):
    slave_fake, master_fake = FakeService(node_id="slave"), FakeService(node_id="master")
    slave, master = start_server(slave_fake), start_server(master_fake)
    slave_fake.raise_not_master = master.url
    slave.forwarder.sign_batch = lambda base_url, target, body: {}  # no cluster secret
    return slave, master, master_fake


def _batch_count(server, at_least: int = 1) -> int:
    """Batches the master answered, once at least ``at_least`` are counted (bounded wait:
    the server counts an answer just after sending it)."""
    def count() -> int:
        text = server.metrics.render([])
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith("dkvs_http_requests_total") and 'route="/internal/forward"' in line)
    wait_for(lambda: count() >= at_least, BOUND_SECONDS, interval=0.005)
    return count()


def test_concurrent_writes_through_a_slave_travel_in_batches_and_each_gets_its_answer(batching_pair):
    slave, master, master_fake = batching_pair
    clients, per_client = 40, 5
    failures: list = []
    start = threading.Barrier(clients, timeout=BOUND_SECONDS)

    def client(i: int) -> None:
        start.wait()
        for j in range(per_client):
            answer = ApiClient(slave.url).request("PUT", f"/kv/c{i}-{j}", f"v{i}.{j}".encode())
            if answer.status != 200 or answer.json()["key"] != f"c{i}-{j}" or "x-dkvs-seq" not in answer.headers:
                failures.append((i, j, answer.status, answer.body[:200]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND_SECONDS)
    assert failures == [] and not any(t.is_alive() for t in threads)
    data, _ = master_fake.snapshot()
    assert len(data) == clients * per_client and data["c3-4"][0] == "v3.4"
    assert 0 < _batch_count(master) <= clients * per_client


def test_errors_inside_a_forwarded_batch_are_the_clients_own(batching_pair):
    slave, master, master_fake = batching_pair
    api = ApiClient(slave.url)
    assert api.request("PUT", "/kv/k", b"1").status == 200
    answer = api.request("DELETE", "/kv/k?if_seq=12345")
    assert answer.status == 409 and answer.json()["error"] == "conflict"
    answer = api.request("DELETE", "/kv/missing")
    assert answer.status == 404 and answer.json()["error"] == "key_not_found"
    master_fake.raise_no_master = True
    answer = api.request("PUT", "/kv/k", b"2")
    assert answer.status == 503 and answer.headers["retry-after"] == "3"
    assert _batch_count(master, 4) == 4


class _OldMaster(FakeService):
    """A master without the batch route: its internal routes answer 404 for it."""

    def internal(self, method, path, query, body, headers):
        return 404, b'{"error": "not_found", "message": "no internal route"}'


def test_a_master_that_refuses_batches_gets_the_writes_one_by_one(start_server):
    slave_fake, master_fake = FakeService(node_id="slave"), _OldMaster(node_id="master")
    slave, master = start_server(slave_fake), start_server(master_fake)
    master.route_table = _table_without_batches()
    slave_fake.raise_not_master = master.url
    slave.forwarder.sign_batch = lambda base_url, target, body: {}
    for i in range(3):
        assert ApiClient(slave.url).request("PUT", f"/kv/k{i}", b"v").status == 200
    assert set(master_fake.snapshot()[0]) == {"k0", "k1", "k2"}


def _table_without_batches():
    from dkvs.api.routes import ROUTES, RouteTable

    return RouteTable(tuple(route for route in ROUTES if route.pattern != "/internal/forward"))


def test_batching_follows_the_master_through_failovers(start_server):
    """Batchers of earlier masters are dropped once idle: the fifth master still gets batches."""
    slave_fake = FakeService(node_id="slave")
    slave = start_server(slave_fake)
    slave.forwarder.sign_batch = lambda base_url, target, body: {}
    for turn in range(6):
        master_fake = FakeService(node_id=f"master{turn}")
        master = start_server(master_fake)
        slave_fake.raise_not_master = master.url
        assert ApiClient(slave.url).request("PUT", f"/kv/t{turn}", b"v").status == 200
        assert _batch_count(master) == 1, turn


class _SignedOnly(FakeService):
    """A node with a cluster secret: internal requests without the (fake) signature are refused."""

    def internal_head(self, method, target, headers, *, token_checked=False):
        return None if headers.get("X-Dkvs-Signature") == "good" else "unsigned internal request"


def test_an_unsigned_batch_is_refused_whole_and_applies_nothing(start_server):
    fake = _SignedOnly()
    master = start_server(fake)
    writes = [BatchWrite("PUT", "/kv/forged", None, None, b"x")]
    answer = _post_batch(master.url, writes)
    assert answer.status == 401 and answer.json()["error"] == "unauthorized"
    assert fake.snapshot() == ({}, 0)
    assert _answers(_post_batch(master.url, writes, headers={"X-Dkvs-Signature": "good"}))[0][0] == 200
