"""The opening end of a replication stream: one thread, one connection, one peer.

Why not ``http.client`` per batch: on a master under ``acks=majority`` load, a third of
the process's CPU went to building requests and parsing answers with ``http.client``
(its ``email``-based header parser alone took 10%). Here a connection is opened once
with a signed HTTP upgrade of ``POST /internal/raft`` (so cluster secret, target id,
nonce, clock and cluster id are checked exactly as for any internal request, by the same
code), and then carries frames (:mod:`.stream_frames`): no HTTP head per batch, no header
parsing, one ``sendall`` and one ``recv`` per round.

Rules of this end:

* Only replication messages (:class:`~dkvs.core.messages.Append`) use the stream; votes
  and snapshots keep their POSTs.
* Up to ``window`` queued messages leave in one write; the thread then reads answers
  until all of them are answered (or the request timeout passes). The driver's in-flight
  table bounds how many may be queued (:mod:`dkvs.driver.inflight`).
* Answers that arrive together are delivered together, under the highest send id among
  them: the stream is ordered, so answering id N answers every earlier one
  (a cumulative acknowledgement).
* A failure (connect, TLS, timeout, bad frame, the peer's ERROR frame) closes the
  connection and reports each unanswered send unreachable, exactly like a failed POST.
* A peer that answers the upgrade with anything but ``101`` (a node from before the
  stream, or one that refuses) gets its messages over ``POST /internal/raft`` instead, and
  the stream is tried again after ``FALLBACK_SECONDS``.
* An idle stream (no message for ``IDLE_CLOSE_SECONDS``, e.g. after stepping down) is
  closed; the next message opens it again.
"""

from __future__ import annotations

import collections
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable

from ..core.messages import Message
from . import codec
from .auth import NONCE_HEADER
from . import stream_frames
from .stream_frames import (ERROR, MESSAGE, RAFT_PATH, REPLY, STREAM_NONCE_HEADER, STREAM_PROTOCOL, FrameError,
                            FrameReader, FrameWriter)
from .tls import peer_context

__all__ = ["StreamSender", "StreamRefused", "FALLBACK_SECONDS", "IDLE_CLOSE_SECONDS", "STREAM_WINDOW",
           "deliver_answers", "open_stream", "receiver", "take_answered", "use_kernel_timeouts"]

log = logging.getLogger("dkvs.transport")

FALLBACK_SECONDS = 30.0  # after a refused upgrade: POST this long before trying the stream again
IDLE_CLOSE_SECONDS = 30.0
STREAM_WINDOW = 8  # messages written before waiting for their answers
MAX_HEAD_BYTES = 16 * 1024
RECV_BYTES = 256 * 1024
_QUEUE_MESSAGES = 256


def use_kernel_timeouts(sock, recv_seconds: float, send_seconds: float) -> bool:
    """Put a plain socket in blocking mode with ``SO_RCVTIMEO``/``SO_SNDTIMEO`` bounds.

    Why: a Python socket with a timeout polls before every ``recv`` and ``send``, which
    doubles the system calls of each round trip; with kernel timeouts each is one call,
    and a timeout surfaces as an ``OSError`` (``EAGAIN``) like any other failure. False
    (and the socket keeps a Python timeout) where the options cannot be set, or for TLS.
    """
    if isinstance(sock, ssl.SSLSocket) or not isinstance(sock, socket.socket):
        return False
    try:
        for option, seconds in ((socket.SO_RCVTIMEO, recv_seconds), (socket.SO_SNDTIMEO, send_seconds)):
            whole = int(seconds)
            sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, int((seconds - whole) * 1e6)))
    except (OSError, struct.error):
        return False
    sock.settimeout(None)
    return True


