"""Replication streams driven by the sending node's HTTP selector (dkvs.transport.stream_loop),
over real sockets on 127.0.0.1: what the selector-driven end adds to the rules every
stream keeps (tests/test_stream_transport.py runs those against both ends).

What this proves: a message the socket cannot take at once waits in the output buffer
and the selector finishes it, in order with what follows; messages offered while the
connection opens leave in order once it is open; an answer missing for the request timeout
and a peer that closes the stream each report every unanswered send unreachable, and the
next message opens a new stream; closing the transport leaves nothing watched.
"""

from __future__ import annotations

import threading

import pytest

from dkvs.api.server import make_server
from dkvs.core.log import Entry
from dkvs.core.messages import Append
from dkvs.transport.auth import Signer
from dkvs.transport.http import HttpTransport
from dkvs.transport.stream_loop import LoopStreamSender
from tests.test_stream_transport import SECRET, WAIT_SECONDS, Answers, Node, append


class HoldingNode(Node):
    """Holds its answer to the messages whose first entry's key is ``hold`` until
    ``release`` is set; raises ``OSError`` (the stream ends) for the key ``drop``."""

    def __init__(self, signer: Signer) -> None:
        super().__init__(signer)
        self.release = threading.Event()

    def internal(self, method, path, query, body, headers):
        from dkvs.transport import codec
        message = codec.decode(body)
        key = message.entries[0].key if message.entries else ""
        if key == "hold":
            self.release.wait(WAIT_SECONDS)
        elif key == "drop":
            raise OSError("the stand-in slave hangs up")
        return super().internal(method, path, query, body, headers)


def keyed(seq: int, key: str, value: str = "v") -> Append:
    return Append(1, "n1", seq - 1, 1 if seq > 1 else 0, (Entry(1, seq, "put", key, value),), seq - 1, seq)


@pytest.fixture
def pair():
    """(transport of n1 driven by n1's selector, n1's server, n2's server, n2's node, answers)."""
    made = []

    def make(request_timeout: float = 5.0):
        node = HoldingNode(Signer(SECRET, node_id="n2"))
        server = make_server(node, "127.0.0.1", 0).start()
        own = make_server(Node(None, "n1"), "127.0.0.1", 0).start()
        transport = HttpTransport(Signer(SECRET, node_id="n1"), node_id="n1", loop=own.connections.watched,
                                  request_timeout=request_timeout)
        answers = Answers()
        transport.start(answers.deliver, answers.unreachable)
        transport.set_peers({"n2": server.url})
        made.append((transport, own, server, node))
        assert isinstance(transport._streams["n2"], LoopStreamSender)
        return transport, own, server, node, answers

    yield make
    for transport, own, server, node in made:
        node.release.set()
        transport.close()
        own.stop()
        server.stop()


def delivered_ids(answers: Answers) -> list[int]:
    return [sid for _, sid, _ in answers.delivered]


def test_a_message_the_socket_cannot_take_at_once_is_finished_by_the_selector(pair):
    transport, own, server, node, answers = pair()
    stream = transport._streams["n2"]
    transport.send("n2", append(1), send_id=1)
    assert answers.wait(lambda: 1 in delivered_ids(answers))
    # 15 MB: more than the kernel takes in one send() (tcp_wmem caps it at a few MB).
    transport.send("n2", keyed(2, "big", "x" * (15 * 1024 * 1024)), send_id=2)
    transport.send("n2", append(3), send_id=3)  # queued behind the rest of the big one
    assert stream.deferred_writes >= 1
    assert answers.wait(lambda: 3 in delivered_ids(answers))
    assert [m.entries[0].seq for m in node.received] == [1, 2, 3]
    assert len(node.received[1].entries[0].value) == 15 * 1024 * 1024
    assert not answers.failed and stream.opened == 1


def test_messages_offered_while_the_stream_opens_leave_in_order_once_it_is_open(pair):
    transport, own, server, node, answers = pair()
    for seq in range(1, 41):  # all before the connection can be open
        transport.send("n2", append(seq), send_id=seq)
    assert answers.wait(lambda: delivered_ids(answers) and max(delivered_ids(answers)) == 40)
    assert [m.entries[0].seq for m in node.received] == list(range(1, 41))
    assert transport._streams["n2"].opened == 1 and not answers.failed


def test_an_answer_missing_for_the_request_timeout_fails_the_stream_and_the_next_send_reopens(pair):
    transport, own, server, node, answers = pair(request_timeout=0.3)
    stream = transport._streams["n2"]
    transport.send("n2", keyed(1, "hold"), send_id=1)
    transport.send("n2", append(2), send_id=2)  # behind the held one: unanswered too
    assert answers.wait(lambda: len(answers.failed) == 2)
    assert sorted(answers.failed) == [("n2", 1), ("n2", 2)] and not answers.delivered
    node.release.set()
    transport.send("n2", append(3), send_id=3)
    assert answers.wait(lambda: 3 in delivered_ids(answers))
    assert stream.opened == 2


def test_a_stream_the_peer_closes_reports_its_unanswered_sends_unreachable(pair):
    transport, own, server, node, answers = pair()
    stream = transport._streams["n2"]
    transport.send("n2", append(1), send_id=1)
    assert answers.wait(lambda: 1 in delivered_ids(answers))
    transport.send("n2", keyed(2, "drop"), send_id=2)
    assert answers.wait(lambda: answers.failed == [("n2", 2)])
    transport.send("n2", append(3), send_id=3)
    assert answers.wait(lambda: 3 in delivered_ids(answers))
    assert stream.opened == 2


def test_closing_the_transport_leaves_nothing_watched(pair):
    transport, own, server, node, answers = pair()
    transport.send("n2", append(1), send_id=1)
    assert answers.wait(lambda: 1 in delivered_ids(answers))
    assert len(own.connections.watched) == 1
    transport.close()
    assert len(own.connections.watched) == 0
    transport.send("n2", append(2), send_id=2)  # a closed transport sends nothing
    assert not answers.failed and delivered_ids(answers) == [1]


class FailingSends:
    """A stream socket whose sends fail (the peer vanished mid-write); the rest is the real one."""

    def __init__(self, sock) -> None:
        self.sock = sock

    def send(self, data, *flags):
        raise BrokenPipeError("the stand-in peer is gone")

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_a_failed_write_shuts_the_stream_and_its_unanswered_sends_are_reported(pair):
    # A write fails on the thread that runs the node's burst; nothing more may follow on
    # that connection (a cut frame garbles the next), and the selector reports the loss.
    transport, own, server, node, answers = pair()
    stream = transport._streams["n2"]
    transport.send("n2", append(1), send_id=1)
    assert answers.wait(lambda: 1 in delivered_ids(answers))
    stream._sock = FailingSends(stream._sock)
    transport.send("n2", append(2), send_id=2)
    assert answers.wait(lambda: answers.failed == [("n2", 2)])
    transport.send("n2", append(3), send_id=3)
    assert answers.wait(lambda: 3 in delivered_ids(answers))
    assert stream.opened == 2 and [m.entries[0].seq for m in node.received] == [1, 3]
