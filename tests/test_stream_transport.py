"""Replication streams over real sockets on 127.0.0.1: an :class:`HttpTransport` opening
streams to a :class:`DkvsHTTPServer` whose stand-in node answers every Append.

What this proves: Appends travel over one stream per peer (one connection for many
batches) and their answers come back; a sender without the cluster secret is refused and
changes nothing; a peer that does not take streams still gets its messages by POST; and a
stream carrying a truncated, oversize or forged frame is closed with nothing delivered.
"""

from __future__ import annotations

import socket
import threading

import pytest

from dkvs.api.server import make_server
from dkvs.api.service import KeyValueService, Limits
from dkvs.core.log import Entry
from dkvs.core.messages import Append, AppendReply
from dkvs.transport import codec
from dkvs.transport.auth import Signer
from dkvs.transport.http import HttpTransport
from dkvs.transport.stream_frames import (MESSAGE, STREAM_NONCE_HEADER, STREAM_PROTOCOL, FrameWriter)
from dkvs.transport.stream_sender import _read_answer_head

SECRET = "stream-test-secret"
WAIT_SECONDS = 30.0  # liveness bound, not a speed claim


class Node(KeyValueService):
    """Answers each Append with the AppendReply a slave that holds it would give."""

    def __init__(self, signer: Signer | None, node_id: str = "n2") -> None:
        self.limits = Limits()
        if signer is not None:
            self.signer = signer
        self.node_id = node_id
        self.received: list = []
        self.lock = threading.Lock()

    def internal_head(self, method, target, headers, *, token_checked=False):
        signer = getattr(self, "signer", None)
        return signer.verify_head(method, target, headers) if signer is not None else None

    def internal(self, method, path, query, body, headers):
        message = codec.decode(body)
        with self.lock:
            self.received.append(message)
        last = message.entries[-1].seq if message.entries else message.prev_seq
        return 200, codec.encode_many([AppendReply(message.epoch, self.node_id, True, last, round=message.round)])

    def put(self, *a, **k):
        raise NotImplementedError

    delete = get = items = status = put


class Answers:
    def __init__(self) -> None:
        self.delivered: list = []
        self.failed: list = []
        self.cond = threading.Condition()

    def deliver(self, peer, send_id, messages):
        with self.cond:
            self.delivered.append((peer, send_id, messages))
            self.cond.notify_all()

    def unreachable(self, peer, send_id):
        with self.cond:
            self.failed.append((peer, send_id))
            self.cond.notify_all()

    def wait(self, predicate) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, WAIT_SECONDS)


def append(seq: int) -> Append:
    return Append(1, "n1", seq - 1, 1 if seq > 1 else 0, (Entry(1, seq, "put", f"k{seq}", "v"),), seq - 1, seq)


@pytest.fixture(params=["selector", "thread"])
def cluster_of_two(request):
    """(transport of n1, server of n2, n2's node, answers n1 got); all closed after.

    Run twice: with n1's streams driven by its own HTTP selector (``selector``, what a node
    does: dkvs.transport.stream_loop) and by a thread per peer (``thread``: TLS peers, or a
    transport without a selector)."""
    made = []

    def make(receiver_secret=SECRET, sender_secret=SECRET, streams=True, request_timeout=None):
        node = Node(Signer(receiver_secret, node_id="n2") if receiver_secret is not None else None)
        server = make_server(node, "127.0.0.1", 0).start()
        loop = None
        if request.param == "selector":
            own = make_server(Node(None, "n1"), "127.0.0.1", 0).start()
            made.append(own)
            loop = own.connections.watched
        extra = {} if request_timeout is None else {"request_timeout": request_timeout}
        transport = HttpTransport(Signer(sender_secret, node_id="n1"), node_id="n1", stream=streams, loop=loop,
                                  **extra)
        answers = Answers()
        transport.start(answers.deliver, answers.unreachable)
        transport.set_peers({"n2": server.url})
        made.append((transport, server))
        return transport, server, node, answers

    make.kind = request.param
    yield make
    for item in reversed(made):
        if isinstance(item, tuple):
            item[0].close()
            item[1].stop()
        else:
            item.stop()


