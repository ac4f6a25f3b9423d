"""The chunked snapshot protocol: the receiver's assembler (pure, no sockets), the
default in-process stream, and one real-HTTP stream on 127.0.0.1 with a signed route."""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.parse
import zlib

import pytest

from dkvs.core.messages import AppendReply, Snapshot
from dkvs.storage import MemoryStorage
from dkvs.transport import codec
from dkvs.transport.auth import Signer
from dkvs.transport.base import Transport
from dkvs.transport.codec import CodecError
from dkvs.transport.http import SNAPSHOT_PATH, HttpTransport
from dkvs.transport.snapshot_stream import (ChunkMeta, SnapshotAssembler, chunk_query, parse_chunk_query,
                                            receive_chunk)

MEMBERS = (("n1", "http://127.0.0.1:1"), ("n2", "http://127.0.0.1:2"))
WAIT_SECONDS = 30.0  # upper bound only


def stored_reader(keys: int = 3000, seq: int = 40, epoch: int = 2):
    storage = MemoryStorage()
    storage.append([])
    storage.write_snapshot(seq, epoch, MEMBERS, {f"key{i:05d}": (f"value-{i}", i + 1) for i in range(keys)})
    return storage.snapshot_reader()


def query_of(meta: ChunkMeta) -> dict:
    return dict(urllib.parse.parse_qsl(chunk_query(meta)))


def send_all(assembler, reader, sender="n1", sender_epoch=5, chunk_bytes=4096):
    """Feed every chunk in order, as the route would; return (snapshot, answers)."""
    meta = reader.meta
    answers = []
    for offset, chunk in reader.chunks(chunk_bytes=chunk_bytes):
        query = query_of(ChunkMeta(sender, sender_epoch, meta.seq, offset, meta.size, meta.crc32))
        snapshot, answer = receive_chunk(assembler, query, chunk)
        if snapshot is not None:
            return snapshot, answers
        answers.append(codec.decode_snapshot_answer(answer)[0])
    return None, answers


def test_chunks_in_order_make_the_snapshot_message():
    reader = stored_reader()
    snapshot, wants = send_all(SnapshotAssembler(), reader)
    assert isinstance(snapshot, Snapshot)
    assert (snapshot.epoch, snapshot.sender, snapshot.seq, snapshot.snap_epoch) == (5, "n1", 40, 2)
    assert snapshot.members == MEMBERS
    assert snapshot.data[:2] == [["key00000", "value-0", 1], ["key00001", "value-1", 2]]
    assert len(snapshot.data) == 3000
    assert wants == [4096 * (i + 1) for i in range(len(wants))]  # each answer: the next offset


def test_out_of_order_chunk_changes_nothing_and_names_the_wanted_offset():
    reader = stored_reader()
    meta = reader.meta
    assembler = SnapshotAssembler()
    at = lambda offset: ChunkMeta("n1", 5, meta.seq, offset, meta.size, meta.crc32)  # noqa: E731
    assert assembler.accept_and_want(at(0), reader.read(0, 1000)) == (None, 1000)
    assert assembler.accept_and_want(at(3000), reader.read(3000, 1000)) == (None, 1000)  # a gap
    assert assembler.accept_and_want(at(0), reader.read(0, 1000)) == (None, 1000)  # sender restarts
    assert assembler.accept_and_want(at(1000), reader.read(1000, 1000)) == (None, 2000)
    # A duplicate of a chunk already taken (its answer was lost) is not appended twice.
    assert assembler.accept_and_want(at(1000), reader.read(1000, 1000)) == (None, 2000)
    rest = reader.read(2000, meta.size)
    snapshot, want = assembler.accept_and_want(at(2000), rest)
    assert snapshot is not None and len(snapshot.data) == 3000 and want == meta.size


