"""The fast lane (dkvs.api.fast_lane): plain reads answered on the selector thread.

Each answer the lane gives must be the worker path's answer, byte for byte but the
``Date`` line; requests it must not take (a body, CORS, ``Expect``, a query, binary
``Accept``, HTTP/1.0, a repeated field, ``Connection: close``) go to a worker and get the
worker path's answer. Counters on the lane say which path answered.
"""

from __future__ import annotations

import json
import socket

import pytest

from api_clients import RawClient, answer_without_date, key_path
from fake_service import FakeService

from dkvs.api.auth import Authenticator
from dkvs.api.service import Limits


def _exchange(server, request: bytes) -> bytes:
    return answer_without_date(server.url, request)


def _both_paths(server, request: bytes) -> tuple[bytes, bytes, int]:
    """The answer with the lane on and off, and how many answers the lane gave."""
    lane = server.fast_lane
    before = lane.served
    fast = _exchange(server, request)
    served = lane.served - before
    lane.enabled = False
    try:
        slow = _exchange(server, request)
    finally:
        lane.enabled = True
    return fast, slow, served


def _get(path: str, *fields: str) -> bytes:
    head = "".join(f"{field}\r\n" for field in fields)
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode("latin-1")


@pytest.fixture
def stocked(start_server):
    fake = FakeService(Limits(max_key_bytes=64))
    for key, value in (("a", "hello"), ("dir/b", "x" * 300), ("é", "ünïcode"), ("q?", "odd"),
                       ("json", '{"a": [1, 2]}'), ("bin", "\udcff\udcfe")):
        fake.put(key, value, acks="1", timeout=1.0)
    return start_server(fake), fake


@pytest.mark.parametrize("path", [
    "/kv/a", key_path("dir/b"), key_path("é"), key_path("q?"), key_path("json"), key_path("bin"),
    "/kv/missing", "/kv/" + "k" * 65, "/kv/%zz", "/kv/%ff", "/kv/", "/kv/a/b", "/kv/%2Fa",
])
def test_the_lane_answers_what_the_worker_path_answers(stocked, path):
    server, _ = stocked
    fast, slow, served = _both_paths(server, _get(path))
    assert served == 1, "the lane should have answered this plain read"
    assert fast == slow
    assert fast.startswith(b"HTTP/1.1 ")


@pytest.mark.parametrize("fields", [
    ("Origin: http://elsewhere",),
    ("Content-Length: 3",),
    ("Transfer-Encoding: chunked",),
    ("Expect: 100-continue",),
    ("Connection: close",),
    ("Accept: application/octet-stream",),
    ("X-A: 1", "x-a: 2"),
])
def test_requests_the_lane_must_not_take_go_to_a_worker(stocked, fields):
    server, _ = stocked
    request = _get("/kv/a", *fields)
    if "Content-Length: 3" in fields:
        request += b"abc"
    if "Transfer-Encoding: chunked" in fields:
        request += b"0\r\n\r\n"
    fast, slow, served = _both_paths(server, request)
    assert served == 0
    assert fast == slow


@pytest.mark.parametrize("query,lane", [("consistent=false", 1), ("consistent=nope", 1), ("bogus=1", 1),
                                        ("consistent=true", 0)])  # the fake cannot read asynchronously
def test_reads_with_a_query_are_answered_as_by_a_worker(stocked, query, lane):
    server, _ = stocked
    fast, slow, served = _both_paths(server, _get(f"/kv/a?{query}"))
    assert served == lane
    assert fast == slow


@pytest.mark.parametrize("request_bytes", [
    b"GET /kv/a HTTP/1.0\r\nHost: x\r\n\r\n",
    b"GET /kv/a HTTP/1.1\r\n folded: no\r\n\r\n",
])
def test_old_versions_and_bad_heads_go_to_a_worker(stocked, request_bytes):
    server, _ = stocked
    fast, slow, served = _both_paths(server, request_bytes)
    assert served == 0
    assert fast == slow


