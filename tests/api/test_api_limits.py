"""Bounded resources: connection cap, request and idle deadlines, and worker pools that
client load cannot exhaust for internal traffic or watches.

Real sockets on 127.0.0.1, small timeouts (0.3 s) so the server's own clock ends each
wait; every socket read is bounded by a client-side timeout far above those.
"""

from __future__ import annotations

import http.client
import socket
import threading

import pytest
from api_clients import ApiClient, RawClient
from fake_service import FakeService

from dkvs.api.server import CLIENT_THREADS_MAX, INTERNAL_WORKERS, WATCH_WORKERS
from dkvs.cli import build_parser, main, resolve, settings_from_values
from dkvs.tools.local_cluster import wait_for

SHORT = 0.3  # seconds: the server-side timeouts used here
WAIT = 10.0  # seconds: the client-side bound on any single read


class BlockingService(FakeService):
    """Writes block until ``release`` is set; ``entered`` counts writes that are blocked."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def put(self, key, value, *, acks, timeout, **kwargs):
        self.entered.release()
        assert self.release.wait(WAIT)
        return super().put(key, value, acks=acks, timeout=timeout)

    def watch_key(self, key, after_seq, wait):
        return {"key": key, "changed": False, "index": 0}


def _http_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("dkvs-http")]


def _closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by WAIT per read)."""
    sock.settimeout(WAIT)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_connection_over_the_cap_gets_503_while_open_ones_keep_working(start_server):
    server = start_server(max_connections=2)
    first = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=WAIT)
    first.connect()  # accepted in this order: first, second, then third over the cap
    second = RawClient(server.url)
    third = RawClient(server.url)
    try:
        first.request("PUT", "/kv/a", body=b"1")
        response = first.getresponse()
        assert response.status == 200 and response.read()
        second.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert second.read_answer().status == 200
        third.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = third.read_answer()
        assert answer.status == 503 and answer.json()["error"] == "too_many_connections"
        assert answer.headers["connection"] == "close" and answer.headers["retry-after"] == "1"
        assert third.at_eof()
        for _ in range(3):  # the open keep-alive connections are still served
            first.request("GET", "/kv/a")
            response = first.getresponse()
            assert response.status == 200 and response.read()
        second.close()  # a slot frees up: a new client is served again
        assert wait_for(lambda: server.connections.live < 2, WAIT)
        assert ApiClient(server.url).request("GET", "/health").status == 200
    finally:
        first.close()
        second.close()
        third.close()


def test_node_to_node_requests_are_served_over_the_cap(start_server):
    # Clients filling the cap must not lock peers out: heartbeats would fail, then elections.
    server = start_server(max_connections=1)
    holder, peer, client = RawClient(server.url), RawClient(server.url), RawClient(server.url)
    try:
        holder.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert holder.read_answer().status == 200
        for _ in range(2):  # the peer's connection stays usable for internal requests
            peer.send(b"POST /internal/raft HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            assert peer.read_answer().status == 200
        client.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.read_answer().json()["error"] == "too_many_connections"
        peer.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # over the cap: internal only
        assert peer.read_answer().status == 503 and peer.at_eof()
    finally:
        for c in (holder, peer, client):
            c.close()


def test_slow_head_gets_408_and_is_closed_after_the_request_timeout(start_server):
    server = start_server(request_timeout_seconds=SHORT)
    client = RawClient(server.url)
    try:
        client.send(b"GET /health HTTP/1.1\r\nHo")  # and never the rest
        answer = client.read_answer()
        assert answer.status == 408 and answer.json()["error"] == "request_timeout"
        assert client.at_eof()
    finally:
        client.close()


def test_two_hundred_slow_clients_hold_no_thread_and_are_all_closed(start_server):
    server = start_server(request_timeout_seconds=SHORT, idle_timeout_seconds=SHORT)
    limit = 1 + CLIENT_THREADS_MAX + INTERNAL_WORKERS + WATCH_WORKERS
    sockets = []
    try:
        for i in range(200):
            sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=WAIT)
            sock.sendall(b"PUT /kv/k HTTP/1.1\r\n" if i % 2 else b"P")  # heads that never end
            sockets.append(sock)
        # A normal client is served meanwhile, and the slow ones took no worker.
        assert ApiClient(server.url).request("GET", "/health").status == 200
        assert len(_http_threads()) <= 2  # the selector and the one worker /health needed
        assert len(_http_threads()) <= limit
        for sock in sockets:
            assert _closed_by_server(sock).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in sockets:
            sock.close()


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(start_server):
    server = start_server(idle_timeout_seconds=SHORT)
    client = RawClient(server.url)
    try:
        client.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.read_answer().status == 200
        assert client.at_eof()  # nothing more sent: the server closes it
    finally:
        client.close()


