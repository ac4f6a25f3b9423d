"""The selector load engine frames answers right, names failures, reconnects, and drives dkvs.

Three layers: the answer parser fed byte by byte (pure, no socket); the :class:`WireLoop`
against a scripted 127.0.0.1 server whose every path is one way of answering (keep-alive
Content-Length, chunked with extensions and trailers, ``Connection: close``, a body ended
by the close, a connection dropped before or within the answer, a hang); and a load worker
with each engine against a real 1-node dkvs, for GET and PUT. Every request is counted, not
timed: the outcome does not depend on the machine's speed.
"""

from __future__ import annotations

import http.client
import queue
import socket
import threading
import time
from array import array
from multiprocessing import Pipe

import pytest

from dkvs.tools.bench.load import ENGINES, LoadSpec, worker_main
from dkvs.tools.bench.runner import run_once
from dkvs.tools.bench.targets import StartedCluster
from dkvs.tools.bench.wire_load import AnswerReader, BadAnswer, WireConnection, WireLoop, render_request

JOIN_SECONDS = 30.0  # liveness bounds only
WORKER_SECONDS = 120.0

CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n")
ANSWERS = {  # path → bytes to send back, and whether to close the connection afterwards
    "/ok": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Other: a:b\r\n\r\nhello", False),
    "/missing": (b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}", False),
    "/chunked": (CHUNKED, False),
    "/empty": (b"HTTP/1.1 204 No Content\r\n\r\n", False),
    "/continue": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    "/close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", True),
    "/until-close": (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body ends with the connection", True),
    "/drop-within": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", True),
    "/drop-before": (b"", True),
    "/garbage": (b"SPAM\r\n\r\n", True),
}


class ScriptedServer:
    """127.0.0.1, port 0; one thread per connection; answers by path (``ANSWERS``).
    ``/hang`` never answers (until the server closes). ``accepted`` counts connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self.bodies: list[bytes] = []
        self.closing = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as rfile:
            while True:
                line = rfile.readline()
                if not line:
                    return
                path = line.split()[1].decode()
                length = 0
                while (header := rfile.readline()) not in (b"\r\n", b""):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                self.bodies.append(rfile.read(length))
                if path == "/hang":
                    self.closing.wait(JOIN_SECONDS)
                    return
                answer, close = ANSWERS[path]
                conn.sendall(answer)
                if close:
                    return

    def close(self) -> None:
        self.closing.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (Linux); close alone does not
        except OSError:
            pass
        self.sock.close()
        for thread in self.threads:
            thread.join(JOIN_SECONDS)


@pytest.fixture
def server():
    s = ScriptedServer()
    yield s
    s.close()


class ScriptClient:
    """Sends ``requests`` in order, one at a time; keeps every (status, started, finished)."""

    def __init__(self, requests: list[tuple[WireConnection, bytes]]) -> None:
        self.requests = requests
        self.answers: list[tuple] = []

    def next_request(self):
        return self.requests[len(self.answers)] if len(self.answers) < len(self.requests) else None

    def on_answer(self, status, started, finished) -> None:
        self.answers.append((status, started, finished))

    @property
    def statuses(self) -> list:
        return [a[0] for a in self.answers]


def get(conn: WireConnection, path: str) -> tuple[WireConnection, bytes]:
    return conn, render_request("GET", path, None, conn.address[0])


def run(*clients: ScriptClient) -> None:
    loop = WireLoop(clients, error_pause=0.0)
    try:
        loop.run()
    finally:
        loop.close()


# --- the answer parser, pure ------------------------------------------------------------

def feed_bytewise(answer: bytes, reader: AnswerReader | None = None) -> tuple[int | None, AnswerReader]:
    reader = reader or AnswerReader()
    reader.start()
    for i in range(len(answer)):
        status = reader.feed(answer[i:i + 1])
        if status is not None:
            assert i == len(answer) - 1, "complete before its last byte"
            return status, reader
    return None, reader


@pytest.mark.parametrize("path", ["/ok", "/missing", "/chunked", "/empty", "/continue", "/close"])
def test_answers_split_anywhere_complete_exactly_at_their_last_byte(path):
    answer, close = ANSWERS[path]
    status, reader = feed_bytewise(answer)
    assert status == int(answer.rsplit(b"HTTP/1.1 ", 1)[1][:3])
    assert reader.will_close is close and not reader.buf


def test_a_body_without_length_ends_with_the_connection():
    reader = AnswerReader()
    reader.start()
    assert reader.feed(ANSWERS["/until-close"][0]) is None
    assert reader.end() == 200 and reader.will_close


def test_two_answers_in_one_read_are_taken_one_at_a_time():
    reader = AnswerReader()
    reader.start()
    assert reader.feed(ANSWERS["/ok"][0] + CHUNKED[:20]) == 200
    reader.start()
    assert reader.feed(CHUNKED[20:]) == 200 and not reader.buf


@pytest.mark.parametrize("answer, name", [
    (b"SPAM\r\n\r\n", "BadStatusLine"),
    (b"HTTP/1.1 abc OK\r\n\r\n", "BadStatusLine"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "BadHeader"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "BadHeader"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "BadChunkSize"),
])
def test_bad_answers_are_named(answer, name):
    reader = AnswerReader()
    reader.start()
    with pytest.raises(BadAnswer) as caught:
        reader.feed(answer)
    assert caught.value.args[0] == name


def test_a_cut_answer_is_named_by_where_it_was_cut():
    reader = AnswerReader()
    reader.start()
    with pytest.raises(BadAnswer, match="RemoteDisconnected"):
        reader.end()
    reader.start()
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(BadAnswer, match="IncompleteRead"):
        reader.end()


class _CapturingConnection(http.client.HTTPConnection):
    """An http.client connection that records what it would write, and writes nothing."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 7070)
        self.sock, self.sent = object(), []

    def send(self, data) -> None:
        self.sent.append(bytes(data))


