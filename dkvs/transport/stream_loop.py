"""The opening end of a replication stream, driven by the node's selector: no thread of its own.

Why: with a thread per peer (:class:`~.stream_sender.StreamSender`) every replication round
is a hand-over. The burst that emits a batch wakes the peer's thread, which sends it and
blocks in ``recv``; the answer wakes that thread again, which then runs the node. On a master
under ``acks=majority`` load, the node's HTTP selector and one stream thread per slave
took the interpreter lock from one another for every round: some 7 context switches per
round per stream thread, and at one client over a third of the master's CPU went to the
waking, not to the work. Here nobody is woken:

* **Sending** happens on the thread that runs the burst (it holds the node lock, so
  messages still leave in order): the message is encoded, framed and written with one
  non-blocking ``send``. What the socket does not take at once waits in an output buffer
  that the selector flushes when the socket is writable; later messages queue behind it.
* **Answers** are read by the HTTP selector, which watches the stream's socket next to the
  client connections (:class:`dkvs.api.watched.WatchedSockets`) and delivers
  them to the node, running the resulting burst itself when the node lock is free.
* **Opening** the connection (TCP connect and the signed HTTP upgrade, shared with the
  threaded sender: :func:`~.stream_sender.open_stream`) blocks, so it runs on a short-lived
  thread; messages offered meanwhile queue (bounded) and leave, in order, once it is open.

The rules of the threaded sender hold unchanged: answers that arrive together are
delivered together under the highest send id among them (cumulative acknowledgement); a
failure (connect, send, a bad frame, the peer's ERROR frame is per message, an answer
missing for the transport's request timeout) closes the connection and reports every
unanswered send unreachable; a refused upgrade sends the queued messages by POST and makes
the transport use POST for ``FALLBACK_SECONDS``; an idle stream closes after
``IDLE_CLOSE_SECONDS``; a message too big for one frame goes by POST.

Plain TCP only: TLS peers keep the threaded sender (a non-blocking TLS socket can need a
read to finish a write, which this end does not model).
"""

from __future__ import annotations

import collections
import logging
import socket
import ssl
import threading
import time

from ..core.messages import Message
from . import codec
from . import stream_frames
from .stream_frames import MESSAGE, FrameError
from .stream_sender import (FALLBACK_SECONDS, IDLE_CLOSE_SECONDS, RECV_BYTES, StreamRefused, deliver_answers,
                            open_stream, receiver, take_answered)

__all__ = ["LoopStreamSender", "QUEUE_MESSAGES"]

log = logging.getLogger("dkvs.transport")

QUEUE_MESSAGES = 256  # offered while the connection opens; beyond, dropped (the core resends)
MAX_OUT_BYTES = 64 * 1024 * 1024  # written but not taken by the socket; beyond, the stream fails

_IDLE, _OPENING, _OPEN, _CLOSED = "idle", "opening", "open", "closed"


