"""SnapshotWorker: builds and streams on worker threads, one build at a time, one stream
per peer, exactly one callback per accepted job (none after close).

Threads are real; every wait is on an Event with a generous upper bound, never a sleep.
"""

from __future__ import annotations

import http.server
import queue
import threading
import urllib.parse

import pytest

from dkvs.core.messages import AppendReply
from dkvs.runtime.snapshots import SnapshotWorker
from dkvs.storage import FileStorage, MemoryStorage
from dkvs.storage.base import SnapshotSuperseded
from dkvs.transport import codec
from dkvs.transport.auth import Signer
from dkvs.transport.http import HttpTransport
from dkvs.transport.snapshot_stream import SnapshotAssembler, receive_chunk

WAIT_SECONDS = 30.0  # upper bound only
MEMBERS = (("n1", "http://127.0.0.1:1"), ("n2", "http://127.0.0.1:2"))


class Gate:
    """Holds a worker at a known point until the test opens it."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.opened = threading.Event()

    def wait_here(self) -> None:
        self.reached.set()
        assert self.opened.wait(WAIT_SECONDS)


class GatedStorage(MemoryStorage):
    """MemoryStorage whose builds wait at a gate (and may fail on purpose)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: Gate | None = None
        self.fail_with: BaseException | None = None

    def write_snapshot(self, seq, epoch, members, data, should_stop=None):
        if self.gate is not None:
            self.gate.wait_here()
        if self.fail_with is not None:
            raise self.fail_with
        return super().write_snapshot(seq, epoch, members, data, should_stop)


class FakeTransport:
    """Records streams; a stream may wait at a gate or fail."""

    def __init__(self) -> None:
        self.streams: list[tuple[str, int, int, str, bytes]] = []
        self.gates: dict[str, Gate] = {}

    def stream_snapshot(self, to, reader, sender_epoch, sender_id, should_stop=None):
        if to in self.gates:
            self.gates[to].wait_here()
        data = b"".join(chunk for _, chunk in reader.chunks(chunk_bytes=1000))
        if should_stop is not None and should_stop():
            raise InterruptedError("stopped")
        self.streams.append((to, reader.meta.seq, sender_epoch, sender_id, data))


class Calls:
    """Callbacks land here; tests wait for them."""

    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()

    def built(self, seq, nbytes, error):
        self.q.put(("built", seq, nbytes, error))

    def streamed(self, peer, seq, error):
        self.q.put(("streamed", peer, seq, error))

    def next(self):
        return self.q.get(timeout=WAIT_SECONDS)


def make(storage=None, transport=None):
    storage = storage or GatedStorage()
    storage.load()
    calls = Calls()
    worker = SnapshotWorker(storage, transport or FakeTransport(), calls.built, calls.streamed)
    return worker, storage, calls


def test_build_writes_the_snapshot_and_reports_it(tmp_path):
    storage = FileStorage(tmp_path / "d", fsync="never")
    worker, storage, calls = make(storage)
    storage.append([])
    assert worker.build(0, 1, MEMBERS, {"a": ("1", 1), "b": ("2", 2)})
    kind, seq, nbytes, error = calls.next()
    assert (kind, seq, error) == ("built", 0, None) and nbytes > 0
    assert not worker.building
    assert storage.load_snapshot().items == [["a", "1", 1], ["b", "2", 2]]
    worker.close()
    storage.close()


def test_one_build_at_a_time_and_a_new_one_may_start_from_the_callback():
    worker, storage, calls = make()
    storage.gate = Gate()
    assert worker.build(0, 1, MEMBERS, {"a": ("1", 1)})
    assert storage.gate.reached.wait(WAIT_SECONDS)
    assert worker.building and not worker.build(0, 1, MEMBERS, {})
    storage.gate.opened.set()
    assert calls.next()[:2] == ("built", 0)
    storage.gate = None
    assert worker.build(0, 1, MEMBERS, {"b": ("2", 2)})  # free again once reported
    assert calls.next()[:2] == ("built", 0)
    worker.close()


def test_build_errors_are_reported_not_raised():
    worker, storage, calls = make()
    storage.fail_with = SnapshotSuperseded("a snapshot was installed")
    assert worker.build(3, 1, MEMBERS, {})
    kind, seq, nbytes, error = calls.next()
    assert (kind, seq, nbytes) == ("built", 3, 0) and isinstance(error, SnapshotSuperseded)
    storage.fail_with = OSError("disk full")
    assert worker.build(3, 1, MEMBERS, {})
    assert isinstance(calls.next()[3], OSError)
    worker.close()


def test_stream_sends_the_newest_snapshot_once_per_peer_at_a_time():
    transport = FakeTransport()
    worker, storage, calls = make(transport=transport)
    storage.write_snapshot(0, 1, MEMBERS, {f"k{i}": ("v", i) for i in range(500)})
    transport.gates["n2"] = Gate()
    assert worker.stream("n2", 4, "n1")
    assert transport.gates["n2"].reached.wait(WAIT_SECONDS)
    assert worker.streaming("n2") and not worker.stream("n2", 4, "n1")  # one per peer
    assert worker.stream("n3", 4, "n1")  # other peers are independent
    assert calls.next() == ("streamed", "n3", 0, None)
    transport.gates["n2"].opened.set()
    assert calls.next() == ("streamed", "n2", 0, None)
    assert not worker.streaming("n2")
    with storage.snapshot_reader() as reader:
        whole = reader.read(0, reader.meta.size)
    assert sorted(s[:4] for s in transport.streams) == [("n2", 0, 4, "n1"), ("n3", 0, 4, "n1")]
    assert all(s[4] == whole for s in transport.streams)
    worker.close()