@pytest.mark.parametrize("method, target, body", [
    ("GET", "/kv/k1", None), ("GET", "/kv/k1?consistent=true", None), ("PUT", "/kv/k1?acks=1", b"vv"),
    ("PUT", "/kv/k1", None), ("POST", "/v3/kv/range", b'{"key": "azE="}')])
def test_requests_are_byte_for_byte_what_http_client_sends(method, target, body):
    conn = _CapturingConnection()
    conn.request(method, target, body)
    assert render_request(method, target, body, "127.0.0.1:7070") == b"".join(conn.sent)


# --- the loop against a scripted server --------------------------------------------------

def test_keep_alive_answers_of_every_framing_on_one_connection(server):
    conn = WireConnection(server.url)
    paths = ["/ok", "/chunked", "/missing", "/empty", "/continue", "/ok"] * 5
    client = ScriptClient([get(conn, p) for p in paths])
    run(client)
    assert client.statuses == [200, 200, 404, 204, 200, 200] * 5
    assert server.accepted == 1 and conn.reconnects == 0
    assert all(finished >= started for _, started, finished in client.answers)


def test_connection_close_and_a_body_ended_by_close_reopen_the_connection(server):
    conn = WireConnection(server.url)
    client = ScriptClient([get(conn, p) for p in ["/close", "/ok", "/until-close", "/ok", "/close"]])
    run(client)
    assert client.statuses == [200] * 5
    assert conn.reconnects == 3 and server.accepted == 3


def test_dropped_connections_are_named_counted_and_reopened(server):
    conn = WireConnection(server.url)
    client = ScriptClient([get(conn, p) for p in ["/ok", "/drop-within", "/ok", "/drop-before", "/garbage", "/ok"]])
    run(client)
    assert client.statuses == [200, "IncompleteRead", 200, "RemoteDisconnected", "BadStatusLine", 200]
    assert conn.reconnects == 3 and server.accepted == 4


def test_a_hung_request_times_out_by_name(server):
    conn = WireConnection(server.url, timeout=0.2)
    client = ScriptClient([get(conn, "/hang"), get(conn, "/ok")])
    run(client)
    assert client.statuses == ["TimeoutError", 200] and conn.reconnects == 1


def test_a_refused_connection_is_an_answer_named_by_its_error():
    probe = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    probe.close()  # nothing listens there now
    conn = WireConnection(url)
    client = ScriptClient([get(conn, "/ok")] * 3)
    run(client)
    assert client.statuses == ["ConnectionRefusedError"] * 3 and conn.reconnects == 3


def test_many_clients_and_two_connections_per_client_share_one_loop(server):
    clients = []
    for _ in range(4):
        reader, writer = WireConnection(server.url), WireConnection(server.url)
        clients.append(ScriptClient(
            [(writer, render_request("PUT", "/ok", b"v" * 300, "x")) if i % 3 == 0 else get(reader, "/chunked")
             for i in range(30)]))
    run(*clients)
    for client in clients:
        assert client.statuses == [200] * 30
    assert server.accepted == 8
    assert server.bodies.count(b"v" * 300) == 4 * 10


# --- the load worker, both engines, against a real node ---------------------------------

def run_worker(spec: LoadSpec, window_seconds: float = 0.5) -> dict:
    """One load worker in this process: ready, go, done (liveness bounds only)."""
    here, there = Pipe()
    results: queue.Queue = queue.Queue()
    thread = threading.Thread(target=worker_main, args=(spec, 0, there, results), daemon=True)
    thread.start()
    try:
        kind, _, populate_errors = results.get(timeout=WORKER_SECONDS)
        assert kind == "ready" and populate_errors == {}
        start = time.monotonic()
        here.send(("go", start + 0.1, start + 0.1 + window_seconds))
        kind, _, payload = results.get(timeout=WORKER_SECONDS)
        assert kind == "done", payload
        return payload
    finally:
        here.close()
        thread.join(WORKER_SECONDS)


@pytest.fixture(scope="module")
def node():
    with StartedCluster(1) as cluster:
        yield cluster.target()


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("workload", ["get", "put"])
def test_worker_measures_a_real_node(node, engine, workload):
    spec = LoadSpec(workload=workload, keys=50, value_size=10, acks="1", read_ratio=1.0,
                    write_url=node.write_url, read_urls=node.read_urls, concurrency=3, processes=1,
                    populate=workload == "get", client_engine=engine)
    payload = run_worker(spec)
    latencies = array("d")
    latencies.frombytes(payload["latencies"])
    assert len(latencies) > 0 and min(latencies) > 0
    assert payload["errors"] == {} and payload["warmup_errors"] == 0 and payload["reconnects"] == 0


def test_a_run_through_the_runner_uses_the_selector_engine_by_default(node):
    spec = LoadSpec(workload="get", keys=20, value_size=10, acks="1", read_ratio=1.0,
                    write_url=node.write_url, read_urls=node.read_urls, concurrency=2, processes=1,
                    populate=True)
    assert spec.client_engine == "selector"
    summary = run_once(node, spec, None, warmup=0.1, duration=0.3)
    assert summary["ops"] > 0 and summary["error_count"] == 0 and summary["reconnects"] == 0
    with pytest.raises(ValueError):
        LoadSpec(**{**spec.__dict__, "client_engine": "curl"})