def test_a_new_stream_replaces_the_one_in_progress():
    old, new = stored_reader(seq=40), stored_reader(keys=10, seq=90)
    assembler = SnapshotAssembler()
    m_old = ChunkMeta("n1", 5, 40, 0, old.meta.size, old.meta.crc32)
    assembler.accept(m_old, old.read(0, 500))
    # A middle chunk of a stream we do not hold: start it from 0.
    m_new = ChunkMeta("n1", 5, 90, 100, new.meta.size, new.meta.crc32)
    assert assembler.accept_and_want(m_new, new.read(100, 100)) == (None, 0)
    assert assembler.want_for(m_old) == 500
    snapshot, _ = send_all(assembler, new)
    assert snapshot.seq == 90 and len(snapshot.data) == 10
    assert assembler.want_for(m_old) == 0  # the old stream was dropped


def test_a_stale_masters_stream_does_not_displace_a_newer_one():
    reader = stored_reader()
    meta = reader.meta
    assembler = SnapshotAssembler()
    assembler.accept(ChunkMeta("n2", 7, meta.seq, 0, meta.size, meta.crc32), reader.read(0, 500))
    stale = ChunkMeta("n1", 6, meta.seq, 0, meta.size, meta.crc32)
    assert assembler.accept_and_want(stale, reader.read(0, 500)) == (None, 0)
    assert assembler.want_for(ChunkMeta("n2", 7, meta.seq, 0, meta.size, meta.crc32)) == 500


def test_checksum_mismatch_restarts_from_zero():
    reader = stored_reader(keys=50)
    meta = reader.meta
    whole = reader.read(0, meta.size)
    damaged = bytearray(whole)
    damaged[len(damaged) // 2] ^= 0xFF
    assembler = SnapshotAssembler()
    bad = ChunkMeta("n1", 5, meta.seq, 0, meta.size, meta.crc32)
    assert assembler.accept_and_want(bad, bytes(damaged)) == (None, 0)
    assert assembler.accept(bad, whole) is not None  # the resend from 0 goes through


@pytest.mark.parametrize("query", [
    {},
    {"seq": "1", "offset": "0", "total": "10", "crc": "1", "epoch": "1"},  # no sender
    {"seq": "x", "offset": "0", "total": "10", "crc": "1", "epoch": "1", "from": "n1"},
    {"seq": "1", "offset": "-1", "total": "10", "crc": "1", "epoch": "1", "from": "n1"},
    {"seq": "1", "offset": "11", "total": "10", "crc": "1", "epoch": "1", "from": "n1"},
    {"seq": "1", "offset": "0", "total": "10", "crc": str(1 << 40), "epoch": "1", "from": "n1"},
])
def test_malformed_chunk_queries_are_refused(query):
    with pytest.raises(CodecError):
        receive_chunk(SnapshotAssembler(), query, b"")


def test_chunk_past_its_total_is_refused_and_junk_is_asked_for_again():
    assembler = SnapshotAssembler()
    with pytest.raises(CodecError):
        assembler.accept(ChunkMeta("n1", 1, 1, 0, 3, 0), b"four")
    junk = b"not a snapshot file"  # damaged as it arrives: dropped, asked for again from 0
    assert assembler.accept_and_want(ChunkMeta("n1", 1, 1, 0, len(junk), zlib.crc32(junk)), junk) == (None, 0)
    limited = SnapshotAssembler(max_total_bytes=10)
    with pytest.raises(CodecError):
        limited.accept(ChunkMeta("n1", 1, 1, 0, 11, 0), b"x")


def test_parse_chunk_query_round_trips():
    # Also through the HTTP layer's own query parser, which the service's route receives.
    from dkvs.api.params import parse_query

    meta = ChunkMeta("node é", 3, 10, 20, 30, 0xFFFFFFFF)
    assert parse_chunk_query(query_of(meta)) == meta
    assert parse_chunk_query(parse_query(chunk_query(meta))) == meta


def test_default_stream_joins_chunks_and_hands_over_the_message():
    class Recording(Transport):
        def __init__(self):
            self.sent = []

        def start(self, deliver, unreachable): ...
        def set_peers(self, peers): ...
        def send(self, to, message): ...
        def close(self): ...

        def send_snapshot(self, to, snapshot):
            self.sent.append((to, snapshot))

    transport = Recording()
    transport.stream_snapshot("n3", stored_reader(), 9, "n1")
    [(to, snapshot)] = transport.sent
    assert to == "n3" and (snapshot.epoch, snapshot.sender, snapshot.seq) == (9, "n1", 40)
    assert len(snapshot.data) == 3000
    with pytest.raises(InterruptedError):
        transport.stream_snapshot("n3", stored_reader(), 9, "n1", should_stop=lambda: True)


# -- real HTTP -------------------------------------------------------------------------------------
class SnapshotServer:
    """A minimal receiving node: the route the service will have, on 127.0.0.1:0."""

    def __init__(self, signer: Signer, refuse_first_at: int | None = None) -> None:
        self.assembler = SnapshotAssembler()
        self.received: list[Snapshot] = []
        self.requests = 0
        self.refuse_first_at = refuse_first_at
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()  # headers and body leave in two writes: no Nagle delay between
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self):
                server.requests += 1
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if (signer.verify_head("POST", self.path, self.headers) is not None
                        or signer.verify_body(self.headers, body) is not None or path != SNAPSHOT_PATH):
                    return self.answer(401, b"{}")
                parsed = dict(urllib.parse.parse_qsl(query))
                if server.refuse_first_at is not None and int(parsed["offset"]) == server.refuse_first_at:
                    server.refuse_first_at = None  # pretend we lost what we had: start again
                    server.assembler.reset()
                    return self.answer(200, codec.encode_snapshot_answer(want=0))
                snapshot, answer = receive_chunk(server.assembler, parsed, body)
                if snapshot is not None:
                    server.received.append(snapshot)
                    reply = AppendReply(snapshot.epoch, "n2", True, snapshot.seq)
                    answer = codec.encode_snapshot_answer(messages=[reply])
                self.answer(200, answer)

            def answer(self, status, body):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(WAIT_SECONDS)


