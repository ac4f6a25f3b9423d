"""The accepting end of replication streams (``docs/protocol.md``, "Replication stream").

A master opens a stream with ``POST /internal/raft`` carrying ``Upgrade: dkvs-stream/1``
and an empty body. The route checks it like every internal request — signature, clock,
nonce, target id and cluster id, from the head, by ``service.internal_head`` — and only
then calls :meth:`StreamAcceptor.accept`, which answers ``101 Switching Protocols`` with a
fresh nonce. From there the connection leaves the HTTP machinery: the worker hands it to
a thread of its own (a stream lives as long as the master does; holding one of the few
internal workers for that long would starve votes and joins), which reads frames
(:mod:`dkvs.transport.stream_frames`), gives each message to the node exactly as a
``POST /internal/raft`` body (``service.internal``), and writes the node's answers back,
in order, after the node has persisted what they acknowledge.

Why the same ``service.internal`` path: every rule about an incoming raft message — the
signed sender must be the message's sender, fault-injection partitions, waiting for the
node's answers — stays in one place, and a frame cannot do anything a signed POST could
not. The frame MAC stands in for the per-request body digest.

Bounds: at most ``max_streams`` at once (more are refused with 503 and the opener falls
back to POSTs), a stream silent for ``idle_timeout`` is closed (masters send heartbeats
far more often), a frame over ``MAX_FRAME_BYTES`` or failing its MAC closes it at once.
Without a ``signer`` on the service (a fake service in tests) streams are refused with
404, which makes an opener use POSTs.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading

from ..errors import DkvsError, NotFound
from ..transport import codec
from ..transport.auth import NONCE_HEADER, SENDER_HEADER
from ..transport.stream_frames import (ERROR, MESSAGE, REPLY, STREAM_NONCE_HEADER, STREAM_PROTOCOL, FrameError,
                                       FrameReader, FrameWriter)
from ..transport.stream_sender import receiver, use_kernel_timeouts
from .response import Reply, error_reply
from .service import STREAM_QUERY

__all__ = ["StreamAcceptor", "TooManyStreams", "MAX_STREAMS", "is_upgrade"]

log = logging.getLogger("dkvs.stream")

MAX_STREAMS = 32
RECV_BYTES = 256 * 1024
_JOIN_SECONDS = 2.0


class TooManyStreams(DkvsError):
    """Every stream place is taken: the opener falls back to POSTs and retries later."""

    status = 503
    code = "too_many_streams"


def is_upgrade(headers) -> bool:
    """Does this request ask to turn into a replication stream?"""
    return (headers.get("Upgrade") or "").strip().lower() == STREAM_PROTOCOL


class _Session:
    __slots__ = ("conn", "keys", "sender", "thread")

    def __init__(self, keys, sender: str | None) -> None:
        self.conn = None
        self.keys = keys
        self.sender = sender
        self.thread: threading.Thread | None = None


class StreamAcceptor:
    """The inbound streams of one server; ``accept`` from a route, ``start`` from a worker."""

    def __init__(self, server, max_streams: int = MAX_STREAMS) -> None:
        self.server = server
        self.max_streams = max_streams
        self.accepted = 0
        self._sessions: set[_Session] = set()
        self._lock = threading.Lock()
        self._closed = False

    def __len__(self) -> int:
        return len(self._sessions)

    def accept(self, ex) -> Reply:
        """Answer an authenticated upgrade request (``ex`` is the request handler)."""
        ex.read_body(0, required=False)  # an upgrade has no body: one is refused with 413
        signer = getattr(ex.service, "signer", None)
        if signer is None:
            return error_reply(NotFound("this node does not take replication streams"))
        with self._lock:
            if self._closed or len(self._sessions) >= self.max_streams:
                return error_reply(TooManyStreams(f"this node has {len(self._sessions)} streams open; use POST"))
        accept_nonce = secrets.token_hex(16)
        keys = signer.stream_keys(ex.headers.get(NONCE_HEADER) or "", accept_nonce)
        ex.upgrade = _Session(keys, signer.sender(ex.headers))
        return Reply(101, b"", "", (("Upgrade", STREAM_PROTOCOL), ("Connection", "Upgrade"),
                                    (STREAM_NONCE_HEADER, accept_nonce)))

    def start(self, conn, session: _Session) -> bool:
        """Serve ``conn`` as a stream on a thread of its own; False if closing (the caller
        then closes the connection)."""
        session.conn = conn
        with self._lock:
            if self._closed or len(self._sessions) >= self.max_streams:
                return False
            self._sessions.add(session)
            self.accepted += 1
        session.thread = threading.Thread(target=self._serve, args=(session,), daemon=True,
                                          name=f"dkvs-stream-in-{session.sender or conn.address}")
        session.thread.start()
        log.debug("replication stream from %s accepted", session.sender or conn.address)
        return True

    def close(self) -> None:
        """Shut every stream down (server stop); their threads close their connections."""
        with self._lock:
            self._closed = True
            sessions = list(self._sessions)
        for session in sessions:
            try:
                session.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for session in sessions:
            if session.thread is not None:
                session.thread.join(_JOIN_SECONDS)

    # -- one stream ----------------------------------------------------------------------------
    def _serve(self, session: _Session) -> None:
        conn = session.conn
        sock = conn.sock
        server = self.server
        service = server.service
        reader, writer = FrameReader(session.keys[0]), FrameWriter(session.keys[1])
        headers = {SENDER_HEADER: session.sender} if session.sender is not None else {}
        recv = receiver(sock, RECV_BYTES)
        if conn.buffered:
            reader.feed(bytes(conn.buf[conn.pos:]))
            conn.pos = len(conn.buf)
        try:
            # One system call per read and per write (the worker's short SO_RCVTIMEO is replaced);
            # TLS connections keep a Python timeout.
            if not use_kernel_timeouts(sock, server.idle_timeout_seconds, server.request_timeout_seconds):
                sock.settimeout(server.idle_timeout_seconds)
            while not self._closed:
                frames = reader.frames()
                if not frames:
                    data = recv()
                    if not data:
                        break
                    reader.feed(data)
                    continue
                out = []
                for kind, frame_id, payload in frames:
                    if kind != MESSAGE:
                        raise FrameError(f"unexpected frame kind {kind} from the opening side")
                    try:
                        status, answer = service.internal("POST", "raft", STREAM_QUERY, payload, headers)
                        if status == 200 and not codec.is_binary_many(answer):  # the master decodes binary faster
                            answer = codec.encode_binary_many(codec.decode_many(answer))
                    except (DkvsError, codec.CodecError) as exc:
                        status, answer = getattr(exc, "status", 400), str(exc).encode()
                    out.append(writer.frame(REPLY if status == 200 else ERROR, frame_id, answer))
                sock.sendall(b"".join(out))
        except FrameError as exc:
            log.warning("closing the replication stream from %s: %s", session.sender or conn.address, exc)
        except (OSError, ValueError) as exc:  # timeout, reset, shut down by close()
            log.debug("replication stream from %s ended: %s", session.sender or conn.address, exc)
        finally:
            with self._lock:
                self._sessions.discard(session)
            server.connections.give_back(conn, "close")
