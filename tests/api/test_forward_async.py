"""Forwarder.forward_async on the wire: pipelined requests, answers matched in order,
``Connection: close`` resends what was queued behind it, failures become NoMaster."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from fake_service import FakeService

from dkvs.api.forward import Forwarder
from dkvs.errors import NoMaster

BOUND_SECONDS = 10.0


class Outcomes:
    """Collects ``done`` calls; ``wait(n)`` blocks (bounded) until n arrived."""

    def __init__(self) -> None:
        self.got: list = []
        self._cond = threading.Condition()

    def done(self, tag):
        def called(reply, failure) -> None:
            with self._cond:
                self.got.append((tag, reply, failure))
                self._cond.notify_all()
        return called

    def wait(self, n: int) -> list:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.got) >= n, BOUND_SECONDS), self.got
            return list(self.got)


class ScriptedNode:
    """A listening socket whose connections each run ``script(sock)`` on a thread."""

    def __init__(self, script) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = 0
        self._script = script
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.settimeout(BOUND_SECONDS)
            self.accepted += 1
            self._socks.append(sock)
            thread = threading.Thread(target=self._script, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def close(self) -> None:
        for sock in [self.listener, *self._socks]:  # shutdown wakes a blocked accept/recv
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(BOUND_SECONDS)
        self._acceptor.join(BOUND_SECONDS)


def read_requests(sock: socket.socket, n: int) -> list[bytes]:
    """The heads of ``n`` body-less requests (bodies here are ``Content-Length: 1``)."""
    buf, heads = b"", []
    while len(heads) < n:
        while b"\r\n\r\n" not in buf:
            try:
                data = sock.recv(65536)
            except OSError:  # closed by the test
                return heads
            if not data:
                return heads
            buf += data
        head, _, buf = buf.partition(b"\r\n\r\n")
        if b"content-length: 1" in head.lower():
            while not buf:
                buf += sock.recv(65536)
            buf = buf[1:]
        heads.append(head)
    return heads


def answer(status: int, body: bytes = b"{}", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.fixture
def forwarder():
    made = Forwarder(connect_timeout_seconds=2)
    yield made
    made.close()


def test_many_writes_in_flight_reach_the_master_and_each_gets_its_own_answer(start_server):
    master_fake = FakeService(node_id="master")
    master = start_server(master_fake)
    forwarder = Forwarder(max_pipelines_per_target=3)
    outcomes = Outcomes()
    try:
        for i in range(60):
            forwarder.forward_async(master.url, "PUT", f"/kv/k{i}", f"v{i}".encode(), {}, 5,
                                    outcomes.done(i))
        got = outcomes.wait(60)
    finally:
        forwarder.close()
    for tag, reply, failure in got:
        assert failure is None and reply.status == 200
        assert json.loads(reply.body)["key"] == f"k{tag}"  # matched to their own requests
    stored = {key: value for key, (value, _) in master_fake.snapshot()[0].items()}
    assert stored == {f"k{i}": f"v{i}" for i in range(60)}


def test_relayed_headers_and_the_forwarded_mark(forwarder):
    seen = []

    def script(sock):
        seen.extend(read_requests(sock, 1))
        sock.sendall(answer(200, b'{"seq": 7}', "X-Dkvs-Seq: 7\r\nRetry-After: 2\r\nX-Other: no\r\n"))

    node = ScriptedNode(script)
    outcomes = Outcomes()
    try:
        forwarder.forward_async(node.url, "PUT", "/kv/a?acks=1", b"v",
                                {"Authorization": "Bearer t", "X-Dkvs-Secret": "s", "Cookie": "c"},
                                5, outcomes.done("a"))
        (_, reply, failure), = outcomes.wait(1)
    finally:
        node.close()
    assert failure is None and reply.status == 200 and reply.body == b'{"seq": 7}'
    assert dict(reply.headers) == {"X-Dkvs-Seq": "7", "Retry-After": "2"}
    head = seen[0].decode()
    assert head.startswith("PUT /kv/a?acks=1 HTTP/1.1\r\n")
    for line in ("X-Dkvs-Forwarded: 1", "Authorization: Bearer t", "X-Dkvs-Secret: s",
                 "Content-Length: 1"):
        assert line in head
    assert "Cookie" not in head


def test_requests_queued_behind_a_connection_close_are_resent_once(forwarder):
    forwarder.max_pipelines_per_target = 1  # both requests share one connection

    def script(sock):
        if node.accepted == 1:  # the first connection: answer one of two, then close
            read_requests(sock, 2)
            sock.sendall(answer(200, b'{"n": 1}', "Connection: close\r\n"))
            sock.close()
            return
        read_requests(sock, 1)
        sock.sendall(answer(200, b'{"n": 2}'))

    node = ScriptedNode(script)
    outcomes = Outcomes()
    try:
        # Both written before the node reads: the second is queued behind the close.
        forwarder.forward_async(node.url, "PUT", "/kv/a", b"1", {}, 5, outcomes.done("first"))
        forwarder.forward_async(node.url, "PUT", "/kv/b", b"2", {}, 5, outcomes.done("second"))
        got = sorted(outcomes.wait(2))
    finally:
        node.close()
    assert [(tag, reply.body, failure) for tag, reply, failure in got] == [
        ("first", b'{"n": 1}', None), ("second", b'{"n": 2}', None)]
    assert node.accepted == 2


def test_a_refused_connection_is_no_master_with_retry_after(forwarder):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    outcomes = Outcomes()
    for target in (url, "ftp://example.invalid", "not a url"):
        forwarder.forward_async(target, "PUT", "/kv/a", b"v", {}, 5, outcomes.done(target))
    for _, reply, failure in outcomes.wait(3):
        assert reply is None and isinstance(failure, NoMaster) and failure.retry_after >= 1


def test_a_master_that_does_not_answer_in_time_fails_the_request(forwarder):
    forwarder.pipeline_idle_close_seconds = 0.2  # also how often deadlines are checked
    node = ScriptedNode(lambda sock: read_requests(sock, 2))  # reads, never answers
    outcomes = Outcomes()
    try:
        forwarder.forward_async(node.url, "PUT", "/kv/a", b"v", {}, 0.05, outcomes.done("a"))
        (_, reply, failure), = outcomes.wait(1)
    finally:
        node.close()
    assert reply is None and "in time" in failure.message


@pytest.mark.parametrize("garbage", [b"SMTP ready\r\n\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"])
def test_a_broken_answer_is_no_master(forwarder, garbage):
    def script(sock):
        read_requests(sock, 1)
        sock.sendall(garbage)

    node = ScriptedNode(script)
    outcomes = Outcomes()
    try:
        forwarder.forward_async(node.url, "DELETE", "/kv/a", None, {}, 5, outcomes.done("a"))
        (_, reply, failure), = outcomes.wait(1)
    finally:
        node.close()
    assert reply is None and "broken answer" in failure.message


def test_an_interim_answer_is_skipped(forwarder):
    def script(sock):
        read_requests(sock, 1)
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(404, b'{"error": "key_not_found"}'))

    node = ScriptedNode(script)
    outcomes = Outcomes()
    try:
        forwarder.forward_async(node.url, "DELETE", "/kv/a", None, {}, 5, outcomes.done("a"))
        (_, reply, failure), = outcomes.wait(1)
    finally:
        node.close()
    assert failure is None and reply.status == 404


def test_after_close_forward_async_answers_no_master(forwarder, start_server):
    master = start_server()
    forwarder.close()
    outcomes = Outcomes()
    forwarder.forward_async(master.url, "PUT", "/kv/a", b"v", {}, 5, outcomes.done("a"))
    (_, reply, failure), = outcomes.wait(1)
    assert reply is None and isinstance(failure, NoMaster)


def test_stopping_a_slave_with_a_write_in_flight_closes_its_client_connection(start_server):
    # Proves a detached request is not lost at shutdown: the forward in flight fails, its
    # answer cannot be handed to a worker any more, and the client's connection closes.
    received = threading.Event()

    def script(sock):
        read_requests(sock, 1)
        received.set()
        read_requests(sock, 1)  # never answers; ends when the connection closes

    node = ScriptedNode(script)
    fake = FakeService()
    fake.raise_not_master = node.url
    slave = start_server(fake)
    client = socket.create_connection(("127.0.0.1", slave.server_port), timeout=BOUND_SECONDS)
    try:
        client.sendall(b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv")
        assert received.wait(BOUND_SECONDS)
        slave.stop()
        answer = b""
        while True:
            data = client.recv(65536)
            if not data:
                break
            answer += data
    finally:
        client.close()
        node.close()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 503")


def test_an_idle_pipelined_connection_is_closed_and_replaced(forwarder, start_server):
    forwarder.pipeline_idle_close_seconds = 0.05
    master = start_server()
    outcomes = Outcomes()
    forwarder.forward_async(master.url, "PUT", "/kv/a", b"1", {}, 5, outcomes.done("first"))
    outcomes.wait(1)
    threads = lambda: [t for t in threading.enumerate() if t.name.startswith("dkvs-http-forward")]
    deadline_wait = threading.Event()
    for _ in range(int(BOUND_SECONDS / 0.05)):  # bounded wait for the idle close
        if not threads():
            break
        deadline_wait.wait(0.05)
    assert not threads()
    forwarder.forward_async(master.url, "PUT", "/kv/b", b"2", {}, 5, outcomes.done("second"))
    assert [(tag, reply.status) for tag, reply, _ in outcomes.wait(2)] == [("first", 200), ("second", 200)]
    forwarder.close()  # before the server fixture checks that no thread of ours is left
