"""Replication stream frames and the binary codec: round trips, and every way a frame can
be wrong (truncated, oversize, altered, replayed, reordered, reflected, unknown) — no
sockets."""

from __future__ import annotations

import pytest

from dkvs.core.log import Entry
from dkvs.core.messages import Append, AppendReply, PeerView, VoteReply
from dkvs.transport import codec
from dkvs.transport.stream_frames import (ERROR, MAC_BYTES, MESSAGE, REPLY, FrameError, FrameReader, FrameWriter,
                                          session_keys)

SECRET = b"correct horse battery staple"


def keys():
    return session_keys(SECRET, "n" * 32, "a" * 32)


@pytest.mark.parametrize("secret", [SECRET, None], ids=["mac", "no-secret"])
def test_frames_round_trip_in_any_chunking(secret):
    opener, _ = session_keys(secret, "n1", "n2")
    writer, reader = FrameWriter(opener), FrameReader(opener)
    sent = [(MESSAGE, 7, b"one"), (REPLY, 8, b""), (ERROR, 2**40, b"x" * 5000)]
    data = b"".join(writer.frame(*f) for f in sent)
    got = []
    for i in range(0, len(data), 3):  # three bytes at a time: every frame arrives in pieces
        reader.feed(data[i:i + 3])
        got += reader.frames()
    assert got == sent and reader.buffered == 0


def test_a_truncated_frame_is_not_delivered():
    writer, reader = FrameWriter(keys()[0]), FrameReader(keys()[0])
    data = writer.frame(MESSAGE, 1, b"payload")
    reader.feed(data[:-1])
    assert reader.frames() == []  # waits for the rest; the connection's end drops it
    reader.feed(data[-1:])
    assert reader.frames() == [(MESSAGE, 1, b"payload")]


def test_an_oversize_length_is_refused_before_its_bytes_arrive():
    reader = FrameReader(None, max_bytes=1024)
    reader.feed(FrameWriter(None).frame(MESSAGE, 1, b"x" * 1025)[:13])  # the head alone
    with pytest.raises(FrameError, match="over the 1024-byte limit"):
        reader.frames()


def test_a_writer_refuses_an_oversize_payload(monkeypatch):
    from dkvs.transport import stream_frames
    monkeypatch.setattr(stream_frames, "MAX_FRAME_BYTES", 10)
    with pytest.raises(FrameError):
        FrameWriter(None).frame(MESSAGE, 1, b"x" * 11)


@pytest.mark.parametrize("where", [0, 5, 13, -1], ids=["length", "kind-or-id", "payload", "mac"])
def test_an_altered_byte_fails_the_mac(where):
    opener = keys()[0]
    data = bytearray(FrameWriter(opener).frame(MESSAGE, 3, b"payload"))
    data[where] ^= 0x01
    reader = FrameReader(opener)
    reader.feed(bytes(data))
    with pytest.raises(FrameError):
        reader.frames()


def test_a_replayed_or_reordered_frame_fails_the_mac():
    opener = keys()[0]
    writer = FrameWriter(opener)
    first, second = writer.frame(MESSAGE, 1, b"a"), writer.frame(MESSAGE, 2, b"b")
    replay = FrameReader(opener)
    replay.feed(first + first)
    with pytest.raises(FrameError):
        replay.frames()
    reordered = FrameReader(opener)
    reordered.feed(second)
    with pytest.raises(FrameError):
        reordered.frames()


def test_a_frame_reflected_back_to_its_sender_fails_the_mac():
    opener, acceptor = keys()
    assert opener != acceptor
    reader = FrameReader(acceptor)  # what the opener reads with
    reader.feed(FrameWriter(opener).frame(MESSAGE, 1, b"a"))
    with pytest.raises(FrameError):
        reader.frames()


def test_another_secret_or_nonce_gives_other_keys():
    assert session_keys(SECRET, "n1", "a1") != session_keys(b"other", "n1", "a1")
    assert session_keys(SECRET, "n1", "a1") != session_keys(SECRET, "n2", "a1")
    assert session_keys(SECRET, "n1", "a1") != session_keys(SECRET, "n1", "a2")
    assert session_keys(None, "n1", "a1") == (None, None)


def test_an_unknown_kind_is_refused():
    data = bytearray(FrameWriter(None).frame(MESSAGE, 1, b"a"))
    data[4] = 9
    reader = FrameReader(None)
    reader.feed(bytes(data))
    with pytest.raises(FrameError, match="kind"):
        reader.frames()


def test_a_mac_costs_sixteen_bytes():
    assert len(FrameWriter(keys()[0]).frame(MESSAGE, 1, b"a")) == len(FrameWriter(None).frame(MESSAGE, 1, b"a")) \
        + MAC_BYTES


# -- the binary codec --------------------------------------------------------------------------
APPEND = Append(4, "nöde-1", 9, 3, (Entry(4, 10, "put", "k\udcff", "v\udc80 ü"), Entry(4, 11, "delete", "k", None, 5),
                                    Entry(4, 12, "txn", "", {"ops": [["put", "a", "1"]]}), Entry(4, 13, "noop")),
                8, 2, (PeerView("n2", 7, True), PeerView("n3", 0, False)))


def test_binary_messages_decode_to_what_was_encoded():
    assert codec.decode(codec.encode_binary(APPEND)) == APPEND
    reply = AppendReply(4, "n2", False, 5, 4, 2, 1, 9)
    assert codec.decode(codec.encode_binary(reply)) == reply
    mixed = [reply, VoteReply(4, "n2", True)]  # a message without a binary form travels as JSON
    assert codec.decode_many(codec.encode_binary_many(mixed)) == mixed
    assert codec.decode_many(codec.encode_binary_many([])) == []


def test_json_bodies_still_decode():
    assert codec.decode(codec.encode(APPEND)) == APPEND


@pytest.mark.parametrize("cut", [1, 10, 60, -1])
def test_truncated_binary_is_a_codec_error(cut):
    data = codec.encode_binary(APPEND)
    with pytest.raises(codec.CodecError):
        codec.decode(data[:cut])
    many = codec.encode_binary_many([APPEND])
    with pytest.raises(codec.CodecError):
        codec.decode_many(many[:cut] if cut > 0 else many + b"x")


def test_trailing_bytes_are_a_codec_error():
    with pytest.raises(codec.CodecError):
        codec.decode(codec.encode_binary(APPEND) + b"\0")


def test_a_receiver_reads_sockets_into_one_buffer_and_other_objects_with_their_recv():
    # The server's TLS wrapper (dkvs.api.tls.TlsSocket) has recv but no recv_into: a
    # receiver that assumed recv_into broke every TLS stream (tests/integration).
    import socket as socket_module

    from dkvs.transport.stream_sender import receiver

    a, b = socket_module.socketpair()
    try:
        recv = receiver(b, 1024)
        a.sendall(b"first")
        assert bytes(recv()) == b"first"
        a.sendall(b"second")
        assert bytes(recv()) == b"second"
        a.close()
        assert len(recv()) == 0  # EOF
    finally:
        b.close()

    class RecvOnly:
        def recv(self, size):
            return b"x" * min(size, 3)

    assert receiver(RecvOnly(), 2)() == b"xx"
