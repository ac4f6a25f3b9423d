"""Writes in the fast lane (dkvs.api.fast_lane): checked on the thread holding the
connection, proposed without a waiting thread, answered by whoever completes them.

The HTTP side is tested around a fake whose ``write_async`` completes writes now, later
from another thread, or refuses them before proposing (the lane must then hand the request,
unread, to a worker). Each answer must equal the worker path's, byte for byte but the
``Date``. The node side (``NodeService.write_async``, ``NodeHost.propose_async``) is
tested on a real in-memory node.
"""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from api_clients import RawClient, answer_without_date, key_path
from fake_service import UNSET, FakeService

from dkvs.api.service import NotMaster
from dkvs.errors import DkvsError
from dkvs.tools.local_cluster import wait_for


class AsyncFake(FakeService):
    """A fake that also takes writes without a waiting thread, like NodeService."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "now"  # "now", "later" (answered by another thread), "redo" (refused unproposed)
        self.async_writes = 0
        self.async_reads = 0
        self.threads: list[threading.Thread] = []

    def write_async(self, write: tuple, on_answer) -> bool:
        if self.raise_not_master is not UNSET:
            return False  # not the master: the worker path forwards
        self.async_writes += 1
        if self.mode == "redo":
            on_answer(None)
            return True
        if self.mode == "later":
            thread = threading.Thread(target=lambda: on_answer(self._run(write)))
            self.threads.append(thread)
            thread.start()
            return True
        on_answer(self._run(write))
        return True

    def read_async(self, key: str, on_answer) -> bool:
        if self.raise_not_master is not UNSET:
            return False
        self.async_reads += 1
        if self.mode == "redo":
            on_answer(None)
            return True

        def read():
            try:
                return self.get(key, consistent=True)
            except DkvsError as exc:
                return exc

        if self.mode == "later":
            thread = threading.Thread(target=lambda: on_answer(read()))
            self.threads.append(thread)
            thread.start()
            return True
        on_answer(read())
        return True

    def _run(self, write: tuple):
        op, key, value, acks, timeout, cond = write
        try:
            if op == "put":
                return self.put(key, value, acks=acks, timeout=timeout, if_seq=cond)
            return self.delete(key, acks=acks, timeout=timeout, if_seq=cond)
        except NotMaster:
            return None
        except DkvsError as exc:
            return exc


REQUESTS = [
    b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"PUT /kv/a?acks=majority&timeout=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo",
    b"PUT /kv/a?if_seq=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
    b"PUT /kv/a?acks=bogus HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
    b"PUT /kv/a?nope=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
    b"PUT /kv/" + b"k" * 300 + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
    b"PUT /kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n" + b"v" * 1048577,
    b"PUT /kv/bin HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 2\r\n\r\n\xff\xfe",
    b"PUT /kv/utf HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n\xff\xfe",
    b"PUT /kv/" + key_path("dir/é").encode()[4:] + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\ny",
    b"DELETE /kv/a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /kv/a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /kv/utf?if_seq=99 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PUT /kv/nolength HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
    b"PUT /kv/t?ttl=5 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
    b"GET /kv/utf?consistent=true HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /kv/gone?consistent=true HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /kv/utf?consistent=true&wait=1 HTTP/1.1\r\nHost: x\r\n\r\n",
]


def _answer_of(server, request: bytes) -> bytes:
    return answer_without_date(server.url, request)


@pytest.fixture
def twins(start_server):
    """Two servers around identical fakes: the lane on one, off on the other."""
    fast, slow = AsyncFake(), AsyncFake()
    fast_server, slow_server = start_server(fast), start_server(slow)
    slow_server.fast_lane.enabled = False
    return (fast_server, fast), (slow_server, slow)


@pytest.mark.parametrize("mode", ["now", "later"])
def test_writes_through_the_lane_are_answered_as_through_a_worker(twins, mode):
    (fast_server, fast), (slow_server, slow) = twins
    fast.mode = mode
    for request in REQUESTS:
        assert _answer_of(fast_server, request) == _answer_of(slow_server, request), request[:60]
    assert fast.snapshot() == slow.snapshot()
    assert fast.async_writes >= 8 and slow.async_writes == 0
    assert fast.async_reads == 2 and slow.async_reads == 0
    for thread in fast.threads:
        thread.join(5)


def test_a_write_refused_before_proposing_is_redone_by_a_worker(twins):
    (fast_server, fast), (slow_server, slow) = twins
    fast.mode = "redo"
    for request in REQUESTS[:3] + REQUESTS[-3:-1]:
        assert _answer_of(fast_server, request) == _answer_of(slow_server, request)
    assert fast.snapshot() == slow.snapshot()
    assert fast_server.fast_lane.redone == 5


def test_pipelined_writes_and_reads_keep_their_order(twins):
    (server, fake), _ = twins
    fake.mode = "later"
    client = RawClient(server.url)
    try:
        client.send(b"PUT /kv/p HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1"
                    b"GET /kv/p HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"PUT /kv/p HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n2"
                    b"GET /kv/p HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = [client.read_answer() for _ in range(4)]
    finally:
        client.close()
    assert [a.status for a in answers] == [200] * 4
    assert answers[1].json()["value"] == "1" and answers[3].json()["value"] == "2"
    assert answers[0].headers["x-dkvs-seq"] == str(answers[0].json()["seq"])


def test_a_slave_forwards_instead(start_server):
    fake = AsyncFake()
    fake.raise_not_master = None  # NotMaster(None): no master known, 503
    server = start_server(fake)
    answer = _answer_of(server, REQUESTS[0])
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert fake.async_writes == 0


# --- the node side -------------------------------------------------------------------------

@pytest.fixture
def node():
    from dkvs.runtime.app import DkvsNode, Settings
    running = DkvsNode(Settings(port=0)).start()
    yield running
    running.stop()


def test_a_node_answers_lane_writes_and_counts_them(node):
    port = int(node.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for i in range(20):
            conn.request("PUT", f"/kv/n{i}?acks=majority", b"v%d" % i)
            response = conn.getresponse()
            assert response.status == 200, response.read()
            response.read()
        conn.request("GET", "/kv/n7")
        assert conn.getresponse().read() == b'{"key":"n7","value":"v7","seq":%d}' % (7 + 2)
    finally:
        conn.close()
    assert node.server.fast_lane.served >= 21


def test_a_node_answers_consistent_reads_in_the_lane(node):
    port = int(node.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    before = node.server.fast_lane.served
    try:
        conn.request("PUT", "/kv/c", b"fresh")
        assert conn.getresponse().read().startswith(b'{"key":"c"')
        conn.request("GET", "/kv/c?consistent=true")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b'{"key":"c","value":"fresh","seq":2}')
        conn.request("GET", "/kv/none?consistent=true")
        response = conn.getresponse()
        assert response.status == 404 and b"key_not_found" in response.read()
    finally:
        conn.close()
    assert node.server.fast_lane.served == before + 3


def test_a_raising_answer_callback_does_not_stop_the_node(node):
    done = threading.Event()

    def boom(outcome):
        done.set()
        raise RuntimeError("a caller's bug")

    node.host.propose_async("put", "cb", "1", "1", 5.0, None, boom)
    assert done.wait(10)
    assert node.host.failed is None
    assert node.server.service.get("cb", consistent=False)["value"] == "1"


def test_write_async_hands_back_a_write_refused_during_a_handover(node):
    from dkvs.core.transfer import TRANSFER_IN_PROGRESS
    from dkvs.runtime.lane_requests import write_async

    class Refusing:
        """The node's host, except that every proposal is refused as during a handover."""

        def __init__(self, host):
            self.node = host.node

        def propose_async(self, op, key, value, acks, timeout, cond, on_done):
            outcome = type("O", (), {"error": TRANSFER_IN_PROGRESS, "result": None, "rejected": None})()
            on_done(outcome)

    service = node.server.service
    answers = []
    real = service.host
    service.host = Refusing(real)
    try:
        assert write_async(service, ("put", "h", "1", "1", 5.0, None), answers.append)
    finally:
        service.host = real
    assert answers == [None]