def test_connection_that_never_sends_a_request_is_closed_after_the_request_timeout(start_server):
    server = start_server(request_timeout_seconds=SHORT)
    fresh = socket.create_connection(("127.0.0.1", server.server_port), timeout=WAIT)
    try:
        assert _closed_by_server(fresh) == b""
    finally:
        fresh.close()


def test_body_slower_than_the_deadline_gets_408(start_server):
    # A long idle timeout: only the request deadline can end this, not the stall rule.
    server = start_server(request_timeout_seconds=SHORT, idle_timeout_seconds=60)
    client = RawClient(server.url)
    try:
        client.send(b"PUT /kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        answer = client.read_answer()
        assert answer.status == 408 and answer.json()["error"] == "request_timeout"
        assert client.at_eof()
    finally:
        client.close()


def test_large_body_read_by_a_worker_keeps_the_deadline_too(start_server, fake):
    # Over the selector's prefetch size, so a worker reads it, under the same rule.
    server = start_server(fake, request_timeout_seconds=SHORT, idle_timeout_seconds=60)
    client = RawClient(server.url)
    try:
        client.send(b"POST /internal/raft HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n"
                    + b"x" * 1024)
        answer = client.read_answer()
        assert answer.status == 408 and answer.json()["error"] == "request_timeout"
    finally:
        client.close()
    assert fake.calls == []


def test_internal_requests_and_watches_are_served_while_every_client_worker_is_blocked(start_server):
    service = BlockingService()
    server = start_server(service, client_workers=2)
    api = ApiClient(server.url)
    results: list[int] = []
    writers = [threading.Thread(target=lambda i=i: results.append(api.request("PUT", f"/kv/b{i}", b"v").status))
               for i in range(3)]
    try:
        for writer in writers:
            writer.start()
        for _ in range(2):  # both client workers are now stuck in the service
            assert service.entered.acquire(timeout=WAIT)
        answer = api.request("POST", "/internal/raft", b"{}")
        assert answer.status == 200 and answer.json()["path"] == "raft"
        watch = api.request("GET", "/kv/w?wait=5")
        assert watch.status == 200 and watch.json()["changed"] is False
        assert results == []  # the writes are still blocked, the third one queued
    finally:
        service.release.set()
        for writer in writers:
            writer.join(WAIT)
    assert results == [200, 200, 200]


def test_pipelined_requests_are_all_answered_in_order(server, raw):
    client = raw(server)
    client.send(b"PUT /kv/p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nv1"
                b"GET /kv/p HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.read_answer().status == 200
    assert client.read_answer().json()["value"] == "v1"
    assert client.read_answer().status == 200


@pytest.mark.parametrize("argv", [["--max-connections", "0"], ["--max-connections", "x"],
                                  ["--request-timeout", "-1"], ["--idle-timeout", "nan"]])
def test_bad_limit_flags_are_one_line_and_exit_2(argv, capsys):
    assert _exit_status(main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dkvs: error: " + argv[0])


def _exit_status(main, argv) -> int:
    try:
        return main(argv)
    except SystemExit as stopped:
        return stopped.code


def test_bad_limit_from_the_environment_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("DKVS_IDLE_TIMEOUT", "soon")
    assert _exit_status(main, []) == 2 and "DKVS_IDLE_TIMEOUT" in capsys.readouterr().err


def test_limit_flags_and_env_reach_the_settings(monkeypatch):
    monkeypatch.setenv("DKVS_REQUEST_TIMEOUT", "2.5")
    settings = settings_from_values(resolve(build_parser().parse_args(["--max-connections", "7",
                                                                       "--idle-timeout", "9"])))
    assert (settings.max_connections, settings.request_timeout, settings.idle_timeout) == (7, 2.5, 9.0)
    monkeypatch.delenv("DKVS_REQUEST_TIMEOUT")
    defaults = settings_from_values(resolve(build_parser().parse_args([])))
    assert (defaults.max_connections, defaults.idle_timeout) == (1024, 60.0)


def test_a_hot_connection_does_not_keep_the_only_worker_from_others(start_server):
    # One client worker; A sends back to back. Its worker may serve A's next request
    # itself only while nobody else waits, so B is answered while A is still going.
    server = start_server(client_workers=1)
    b_done = threading.Event()
    a_requests = []

    def run_a() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=WAIT)
        try:
            while not b_done.is_set() and len(a_requests) < 20000:
                conn.request("GET", "/health")
                conn.getresponse().read()
                a_requests.append(1)
        finally:
            conn.close()

    a = threading.Thread(target=run_a)
    a.start()
    try:
        assert wait_for(lambda: len(a_requests) >= 20, WAIT)
        assert ApiClient(server.url).request("GET", "/health").status == 200
    finally:
        b_done.set()
        a.join(WAIT)
    assert len(a_requests) < 20000


def test_keep_alive_pipelining_and_idle_close_without_epoll(start_server, monkeypatch):
    import dkvs.api.connections as connections
    from dkvs.api.poller import OneShotPoller

    monkeypatch.setattr(connections, "OneShotPoller", lambda: OneShotPoller(use_epoll=False))
    server = start_server(idle_timeout_seconds=SHORT)
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=WAIT)
    try:
        for i in range(20):
            conn.request("PUT", f"/kv/e{i}", body=b"v")
            response = conn.getresponse()
            assert response.status == 200 and response.read()
    finally:
        conn.close()
    client = RawClient(server.url)
    try:
        client.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /kv/e3 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.read_answer().status == 200
        assert client.read_answer().json()["value"] == "v"
        assert client.at_eof()  # then idle: closed after the idle timeout
    finally:
        client.close()


def test_a_worker_waiting_on_a_forward_lends_its_place(start_server):
    # The slave's only client worker forwards a write to a master that hangs; the slave
    # still answers its other clients, because a forward waits on the network, not the CPU.
    master_service = BlockingService()
    master = start_server(master_service)
    slave_service = FakeService(node_id="slave")
    slave_service.raise_not_master = master.url
    slave = start_server(slave_service, client_workers=1)
    api = ApiClient(slave.url)
    result: list[int] = []
    writer = threading.Thread(target=lambda: result.append(api.request("PUT", "/kv/f", b"v").status))
    writer.start()
    try:
        assert master_service.entered.acquire(timeout=WAIT)  # the forward is in flight
        assert api.request("GET", "/health").status == 200
        assert result == []
    finally:
        master_service.release.set()
        writer.join(WAIT)
    assert result == [200]


@pytest.mark.parametrize("head, expected", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0),
    (b"PUT /kv/a HTTP/1.1\r\ncontent-LENGTH:  12 \r\n\r\n", 12),
    (b"PUT /kv/a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", None),  # the handler decides
    (b"PUT /kv/a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", None),
    (b"PUT /kv/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", None),
    (b"PUT /kv/a HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", None),
])
def test_the_selector_prefetches_only_plainly_framed_bodies(head, expected):
    from dkvs.api.prefetch import framing, head_length

    assert head_length(bytearray(head + b"body"), 0) == len(head)
    assert framing(head) == expected


def test_stop_lets_a_busy_worker_finish_its_answer_then_closes(start_server):
    service = BlockingService()
    server = start_server(service)
    client = RawClient(server.url)
    stopper = threading.Thread(target=server.stop)
    try:
        client.send(b"PUT /kv/s HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv")
        assert service.entered.acquire(timeout=WAIT)  # the worker is inside the service
        stopper.start()
        assert wait_for(lambda: server.stopping, WAIT)
        service.release.set()
        answer = client.read_answer()
        assert answer.status == 200 and answer.headers["connection"] == "close"
        assert client.at_eof()
    finally:
        service.release.set()
        stopper.join(WAIT)
        client.close()
    assert not stopper.is_alive()