def receiver(sock, size: int) -> Callable[[], bytes | memoryview]:
    """A function that returns the next bytes read from ``sock`` (empty at EOF), at most ``size``.

    Why: ``recv(256 KiB)`` allocates (and frees) that much per call — ~13 µs against ~1 µs
    for ``recv_into`` one reused buffer — and a replication round reads on both ends. The
    bytes returned are a view of that buffer, valid until the next call. Objects that are
    not sockets (the server's TLS wrapper) get their own ``recv``."""
    if not isinstance(sock, socket.socket):
        return lambda: sock.recv(size)
    buf = bytearray(size)
    view = memoryview(buf)
    recv_into = sock.recv_into
    return lambda: view[:recv_into(buf)]


class StreamRefused(OSError):
    """The peer answered the upgrade with a status other than 101."""


class StreamSender:
    """Owns the stream to one peer. ``offer`` never blocks; the thread does the I/O.

    ``transport`` gives ``signer``, ``connect_timeout``, ``request_timeout``, ``blocked``,
    ``_deliver``, ``_unreachable`` and ``fallback(peer, message, send_id)`` (send it by POST).
    """

    def __init__(self, transport, peer_id: str, host: str, port: int, tls: bool,
                 window: int = STREAM_WINDOW) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.host, self.port, self.tls = host, port, tls
        self.window = window
        self.fallback_until = 0.0  # monotonic instant; while in the future, POST is used
        self.opened = 0  # connections opened (tests and metrics)
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._sock = None
        self._reader: FrameReader | None = None
        self._recv = None  # reads the open socket (receiver)
        self._writer: FrameWriter | None = None
        self._thread = threading.Thread(target=self._run, name=f"dkvs-stream-{peer_id}", daemon=True)
        self._thread.start()

    @property
    def usable(self) -> bool:
        return not self._closed and time.monotonic() >= self.fallback_until

    def offer(self, message: Message, send_id: int) -> None:
        with self._cond:
            if self._closed or len(self._queue) >= _QUEUE_MESSAGES:
                return  # dropped: the core resends on its timer
            self._queue.append((message, send_id))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread if it waits for answers
            except OSError:
                pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(IDLE_CLOSE_SECONDS)
                if self._closed:
                    break
                if not self._queue:
                    self._disconnect()  # idle: let the peer's thread go
                    continue
                batch = [self._queue.popleft() for _ in range(min(self.window, len(self._queue)))]
            self._send_batch(batch)
        self._disconnect()

    def _send_batch(self, batch: list) -> None:
        transport = self.transport
        pending = [send_id for _, send_id in batch]
        try:
            if self._sock is None:
                self._connect()
            writer = self._writer
            frames = []
            for message, send_id in batch:
                payload = codec.encode_binary(message)
                if len(payload) > stream_frames.MAX_FRAME_BYTES:
                    # One legal entry can outgrow a frame (a txn of binary values, 21 wire
                    # bytes per 4 of value): it goes by POST, whose cap is sized for it
                    # (dkvs.api.internal_limits), instead of failing the stream forever.
                    pending.remove(send_id)
                    transport.fallback(self.peer_id, message, send_id)
                    continue
                frames.append(writer.frame(MESSAGE, send_id, payload))
            if not frames:
                return
            self._sock.sendall(b"".join(frames))
            self._await_answers(pending)
        except StreamRefused as exc:
            self._disconnect()
            self.fallback_until = time.monotonic() + FALLBACK_SECONDS
            log.info("%s does not take a replication stream (%s); using POST %s for %.0f s",
                     self.peer_id, exc, "/internal/raft", FALLBACK_SECONDS)
            for message, send_id in batch:
                transport.fallback(self.peer_id, message, send_id)
        except (OSError, FrameError, codec.CodecError, ssl.SSLError) as exc:
            log.debug("stream to %s failed: %s", self.peer_id, exc)
            self._disconnect()
            if transport._unreachable is not None and not self._closed:
                for send_id in pending:
                    transport._unreachable(self.peer_id, send_id)

    def _await_answers(self, pending: list[int]) -> None:
        """Read until every id in ``pending`` is answered; removes them as they are."""
        reader, transport = self._reader, self.transport
        while pending:
            frames = reader.frames()
            if not frames:
                data = self._recv()
                if not data:
                    raise OSError("the peer closed the stream")
                reader.feed(data)
                continue
            take_answered(pending, frames)
            deliver_answers(transport, self.peer_id, frames)

    # -- the connection ------------------------------------------------------------------------
    def _connect(self) -> None:
        sock, self._writer, self._reader = open_stream(self.transport, self.peer_id, self.host, self.port, self.tls)
        use_kernel_timeouts(sock, self.transport.request_timeout, self.transport.request_timeout)  # else keeps its timeout
        self._sock = sock
        self._recv = receiver(sock, RECV_BYTES)
        self.opened += 1

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        self._reader = self._writer = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def take_answered(pending, frames: list) -> None:
    """Remove the ids ``frames`` answer from ``pending`` (a list or a dict of unanswered send
    ids); all are checked before any is removed, so a failure leaves every one unanswered."""
    for _, frame_id, _ in frames:
        if frame_id not in pending:
            raise FrameError(f"an answer to {frame_id}, which is not outstanding")
    for _, frame_id, _ in frames:
        if isinstance(pending, list):
            pending.remove(frame_id)
        else:
            del pending[frame_id]