# --- a slave forwards lane writes to its master, with no worker ---------------------------------

def _without_seq(answer: bytes) -> bytes:
    """An answer with its seq numbers (header, body and the body's length) blanked out."""
    import re
    answer = re.sub(rb"(X-Dkvs-Seq: )\d+", rb"\1N", answer)
    answer = re.sub(rb'("seq":)\d+', rb"\1N", answer)
    return re.sub(rb"(Content-Length: )\d+", rb"\1N", answer)


@pytest.fixture
def master_and_slave():
    from dkvs.runtime.app import DkvsNode, Settings
    master = DkvsNode(Settings(port=0)).start()
    slave = None
    try:
        slave = DkvsNode(Settings(port=0, join=master.url)).start()
        # joined, and its master known
        assert wait_for(lambda: slave.service.forward_target() == master.url, 30.0), "the slave never learned its master"
        yield master, slave
    finally:
        if slave is not None:
            slave.stop()
        master.stop()


def test_a_slave_forwards_lane_writes_and_answers_as_a_worker_would(master_and_slave):
    # Through 1,000 clients a slave forwarded at 0.55x the master's rate: every write went to
    # a worker first, which parsed it again and handed it to the forwarder.
    master, slave = master_and_slave
    lane = slave.server.fast_lane
    request = b"PUT /kv/f?acks=majority HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nv1"
    by_lane = answer_without_date(slave.url, request)
    assert lane.forwarded == 1
    lane.enabled = False
    try:
        by_worker = answer_without_date(slave.url, request)
    finally:
        lane.enabled = True
    assert lane.forwarded == 1
    assert by_lane.startswith(b"HTTP/1.1 200 ") and _without_seq(by_lane) == _without_seq(by_worker)
    # Read-your-writes through the slave: the lane answered only once the slave applied it.
    port = int(slave.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for i in range(10):
            conn.request("PUT", f"/kv/g{i}", b"w%d" % i)
            assert conn.getresponse().read().startswith(b'{"key":"g%d"' % i)
            conn.request("GET", f"/kv/g{i}")
            assert json.loads(conn.getresponse().read())["value"] == f"w{i}"
        conn.request("DELETE", "/kv/g3")
        deleted = conn.getresponse()
        assert deleted.status == 200 and deleted.read()
        conn.request("GET", "/kv/g3")
        assert conn.getresponse().status == 404
    finally:
        conn.close()
    assert lane.forwarded == 12


def test_a_slave_leaves_a_request_forwarded_once_already_to_a_worker(master_and_slave):
    master, slave = master_and_slave
    lane = slave.server.fast_lane
    request = (b"PUT /kv/h HTTP/1.1\r\nHost: x\r\nX-Dkvs-Forwarded: 1\r\nContent-Length: 1\r\n\r\nv")
    answer = answer_without_date(slave.url, request)
    assert answer.startswith(b"HTTP/1.1 503 ") and lane.forwarded == 0