def test_stream_without_a_snapshot_reports_an_error():
    worker, _, calls = make()
    assert worker.stream("n2", 4, "n1")
    kind, peer, seq, error = calls.next()
    assert (kind, peer, seq) == ("streamed", "n2", 0) and isinstance(error, LookupError)
    worker.close()


def test_cancelled_stream_ends_with_interrupted():
    transport = FakeTransport()
    worker, storage, calls = make(transport=transport)
    storage.write_snapshot(0, 1, MEMBERS, {"a": ("1", 1)})
    transport.gates["n2"] = Gate()
    assert worker.stream("n2", 4, "n1")
    assert transport.gates["n2"].reached.wait(WAIT_SECONDS)
    worker.cancel_stream("n2")
    transport.gates["n2"].opened.set()
    kind, peer, seq, error = calls.next()
    assert (kind, peer) == ("streamed", "n2") and isinstance(error, InterruptedError)
    worker.close()


def test_close_refuses_new_work_and_silences_callbacks():
    transport = FakeTransport()
    worker, storage, calls = make(transport=transport)
    storage.write_snapshot(0, 1, MEMBERS, {"a": ("1", 1)})
    transport.gates["n2"] = Gate()
    assert worker.stream("n2", 4, "n1")
    assert transport.gates["n2"].reached.wait(WAIT_SECONDS)
    closer = threading.Thread(target=worker.close, args=(WAIT_SECONDS,))
    closer.start()
    transport.gates["n2"].opened.set()
    closer.join(WAIT_SECONDS)
    assert not closer.is_alive()
    assert not worker.build(1, 1, MEMBERS, {}) and not worker.stream("n3", 4, "n1")
    assert calls.q.empty()


def test_build_then_stream_over_real_http(tmp_path):
    # End to end on 127.0.0.1: FileStorage builds in the background, the worker streams
    # the file in chunks, the receiving route assembles it, and the slave's answer is
    # delivered back through the transport.
    received = []
    assembler = SnapshotAssembler(directory=str(tmp_path))
    receiver = Signer("s3cret", node_id="n2")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers["Content-Length"]))
            assert receiver.verify_head("POST", self.path, self.headers) is None
            assert receiver.verify_body(self.headers, body) is None
            snapshot, answer = receive_chunk(assembler, dict(urllib.parse.parse_qsl(query)), body)
            if snapshot is not None:
                received.append(snapshot)
                answer = codec.encode_snapshot_answer(messages=[AppendReply(snapshot.epoch, "n2", True,
                                                                            snapshot.seq)])
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serving = threading.Thread(target=httpd.serve_forever, daemon=True)
    serving.start()
    delivered: queue.Queue = queue.Queue()
    transport = HttpTransport(Signer("s3cret", node_id="n1"), node_id="n1")
    transport.start(lambda peer, send_id, messages: delivered.put((peer, send_id, messages)),
                    lambda peer, send_id: None)
    transport.set_peers({"n2": f"http://127.0.0.1:{httpd.server_address[1]}"})
    storage = FileStorage(tmp_path / "d", fsync="never")
    worker, storage, calls = make(storage, transport)
    try:
        data = {f"key{i:06d}": ("x" * 200, i) for i in range(20_000)}  # ~4.6 MB: several chunks
        assert worker.build(0, 3, MEMBERS, data)
        assert calls.next()[3] is None
        assert worker.stream("n2", 7, "n1")
        assert calls.next() == ("streamed", "n2", 0, None)
        assert delivered.get(timeout=WAIT_SECONDS) == ("n2", 0, [AppendReply(7, "n2", True, 0)])
        [snapshot] = received
        assert (snapshot.epoch, snapshot.sender, snapshot.snap_epoch, snapshot.members) == (7, "n1", 3, MEMBERS)
        assert snapshot.data == [[k, v, s] for k, (v, s) in sorted(data.items())]
    finally:
        worker.close()
        transport.close()
        storage.close()
        httpd.shutdown()
        httpd.server_close()
        serving.join(WAIT_SECONDS)


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_stream_reads_the_snapshot_it_began_with_while_a_build_replaces_it(tmp_path, kind):
    transport = FakeTransport()
    storage = MemoryStorage() if kind == "memory" else FileStorage(tmp_path / "d", fsync="never")
    worker, storage, calls = make(storage, transport)
    storage.append([])
    storage.write_snapshot(0, 1, MEMBERS, {f"old{i}": ("o" * 50, i) for i in range(3000)})
    with storage.snapshot_reader() as reader:
        old_bytes = reader.read(0, reader.meta.size)
    transport.gates["n2"] = Gate()
    assert worker.stream("n2", 4, "n1")
    assert transport.gates["n2"].reached.wait(WAIT_SECONDS)
    assert worker.build(0, 2, MEMBERS, {"new": ("n", 0)})
    assert calls.next()[:2] == ("built", 0)
    transport.gates["n2"].opened.set()
    assert calls.next() == ("streamed", "n2", 0, None)
    assert transport.streams[0][4] == old_bytes
    worker.close()
    storage.close()
