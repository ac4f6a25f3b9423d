"""One pipelined HTTP/1.1 connection to another node, for forwarding without a waiting thread.

A slave under 1,000 clients used to hold a worker thread per forwarded write for the whole
round trip to the master; at most 128 threads capped it near 1,300 writes/s and the master
saw few writes in flight (docs/benchmarks.md). Here a write is *sent* by the thread that
has it (queued in order under the connection's lock; whichever thread is sending writes
everything queued meanwhile with one ``sendall``) and its answer is *read* by
the connection's reader thread, which parses the answers in the order the requests went
out (RFC 9112 §9.3.2: a server answers pipelined requests in order) and hands each to its
request's ``done`` callback. A handful of connections thus carry hundreds of writes in
flight with one thread each.

Rules kept:

* A request that could not be sent at all (connect refused, connection already closing)
  is reported by :meth:`PipelinedConnection.send` returning False: the caller may try
  another connection; nothing reached the master.
* A connection that breaks, answers garbage or exceeds the oldest request's deadline fails
  every request in flight on it (their outcome is unknown to us: the caller answers 503
  with ``Retry-After``, as the blocking forwarder did).
* An answer carrying ``Connection: close`` ends the connection after it; the requests
  written behind it were not processed by the server (RFC 9112 §9.6) and go back to the
  caller through ``resend`` (once each).
* An idle connection is closed by its reader after ``idle_close_seconds``, well before the
  server's idle timeout, so a request is never written into a connection the server is
  closing.

Not supported (the caller uses the blocking forwarder instead): TLS, whose socket must not
be read and written by two threads at once.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from ..transport.stream_sender import receiver
from .response import JSON_TYPE, Reply

__all__ = ["PipelinedConnection", "Pending", "BrokenAnswer", "MAX_HEAD_BYTES", "IO_SLICE_SECONDS",
           "request_bytes"]

MAX_HEAD_BYTES = 64 * 1024
RECV_BYTES = 256 * 1024
IO_SLICE_SECONDS = 5.0
_RELAYED = ((b"\r\nretry-after:", "Retry-After"), (b"\r\nx-dkvs-seq:", "X-Dkvs-Seq"))


class BrokenAnswer(ValueError):
    """The other node's answer is not HTTP/1.1 we can frame."""


class Pending:
    """One request in flight: its bytes, deadline and the callback for its outcome.

    ``done(reply_or_none, reason)`` is called exactly once: with a :class:`Reply`, or with
    ``None`` and a short reason when the connection failed."""

    __slots__ = ("data", "head_only", "deadline", "done", "resent")

    def __init__(self, data: bytes, head_only: bool, deadline: float,
                 done: Callable[[Reply | None, str], None]) -> None:
        self.data, self.head_only, self.deadline, self.done = data, head_only, deadline, done
        self.resent = False


class PipelinedConnection:
    """A persistent connection to ``(host, port)`` with a reader thread; see the module doc."""

    def __init__(self, host: str, port: int, *, connect_timeout_seconds: float,
                 idle_close_seconds: float, resend: Callable[[Pending], None], name: str) -> None:
        self.host, self.port = host, port
        self.connect_timeout_seconds = connect_timeout_seconds
        self.idle_close_seconds = idle_close_seconds
        self._resend = resend
        self._name = name
        self._lock = threading.Lock()
        self._inflight: deque[Pending] = deque()
        self._sock: socket.socket | None = None
        self._outbox = bytearray()  # bytes of requests queued while another thread sends
        self._sending = False
        self._reader: threading.Thread | None = None
        self.dead = False
        self._last_active = time.monotonic()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def send(self, pending: Pending) -> bool:
        """Write ``pending``'s request; False if nothing was sent (try elsewhere)."""
        with self._lock:
            if self.dead:
                return False
            if self._sock is None:
                try:
                    sock = socket.create_connection((self.host, self.port), self.connect_timeout_seconds)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    self.dead = True
                    return False
                self._sock = sock
                self._reader = threading.Thread(target=self._read_loop, name=self._name, daemon=True)
                self._reader.start()
            self._inflight.append(pending)
            self._last_active = time.monotonic()
            self._outbox += pending.data
            if self._sending:  # the thread sending now takes these bytes too
                return True
            self._sending = True
            sock = self._sock
        # Flat combining: one sender at a time writes whatever queued up meanwhile, in
        # order, with one system call per round instead of one per request.
        while True:
            with self._lock:
                data, self._outbox = self._outbox, bytearray()
                if not data or self.dead:
                    self._sending = False
                    return True
            try:
                sock.sendall(data)
            except OSError:
                with self._lock:
                    self._sending = False
                    failed = self._die_locked()
                _fail(failed, "the connection broke while sending")
                return True

    def close(self) -> None:
        """Fail what is in flight and close; the reader thread ends soon after."""
        with self._lock:
            failed = self._die_locked()
        _fail(failed, "the forwarder was closed")

    def join(self, timeout: float) -> None:
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)

    # --- the reader thread ------------------------------------------------------------

    def _die_locked(self) -> list[Pending]:
        self.dead = True
        failed, self._inflight = list(self._inflight), deque()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader out of recv
            except OSError:
                pass
        return failed

    def _read_loop(self) -> None:
        sock = self._sock
        # One timeout serves both directions: how often the reader checks deadlines, and how
        # long a sendall may stall on a master that does not read before the connection fails.
        sock.settimeout(min(IO_SLICE_SECONDS, self.idle_close_seconds))
        buf = bytearray()
        recv = receiver(sock, RECV_BYTES)
        reason = "the connection closed"
        try:
            while not self.dead:
                try:
                    data = recv()
                except TimeoutError:
                    if self._expired():
                        reason = "the other node did not answer in time"
                        break
                    continue
                except OSError:
                    reason = "the connection was reset"
                    break
                if not data:
                    break
                buf += data
                try:
                    if not self._deliver(buf):
                        return  # Connection: close handled
                except BrokenAnswer as exc:
                    reason = f"a broken answer ({exc})"
                    break
        finally:
            with self._lock:
                failed = self._die_locked()
            sock.close()
            _fail(failed, reason)

    def _expired(self) -> bool:
        """After a quiet slice: is the oldest request overdue, or an idle connection old?"""
        now = time.monotonic()
        with self._lock:
            if self._inflight:
                return now >= self._inflight[0].deadline
            if now - self._last_active >= self.idle_close_seconds:
                self.dead = True  # no sender may pick it any more
                return True
        return False

    def _deliver(self, buf: bytearray) -> bool:
        """Hand every complete answer in ``buf`` to its request; False once closing."""
        while True:
            with self._lock:
                if not self._inflight:
                    if buf:
                        raise BrokenAnswer("bytes arrived with no request in flight")
                    return True
                head_only = self._inflight[0].head_only
            parsed = parse_answer(buf, head_only)
            if parsed is None:
                return True
            reply, close, used = parsed
            del buf[:used]
            if reply is None:  # an interim 1xx answer
                continue
            with self._lock:
                if not self._inflight:  # closed meanwhile: its requests were failed
                    return False
                pending = self._inflight.popleft()
                self._last_active = time.monotonic()
                behind = self._die_locked() if close else []
            pending.done(reply, "")
            if close:
                for other in behind:
                    if other.resent:
                        other.done(None, "the other node closed the connection")
                    else:
                        other.resent = True
                        self._resend(other)
                return False