def test_cors_headers_still_come_with_a_configured_origin(start_server):
    fake = FakeService()
    fake.put("a", "1", acks="1", timeout=1.0)
    server = start_server(fake, cors_origins=("http://app.example",))
    answer = _exchange(server, _get("/kv/a", "Origin: http://app.example"))
    assert b"Access-Control-Allow-Origin: http://app.example" in answer


def test_tokens_and_key_scopes_hold_in_the_lane(start_server, tmp_path):
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"tokens": [{"token": "reader", "role": "read"},
                                           {"token": "app-only", "role": "read", "prefixes": ["app/"]}]}))
    fake = FakeService()
    for key in ("app/x", "other/y"):
        fake.put(key, "v", acks="1", timeout=1.0)
    server = start_server(fake)
    server.auth = Authenticator(str(auth))
    cases = [((), 401), (("Authorization: Bearer nope",), 401), (("Authorization: Bearer reader",), 200),
             (("Authorization: Bearer app-only",), 403)]
    for fields, status in cases:
        fast, slow, served = _both_paths(server, _get(key_path("other/y"), *fields))
        assert served == 1 and fast == slow
        assert fast.startswith(f"HTTP/1.1 {status} ".encode()), fast
    fast, _, served = _both_paths(server, _get(key_path("app/x"), "Authorization: Bearer app-only"))
    assert served == 1 and fast.startswith(b"HTTP/1.1 200 ")


def test_pipelined_reads_are_answered_in_order(stocked):
    server, _ = stocked
    client = RawClient(server.url)
    try:
        client.send(_get("/kv/a") + _get("/kv/missing") + _get(key_path("dir/b")))
        answers = [client.read_answer() for _ in range(3)]
    finally:
        client.close()
    assert [a.status for a in answers] == [200, 404, 200]
    assert answers[0].json()["value"] == "hello" and answers[2].json()["value"] == "x" * 300


def test_a_read_after_a_write_on_the_same_connection_takes_the_lane(stocked):
    server, _ = stocked
    client = RawClient(server.url)
    before = server.fast_lane.served
    try:
        client.send(b"PUT /kv/new HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert client.read_answer().status == 200
        client.send(_get("/kv/new"))
        answer = client.read_answer()
    finally:
        client.close()
    assert answer.status == 200 and answer.json()["value"] == "hi"
    assert server.fast_lane.served == before + 1


def test_an_answer_bigger_than_the_socket_buffer_is_finished_by_a_worker(start_server):
    fake = FakeService()
    value = "v" * 8_000_000  # more than a loopback send buffer takes at once (tcp_wmem max: 4 MiB)
    fake.put("big", value, acks="1", timeout=1.0)
    server = start_server(fake)
    host, port = server.server_address[:2]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader's small window
    sock.settimeout(10)
    sock.connect((host, port))
    try:
        sock.sendall(_get("/kv/big") + _get("/kv/big"))
        file = sock.makefile("rb")
        bodies = []
        for _ in range(2):
            assert file.readline().startswith(b"HTTP/1.1 200 ")
            length = 0
            while (line := file.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            bodies.append(json.loads(file.read(length)))
        file.close()
    finally:
        sock.close()
    assert [b["value"] for b in bodies] == [value, value]
    assert server.fast_lane.served == 2 and server.fast_lane.handed_on >= 1


def test_metrics_count_the_lane_answers(stocked):
    server, _ = stocked
    for path in ("/kv/a", "/kv/a", "/kv/missing"):
        _exchange(server, _get(path))
    text = _exchange(server, _get("/metrics")).decode()
    assert 'dkvs_http_requests_total{route="/kv/{key}",method="GET",status="200"} 2' in text
    assert 'dkvs_http_requests_total{route="/kv/{key}",method="GET",status="404"} 1' in text


def test_a_service_that_fails_gets_the_worker_path_500(stocked):
    server, fake = stocked
    fake.raise_crash = True
    fast, slow, served = _both_paths(server, _get("/kv/a"))
    assert served == 0
    assert fast == slow and fast.startswith(b"HTTP/1.1 500 ")
