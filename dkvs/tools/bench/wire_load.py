"""A lean HTTP/1.1 client engine: one thread drives every connection of a load process.

Why it exists: on a 2-core machine the load generator and the servers share the cores, so
every microsecond the client spends per request is taken from the server and compresses
every measured ratio toward 1. The first load worker ran one thread per client, each with an
:class:`http.client.HTTPConnection`, whose response parsing goes through the ``email``
header parser: 100-190 µs of client CPU per request, more than a dkvs GET costs the server.
This engine costs a fraction of that: non-blocking sockets under one :mod:`selectors` loop,
requests that are pre-rendered bytes, and a response parser that reads only what framing
needs.

What it does, and nothing more:

* **Connections** (:class:`WireConnection`): keep-alive HTTP/1.1 over TCP with
  ``TCP_NODELAY``, opened with a non-blocking connect on first use and reopened on the next
  request after an error or a ``Connection: close`` answer (each counted in ``reconnects``).
  At most one request is in flight on a connection.
* **Responses** (:class:`AnswerReader`, sans I/O): the status line, then of the headers
  only ``Content-Length``, ``Transfer-Encoding: chunked`` and ``Connection`` (RFC 9112
  §6.3: a body is framed by chunked coding, else by Content-Length, else by the close of
  the connection; 1xx, 204 and 304 answers have none). The body is consumed, never kept.
* **Failures** are answers too: the status is then the failure's name, chosen like
  :mod:`http.client`'s so figures of both engines read alike: ``RemoteDisconnected`` (closed
  before any byte of the answer), ``IncompleteRead`` (closed within it), ``TimeoutError``
  (no byte for ``timeout`` seconds), ``BadStatusLine``, ``BadHeader``, ``BadChunkSize``,
  ``LineTooLong``, or the ``OSError`` subclass of a refused or reset connection. The
  connection is closed and reopens on the next request. An idle connection the server
  closes is reopened on its next request, no error.
* **Clients** (:class:`WireLoop`): any object with ``next_request()`` → ``(connection,
  request bytes)`` or ``None`` (done) and ``on_answer(status, started, finished)``. A client
  sends its next request as soon as its answer is complete (a closed loop); after a failure
  it pauses ``error_pause`` seconds first, so a dead node is not hammered. ``started`` is the
  moment the request is handed to the connection and written (on a closed connection the
  connect comes first and is timed too, as with :mod:`http.client`'s lazy connect),
  ``finished`` the moment the answer's last byte was read (``time.monotonic()``).

The loop runs until every client is done; it never sleeps a fixed time, only in
``select`` until a socket is ready, a paused client is due, or a timeout check is due.
"""

from __future__ import annotations

import errno
import heapq
import os
import selectors
import socket
import time
import urllib.parse

__all__ = ["AnswerReader", "BadAnswer", "WireConnection", "WireLoop", "render_request", "host_header",
           "RECV_BYTES", "MAX_HEAD_BYTES", "TIMEOUT_CHECK_SECONDS"]

RECV_BYTES = 65536
MAX_HEAD_BYTES = 65536  # a status line plus headers longer than this is a bad answer
TIMEOUT_CHECK_SECONDS = 0.05  # how often in-flight requests are checked against their timeout

_IDLE, _HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _UNTIL_CLOSE = range(7)
_NO_BODY_STATUSES = (204, 304)


class BadAnswer(Exception):
    """The bytes received are not a whole HTTP/1.x answer; ``args[0]`` is the error's name."""


def host_header(url: str) -> str:
    """The ``Host`` value for ``url`` (``host:port``)."""
    parts = urllib.parse.urlsplit(url)
    return parts.netloc


def render_request(method: str, target: str, body: bytes | None, host: str) -> bytes:
    """One request as the bytes to write, byte for byte what :mod:`http.client` sends for
    it (request line, ``Host``, ``Accept-Encoding: identity``, ``Content-Length`` when there
    is a body or the method carries one, the body): both engines give the server the same
    work, so its CPU per request compares across them."""
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\n"
    if body is not None or method in ("POST", "PUT", "PATCH"):
        body = body or b""
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode("latin-1") + (body or b"")


