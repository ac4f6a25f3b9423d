"""The HTTP server of a node: a selector, bounded worker pools, and a :class:`KeyValueService`.

``make_server(service, host, port)`` binds at once (``port=0`` picks a free port; ``url``
then holds the real one); ``start()`` serves; ``stop()`` ends everything it started.

Why not one thread per connection (``ThreadingHTTPServer``, used before): a thread per
connection lets clients decide how many threads a node runs. With 1,000 keep-alive
clients on a slave, 1,000 runnable threads fought for the GIL, the node thread missed its
heartbeats and the slave started elections; 1,200 slow clients held 1,206 threads. Now the
thread count is fixed by the node (see ``docs/architecture.md``, "Connections and workers"):

* one selector thread (:mod:`dkvs.api.connections`) accepts and watches every connection
  that waits (idle keep-alive, head or small body still arriving), enforcing
  ``max_connections``, ``request_timeout`` and ``idle_timeout``;
* plain key requests (``GET``, ``PUT``, ``DELETE /kv/{key}``) are handled by the thread that
  holds the connection, the selector itself most often (:mod:`dkvs.api.fast_lane`): the
  hand-over to a worker was most of their cost;
* three worker pools (:mod:`dkvs.api.workers`), each serving one request at a time and
  handing the connection back: ``client_workers`` for the public API, ``internal_workers``
  for ``/internal/*`` (node-to-node: heartbeats, replication, votes, joins — never queued
  behind clients), ``watch_workers`` for long polls (``GET ...?wait=``, which may block a
  minute and must not take the threads writes need).

Kept from before (DESIGN.md §6): HTTP/1.1 keep-alive, one write per answer (see
:mod:`dkvs.api.handler`), ``TCP_NODELAY`` on accepted sockets, a listen backlog of 1024,
no reverse DNS lookup when binding, JSON errors for bad input.

Shutdown contract: :meth:`DkvsHTTPServer.stop` stops accepting, closes the listening
socket and every connection no worker holds (idle keep-alive ones included), lets busy
workers finish their current answer, then closes their connections, joins every thread
(bounded by ``timeout_seconds``) and closes the forwarding pool. It is safe to call twice.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterable

from .. import __version__
from .connection import RECV_BYTES, Connection
from .connections import ConnectionManager
from .prefetch import request_ready
from .cors import CorsPolicy
from .fast_lane import FastLane
from .forward import Forwarder
from .handler import DkvsRequestHandler
from .metrics import RequestMetrics
from .response import date_line
from .routes import INTERNAL_PREFIX
from .service import KeyValueService
from .stream import StreamAcceptor
from .tls import TlsSocket
from .workers import WorkerPool

__all__ = ["DkvsHTTPServer", "make_server", "IDLE_TIMEOUT_SECONDS", "REQUEST_TIMEOUT_SECONDS",
           "MAX_CONNECTIONS", "CLIENT_WORKERS", "CLIENT_THREADS_MAX", "HOT_WAIT_MAX_SECONDS",
           "INTERNAL_WORKERS", "WATCH_WORKERS",
           "INTERNAL_MAX_BODY_BYTES"]

log = logging.getLogger("dkvs.http")

IDLE_TIMEOUT_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 1024
CLIENT_WORKERS = 32
CLIENT_THREADS_MAX = 128  # client workers running + those lending their place while forwarding
INTERNAL_WORKERS = 8
WATCH_WORKERS = 64
INTERNAL_MAX_BODY_BYTES = 256 * 1024 * 1024
STOP_TIMEOUT_SECONDS = 5.0
HOT_WAIT_MAX_SECONDS = 0.025  # longest a worker waits for the next request on its connection


def is_watch(target: bytes) -> bool:
    """A long poll: a GET whose query has ``wait=``."""
    query = target.partition(b"?")[2]
    return bool(query) and any(part.startswith(b"wait=") for part in query.split(b"&"))


class DkvsHTTPServer:
    """Serves the dkvs HTTP API of ``service``; see the module docstring for the design."""

    def __init__(self, service: KeyValueService, host: str = "127.0.0.1", port: int = 0, *,
                 cors_origins: Iterable[str] = ("*",), request_queue_size: int = 1024,
                 idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
                 request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
                 max_connections: int = MAX_CONNECTIONS,
                 client_workers: int = CLIENT_WORKERS, internal_workers: int = INTERNAL_WORKERS,
                 watch_workers: int = WATCH_WORKERS, client_threads_max: int = CLIENT_THREADS_MAX,
                 internal_max_body_bytes: int = INTERNAL_MAX_BODY_BYTES,
                 forwarder: Forwarder | None = None, tls_context: ssl.SSLContext | None = None,
                 fast_lane: bool = True) -> None:
        self.service = service
        self.cors = CorsPolicy(cors_origins)
        self.metrics = RequestMetrics()
        self.idle_timeout_seconds = idle_timeout_seconds
        self.request_timeout_seconds = request_timeout_seconds
        self.internal_max_body_bytes = internal_max_body_bytes
        # One pooled connection to the master per client thread that may be forwarding.
        client_threads_max = max(client_workers, client_threads_max)
        self.forwarder = forwarder if forwarder is not None else Forwarder(max_idle_per_target=client_threads_max)
        self.server_line = f"Server: dkvs/{__version__}\r\n"
        self.stopping = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(request_queue_size)
            self.socket.setblocking(False)
        except BaseException:
            self.socket.close()
            raise
        self.server_address = self.socket.getsockname()
        bound_host, self.server_port = self.server_address[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.tls_context = tls_context  # HTTPS only when set: plain HTTP fails the handshake
        self.url = f"{'https' if tls_context else 'http'}://{shown}:{self.server_port}"
        self.pools = {"client": WorkerPool("client", client_workers, self._serve, max_threads=client_threads_max),
                      "internal": WorkerPool("internal", internal_workers, self._serve),
                      "watch": WorkerPool("watch", watch_workers, self._serve)}
        self.streams = StreamAcceptor(self)  # inbound replication streams (dkvs.api.stream)
        # Plain key requests without a hand-over; never on TLS, whose socket must not be
        # written by two threads at once.
        self.fast_lane = FastLane(self, enabled=fast_lane and tls_context is None)
        self.connections = ConnectionManager(
            self.socket, classify=self._classify, dispatch=self._dispatch, max_connections=max_connections,
            request_timeout=request_timeout_seconds, idle_timeout=idle_timeout_seconds,
            header_lines=lambda: self.server_line + date_line(),
            wrap=(lambda sock: TlsSocket(sock, tls_context)) if tls_context else None)

    # --- the request path ----------------------------------------------------------

    @staticmethod
    def _classify(conn: Connection) -> str:
        """The pool for the request buffered on ``conn``, from its request line (also kept
        in ``conn.kind``)."""
        buf, pos = conn.buf, conn.pos
        line_end = buf.find(b"\n", pos, pos + 65536)
        if buf.startswith(b"PUT /kv/", pos) or (buf.startswith(b"GET /kv/", pos) and line_end >= 0
                                                and buf.find(b"?", pos, line_end) < 0):
            conn.kind = "client"  # the common requests, told without copying the line
            return "client"
        words = bytes(buf[pos:line_end if line_end >= 0 else pos + 256]).split()
        target = words[1] if len(words) > 1 else b""
        if target.startswith(INTERNAL_PREFIX.encode()):
            conn.kind = "internal"
        elif words and words[0] == b"GET" and is_watch(target):
            conn.kind = "watch"
        else:
            conn.kind = "client"
        return conn.kind

    def _dispatch(self, conn: Connection) -> None:
        """Called by the selector: answer a plain read at once (:mod:`dkvs.api.fast_lane`),
        else queue ``conn`` on the pool its request belongs to."""
        if conn.kind == "client" and self.fast_lane.serve(conn):
            return
        if not self.pools[conn.kind].submit(conn):
            self.connections.give_back(conn, "close")

    def finish_elsewhere(self, conn: Connection, exchange, reply, rest: bytes, started: float) -> None:
        """The fast lane sent the start of an answer; a worker sends ``rest`` (blocking,
        under the request deadline) and then serves the connection as usual."""
        handler = DkvsRequestHandler.sending_rest(conn, self, exchange, rest, started)
        if not self.pools[conn.kind].submit(_Resumed(conn, handler, reply)):
            self.connections.give_back(conn, "close")

    def blocking(self, conn: Connection):
        """Context manager for a handler about to wait on the network (see WorkerPool)."""
        return self.pools[conn.kind].blocking()

    def resume(self, handler: DkvsRequestHandler, reply) -> None:
        """A detached (forwarded) request has its answer: a worker of its pool sends it.

        Called from forwarder or change-feed threads, which must not write to a client."""
        conn = handler.conn
        if self.tls_context is None and handler.finish_now(reply):
            self._hand_back(conn, handler)
            return
        if not self.pools[conn.kind].submit(_Resumed(conn, handler, reply)):
            conn.close()  # the pools close only in stop(), after the selector stopped

    def _serve(self, item) -> None:
        """Run in a worker: answer requests on a connection, then hand it back.

        ``item`` is a connection whose request is buffered, or a :class:`_Resumed`
        forwarded request whose answer is ready. A handler that detached (it forwarded
        the request) is left alone: :meth:`resume` brings its connection back here.

        A *hot* keep-alive connection — its next request arrives within
        :data:`HOT_WAIT_MAX_SECONDS` while no other request waits for this pool — is served
        again by the same worker: the selector round trip (two thread wake-ups, each of
        which can cost milliseconds on a busy machine) is skipped. The wait is cut into
        slices of :data:`~dkvs.api.connection.HOT_WAIT_SECONDS` (the socket's
        ``SO_RCVTIMEO``) and ends as soon as a request is queued for the pool, so a queued
        request waits at most one slice for a worker. Under heavy load the queue is never
        empty and every connection goes back to the selector.
        """
        resumed = item if type(item) is _Resumed else None
        conn = item.conn if resumed is not None else item
        kind = conn.kind
        pool = self.pools[kind]
        while True:
            mode = "close"
            try:
                if resumed is not None:
                    handler = resumed.handler
                    handler.finish(resumed.reply)
                    resumed = None
                else:
                    handler = DkvsRequestHandler(conn, self)
                    handler.handle()
                    if handler.detached:
                        return
                session = getattr(handler, "upgrade", None)  # set by StreamAcceptor.accept
                if session is not None and not (handler.close_connection or self.stopping):
                    if self.streams.start(conn, session):
                        return  # the stream's thread owns the connection from here
                    handler.close_connection = True
                if not (handler.close_connection or self.stopping):
                    mode = "keep"
                elif handler.linger and not self.stopping:
                    mode = "linger"
            except BaseException:
                self.connections.give_back(conn, "close")
                raise
            if mode == "keep" and kind != "watch" and not conn.over_cap \
                    and self._next_request_here(conn, pool) and self._classify(conn) == kind:
                if kind == "client" and self.fast_lane.serve(conn):
                    return  # a plain read: answered, and the connection is the selector's again
                continue
            if conn.eof:
                mode = "close"
            self.connections.give_back(conn, mode)
            return

    def _hand_back(self, conn: Connection, handler: DkvsRequestHandler) -> None:
        """After an answer sent off a worker: the connection goes back to the selector."""
        if conn.eof or self.stopping or handler.close_connection:
            mode = "linger" if handler.linger and not (self.stopping or conn.eof) else "close"
        else:
            mode = "keep"
        self.connections.give_back(conn, mode)

    def _next_request_here(self, conn: Connection, pool: WorkerPool) -> bool:
        """Wait a little for the next request on ``conn``; True once this worker can serve it."""
        conn.compact()
        conn.start_request(time.monotonic())
        if not conn.hot:
            return bool(conn.buffered) and request_ready(conn)
        deadline = time.monotonic() + HOT_WAIT_MAX_SECONDS
        while not (conn.buffered and request_ready(conn)):  # nothing buffered yet: no parse
            if pool.queued or self.stopping or time.monotonic() >= deadline:
                return False
            try:  # blocking, but SO_RCVTIMEO ends it after one slice
                data = conn.sock.recv(RECV_BYTES)
            except BlockingIOError:  # a slice went by in silence
                continue
            except OSError:
                return False
            if not data:
                conn.eof = True
                return False
            conn.received(data, time.monotonic())
        return True

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> DkvsHTTPServer:
        """Serve from a daemon thread; returns at once (the socket already listens)."""
        with self._lock:
            if self._thread is not None or self.stopping:
                raise RuntimeError("this server was already started")
            self._thread = threading.Thread(target=self.connections.run, name="dkvs-http-selector",
                                            daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop serving and release every socket and thread this server owns."""
        with self._lock:
            if self.stopping:
                return
            self.stopping = True  # workers close their connection after the current answer
        deadline = time.monotonic() + timeout_seconds
        self.connections.stop()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        else:
            self.connections.shutdown()
        self.socket.close()
        self.streams.close()
        for pool in self.pools.values():
            for item in pool.close():
                (item.conn if type(item) is _Resumed else item).close()
        for pool in self.pools.values():
            pool.join(deadline)
        self.forwarder.close()

    # Compatibility with the socketserver-based server this replaced.
    def server_close(self) -> None:
        self.stop()

    def __enter__(self) -> DkvsHTTPServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _Resumed:
    """A forwarded request's answer, queued for a worker of its connection's pool."""

    __slots__ = ("conn", "handler", "reply")

    def __init__(self, conn: Connection, handler: DkvsRequestHandler, reply) -> None:
        self.conn, self.handler, self.reply = conn, handler, reply


