"""The fast lane: plain key reads and writes answered without a worker hand-over.

Why: a worker answers a request only after a hand-off — the selector queues the
connection, a worker thread wakes, takes the GIL, answers, re-arms the socket. For a read
from memory that hand-off is most of the cost. Measured on the 2-core VM
(docs/benchmarks.md, "Issue 15 at the end of session 5"): a minimal one-thread epoll
server answers a GET in ~19 µs of CPU, dkvs's worker path took ~64 µs at one connection and
~80 µs at sixteen; through the lane a GET costs ~30 µs, a single-node PUT ~98 (was 137–161).
Redis and nginx answer from their event loop for the same reason. A read of the local
state never blocks (it takes ``state_lock`` for a dictionary lookup, as the worker does),
so the selector can do it without delaying the other connections it watches.

Writes take the lane on a master (``--fsync always`` included: the burst then runs on
the ticker thread, never on the selector). A write waits for its commit, so the lane does
not wait: it checks the request exactly as the worker path does, proposes it with
:meth:`~dkvs.runtime.host.NodeHost.propose_async`, and returns to its other connections;
the thread that completes the write (the selector reading the slaves' answers for
``acks=majority``, the node's own burst for ``acks=1``) renders the answer and sends it
with one non-blocking ``send``. That saves, per write, the worker's wake-up for the request
and the one for the answer. A write the node refuses before proposing it (a leadership
handover under way, not master any more) is handed to a worker untouched, which takes the
blocking path (wait for the new master, or forward).

On a slave that knows its master (plain HTTP), a write that passed the same checks is
handed to the forwarder from the lane (batched to the master with the others:
:mod:`dkvs.api.forward_batcher`), and the forwarder's reader thread answers it once the
slave has applied it (read-your-writes), as the worker path does — minus the worker: under
1,000 clients a slave forwarded at 0.55× the master's direct rate through workers, 0.9×
from the lane. A request forwarded once already, a candidate, an unknown or HTTPS master:
the worker's.

What takes the lane — everything else goes to a worker, unchanged:

* ``GET /kv/{key} HTTP/1.1`` (not a watch: ``wait=`` requests go to their own pool); a
  consistent one (``consistent=true``) on a master, answered like a write by the thread
  that completes its read round (or at once under a read lease);
  ``PUT`` or ``DELETE /kv/{key}`` with any query but ``lease=``/``ttl=``,
  on a master or a slave that forwards it, with its whole body buffered and at most 64 KiB
  (a bigger body refused unread closes the connection on the worker path);
* on a plain (non-TLS) connection that is not on probation over the connection cap,
  while the server is not stopping and request logging is off;
* a head with no ``Transfer-Encoding``, no ``Expect``, no ``Origin`` (CORS answers stay
  with the worker path), no ``Connection`` field other than ``keep-alive``, no binary
  ``Accept``, no field given twice, and a GET or DELETE without a body.

The answer is the worker path's own: the request goes through the same
:func:`~dkvs.api.routes.dispatch` (route table, token and key scope, key decoding and
limits, the route's handler) and the same rendering; only the hand-off is skipped.
``tests/api/test_api_fast_lane.py`` and ``test_api_fast_lane_writes.py`` check that answers
match the worker path's byte for byte (but the ``Date``) over a spread of keys, tokens,
queries and malformed input, for reads and writes answered at once, later from another
thread, or handed back. If the answer does not fit in the socket buffer at once, a worker
sends the rest (the forwarder's ``finish`` path). A request the lane cannot judge (a parse
error, ``NotMaster``, an unexpected exception) goes to a worker as if the lane did not
exist: the lane has run nothing by then (a GET changes nothing; a write is proposed only
once it passed every check), so answering it there from scratch is safe.
``--fast-lane off`` sends every request to a worker.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

from ..errors import DkvsError, PayloadTooLarge
from .forward_route import Collected, CollectingService
from .forward import FORWARDED_HEADER
from .handler import (DRAIN_LIMIT_BYTES, FORWARD_MARGIN_SECONDS, READ_YOUR_WRITES_WAIT_SECONDS, SEQ_HEADER,
                      log_forward_failure)
from .headers import HeadError, parse_fields, parse_request_line
from .kv import item_json, wants_binary
from .response import date_line, error_reply, json_reply, render, written_reply
from .routes import dispatch
from .service import NotMaster

__all__ = ["FastLane", "FastExchange"]

log = logging.getLogger("dkvs.http")

_READ, _PUT, _DELETE = b"GET /kv/", b"PUT /kv/", b"DELETE /kv/"
_FALLBACK_FIELDS = ("origin", "expect", "transfer-encoding")


class _Fallback(Exception):
    """The request is the worker path's: a leased put (it must not overtake anything), a watch."""


class _ConsistentRead(Exception):
    """Raised by the lane's service in place of a consistent read (the lane runs it)."""

    def __init__(self, key: str) -> None:
        super().__init__("collected")
        self.key = key


class _LaneService(CollectingService):
    """The real service, except that a plain put or delete and a consistent read are
    collected (the lane runs them without a waiting thread), and a leased put or a watch
    falls back to a worker."""

    def put(self, key: str, value: str, *, acks: str, timeout: float, if_seq: int | None = None, **extra):
        if extra:
            raise _Fallback()
        return super().put(key, value, acks=acks, timeout=timeout, if_seq=if_seq)

    def get(self, key: str, *, consistent: bool) -> dict:
        if consistent:
            raise _ConsistentRead(key)
        return self._service.get(key, consistent=False)

    def watch_key(self, *args, **kwargs):
        raise _Fallback()


class FastExchange:
    """What :func:`~dkvs.api.routes.dispatch` and the ``/kv/{key}`` routes read of a
    request (the worker path's :class:`~dkvs.api.handler.DkvsRequestHandler` has the same
    attributes)."""

    __slots__ = ("server", "service", "command", "path", "headers", "query", "args", "grant",
                 "route_pattern", "body")

    def __init__(self, server, command: str, path: str, headers, body: bytes) -> None:
        self.server = server
        self.service = server.service
        self.command = command
        self.path = path
        self.headers = headers
        self.body = body
        self.query: dict = {}
        self.args: dict = {}
        self.grant = None
        self.route_pattern = "unmatched"

    def read_body(self, limit: int, *, required: bool, name: str = "body") -> bytes:
        """The buffered body (the lane took the request only with all of it in memory)."""
        if len(self.body) > limit:
            raise PayloadTooLarge(f"the {name} is {len(self.body)} bytes; the limit is {limit}", parameter=name)
        return self.body


class FastLane:
    """Answers eligible requests for ``server`` (a :class:`~dkvs.api.server.DkvsHTTPServer`)."""

    def __init__(self, server, enabled: bool = True) -> None:
        self.server = server
        self.enabled = enabled
        # Counters for tests and diagnosis (approximate: threads may count at once).
        self.served = 0  # requests the lane took (counted before the answer leaves)
        self.handed_on = 0  # of those, answers whose rest a worker sent (a full socket buffer)
        self.redone = 0  # of those, requests the node refused before doing anything: a worker redid them
        self.forwarded = 0  # of those, writes a slave forwarded to its master from the lane

    def serve(self, conn) -> bool:
        """Take the request buffered on ``conn`` if it qualifies; True when ``conn`` is
        taken care of (answered, proposed, or its answer's rest queued for a worker),
        False to dispatch it to a worker."""
        server = self.server
        if not self.enabled or server.stopping or conn.over_cap or conn.eof:
            return False
        buf, pos = conn.buf, conn.pos
        if buf.startswith(_READ, pos) or ((buf.startswith(_PUT, pos) or buf.startswith(_DELETE, pos))
                                          and hasattr(server.service, "write_async")):
            return self._take(conn)
        return False

    def _take(self, conn) -> bool:
        exchange = self._exchange(conn)
        if exchange is None:
            return False
        started = time.perf_counter()
        real = exchange.service
        exchange.service = _LaneService(real)
        path, _, query = exchange.path.partition("?")
        end = conn.head_end + len(exchange.body)
        try:
            reply = dispatch(exchange, path, query)
        except Collected as found:  # a checked write: proposed now, answered once done
            write = found.write
            return self._later(conn, exchange, started, end, written_reply,
                               lambda answered: real.write_async(write, answered)) \
                or self._forward(conn, exchange, real, started, end)
        except _ConsistentRead as found:  # a read that waits for its read round (or a lease)
            key, read_async = found.key, getattr(real, "read_async", None)
            return read_async is not None and self._later(
                conn, exchange, started, end, lambda answer: json_reply(item_json(answer)),
                lambda answered: read_async(key, answered))
        except (NotMaster, _Fallback):
            return False
        except DkvsError as exc:  # refused before anything ran: a 4xx
            reply = error_reply(exc)
        except Exception:  # noqa: BLE001 - the worker path answers it (and logs a 500)
            return False
        conn.pos = end
        self.served += 1
        self._send(conn, exchange, reply, started)
        return True

    def _later(self, conn, exchange: FastExchange, started: float, end: int,
               reply_of: Callable[[dict], object], start: Callable[[Callable], bool]) -> bool:
        """Start a request the node completes later (``start(answered)``, False: not taken);
        the thread that completes it answers with ``reply_of(answer)`` or the error, or
        gives the request, unread, to a worker when nothing was done (``answer`` None)."""
        def answered(answer) -> None:
            if answer is None:  # nothing done (a handover, not master any more): the worker path
                self.redone += 1
                self._redo(conn)
                return
            conn.pos = end
            self._send(conn, exchange, reply_of(answer) if isinstance(answer, dict) else error_reply(answer),
                       started)

        self.served += 1
        if not start(answered):
            self.served -= 1
            return False
        return True

    def _forward(self, conn, exchange: FastExchange, real, started: float, end: int) -> bool:
        """A checked write on a slave: handed to the forwarder from here (batched with the
        others to the master: dkvs.api.forward_batcher), and answered by the thread that
        learns the master's answer — the worker path's ``_forward``/``_forwarded`` without
        the worker. False (a worker takes it) unless this node is a slave that knows its
        master, the request was not forwarded to it already, and the master speaks plain
        HTTP (forwarding to an HTTPS master blocks the calling thread)."""
        target = getattr(real, "forward_target", None)
        master_url = target() if target is not None else None
        if master_url is None or not master_url.startswith("http:") or exchange.headers.get(FORWARDED_HEADER):
            return False
        budget = exchange.args.get("timeout") or real.limits.default_timeout_seconds
        requestline = f"{exchange.command} {exchange.path} HTTP/1.1"

        def answer(reply) -> None:
            conn.pos = end
            self._send(conn, exchange, reply, started)

        def forwarded(reply, failure) -> None:  # on a forwarder thread: quick, never blocking
            if failure is not None:
                log_forward_failure(requestline, master_url, failure.message)
                answer(error_reply(failure))
                return
            seq = next((value for name, value in reply.headers if name == SEQ_HEADER), None)
            notify = getattr(real, "call_when_applied", None)
            if reply.status == 200 and seq is not None and seq.isdigit() and notify is not None:
                # Read-your-writes through this node: answer once it has applied the write.
                notify(int(seq), lambda applied: answer(reply), READ_YOUR_WRITES_WAIT_SECONDS)
                return
            answer(reply)

        self.served += 1
        self.forwarded += 1
        self.server.forwarder.forward_async(master_url, exchange.command, exchange.path, exchange.body,
                                            exchange.headers, budget + FORWARD_MARGIN_SECONDS, forwarded)
        return True

    def _redo(self, conn) -> None:
        """Give a request the lane took, still unread, to a worker (the worker path from scratch)."""
        server = self.server
        if not server.pools[conn.kind].submit(conn):
            server.connections.give_back(conn, "close")

    def _send(self, conn, exchange: FastExchange, reply, started: float) -> None:
        """Send ``reply`` with one non-blocking ``send``; a worker sends what did not fit."""
        server = self.server
        data = render(reply, server.server_line + date_line())
        try:
            sent = conn.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError:  # the client is gone
            server.metrics.observe(exchange.route_pattern, exchange.command, reply.status,
                                   time.perf_counter() - started)
            server.connections.give_back(conn, "close")
            return
        if sent < len(data):
            self.handed_on += 1
            server.finish_elsewhere(conn, exchange, reply, data[sent:], started)
            return
        server.metrics.observe(exchange.route_pattern, exchange.command, reply.status,
                               time.perf_counter() - started)
        server.connections.give_back(conn, "keep")

    def _exchange(self, conn) -> FastExchange | None:
        """The parsed request, if it qualifies (see the module docstring)."""
        end = conn.head_end
        if end <= conn.pos or conn.buf[end - 1] != 10 or log.isEnabledFor(logging.DEBUG):
            return None
        lines = conn.buf[conn.pos:end].decode("iso-8859-1").split("\n")
        try:
            command, target, version = parse_request_line(lines[0].rstrip("\r"))
            headers = parse_fields(lines)
        except HeadError:
            return None
        if version != "HTTP/1.1":
            return None
        fields = headers.by_name
        if headers.repeated:  # which copy counts is the worker path's call
            return None
        length = 0
        if fields:
            if any(name in fields for name in _FALLBACK_FIELDS):
                return None
            declared = fields.get("content-length")
            if declared is not None:
                if not declared.isdigit() or not declared.isascii():
                    return None
                length = int(declared)
            connection = fields.get("connection")
            if connection is not None and connection.lower() != "keep-alive":
                return None
            if "accept" in fields and wants_binary(headers):
                return None
        if command == "PUT":
            # No length (411), a body still arriving, or one the worker path would refuse
            # unread and close the connection over (past DRAIN_LIMIT_BYTES): the worker's.
            if "content-length" not in fields or length > DRAIN_LIMIT_BYTES \
                    or conn.buffered < end - conn.pos + length:
                return None
        elif length:
            return None
        body = bytes(conn.buf[end:end + length]) if length else b""
        return FastExchange(self.server, command, target, headers, body)