class AnswerReader:
    """The framing of HTTP/1.x answers, one at a time, sans I/O: bytes in, a status out.

    :meth:`start` before each request; :meth:`feed` every chunk received until it returns
    the status; :meth:`end` when the peer closed the connection first. ``will_close`` then
    says whether the connection must be closed after this answer.
    """

    def __init__(self) -> None:
        self.buf = bytearray()  # bytes received, not yet consumed
        self.start()
        self.state = _IDLE

    def start(self) -> None:
        """Expect a new answer (on a connection with no bytes pending)."""
        self.state = _HEAD
        self.got_bytes = False
        self.status = 0
        self.left = 0  # bytes of body (or of the current chunk and its CRLF) still to read
        self.will_close = False

    def end(self) -> int:
        """The peer closed the connection: the status if that ends the answer (a body framed
        by the close), else :class:`BadAnswer` naming how the answer was cut."""
        if self.state == _UNTIL_CLOSE:
            return self.status
        raise BadAnswer("IncompleteRead" if self.got_bytes else "RemoteDisconnected")

    def feed(self, data: bytes) -> int | None:
        """Take ``data`` (received bytes); the answer's status once it is complete, else
        None. Raises :class:`BadAnswer` on bytes that are not an HTTP/1.x answer."""
        self.got_bytes = True
        buf = self.buf
        buf += data
        while True:
            state = self.state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise BadAnswer("LineTooLong")
                    return None
                head = bytes(buf[:end])
                del buf[:end + 4]
                if self._parse_head(head):
                    return self._done()
            elif state == _BODY:
                if len(buf) < self.left:
                    self.left -= len(buf)
                    buf.clear()
                    return None
                del buf[:self.left]
                return self._done()
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    return None
                try:
                    size = int(bytes(buf[:end]).split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadAnswer("BadChunkSize") from None
                del buf[:end + 2]
                self.left, self.state = size + 2, _CHUNK_DATA if size else _TRAILER
            elif state == _CHUNK_DATA:  # the chunk and its CRLF
                if len(buf) < self.left:
                    self.left -= len(buf)
                    buf.clear()
                    return None
                del buf[:self.left]
                self.state = _CHUNK_SIZE
            elif state == _TRAILER:  # trailer fields, then an empty line
                end = buf.find(b"\r\n")
                if end < 0:
                    return None
                del buf[:end + 2]
                if end == 0:
                    return self._done()
            elif state == _UNTIL_CLOSE:  # the body ends with the connection
                buf.clear()
                return None
            else:  # bytes while no request is in flight
                raise BadAnswer("UnexpectedData")

    def _done(self) -> int:
        self.state = _IDLE
        return self.status

    def _parse_head(self, head: bytes) -> bool:
        """Read the status line and the framing headers; True if the answer is complete."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise BadAnswer("BadStatusLine")
        try:
            status = int(parts[1])
        except ValueError:
            raise BadAnswer("BadStatusLine") from None
        if not 100 <= status <= 999:
            raise BadAnswer("BadStatusLine")
        length, chunked = None, False
        close = parts[0] == b"HTTP/1.0"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise BadAnswer("BadHeader")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise BadAnswer("BadHeader") from None
                if length < 0:
                    raise BadAnswer("BadHeader")
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                value = value.lower()
                close = b"close" in value or (close and b"keep-alive" not in value)
        if status < 200:  # an interim answer (100 Continue...): the real one follows
            return False
        self.status, self.will_close = status, close
        if status in _NO_BODY_STATUSES:
            return True
        if chunked:
            self.state = _CHUNK_SIZE
        elif length is not None:
            self.left, self.state = length, _BODY
            return length == 0
        else:
            self.state, self.will_close = _UNTIL_CLOSE, True
        return False


class WireConnection:
    """One keep-alive connection, driven by the :class:`WireLoop` it is used in.

    Not thread-safe: only the loop's thread touches it. ``reconnects`` counts the times it
    was closed after an error or a ``Connection: close`` answer (a reopen follows on the
    next request).
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"need http://host:port, got {url!r}")
        self.url, self.address, self.timeout = url, (parts.hostname, parts.port), timeout
        self.reconnects = 0
        self.sock: socket.socket | None = None
        self.connecting = False
        self.events = 0  # what the loop's selector watches on ``sock``
        self.out = b""  # request bytes not yet written
        self.answer = AnswerReader()
        self.owner = None  # the client whose request is in flight, else None
        self.started = 0.0
        self.deadline = 0.0