@pytest.mark.parametrize("refuse_first_at", [None, 8192])
def test_http_stream_in_signed_chunks_delivers_the_receivers_answer(refuse_first_at):
    server = SnapshotServer(Signer("cluster-secret", node_id="n2"), refuse_first_at)
    transport = HttpTransport(Signer("cluster-secret", node_id="n1"), node_id="n1")
    delivered = []
    transport.start(lambda peer, send_id, messages: delivered.append((peer, send_id, messages)),
                    lambda peer, send_id: None)
    transport.set_peers({"n2": server.url})
    try:
        reader = stored_reader(keys=20_000)
        transport.stream_snapshot("n2", reader, 5, "n1", chunk_bytes=8192)
        [snapshot] = server.received
        assert snapshot.seq == 40 and len(snapshot.data) == 20_000
        assert delivered == [("n2", 0, [AppendReply(5, "n2", True, 40)])]
        expected = -(-reader.meta.size // 8192) + (2 if refuse_first_at else 0)
        assert server.requests == expected
    finally:
        transport.close()
        server.close()


def test_http_stream_to_an_unsigned_peer_fails_cleanly():
    server = SnapshotServer(Signer("other-secret", node_id="n2"))
    transport = HttpTransport(Signer("cluster-secret", node_id="n1"), node_id="n1")
    transport.start(lambda peer, send_id, messages: None, lambda peer, send_id: None)
    transport.set_peers({"n2": server.url})
    try:
        with pytest.raises(OSError):
            transport.stream_snapshot("n2", stored_reader(keys=10), 5, "n1")
        with pytest.raises(OSError):
            transport.stream_snapshot("n9", stored_reader(keys=10), 5, "n1")  # unknown peer
    finally:
        transport.close()
        server.close()


def test_a_received_snapshot_is_stored_by_copying_its_verified_bytes(tmp_path, monkeypatch):
    # The slave's install writes the bytes it received (no second encoding of the state),
    # the file is released afterwards, and a restart recovers the same items.
    import dkvs.storage.snapshot_store as store_module
    from dkvs.storage import FileStorage
    from dkvs.storage.base import StoredSnapshot

    reader = stored_reader(keys=5000)
    sent = reader.read(0, reader.meta.size)
    snapshot, _ = send_all(SnapshotAssembler(directory=str(tmp_path)), reader)
    storage = FileStorage(tmp_path / "d", fsync="never")
    storage.load()

    def forbidden(*args, **kwargs):
        raise AssertionError("the received snapshot was encoded again")

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "encode_snapshot", forbidden)
        storage.save_snapshot(StoredSnapshot(snapshot.seq, snapshot.snap_epoch, snapshot.members, snapshot.data))
    assert snapshot.data.source is None  # released
    with storage.snapshot_reader() as stored:
        assert stored.read(0, stored.meta.size) == sent and stored.meta == reader.meta
    storage.close()
    again = FileStorage(tmp_path / "d", fsync="never")
    assert again.load().snapshot.items == snapshot.data
    again.close()


def test_a_received_snapshot_stored_under_another_header_is_encoded_afresh(tmp_path):
    from dkvs.storage import FileStorage
    from dkvs.storage.base import StoredSnapshot

    snapshot, _ = send_all(SnapshotAssembler(), stored_reader(keys=100))
    storage = FileStorage(tmp_path / "d", fsync="never")
    storage.load()
    storage.save_snapshot(StoredSnapshot(snapshot.seq, snapshot.snap_epoch + 1, snapshot.members, snapshot.data))
    stored = storage.load_snapshot()
    assert stored.epoch == snapshot.snap_epoch + 1 and stored.items == snapshot.data
    storage.close()


def test_a_snapshot_received_into_the_data_dir_is_installed_by_rename(tmp_path, monkeypatch):
    # With the data dir as the assembler's directory, the verified file is fsynced on the
    # HTTP thread and the node's install is a rename: no copy, no encoding.
    import os

    import dkvs.storage.snapshot_store as store_module
    from dkvs.storage import FileStorage
    from dkvs.storage.base import StoredSnapshot

    storage = FileStorage(tmp_path / "d", fsync="never")
    storage.load()
    reader = stored_reader(keys=2000)
    sent = reader.read(0, reader.meta.size)
    snapshot, _ = send_all(SnapshotAssembler(directory=storage.path), reader)
    assert [n for n in os.listdir(storage.path) if n.startswith("snapshot-recv-")]

    def forbidden(*args, **kwargs):
        raise AssertionError("the received snapshot was copied or encoded")

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "encode_snapshot", forbidden)
        patch.setattr(store_module.shutil, "copyfileobj", forbidden)
        storage.save_snapshot(StoredSnapshot(snapshot.seq, snapshot.snap_epoch, snapshot.members, snapshot.data))
    names = os.listdir(storage.path)
    assert not [n for n in names if n.startswith("snapshot-recv-")]
    with storage.snapshot_reader() as stored:
        assert stored.read(0, stored.meta.size) == sent
    storage.close()
    again = FileStorage(tmp_path / "d", fsync="never")
    assert again.load().snapshot.items == snapshot.data
    again.close()


def test_received_files_never_outlive_their_use(tmp_path):
    # A snapshot dropped unstored (stale), a failed checksum and a reset leave no file.
    import gc
    import os

    reader = stored_reader(keys=300)
    meta = reader.meta
    assembler = SnapshotAssembler(directory=str(tmp_path))
    snapshot, _ = send_all(assembler, reader)
    assert len(os.listdir(tmp_path)) == 1
    del snapshot
    gc.collect()
    assert os.listdir(tmp_path) == []
    whole = reader.read(0, meta.size)
    bad = ChunkMeta("n1", 5, meta.seq, 0, meta.size, meta.crc32 ^ 1)
    assert assembler.accept_and_want(bad, whole) == (None, 0)
    assembler.accept(ChunkMeta("n1", 5, meta.seq, 0, meta.size, meta.crc32), whole[:100])
    assert len(os.listdir(tmp_path)) == 1
    assembler.reset()
    assert os.listdir(tmp_path) == []