def make_server(service: KeyValueService, host: str = "127.0.0.1", port: int = 0, *,
                cors_origins: Iterable[str] = ("*",), request_queue_size: int = 1024,
                idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
                request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
                max_connections: int = MAX_CONNECTIONS,
                client_workers: int = CLIENT_WORKERS, internal_workers: int = INTERNAL_WORKERS,
                watch_workers: int = WATCH_WORKERS, client_threads_max: int = CLIENT_THREADS_MAX,
                internal_max_body_bytes: int = INTERNAL_MAX_BODY_BYTES,
                tls_context: ssl.SSLContext | None = None, fast_lane: bool = True) -> DkvsHTTPServer:
    """A bound, not yet started server for ``service``; call ``start()`` then ``stop()``.

    ``idle_timeout_seconds`` closes keep-alive connections idle that long (and bounds a
    body's silence); ``request_timeout_seconds`` is the time a request head has to arrive
    (bodies get more at 64 KiB/s); ``max_connections`` caps open connections;
    ``*_workers`` size the three pools (``client_threads_max`` also counts client workers
    waiting on a forward, see :class:`~dkvs.api.workers.WorkerPool`); ``internal_max_body_bytes`` caps bodies of
    ``/internal/`` routes; with ``tls_context`` the server speaks HTTPS only; ``fast_lane=False``
    sends every request to a worker (:mod:`dkvs.api.fast_lane`).
    """
    return DkvsHTTPServer(service, host, port, cors_origins=cors_origins,
                          request_queue_size=request_queue_size,
                          idle_timeout_seconds=idle_timeout_seconds,
                          request_timeout_seconds=request_timeout_seconds,
                          max_connections=max_connections, client_workers=client_workers,
                          internal_workers=internal_workers, watch_workers=watch_workers,
                          client_threads_max=client_threads_max,
                          internal_max_body_bytes=internal_max_body_bytes, tls_context=tls_context,
                          fast_lane=fast_lane)
