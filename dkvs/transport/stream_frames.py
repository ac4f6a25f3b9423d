"""The replication stream's frames: length-prefixed, numbered, and authenticated one by one.

A replication stream (``docs/protocol.md``, "Replication stream") is one long-lived TCP
(or TLS) connection from a master to one peer, opened by a signed HTTP upgrade of
``POST /internal/raft``. After the ``101`` answer both directions carry frames::

    length  u32   bytes of payload
    kind    u8    MESSAGE (a core message) | REPLY (the answers to one) | ERROR (refused)
    id      u64   the sender's send id; a REPLY or ERROR names the MESSAGE it answers
    payload       the codec's bytes (one message, or a list of answers), or a reason
    mac     16 B  only with a cluster secret: HMAC-SHA256(direction key, counter || head || payload)

Why a MAC per frame and not only the signed opening request: the opening request proves
who opened the connection, but anyone on the path could splice bytes into a plain TCP
stream afterwards. Each direction has its own key, derived from the cluster secret and
both sides' nonces (the request's signed nonce and the ``101``'s fresh one), and a frame
counter that both ends keep, so a frame cannot be forged, altered, replayed, reordered,
dropped unnoticed, or reflected back to its sender. It costs one ``hmac.digest`` per frame
(a batch of writes), a few microseconds.

This module is pure (bytes in, frames out); :mod:`.stream_sender` and
:mod:`dkvs.api.stream` own the sockets. :class:`FrameReader` raises :class:`FrameError`
for anything malformed — an oversize length, a bad MAC, an unknown kind — and the
connection is then closed: after one bad frame nothing later on it can be trusted.
"""

from __future__ import annotations

import hmac
import struct

__all__ = ["FrameError", "FrameReader", "FrameWriter", "session_keys", "MESSAGE", "REPLY", "ERROR",
           "MAX_FRAME_BYTES", "MAC_BYTES", "STREAM_PROTOCOL", "STREAM_NONCE_HEADER", "RAFT_PATH"]

MESSAGE, REPLY, ERROR = 1, 2, 3
_KINDS = frozenset({MESSAGE, REPLY, ERROR})
MAX_FRAME_BYTES = 16 * 1024 * 1024  # a batch is at most ~1 MiB of entries (CoreConfig.max_batch_bytes)
MAC_BYTES = 16
RAFT_PATH = "/internal/raft"  # one message per POST, or upgraded to a stream
STREAM_PROTOCOL = "dkvs-stream/1"  # the Upgrade token
STREAM_NONCE_HEADER = "X-Dkvs-Stream-Nonce"  # the accepting side's nonce, in the 101 answer
_HEAD = struct.Struct(">IBQ")
_COUNTER = struct.Struct(">Q")


class FrameError(ValueError):
    """A frame that breaks the format or fails its MAC: the connection must be closed."""


def session_keys(secret: bytes | None, request_nonce: str, accept_nonce: str) -> tuple[bytes | None, bytes | None]:
    """``(opener → acceptor key, acceptor → opener key)``; ``(None, None)`` without a secret."""
    if secret is None:
        return None, None
    base = f"dkvs-stream-v1\n{request_nonce}\n{accept_nonce}\n".encode()
    return (hmac.digest(secret, base + b"opener", "sha256"), hmac.digest(secret, base + b"acceptor", "sha256"))


class FrameWriter:
    """Turns ``(kind, id, payload)`` into bytes; numbers frames for the MAC. Not thread safe."""

    __slots__ = ("_key", "_count")

    def __init__(self, key: bytes | None) -> None:
        self._key = key
        self._count = 0

    def frame(self, kind: int, frame_id: int, payload: bytes) -> bytes:
        if len(payload) > MAX_FRAME_BYTES:
            raise FrameError(f"a {len(payload)}-byte frame is over the {MAX_FRAME_BYTES}-byte limit")
        head = _HEAD.pack(len(payload), kind, frame_id)
        if self._key is None:
            return head + payload
        self._count += 1
        mac = hmac.digest(self._key, _COUNTER.pack(self._count) + head + payload, "sha256")[:MAC_BYTES]
        return head + payload + mac


class FrameReader:
    """Cuts frames out of received bytes: ``feed(data)`` then ``frames()``. Not thread safe.

    Keeps at most one partial frame buffered; a declared length over ``max_bytes`` is an
    error at once (before its bytes arrive), so a peer cannot make us hold more than that.
    """

    __slots__ = ("_key", "_count", "_buf", "max_bytes")

    def __init__(self, key: bytes | None, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._key = key
        self._count = 0
        self._buf = bytearray()
        self.max_bytes = max_bytes

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def frames(self) -> list[tuple[int, int, bytes]]:
        """Every complete frame buffered, as ``(kind, id, payload)``; FrameError if one is bad."""
        out = []
        buf = self._buf
        pos = 0
        trailer = 0 if self._key is None else MAC_BYTES
        while len(buf) - pos >= _HEAD.size:
            length, kind, frame_id = _HEAD.unpack_from(buf, pos)
            if length > self.max_bytes:
                raise FrameError(f"a frame of {length} bytes is over the {self.max_bytes}-byte limit")
            if kind not in _KINDS:
                raise FrameError(f"unknown frame kind {kind}")
            end = pos + _HEAD.size + length + trailer
            if len(buf) < end:
                break
            body_end = end - trailer
            if trailer:
                self._count += 1
                expected = hmac.digest(self._key, _COUNTER.pack(self._count) + bytes(buf[pos:body_end]),
                                       "sha256")[:MAC_BYTES]
                if not hmac.compare_digest(expected, bytes(buf[body_end:end])):
                    raise FrameError("a frame failed its MAC (altered, replayed, reordered or forged)")
            out.append((kind, frame_id, bytes(buf[pos + _HEAD.size:body_end])))
            pos = end
        if pos:
            del buf[:pos]
        return out