class LoopStreamSender:
    """Owns the stream to one peer; ``offer`` never blocks, the selector reads the answers.

    ``loop`` is what the node's selector watches (:class:`dkvs.api.watched.WatchedSockets`:
    ``watch(watcher)``, ``unwatch(watcher)``, ``want_write(watcher, on)``; the selector
    calls ``on_ready()`` on an event and ``sweep(now)`` every few milliseconds, both on its
    thread). ``transport`` gives ``signer``,
    ``connect_timeout``, ``request_timeout``, ``blocked``, ``_deliver``, ``_unreachable``
    and ``fallback(peer, message, send_id)``, as for the threaded sender.
    """

    def __init__(self, transport, peer_id: str, host: str, port: int, loop) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.host, self.port = host, port
        self.loop = loop
        self.fallback_until = 0.0  # monotonic instant; while in the future, POST is used
        self.opened = 0  # connections opened (tests and metrics)
        self.deferred_writes = 0  # messages the socket did not take at once (the selector finished them)
        self.fd = -1  # the socket's descriptor while open (the selector's key)
        self._lock = threading.Lock()
        self._state = _IDLE
        self._queue: collections.deque = collections.deque()  # (message, payload, send_id) while opening
        self._opener: threading.Thread | None = None
        self._pending: dict[int, float] = {}  # send id -> when it left, unanswered, in order
        self._out = bytearray()  # framed bytes the socket has not taken yet
        self._recv = None  # reads the open socket into one reused buffer (stream_sender.receiver)
        self._sock: socket.socket | None = None
        self._writer = self._reader = None
        self._last_used = time.monotonic()

    @property
    def usable(self) -> bool:
        return self._state != _CLOSED and time.monotonic() >= self.fallback_until

    # -- any thread (the one running the node's burst) -------------------------------------------
    def offer(self, message: Message, send_id: int) -> None:
        payload = codec.encode_binary(message)
        if len(payload) > stream_frames.MAX_FRAME_BYTES:  # see StreamSender._send_batch: POST takes it
            self.transport.fallback(self.peer_id, message, send_id)
            return
        with self._lock:
            state = self._state
            if state is _OPEN:
                self._write(payload, send_id)
                return
            if state is _CLOSED or len(self._queue) >= QUEUE_MESSAGES:
                return  # dropped: the core resends on its timer
            self._queue.append((message, payload, send_id))
            if state is _IDLE:
                self._state = _OPENING
                self._opener = threading.Thread(target=self._open, name=f"dkvs-stream-open-{self.peer_id}",
                                                daemon=True)
                self._opener.start()

    def close(self) -> None:
        with self._lock:
            self._state = _CLOSED
            self._queue.clear()
            self._pending.clear()
            self._drop_socket()

    def join(self, timeout: float) -> None:
        """Wait for the opening thread, if one runs (it ends within the connect and request
        timeouts, and closes what it opened once it sees the stream closed)."""
        opener = self._opener
        if opener is not None:
            opener.join(timeout)

    # -- the selector's thread -------------------------------------------------------------------
    def on_ready(self) -> None:
        """The socket is readable or writable: flush what waits, then read every answer."""
        if self._out:
            with self._lock:
                if self._state is not _OPEN:
                    return
                self._flush()
        sock, reader = self._sock, self._reader
        if sock is None or self._state is not _OPEN:
            return
        recv = self._recv
        try:
            while True:
                try:
                    data = recv()
                except BlockingIOError:
                    break
                if not data:
                    raise OSError("the peer closed the stream")
                reader.feed(data)
                if len(data) < RECV_BYTES:
                    break
            self._answers(reader.frames())
        except (OSError, FrameError, codec.CodecError) as exc:
            self._fail(exc)

    def sweep(self, now: float) -> None:
        """Give up on an answer missing for the request timeout; close an idle stream."""
        if self._state is not _OPEN:
            return
        with self._lock:  # offers add to the table meanwhile
            pending = self._pending
            oldest = next(iter(pending.values())) if pending else None
            if oldest is None and now - self._last_used >= IDLE_CLOSE_SECONDS and self._state is _OPEN:
                self._state = _IDLE
                self._drop_socket()
                return
        if oldest is not None and now - oldest >= self.transport.request_timeout:
            self._fail(TimeoutError(f"no answer from {self.peer_id} for {now - oldest:.1f} s"))

    # -- internals -------------------------------------------------------------------------------
    def _write(self, payload: bytes, send_id: int) -> None:
        """Frame and write one message (the lock held, the stream open)."""
        frame = self._writer.frame(MESSAGE, send_id, payload)
        self._pending[send_id] = self._last_used = time.monotonic()
        if self._out:
            self._out += frame
            if len(self._out) > MAX_OUT_BYTES:
                self._fail_later(OSError(f"{len(self._out)} bytes to {self.peer_id} not taken by the socket"))
            return
        try:
            sent = self._sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail_later(exc)
            return
        if sent < len(frame):
            self.deferred_writes += 1
            self._out += frame[sent:]
            self.loop.want_write(self, True)

    def _flush(self) -> None:
        """Write what waits in the output buffer (the lock held)."""
        try:
            sent = self._sock.send(self._out)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail_later(exc)
            return
        del self._out[:sent]
        if not self._out:
            self.loop.want_write(self, False)

    def _answers(self, frames: list) -> None:
        if not frames:
            return
        with self._lock:
            take_answered(self._pending, frames)  # raises before taking any: _fail reports them all
        deliver_answers(self.transport, self.peer_id, frames)

    def _fail(self, exc: BaseException) -> None:
        """Close the stream and report every unanswered send unreachable (not under the lock)."""
        with self._lock:
            if self._state is not _OPEN:
                return
            log.debug("stream to %s failed: %s", self.peer_id, exc)
            lost = list(self._pending)
            self._pending.clear()
            self._state = _IDLE
            self._drop_socket()
        unreachable = self.transport._unreachable
        if unreachable is not None:
            for send_id in lost:
                unreachable(self.peer_id, send_id)

    def _fail_later(self, exc: BaseException) -> None:
        """A write failed (the lock held, maybe by a thread inside the node's burst): nothing
        more may go on this connection — a frame cut short would garble the ones after it —
        so it is shut down now, and the selector reports the unanswered sends (the shutdown
        wakes it; the next sweep at the latest), so the node is not re-entered from inside
        its own burst."""
        log.debug("stream to %s failed while writing: %s", self.peer_id, exc)
        self._out.clear()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._pending:  # overdue for the sweep, should no event come
            first = next(iter(self._pending))
            self._pending[first] = float("-inf")
        else:
            self._state = _IDLE
            self._drop_socket()

    def _drop_socket(self) -> None:
        """Forget the socket (the lock held)."""
        sock, self._sock = self._sock, None
        self._writer = self._reader = None
        self._out.clear()
        if sock is not None:
            self.loop.unwatch(self)
            self.fd = -1
            try:
                sock.close()
            except OSError:
                pass

    def _open(self) -> None:
        """The opening thread: connect, upgrade, then send what queued meanwhile."""
        transport = self.transport
        try:
            sock, writer, reader = open_stream(transport, self.peer_id, self.host, self.port, False)
        except StreamRefused as exc:
            with self._lock:
                queued = list(self._queue)
                self._queue.clear()
                if self._state is _OPENING:
                    self._state = _IDLE
                self.fallback_until = time.monotonic() + FALLBACK_SECONDS
            log.info("%s does not take a replication stream (%s); using POST %s for %.0f s",
                     self.peer_id, exc, "/internal/raft", FALLBACK_SECONDS)
            for message, _, send_id in queued:
                transport.fallback(self.peer_id, message, send_id)
            return
        except (OSError, ssl.SSLError) as exc:
            log.debug("stream to %s failed: %s", self.peer_id, exc)
            with self._lock:
                queued = list(self._queue)
                self._queue.clear()
                if self._state is _OPENING:
                    self._state = _IDLE
            if transport._unreachable is not None:
                for _, _, send_id in queued:
                    transport._unreachable(self.peer_id, send_id)
            return
        sock.setblocking(False)
        with self._lock:
            if self._state is not _OPENING:  # closed meanwhile
                sock.close()
                return
            self._sock, self._writer, self._reader = sock, writer, reader
            self._recv = receiver(sock, RECV_BYTES)
            self.fd = sock.fileno()
            try:
                self.loop.watch(self)
            except (OSError, ValueError) as exc:  # the selector has stopped (the node is stopping)
                log.debug("stream to %s not watched: %s", self.peer_id, exc)
                self._sock = self._writer = self._reader = self._recv = None
                self.fd = -1
                self._state = _IDLE
                self._queue.clear()
                sock.close()
                return
            self._state = _OPEN
            self.opened += 1
            queued = list(self._queue)
            self._queue.clear()
            for _, payload, send_id in queued:
                if self._state is _OPEN:
                    self._write(payload, send_id)