class WireLoop:
    """One thread, every connection: runs ``clients`` closed-loop until each one is done.

    Build it, call :meth:`run` (blocks until every client's ``next_request()`` returned
    None), then :meth:`close` (closes every connection it opened). A client's connections
    may be shared by no other client (one request in flight per connection).
    """

    def __init__(self, clients, error_pause: float = 0.01) -> None:
        self.clients = list(clients)
        self.error_pause = error_pause
        self.selector = selectors.DefaultSelector()
        self.connections: set[WireConnection] = set()
        self.paused: list = []  # heap of (due, sequence number, client)
        self.sequence = 0
        self.active = 0

    def run(self) -> None:
        now = time.monotonic
        self.active = len(self.clients)
        for client in self.clients:
            self._next(client)
        select, paused = self.selector.select, self.paused
        next_check = now() + TIMEOUT_CHECK_SECONDS
        while self.active:
            wait = TIMEOUT_CHECK_SECONDS
            if paused:
                wait = min(wait, max(0.0, paused[0][0] - now()))
            for key, mask in select(wait):
                conn = key.data
                if mask & selectors.EVENT_WRITE and key.fileobj is conn.sock:
                    self._writable(conn)
                # (the socket may have been closed, even replaced, by an earlier event)
                if mask & selectors.EVENT_READ and key.fileobj is conn.sock and not conn.connecting:
                    self._readable(conn)
            instant = now()
            while paused and paused[0][0] <= instant:
                self._next(heapq.heappop(paused)[2])
            if instant >= next_check:
                next_check = instant + TIMEOUT_CHECK_SECONDS
                for conn in [c for c in self.connections if c.owner is not None and c.deadline <= instant]:
                    self._fail(conn, "TimeoutError")

    def close(self) -> None:
        for conn in list(self.connections):
            self._drop(conn)
        self.selector.close()

    # --- one client's turn ----------------------------------------------------------------

    def _next(self, client) -> None:
        request = client.next_request()
        if request is None:
            self.active -= 1
            return
        conn, data = request
        conn.owner, conn.out, conn.started = client, data, time.monotonic()
        conn.deadline = conn.started + conn.timeout
        conn.answer.start()
        if conn.sock is None:
            self._connect(conn)
        else:
            self._flush(conn)

    def _answer(self, conn: WireConnection, status) -> None:
        """The request in flight on ``conn`` is over: tell its client, start its next turn."""
        finished = time.monotonic()
        client, conn.owner = conn.owner, None
        client.on_answer(status, conn.started, finished)
        if status.__class__ is str:
            self.sequence += 1
            heapq.heappush(self.paused, (finished + self.error_pause, self.sequence, client))
        else:
            self._next(client)

    def _fail(self, conn: WireConnection, name: str) -> None:
        self._drop(conn)
        conn.reconnects += 1
        self._answer(conn, name)

    # --- socket events --------------------------------------------------------------------

    def _connect(self, conn: WireConnection) -> None:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            self._answer(conn, type(exc).__name__)
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock, conn.connecting, conn.events = sock, True, selectors.EVENT_WRITE
        self.connections.add(conn)
        self.selector.register(sock, selectors.EVENT_WRITE, conn)
        code = sock.connect_ex(conn.address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            self._fail(conn, type(OSError(code, os.strerror(code))).__name__)

    def _writable(self, conn: WireConnection) -> None:
        sock = conn.sock
        if sock is None:
            return
        if conn.connecting:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._fail(conn, type(OSError(code, os.strerror(code))).__name__)
                return
            conn.connecting = False
        self._flush(conn)

    def _flush(self, conn: WireConnection) -> None:
        """Write what is left of the request; watch for writability only while some is."""
        sock = conn.sock
        try:
            sent = sock.send(conn.out) if conn.out else 0
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(conn, type(exc).__name__)
            return
        conn.out = conn.out[sent:] if sent < len(conn.out) else b""
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if conn.events != events:
            conn.events = events
            self.selector.modify(sock, events, conn)

    def _readable(self, conn: WireConnection) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            if conn.owner is None:
                self._drop(conn)
                conn.reconnects += 1
            else:
                self._fail(conn, type(exc).__name__)
            return
        if conn.owner is None:  # an idle connection closed (or spoke out of turn): reopen later
            self._drop(conn)
            conn.reconnects += 1
            return
        conn.deadline = time.monotonic() + conn.timeout
        try:
            status = conn.answer.feed(data) if data else conn.answer.end()
        except BadAnswer as exc:
            self._fail(conn, exc.args[0])
            return
        if status is None:
            return
        if conn.answer.will_close or not data:
            self._drop(conn)
            conn.reconnects += 1
        self._answer(conn, status)

    def _drop(self, conn: WireConnection) -> None:
        """Close ``conn``'s socket (it reopens on its next request)."""
        sock, conn.sock, conn.connecting = conn.sock, None, False
        conn.out = b""
        conn.answer.buf.clear()
        if sock is not None:
            try:
                self.selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self.connections.discard(conn)