def deliver_answers(transport, peer_id: str, frames: list) -> None:
    """Hand a peer's answer frames to the node: the ``REPLY`` messages together, under the
    highest id among them (cumulative acknowledgement); each ``ERROR`` as that send's loss."""
    answered, messages = 0, []
    for kind, frame_id, payload in frames:
        if kind == REPLY:
            messages.extend(codec.decode_many(payload))
            answered = max(answered, frame_id)
        elif kind == ERROR:
            log.debug("%s refused message %d: %s", peer_id, frame_id, payload[:200])
            if transport._unreachable is not None:
                transport._unreachable(peer_id, frame_id)
        else:
            raise FrameError(f"unexpected frame kind {kind} from the accepting side")
    if answered and peer_id not in transport.blocked:
        transport._deliver(peer_id, answered, messages)


def open_stream(transport, peer_id: str, host: str, port: int, tls: bool) -> tuple:
    """Connect to ``peer_id`` and upgrade ``POST /internal/raft`` to a replication stream.

    Blocking, bounded by the transport's connect and request timeouts. Returns the socket
    (still with a Python timeout), the frame writer and the frame reader (holding any bytes
    that came after the ``101`` answer). Raises :class:`StreamRefused` when the peer answers
    anything but ``101``, ``OSError`` or ``ssl.SSLError`` on failure."""
    sock = socket.create_connection((host, port), timeout=transport.connect_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            context = peer_context() or ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=host)
        signed = transport.signer.headers("POST", RAFT_PATH, b"", to=peer_id)
        head = [f"POST {RAFT_PATH} HTTP/1.1", f"Host: {host}:{port}", "Content-Length: 0",
                f"Upgrade: {STREAM_PROTOCOL}", "Connection: Upgrade"]
        head += [f"{name}: {value}" for name, value in signed.items()]
        sock.settimeout(transport.request_timeout)
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        status, headers, rest = _read_answer_head(sock)
        if status != 101 or headers.get("upgrade", "").lower() != STREAM_PROTOCOL:
            raise StreamRefused(f"upgrade answered {status}")
        keys = transport.signer.stream_keys(signed.get(NONCE_HEADER, ""),
                                            headers.get(STREAM_NONCE_HEADER.lower(), ""))
    except BaseException:
        sock.close()
        raise
    reader = FrameReader(keys[1])
    reader.feed(rest)
    log.debug("replication stream to %s open (%s)", peer_id, "MAC per frame" if keys[0] else "no secret")
    return sock, FrameWriter(keys[0]), reader


def _read_answer_head(sock) -> tuple[int, dict[str, str], bytes]:
    """The status, headers (lower-case names) and the bytes after the head of an answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD_BYTES:
            raise OSError("the upgrade answer's head is too long")
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("the peer closed the connection during the upgrade")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    words = lines[0].split(" ", 2)
    try:
        status = int(words[1])
    except (IndexError, ValueError):
        raise OSError(f"malformed answer line {lines[0][:80]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest
