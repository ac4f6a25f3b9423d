"""One client connection as data, and the blocking reader and writer a worker uses on it.

A :class:`Connection` lives in two places in turn: in the selector thread
(:mod:`dkvs.api.connections`), which reads bytes without blocking until a whole request
head (and, when small, its whole body) is buffered, and in a worker thread
(:mod:`dkvs.api.workers`), which answers that one request and hands the connection back.
Exactly one thread owns a connection at a time; the hand-over goes through a queue, so no
field needs a lock.

The worker reads through :class:`ConnectionReader`: it serves the buffered bytes first and
only then touches the socket, with a timeout that keeps the request's deadline. One rule
bounds every request, head and body alike (see ``docs/architecture.md``, "Connections and
workers")::

    all bytes of a request must have arrived by
        request_started + request_timeout + bytes_received_so_far / MIN_BODY_RATE

so a client gets ``request_timeout`` of grace, then must keep an average of
``MIN_BODY_RATE`` (64 KiB/s). A client that trickles one byte a second is cut off after
about ``request_timeout``, whatever it declared. Besides, a body that stays *silent* for
``idle_timeout`` is a stall (400, as before this rule existed).
"""

from __future__ import annotations

import socket
import struct
import time

__all__ = ["Connection", "ConnectionReader", "ConnectionWriter", "RequestTimedOut", "MIN_BODY_RATE",
           "HOT_WAIT_SECONDS",
           "NEW", "IDLE", "HEAD", "BODY", "BUSY", "LINGER"]

MIN_BODY_RATE = 64 * 1024  # bytes per second a request must average after its grace period
HOT_WAIT_SECONDS = 0.005  # one slice of a worker's wait for the next request (SO_RCVTIMEO)
RECV_BYTES = 64 * 1024
_COMPACT_BYTES = 64 * 1024  # drop consumed bytes from the buffer once this many piled up

# Where a connection is (only the selector reads these; a worker sees BUSY).
NEW, IDLE, HEAD, BODY, BUSY, LINGER = "new", "idle", "head", "body", "busy", "linger"


class RequestTimedOut(TimeoutError):
    """The request did not arrive within its deadline (the handler answers 408)."""