def test_appends_travel_over_one_stream_and_are_answered(cluster_of_two):
    transport, server, node, answers = cluster_of_two()
    for seq in range(1, 21):
        transport.send("n2", append(seq), send_id=seq)
        assert answers.wait(lambda: any(sid == seq for _, sid, _ in answers.delivered))
    assert [m.entries[0].seq for m in node.received] == list(range(1, 21))
    replies = [m for _, _, messages in answers.delivered for m in messages]
    assert [r.match_seq for r in replies] == list(range(1, 21)) and all(r.success for r in replies)
    assert server.streams.accepted == 1 and transport._streams["n2"].opened == 1
    assert not answers.failed


def test_a_burst_leaves_in_one_window_and_is_acknowledged_cumulatively(cluster_of_two):
    transport, server, node, answers = cluster_of_two()
    transport.send("n2", append(1), send_id=1)
    assert answers.wait(lambda: answers.delivered)
    for seq in range(2, 10):
        transport.send("n2", append(seq), send_id=seq)
    assert answers.wait(lambda: max(sid for _, sid, _ in answers.delivered) == 9)
    replies = [m.match_seq for _, _, messages in answers.delivered for m in messages]
    assert sorted(replies) == list(range(1, 10))  # every answer arrives, under the last id of its group


def test_a_sender_without_the_secret_is_refused_and_changes_nothing(cluster_of_two):
    transport, server, node, answers = cluster_of_two(sender_secret="wrong-secret")
    transport.send("n2", append(1), send_id=1)
    assert answers.wait(lambda: answers.failed)  # the upgrade is refused, then the POST too
    assert node.received == [] and server.streams.accepted == 0 and answers.delivered == []


def test_a_peer_that_takes_no_stream_gets_posts(cluster_of_two):
    transport, server, node, answers = cluster_of_two(receiver_secret=None, sender_secret=None)
    transport.send("n2", append(1), send_id=1)
    assert answers.wait(lambda: answers.delivered)
    assert server.streams.accepted == 0 and not transport._streams["n2"].usable
    transport.send("n2", append(2), send_id=2)  # straight to POST now
    assert answers.wait(lambda: len(answers.delivered) == 2)
    assert [m.entries[0].seq for m in node.received] == [1, 2]


def test_streams_can_be_turned_off(cluster_of_two):
    transport, server, node, answers = cluster_of_two(streams=False)
    transport.send("n2", append(1), send_id=1)
    assert answers.wait(lambda: answers.delivered)
    assert server.streams.accepted == 0 and node.received == [append(1)]


def test_a_message_bigger_than_a_frame_goes_by_post_and_the_stream_goes_on(cluster_of_two, monkeypatch):
    """A legal entry can outgrow a frame (a txn of 1 MiB binary values encodes to ~19 MB
    against 16 MiB frames): it must travel by POST, not fail the stream on every retry."""
    import dkvs.transport.stream_frames as stream_frames

    transport, server, node, answers = cluster_of_two()
    transport.send("n2", append(1), send_id=1)
    assert answers.wait(lambda: answers.delivered)
    big = Append(1, "n1", 1, 1, (Entry(1, 2, "put", "big", "x" * 5000),), 1, 2)
    monkeypatch.setattr(stream_frames, "MAX_FRAME_BYTES", 4096)  # the big entry is over it
    transport.send("n2", big, send_id=2)
    assert answers.wait(lambda: any(sid == 2 for _, sid, _ in answers.delivered))
    transport.send("n2", append(3), send_id=3)
    assert answers.wait(lambda: any(sid == 3 for _, sid, _ in answers.delivered))
    assert [m.entries[0].seq for m in node.received] == [1, 2, 3]
    assert not answers.failed
    assert transport._streams["n2"].opened == 1  # the stream was never broken


