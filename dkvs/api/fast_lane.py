"""The fast lane: a plain ``GET /kv/{key}`` answered on the selector thread, no worker.

Why: a worker answers a request only after a hand-off — the selector queues the
connection, a worker thread wakes, takes the GIL, answers, re-arms the socket. For a read
from memory that hand-off is most of the cost. Measured on the 2-core VM
(docs/benchmarks.md, "The fast lane"): a minimal one-thread epoll server answers a GET in
~19 µs of CPU, dkvs's worker path in ~64 µs at one connection and ~80 µs at sixteen.
Redis and nginx answer from their event loop for the same reason. A read of the local
state never blocks (it takes ``state_lock`` for a dictionary lookup, as the worker does),
so the selector can do it without delaying the other connections it watches.

What takes the lane — everything else goes to a worker, unchanged:

* ``GET /kv/{key} HTTP/1.1`` with no query string (no ``consistent=``, no ``wait=``:
  those may wait), on a plain (non-TLS) connection that is not on probation over the
  connection cap, while the server is not stopping and request logging is off;
* a head with no body (no ``Content-Length`` other than ``0``, no ``Transfer-Encoding``),
  no ``Expect``, no ``Origin`` (CORS answers stay with the worker path), no
  ``Connection`` field other than ``keep-alive``, no binary ``Accept``, and no field
  given twice.

The answer is the worker path's own: the request goes through the same
:func:`~dkvs.api.routes.dispatch` (route table, token and key scope, key decoding and
limits, the route's handler) and the same rendering; only the hand-off is skipped.
:mod:`tests.test_fast_lane` checks that answers match the worker path's byte for byte
(but the ``Date``) over a spread of keys, tokens and malformed input. If the answer does
not fit in the socket buffer at once, a worker sends the rest (the forwarder's
``finish`` path). A request the lane cannot judge (a parse error, ``NotMaster``, an
unexpected exception) goes to a worker as if the lane did not exist: a GET changes
nothing, so answering it there from scratch is safe.
"""

from __future__ import annotations

import logging
import socket
import time

from ..errors import DkvsError
from .headers import HeadError, parse_fields, parse_request_line
from .kv import wants_binary
from .response import date_line, error_reply, render
from .routes import dispatch
from .service import NotMaster

__all__ = ["FastLane", "FastExchange"]

log = logging.getLogger("dkvs.http")

_PREFIX = b"GET /kv/"
_FALLBACK_FIELDS = ("origin", "expect", "transfer-encoding")


class FastExchange:
    """What :func:`~dkvs.api.routes.dispatch` and the ``GET /kv/{key}`` route read of a
    request (the worker path's :class:`~dkvs.api.handler.DkvsRequestHandler` has the same
    attributes)."""

    __slots__ = ("server", "service", "command", "path", "headers", "query", "args", "grant",
                 "route_pattern")

    def __init__(self, server, path: str, headers) -> None:
        self.server = server
        self.service = server.service
        self.command = "GET"
        self.path = path
        self.headers = headers
        self.query: dict = {}
        self.args: dict = {}
        self.grant = None
        self.route_pattern = "unmatched"

    def read_body(self, limit: int, *, required: bool, name: str = "body") -> bytes:
        """A GET in the lane has no body (the lane checked its head)."""
        return b""


class FastLane:
    """Answers eligible reads for ``server`` (a :class:`~dkvs.api.server.DkvsHTTPServer`)."""

    def __init__(self, server, tls: bool) -> None:
        self.server = server
        self.enabled = not tls  # a TLS socket must not be written by two threads at once
        self.served = 0  # requests the lane answered (counted before the answer leaves)
        self.handed_on = 0  # of those, answers whose rest a worker sent (a full socket buffer)

    def serve(self, conn) -> bool:
        """Answer the request buffered on ``conn`` if it qualifies; True when ``conn`` is
        taken care of (answered, or its rest queued for a worker), False to dispatch it."""
        server = self.server
        if (not self.enabled or server.stopping or conn.over_cap or conn.eof
                or not conn.buf.startswith(_PREFIX, conn.pos)):
            return False
        exchange = self._exchange(conn)
        if exchange is None:
            return False
        started = time.perf_counter()
        path = exchange.path
        try:
            reply = dispatch(exchange, path, "")
        except NotMaster:
            return False
        except DkvsError as exc:
            reply = error_reply(exc)
        except Exception:  # noqa: BLE001 - the worker path answers it (and logs a 500)
            return False
        conn.pos = conn.head_end  # the request is consumed: no body
        self.served += 1
        data = render(reply, server.server_line + date_line())
        try:
            sent = conn.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError:  # the client is gone
            server.metrics.observe(exchange.route_pattern, "GET", reply.status, time.perf_counter() - started)
            server.connections.give_back(conn, "close")
            return True
        if sent < len(data):
            self.handed_on += 1
            server.finish_elsewhere(conn, exchange, reply, data[sent:], started)
            return True
        server.metrics.observe(exchange.route_pattern, "GET", reply.status, time.perf_counter() - started)
        server.connections.give_back(conn, "keep")
        return True

    def _exchange(self, conn) -> FastExchange | None:
        """The parsed head, if the request qualifies (see the module docstring)."""
        end = conn.head_end
        if end <= conn.pos or conn.buf[end - 1] != 10 or log.isEnabledFor(logging.DEBUG):
            return None
        lines = conn.buf[conn.pos:end].decode("iso-8859-1").split("\n")
        try:
            command, target, version = parse_request_line(lines[0].rstrip("\r"))
            headers = parse_fields(lines)
        except HeadError:
            return None
        if command != "GET" or version != "HTTP/1.1" or "?" in target:
            return None
        fields = headers.by_name
        if headers.repeated:  # which copy counts is the worker path's call
            return None
        if fields:
            if any(name in fields for name in _FALLBACK_FIELDS):
                return None
            if fields.get("content-length", "0") != "0":
                return None
            connection = fields.get("connection")
            if connection is not None and connection.lower() != "keep-alive":
                return None
            if "accept" in fields and wants_binary(headers):
                return None
        return FastExchange(self.server, target, headers)
