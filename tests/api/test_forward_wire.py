"""The forwarder's own HTTP/1.1 exchange reads every answer framing a peer may send.

A scripted peer (a plain socket on 127.0.0.1:0, one thread, bounded waits) answers each
request with canned bytes, so the framings dkvs itself never produces — chunked bodies,
close-delimited bodies, ``100 Continue`` before the answer, garbage — are covered too.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from dkvs.api.forward import Forwarder
from dkvs.errors import NoMaster

WAIT_SECONDS = 10.0


class ScriptedPeer:
    """Accepts connections and answers the n-th request with ``answers[n]`` (bytes), then
    closes the connection if the answer is followed by ``None`` in the script."""

    def __init__(self, answers: list) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(WAIT_SECONDS)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            while self.answers:
                conn, _ = self.listener.accept()
                self.connections += 1
                with conn:
                    conn.settimeout(WAIT_SECONDS)
                    while self.answers:
                        request = self._read_request(conn)
                        if request is None:
                            break
                        self.requests.append(request)
                        conn.sendall(self.answers.pop(0))
                        if self.answers and self.answers[0] is None:
                            self.answers.pop(0)
                            break
        except OSError:
            pass

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)
        return data

    def close(self) -> None:
        self.listener.close()
        self.thread.join(WAIT_SECONDS)


@pytest.fixture
def peer():
    peers = []

    def start(answers):
        peers.append(ScriptedPeer(answers))
        return peers[-1]

    yield start
    for p in peers:
        p.close()


def test_chunked_answer_is_joined_and_the_connection_reused(peer):
    p = peer([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Dkvs-Seq: 7\r\n\r\n"
              b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n",
              b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nno"])
    forwarder = Forwarder()
    try:
        first = forwarder.forward(p.url, "PUT", "/kv/a?acks=1", b"v", {"X-Dkvs-Secret": "s"}, WAIT_SECONDS)
        second = forwarder.forward(p.url, "GET", "/kv/b", None, {}, WAIT_SECONDS)
    finally:
        forwarder.close()
    assert (first.status, first.body, first.headers) == (200, b"abcde", (("X-Dkvs-Seq", "7"),))
    assert (second.status, second.body, second.content_type) == (404, b"no", "text/plain")
    assert p.connections == 1
    put = p.requests[0]
    assert put.startswith(b"PUT /kv/a?acks=1 HTTP/1.1\r\n") and put.endswith(b"\r\n\r\nv")
    assert b"\r\nContent-Length: 1\r\n" in put and b"\r\nX-Dkvs-Forwarded: 1\r\n" in put
    assert b"\r\nX-Dkvs-Secret: s\r\n" in put
    assert b"Content-Length" not in p.requests[1]  # a GET without a body


def test_continue_is_skipped_and_a_close_delimited_body_read_to_the_end(peer):
    p = peer([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\n{\"a\": 1}", None])
    forwarder = Forwarder()
    try:
        reply = forwarder.forward(p.url, "POST", "/internal/x", b"", {}, WAIT_SECONDS)
    finally:
        forwarder.close()
    assert (reply.status, reply.body) == (200, b'{"a": 1}')
    assert b"\r\nContent-Length: 0\r\n" in p.requests[0]


def test_a_peer_that_closes_a_reused_connection_gets_the_request_once_more(peer):
    p = peer([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", None,
              b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"])
    forwarder = Forwarder()
    try:
        assert forwarder.forward(p.url, "GET", "/health", None, {}, WAIT_SECONDS).status == 200
        assert forwarder.forward(p.url, "GET", "/health", None, {}, WAIT_SECONDS).status == 201
    finally:
        forwarder.close()
    assert p.connections == 2


@pytest.mark.parametrize("answer", [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 2000 Huge\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_garbage_answers_are_no_master(peer, answer):
    p = peer([answer, None])
    forwarder = Forwarder()
    try:
        with pytest.raises(NoMaster):
            forwarder.forward(p.url, "GET", "/kv/a", None, {}, WAIT_SECONDS)
    finally:
        forwarder.close()


def test_a_request_that_cannot_be_sent_is_answered_400_not_a_crash_nor_a_retry_hint():
    forwarder = Forwarder()  # nothing is sent: port 9 is never contacted
    for headers, target in (({"X-Dkvs-Note": "€"}, "/kv/a"), ({}, "/kv/a b"), ({}, "/kv/\u00e9")):
        reply = forwarder.forward("http://127.0.0.1:9", "PUT", target, b"v", headers, 1.0)
        assert reply.status == 400 and json.loads(reply.body)["error"] == "bad_request"

