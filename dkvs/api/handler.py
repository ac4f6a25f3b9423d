"""One HTTP/1.1 connection: read requests, dispatch them on the route table, write answers.

:class:`DkvsRequestHandler` keeps ``http.server``'s request-line and header parsing and
replaces the rest, for three reasons:

* **One write per answer.** Every answer, errors included (also the ones ``http.server``
  itself raises for a malformed request line or headers), is rendered in memory by
  :func:`dkvs.api.response.render` and sent with one ``wfile.write`` (DESIGN.md §6).
* **Bodies under control.** ``Content-Length`` is checked against the limit before the
  body is read; ``Expect: 100-continue`` is answered only when the body is actually wanted,
  so a refused upload is never sent; a body nobody read is drained when small, otherwise
  the connection is closed with a short "lingering close" (stop sending, read and drop
  what the client still sends) so the client reads our answer instead of a reset.
* **Bad input is an answer, never a crash.** Parse errors are 4xx JSON; a client that
  stalls or vanishes mid-body gets a 400 if it can still read and the connection is
  closed; anything unexpected is a logged 500 and the connection goes on serving.

Connections are persistent (``protocol_version = "HTTP/1.1"``), but a handler serves *one*
request: the server's selector buffers the request head (and a small body) without a
thread, a worker makes a handler to answer it, and the connection goes back to the
selector (:mod:`dkvs.api.server`). Reads past the buffered bytes wait on the socket only
until the request's deadline (:mod:`dkvs.api.connection`): a stall is a 400, a missed
deadline a 408. The lingering close is done by the selector, not by the worker. Routes may
use ``service``, ``server``, ``command``, ``headers``, ``query``, ``args`` and
:meth:`read_body`.

A request forwarded to the master *detaches* the handler from its worker: the forwarder
calls back with the master's answer, the change feed calls back once this node applied the
write (read-your-writes), and only then does a worker :meth:`~DkvsRequestHandler.finish`
the answer (``server.resume``). Meanwhile no thread waits for this request.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from http import HTTPStatus

from ..errors import BadRequest, DkvsError, InternalError, NoMaster, PayloadTooLarge
from .connection import Connection, ConnectionReader, ConnectionWriter
from .body import CHUNKED, IncompleteBody, declared_length, discard, read_chunked, read_exact
from .forward import FORWARDED_HEADER
from .params import LengthRequired
from .response import Reply, date_line, encode_json, error_reply, render
from .headers import HeadError, parse_fields, parse_request_line, read_headers
from .routes import INTERNAL_PREFIX, dispatch
from .service import NotMaster

__all__ = ["DkvsRequestHandler"]

log = logging.getLogger("dkvs.http")

MAX_REQUEST_LINE_BYTES = 65536
DRAIN_LIMIT_BYTES = 64 * 1024  # an unread body up to this size is read and dropped
FORWARD_MARGIN_SECONDS = 5.0  # the master may use the whole timeout before answering 504

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Codes for the errors http.server detects itself while parsing a request.
_PARSE_ERROR_CODES = {
    400: "bad_request",
    414: "uri_too_long",
    431: "headers_too_large",
    501: "not_implemented",
    505: "http_version_not_supported",
}


SEQ_HEADER = "X-Dkvs-Seq"
READ_YOUR_WRITES_WAIT_SECONDS = 0.5
_last_forward_warning = [0.0]


def log_forward_failure(requestline: str, master_url: str, message: str) -> None:
    """Warn about failed forwards at most once a second (a failover makes many)."""
    now = time.monotonic()
    if now - _last_forward_warning[0] >= 1.0:
        _last_forward_warning[0] = now
        log.warning("forwarding %s to %s failed: %s", requestline, master_url, message)
    else:
        log.debug("forwarding %s to %s failed: %s", requestline, master_url, message)


def _applied_notifier(service):
    """``call_when_applied(seq, callback, timeout)`` of the service (KeyValueService)."""
    return getattr(service, "call_when_applied", None)


class DkvsRequestHandler:
    """Serves one request of a connection for a :class:`~dkvs.api.server.DkvsHTTPServer`.

    Made by a worker for each request: ``DkvsRequestHandler(conn, server).handle()``.
    Afterwards ``close_connection`` says whether the connection may serve another request
    and ``linger`` whether it should be closed gently (see :meth:`_settle_unread_body`).
    """

    protocol_version = "HTTP/1.1"

    def __init__(self, conn: Connection, server) -> None:
        self.conn = conn
        self.server = server
        self.connection = conn.sock
        self.client_address = conn.address
        self.close_connection = True
        self.detached = False  # a forward took the request: server.resume(...) finishes it
        self._unsent: bytes | None = None  # the part of the answer finish_now could not send
        self.requestline = ""
        self.request_version = "HTTP/1.1"
        self.command = ""
        self.setup()

    @classmethod
    def sending_rest(cls, conn: Connection, server, exchange, rest: bytes, started: float) -> DkvsRequestHandler:
        """A handler whose :meth:`finish` sends ``rest``: the end of an answer another thread
        began with a non-blocking send that did not fit the socket buffer (the fast lane,
        :mod:`dkvs.api.fast_lane`; ``exchange`` is its parsed request)."""
        handler = cls(conn, server)
        handler.command, handler.path, handler.headers = exchange.command, exchange.path, exchange.headers
        handler.requestline = f"{exchange.command} {exchange.path} HTTP/1.1"
        handler.route_pattern, handler._started = exchange.route_pattern, started
        handler.close_connection = False
        handler._unsent = rest
        return handler

    # --- one request ------------------------------------------------------------------

    def setup(self) -> None:
        conn = self.conn
        self.rfile = conn.reader
        if self.rfile is None:  # the connection's first request: its reader and writer
            server = self.server
            self.rfile = conn.reader = ConnectionReader(conn, server.request_timeout_seconds,
                                                        server.idle_timeout_seconds)
            conn.writer = ConnectionWriter(conn.sock, server.request_timeout_seconds)
        self.wfile = conn.writer
        self.service = self.server.service
        self.linger = False
        self.body = None  # bytes once read; None while unread
        self.query = {}
        self.args = {}
        self._cors = ""
        self._expect_continue = False

    def handle(self) -> None:
        """Answer the request whose head is buffered on the connection (or arriving)."""
        self.handle_one_request()

    def handle_one_request(self) -> None:
        conn = self.conn
        end = conn.head_end
        if end > conn.pos and conn.buf[end - 1] == 10:  # the whole head is buffered (LF)
            # The common case: the selector (or request_ready) found the head's end, so it
            # is decoded and split once instead of read a line at a time.
            lines = conn.buf[conn.pos:end].decode("iso-8859-1").split("\n")
            conn.pos = end
            if len(lines[0]) >= MAX_REQUEST_LINE_BYTES:  # with its LF it is over the limit
                self._line_too_long()
                return
            parsed = self.parse_request(lines[0], lines)
        else:
            try:
                line = self.rfile.readline(MAX_REQUEST_LINE_BYTES + 1)
            except (OSError, ValueError):  # timed out or reset
                line = b""
            if not line:
                self.close_connection = True
                return
            if len(line) > MAX_REQUEST_LINE_BYTES:
                self._line_too_long()
                return
            try:
                parsed = self.parse_request(str(line, "iso-8859-1"))  # sends its own errors
            except (OSError, ValueError):  # timed out or reset while reading headers
                parsed = False
        if not parsed:
            self.close_connection = True
            return
        self._respond()

    def _line_too_long(self) -> None:
        self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
        self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "the request line is too long")

    def parse_request(self, line: str, lines: list[str] | None = None) -> bool:
        """Request line and head, as ``http.server`` would, without its ``email`` parser.

        ``line`` is the request line (its line end may still be on it); ``lines``, when
        the whole head is in memory, its lines (:func:`~dkvs.api.headers.parse_fields`),
        else the fields are read from ``rfile``. Sets ``command``, ``path``,
        ``request_version``, ``headers`` and ``close_connection``; answers 400/431/505
        itself and returns False on bad input.
        """
        self.close_connection = True
        self.request_version = "HTTP/1.1"
        self.requestline = line.rstrip("\r\n")
        try:
            command, path, version = parse_request_line(self.requestline)
            self.close_connection = version == "HTTP/1.0"  # until its headers say otherwise
            self.command, self.request_version, self.path = command, version, path
            self.headers = headers = read_headers(self.rfile) if lines is None else parse_fields(lines)
        except HeadError as exc:
            self.send_error(exc.status, str(exc))
            return False
        by_name = headers.by_name
        if by_name:
            connection = by_name.get("connection")
            if connection is not None:
                connection = connection.lower()
                if connection == "close":
                    self.close_connection = True
                elif connection == "keep-alive":
                    self.close_connection = False
            expect = by_name.get("expect")
            if expect is not None and expect.lower() == "100-continue" and version == "HTTP/1.1":
                return self.handle_expect_100()
        return True

    def handle_expect_100(self) -> bool:
        """Defer ``100 Continue`` until a route asks for the body (see :meth:`read_body`)."""
        self._expect_continue = True
        return True

    # --- one request ----------------------------------------------------------------

    def _respond(self) -> None:
        self._started = time.perf_counter()
        self.route_pattern = "unmatched"
        path, _, query = self.path.partition("?")
        origin = self.headers.by_name.get("origin")
        if origin and not path.startswith(INTERNAL_PREFIX):
            self._cors = self.server.cors.response_lines(origin)
        try:
            reply = dispatch(self, path, query)
        except NotMaster as exc:
            reply = self._forward(exc)
            if reply is None:  # detached: finish() runs once the answer is known
                return
        except DkvsError as exc:
            reply = error_reply(exc)
        except Exception:
            log.exception("unexpected error answering %r", self.requestline)
            reply = error_reply(InternalError("unexpected error in the node; see its log"))
        self.finish(reply)

    def finish(self, reply: Reply) -> None:
        """Send ``reply`` (and drop a small unread body); on a worker that holds the connection."""
        if self._unsent is not None:  # finish_now sent the start of it
            rest, self._unsent = self._unsent, None
            try:
                self.wfile.write(rest)
            except OSError:
                self.close_connection, self.linger = True, False
            self.server.metrics.observe(self.route_pattern, self.command, reply.status,
                                        time.perf_counter() - self._started)
            return
        if self.server.stopping:  # this is the connection's last answer: say so
            self.close_connection = True
        drain = self._settle_unread_body()
        self._send(reply)
        self.server.metrics.observe(self.route_pattern, self.command, reply.status,
                                    time.perf_counter() - self._started)
        if drain:
            try:
                discard(self.rfile, drain)
            except DkvsError:
                self.close_connection = True

    def finish_now(self, reply: Reply) -> bool:
        """Try to answer a detached request on the calling thread, without waiting.

        True when the whole answer went out with one non-blocking ``send`` (the caller then
        hands the connection back); False when a worker must :meth:`finish` it: an unread
        body to drop, a stopping server, or a client whose socket buffer is full (the sent
        part is remembered). Called by the thread that learned the answer (a forwarder
        reader, or the change feed's thread): a worker wake-up per forwarded write costs
        more than the send. Plain sockets only (``server.resume`` checks)."""
        if self.server.stopping or self._settle_unread_body():
            return False
        data = self._render(reply)
        try:
            sent = self.connection.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError:  # the client is gone
            self.close_connection, self.linger, sent = True, False, len(data)
        if sent < len(data):
            self._unsent = data[sent:]
            return False
        self.server.metrics.observe(self.route_pattern, self.command, reply.status,
                                    time.perf_counter() - self._started)
        return True

    def read_body(self, limit: int, *, required: bool, name: str = "body") -> bytes:
        """The request body, at most ``limit`` bytes; read once, then remembered.

        Raises LengthRequired (no framing and ``required``), PayloadTooLarge (declared or
        counted over ``limit``), BadRequest (bad framing, or the body ended early).
        """
        if self.body is not None:
            return self.body
        try:
            length = declared_length(self.headers)
        except BadRequest:
            self.close_connection = self.linger = True  # cannot tell where the body ends
            raise
        if length is None:
            if required:
                raise LengthRequired(f"{self.command} needs a Content-Length header "
                                     "(or Transfer-Encoding: chunked)")
            self.body = b""
            return self.body
        if length > limit:  # refused unread: _settle_unread_body decides drain or close
            raise PayloadTooLarge(f"the {name} is {length} bytes; the limit is {limit}",
                                  parameter=name)
        conn = self.conn
        if length != CHUNKED and not self._expect_continue and length <= len(conn.buf) - conn.pos:
            self.body = self.rfile.read(length)  # prefetched: no socket read, nothing can fail
            return self.body
        try:
            if self._expect_continue:
                self._expect_continue = False
                self.wfile.write(_CONTINUE)
                self.rfile.restart_clock()  # the client only starts sending now
            self.body = read_exact(self.rfile, length) if length != CHUNKED \
                else read_chunked(self.rfile, limit)
        except IncompleteBody:
            self.body, self.close_connection = b"", True  # stream position lost
            raise
        except OSError:  # writing 100 Continue failed: the client is gone
            self.body, self.close_connection = b"", True
            raise IncompleteBody("the connection failed before the body was read") from None
        except PayloadTooLarge as exc:
            self.body, self.close_connection, self.linger = b"", True, True
            raise PayloadTooLarge(f"the {name} is over the {limit}-byte limit",
                                  parameter=name) from exc
        except DkvsError:
            self.body, self.close_connection, self.linger = b"", True, True
            raise
        return self.body

    def _settle_unread_body(self) -> int:
        """Before answering: bytes of unread body to drop after it, or close the connection."""
        if self.body is not None:
            return 0
        headers = self.headers
        by_name = headers.by_name
        if "content-length" not in by_name and "transfer-encoding" not in by_name:
            return 0
        try:
            length = declared_length(headers)
        except BadRequest:
            length = CHUNKED  # unknown framing: as bad as unbounded
        if not length:
            return 0
        if length == CHUNKED or length > DRAIN_LIMIT_BYTES or self._expect_continue \
                or self.close_connection:
            self.close_connection = self.linger = True
            return 0
        return length

    def _forward(self, exc: NotMaster) -> Reply | None:
        """An error reply, or None once the request is handed to the forwarder (detached)."""
        if exc.master_url is None:
            return error_reply(exc)
        if self.headers.get(FORWARDED_HEADER):
            return error_reply(NoMaster(
                "this node is not the master and the request was already forwarded once; "
                "the cluster is changing masters, retry shortly", retry_after=exc.retry_after))
        budget = self.args.get("timeout") or self.service.limits.default_timeout_seconds
        self._master_url = exc.master_url
        self.detached = True  # from here on only server.resume touches the connection
        # Only an HTTPS master is waited for on this thread: it lends its place meanwhile.
        waits = exc.master_url.startswith("https:")
        with self.server.blocking(self.conn) if waits else contextlib.nullcontext():
            self.server.forwarder.forward_async(exc.master_url, self.command, self.path, self.body,
                                                self.headers, budget + FORWARD_MARGIN_SECONDS,
                                                self._forwarded)
        return None

    def _forwarded(self, reply: Reply | None, failure: NoMaster | None) -> None:
        """The master's answer (or why there is none); on a forwarder thread: be quick."""
        if failure is not None:
            log_forward_failure(self.requestline, self._master_url, failure.message)
            self.server.resume(self, error_reply(failure))
            return
        seq = next((value for name, value in reply.headers if name == SEQ_HEADER), None)
        if reply.status == 200 and seq is not None and seq.isdigit():
            # Read-your-writes through this node: answer once it has applied the write.
            notify = _applied_notifier(self.service)
            if notify is not None:
                notify(int(seq), lambda applied: self.server.resume(self, reply),
                       READ_YOUR_WRITES_WAIT_SECONDS)
                return
            self.service.wait_applied(int(seq), READ_YOUR_WRITES_WAIT_SECONDS)
        self.server.resume(self, reply)

    # --- writing --------------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        """Write the whole answer with one ``write``; a vanished client closes quietly."""
        try:
            self.wfile.write(self._render(reply))
        except OSError:
            self.close_connection, self.linger = True, False
            return
        if log.isEnabledFor(logging.DEBUG):
            self.log_request(reply.status, len(reply.body))

    def _render(self, reply: Reply) -> bytes:
        extra = self.server.server_line + date_line() + self._cors
        if self.close_connection:
            extra += "Connection: close\r\n"
        elif self.request_version == "HTTP/1.0":
            extra += "Connection: keep-alive\r\n"
        return render(reply, extra)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own parse errors, as JSON in one write; the connection closes."""
        code = int(code)
        self.close_connection = True
        body = {"error": _PARSE_ERROR_CODES.get(code, "bad_request"),
                "message": message or HTTPStatus(code).phrase}
        self._send(Reply(code, encode_json(body).encode("utf-8")))

    def log_request(self, code: int, size: int) -> None:
        log.debug("%s \"%s\" %s %s", self.client_address[0] if self.client_address else "-",
                  self.requestline, code, size)