def parse_answer(buf: bytearray, head_only: bool) -> tuple[Reply | None, bool, int] | None:
    """``(reply, close, bytes used)`` for the complete answer at the start of ``buf``;
    ``None`` if incomplete; ``reply`` is ``None`` for an interim (1xx) answer.

    Only the few headers that matter are looked up (in the lower-cased head, by ``find``):
    a per-line parse of every answer cost more than the rest of the reader."""
    end = buf.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
    if end < 0:
        if len(buf) >= MAX_HEAD_BYTES:
            raise BrokenAnswer("the answer's head is too long")
        return None
    head = bytes(buf[:end])
    version, status_code = head[:9], head[9:12]
    if not (version in (b"HTTP/1.1 ", b"HTTP/1.0 ") and status_code.isdigit() and head[12:13] in (b" ", b"\r", b"")):
        raise BrokenAnswer(f"bad status line {head[:40]!r}")
    status = int(status_code)
    if 100 <= status < 200:
        return None, False, end + 4
    lowered = head.lower() + b"\r\n"
    if b"\r\ntransfer-encoding:" in lowered:
        raise BrokenAnswer("a chunked answer")  # dkvs nodes always send Content-Length
    length = 0
    value = _header(head, lowered, b"\r\ncontent-length:")
    if value is not None:
        if not value.isdigit():
            raise BrokenAnswer("a bad Content-Length")
        length = int(value)
    connection = _header(head, lowered, b"\r\nconnection:")
    close = connection.lower() == b"close" if connection is not None else version == b"HTTP/1.0 "
    content_type = _header(head, lowered, b"\r\ncontent-type:")
    relayed = ()
    for name, shown in _RELAYED:
        found = _header(head, lowered, name)
        if found:
            relayed += ((shown, found.decode("iso-8859-1")),)
    if head_only or status in (204, 304):
        length = 0
    used = end + 4 + length
    if len(buf) < used:
        return None
    return (Reply(status, bytes(buf[end + 4:used]),
                  content_type.decode("iso-8859-1") if content_type else JSON_TYPE, relayed),
            close, used)


def _header(head: bytes, lowered: bytes, marker: bytes) -> bytes | None:
    """The stripped value of the first header whose ``\\r\\nname:`` is ``marker``."""
    at = lowered.find(marker)
    if at < 0:
        return None
    start = at + len(marker)
    return head[start:lowered.index(b"\r\n", start)].strip()


def _fail(pendings: list[Pending], reason: str) -> None:
    for pending in pendings:
        pending.done(None, reason)


def request_bytes(method: str, path: str, place: tuple, body: bytes | None,
                  headers: Mapping[str, str]) -> bytes:
    """The whole request, for one ``sendall``; ``Content-Length`` as ``http.client`` sets it."""
    _, host, port = place
    shown = f"[{host}]" if ":" in host else host
    lines = [f"{method} {path} HTTP/1.1", f"Host: {shown}:{port}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if body is not None or method in ("PUT", "POST", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1", "replace")
    return head + body if body else head