# -- hostile streams: a raw socket does the (valid) upgrade, then misbehaves --------------------
def open_raw_stream(server):
    signer = Signer(SECRET, node_id="n1")
    headers = signer.headers("POST", "/internal/raft", b"", to="n2")
    sock = socket.create_connection(server.server_address[:2], timeout=WAIT_SECONDS)
    head = ["POST /internal/raft HTTP/1.1", "Host: x", "Content-Length: 0", f"Upgrade: {STREAM_PROTOCOL}",
            "Connection: Upgrade", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    status, answer, rest = _read_answer_head(sock)
    assert status == 101 and rest == b""
    keys = signer.stream_keys(headers["X-Dkvs-Nonce"], answer[STREAM_NONCE_HEADER.lower()])
    return sock, FrameWriter(keys[0])


def closed_by_peer(sock) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def wait_no_streams(server) -> bool:
    return Answers().wait(lambda: len(server.streams) == 0)


@pytest.mark.parametrize("misdeed", ["oversize", "forged", "truncated"])
def test_a_bad_frame_closes_the_stream_and_delivers_nothing(cluster_of_two, misdeed):
    _, server, node, _ = cluster_of_two()
    sock, writer = open_raw_stream(server)
    try:
        good = writer.frame(MESSAGE, 1, codec.encode_binary(append(1)))
        if misdeed == "oversize":
            sock.sendall((2**31).to_bytes(4, "big") + bytes([MESSAGE]) + (1).to_bytes(8, "big"))
        elif misdeed == "forged":
            forged = bytearray(good)
            forged[20] ^= 1
            sock.sendall(bytes(forged))
        else:
            sock.sendall(good[:-5])
            sock.shutdown(socket.SHUT_WR)
        assert closed_by_peer(sock)
    finally:
        sock.close()
    assert wait_no_streams(server)
    assert node.received == []


def test_an_upgrade_signed_for_another_node_is_refused(cluster_of_two):
    _, server, node, _ = cluster_of_two()
    headers = Signer(SECRET, node_id="n1").headers("POST", "/internal/raft", b"", to="n3")
    sock = socket.create_connection(server.server_address[:2], timeout=WAIT_SECONDS)
    try:
        head = ["POST /internal/raft HTTP/1.1", "Host: x", "Content-Length: 0", f"Upgrade: {STREAM_PROTOCOL}",
                *(f"{k}: {v}" for k, v in headers.items())]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        status, _, _ = _read_answer_head(sock)
    finally:
        sock.close()
    assert status == 401 and server.streams.accepted == 0 and node.received == []


def test_a_node_with_every_stream_place_taken_is_served_by_post(cluster_of_two):
    transport, server, node, answers = cluster_of_two()
    server.streams.max_streams = 0
    transport.send("n2", append(1), send_id=1)
    assert answers.wait(lambda: answers.delivered)
    assert server.streams.accepted == 0 and node.received == [append(1)] and not transport._streams["n2"].usable


def test_a_node_answers_a_stream_message_in_binary_and_a_post_in_json():
    # The stream used to decode the node's JSON answer and encode it again in binary, for
    # every batch a slave acknowledged; only the stream's own query asks for binary.
    from dkvs.api.service import STREAM_QUERY
    from dkvs.runtime.app import DkvsNode, Settings

    node = DkvsNode(Settings(port=0)).start()
    try:
        body = codec.encode(Append(0, "stranger", 0, 0, (), 0, 0))  # an old epoch: refused
        by_stream = node.service.internal("POST", "raft", STREAM_QUERY, body, {})
        by_post = node.service.internal("POST", "raft", {"_FromStream": "1"}, body, {})
    finally:
        node.stop()
    assert by_stream[0] == by_post[0] == 200
    assert codec.is_binary_many(by_stream[1]) and not codec.is_binary_many(by_post[1])
    assert codec.decode_many(by_stream[1]) == codec.decode_many(by_post[1])
    assert len(codec.decode_many(by_post[1])) == 1