class Connection:
    """A socket, the bytes read from it and not yet consumed, and the current request's clock.

    ``buf[pos:]`` are unconsumed bytes. ``expired`` is set by the selector when it gives
    up waiting for a body: ``"stall"`` (silent for ``idle_timeout``) or ``"deadline"``;
    the reader then raises instead of waiting for more.
    """

    __slots__ = ("sock", "fd", "address", "buf", "pos", "state", "deadline", "request_started",
                 "request_bytes", "last_read", "head_end", "need", "reserved", "expired", "eof",
                 "linger_left", "kind", "over_cap", "hot", "reader", "writer")

    def __init__(self, sock: socket.socket, address, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.address = address
        self.buf = bytearray()
        self.pos = 0
        self.state = NEW
        self.deadline = 0.0
        self.request_started = now
        self.request_bytes = 0
        self.last_read = now
        self.head_end = -1
        self.need = 0  # bytes of buf[pos:] the selector waits for before dispatching
        self.reserved = 0  # bytes of the prefetch budget this connection holds
        self.expired: str | None = None
        self.eof = False
        self.linger_left = 0
        self.kind = "client"
        self.over_cap = False
        self.hot = False
        self.reader: ConnectionReader | None = None  # made by the first handler, then reused
        self.writer: ConnectionWriter | None = None

    @property
    def buffered(self) -> int:
        return len(self.buf) - self.pos

    def start_request(self, now: float) -> None:
        """A new request begins now; bytes already buffered (pipelined) count for it."""
        self.request_started = now
        self.request_bytes = self.buffered
        self.expired = None
        self.head_end = -1
        self.need = 0

    def received(self, data: bytes, now: float) -> None:
        self.buf += data
        self.request_bytes += len(data)
        self.last_read = now

    def request_deadline(self, request_timeout: float) -> float:
        return self.request_started + request_timeout + self.request_bytes / MIN_BODY_RATE

    def setup_socket(self) -> None:
        """Socket options for the life of the connection.

        The socket stays in blocking mode: the selector passes ``MSG_DONTWAIT`` on each
        call instead, and a worker's plain ``recv`` waits at most ``HOT_WAIT_SECONDS``
        (``SO_RCVTIMEO``). So the common request needs no mode switch (each one is a
        system call that releases the GIL, and under load every release costs a thread
        switch). Where ``SO_RCVTIMEO`` cannot be set, ``hot`` is False and workers never
        wait on the connection.
        """
        sock = self.sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                            struct.pack("ll", 0, int(HOT_WAIT_SECONDS * 1_000_000)))
            self.hot = True
        except (OSError, struct.error):
            self.hot = False

    def compact(self) -> None:
        if self.pos >= _COMPACT_BYTES or (self.pos and self.pos == len(self.buf)):
            del self.buf[:self.pos]
            self.pos = 0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class ConnectionReader:
    """``readline(limit)`` and ``read(n)`` over a connection's buffer, then its socket.

    Used by one worker for one request. Socket reads wait at most until the request's
    deadline and at most ``idle_timeout`` of silence: past the deadline it raises
    :class:`RequestTimedOut`, on silence ``TimeoutError``, at EOF it returns short.
    """

    def __init__(self, conn: Connection, request_timeout: float, idle_timeout: float) -> None:
        self.conn = conn
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout

    def restart_clock(self) -> None:
        """The client waits for us (``100 Continue``): its grace starts again now."""
        conn = self.conn
        conn.request_started, conn.request_bytes = time.monotonic(), 0

    def _fill(self) -> bool:
        """Read more into the buffer; False at EOF."""
        conn = self.conn
        if conn.eof:
            return False
        if conn.expired == "deadline":
            raise RequestTimedOut("the request did not arrive in time")
        if conn.expired == "stall":
            raise TimeoutError("the client went silent")
        remaining = conn.request_deadline(self.request_timeout) - time.monotonic()
        if remaining <= 0:
            raise RequestTimedOut("the request did not arrive in time")
        stall = remaining > self.idle_timeout
        conn.sock.settimeout(min(remaining, self.idle_timeout))
        try:
            data = conn.sock.recv(RECV_BYTES)
        except TimeoutError:
            if stall:
                raise
            raise RequestTimedOut("the request did not arrive in time") from None
        finally:
            conn.sock.settimeout(None)  # back to blocking mode (see Connection.setup_socket)
        if not data:
            conn.eof = True
            return False
        conn.received(data, time.monotonic())
        return True

    def readline(self, limit: int = -1) -> bytes:
        conn = self.conn
        while True:
            buf, pos = conn.buf, conn.pos
            end = buf.find(b"\n", pos)
            if limit >= 0 and (end < 0 or end - pos + 1 > limit) and len(buf) - pos >= limit:
                end = pos + limit - 1
            if end >= 0:
                line = bytes(buf[pos:end + 1])
                conn.pos = end + 1
                return line
            if not self._fill():
                line = bytes(conn.buf[conn.pos:])
                conn.pos = len(conn.buf)
                return line

    def read(self, size: int) -> bytes:
        conn = self.conn
        while conn.buffered < size and self._fill():
            pass
        pos = conn.pos
        data = bytes(conn.buf[pos:pos + size])
        conn.pos = pos + len(data)
        conn.compact()
        return data


class ConnectionWriter:
    """``write(data)``: all of it, within ``timeout`` seconds plus time for its size.

    One ``send`` without waiting usually takes the whole answer; only the rest of a large
    one waits, and a client that stops reading cannot hold a worker longer than the bound
    (``socket.sendall``'s timeout covers the whole call since Python 3.5).
    """

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout

    def write(self, data: bytes) -> int:
        sock = self.sock
        try:
            sent = sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            sock.settimeout(self.timeout + len(data) / MIN_BODY_RATE)
            try:
                sock.sendall(memoryview(data)[sent:])
            finally:
                sock.settimeout(None)
        return len(data)

    def flush(self) -> None:
        pass
