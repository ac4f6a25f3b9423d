"""Connections: keep-alive, one write per answer, and a stop() that leaves nothing behind."""

from __future__ import annotations

import http.client
import threading

import pytest
from api_clients import ApiClient

from dkvs.api.handler import DkvsRequestHandler


def test_two_hundred_requests_share_one_keep_alive_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    sockets = set()
    try:
        for i in range(100):
            for method, body in (("PUT", f"v{i}".encode()), ("GET", None)):
                conn.request(method, f"/kv/k{i}", body=body)
                response = conn.getresponse()
                assert response.status == 200 and not response.will_close
                response.read()
                sockets.add(conn.sock)  # kept alive, so a new socket cannot reuse its id
        assert len(sockets) == 1  # http.client never had to reconnect
    finally:
        conn.close()


class _CountingWriter:
    """Wraps a handler's wfile and records every write."""

    def __init__(self, inner, log: list) -> None:
        self.inner, self.log = inner, log

    def write(self, data) -> int:
        self.log.append(bytes(data))
        return self.inner.write(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def writes(monkeypatch) -> list:
    log: list[bytes] = []
    original_setup = DkvsRequestHandler.setup

    def setup(handler) -> None:
        original_setup(handler)
        handler.wfile = _CountingWriter(handler.wfile, log)

    monkeypatch.setattr(DkvsRequestHandler, "setup", setup)
    return log


def test_every_answer_is_sent_with_one_write(writes, server):
    requests = [("PUT", "/kv/a", b"v"), ("GET", "/kv/a", None), ("GET", "/kv/zz", None),
                ("GET", "/health", None), ("POST", "/kv/a", None), ("GET", "/nope", None),
                ("GET", "/kv?limit=abc", None), ("OPTIONS", "/kv/a", None),
                ("GET", "/openapi.json", None)]
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    try:
        for method, path, body in requests:
            conn.request(method, path, body=body, headers={"Origin": "http://x.test"})
            response = conn.getresponse()
            payload = response.read()
            # The one write holds the status line, the headers and the whole body.
            last = writes[-1]
            assert last.startswith(b"HTTP/1.1 %d " % response.status)
            assert last.endswith(b"\r\n\r\n" + payload)
    finally:
        conn.close()
    assert len(writes) == len(requests)


def test_http_1_0_clients_get_their_connection_closed(server, raw):
    client = raw(server)
    client.send(b"GET /health HTTP/1.0\r\n\r\n")
    answer = client.read_answer()
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert client.at_eof()


def test_url_names_the_real_port(server):
    assert server.url == f"http://127.0.0.1:{server.server_port}"
    assert server.server_port != 0


def test_stop_closes_idle_keep_alive_connections_and_joins_their_threads(start_server):
    server = start_server()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    try:
        conn.request("GET", "/health")
        conn.getresponse().read()  # the connection now idles, watched by the selector
        assert any(t.name == "dkvs-http-selector" for t in threading.enumerate())
        assert any(t.name.startswith("dkvs-http-client") for t in threading.enumerate())
        server.stop()
        assert not any(t.name.startswith("dkvs-http") for t in threading.enumerate())
        assert conn.sock.recv(1) == b""  # the server side is closed
    finally:
        conn.close()
    server.stop()  # a second stop is harmless


def test_server_still_serves_after_a_storm_of_bad_requests(server, raw):
    for junk in (b"\r\n\r\n", b"GET\r\n\r\n", b"\x00\xff\x16\x03\x01", b"GET / HTTP/1.1\r\nBad\r\n\r\n"):
        client = raw(server)
        client.send(junk)
        client.close()
    api = ApiClient(server.url)
    assert api.request("GET", "/health").status == 200


def test_concurrent_keep_alive_writers_all_succeed_with_distinct_seqs(server, fake):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        try:
            for i in range(25):
                conn.request("PUT", f"/kv/w{n}-{i}", body=b"v")
                response = conn.getresponse()
                response.read()
                assert response.status == 200
        except BaseException as exc:  # collected: assertions in threads do not fail tests
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    data, last_seq = fake.snapshot()
    assert len(data) == 400 and last_seq == 400
    assert sorted(seq for _, seq in data.values()) == list(range(1, 401))
