"""The HTTP server of a node: a tuned ``ThreadingHTTPServer`` around a :class:`KeyValueService`.

``make_server(service, host, port)`` binds at once (``port=0`` picks a free port; ``url``
then holds the real one); ``start()`` serves from a daemon thread; ``stop()`` ends
everything it started. One thread per connection, as ``http.server`` does it, tuned per
DESIGN.md §6:

* ``request_queue_size`` (listen backlog) defaults to 1024, not 5, so bursts of new
  connections are queued instead of having their SYNs dropped (which costs ~1 s retries).
* Accepted sockets get ``TCP_NODELAY``; every answer is also written in one piece (see
  :mod:`dkvs.api.handler`), so no response waits on a delayed ACK.
* Binding skips ``HTTPServer``'s reverse DNS lookup of the host (``socket.getfqdn``), which
  can take seconds on a machine with slow DNS.

Shutdown contract: :meth:`DkvsHTTPServer.stop` stops accepting, closes the listening socket,
shuts down every idle keep-alive connection (so no handler thread sleeps in ``recv`` until
its idle timeout), lets busy ones finish their current answer, joins all connection threads
(bounded by ``timeout_seconds``) and closes the forwarding pool. It is safe to call twice.

Methods to override are those of ``socketserver``; the handler class is
:class:`~dkvs.api.handler.DkvsRequestHandler`.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterable
from http.server import ThreadingHTTPServer

from .. import __version__
from .cors import CorsPolicy
from .metrics import RequestMetrics
from .forward import Forwarder
from .handler import DkvsRequestHandler
from .service import KeyValueService

__all__ = ["DkvsHTTPServer", "make_server", "IDLE_TIMEOUT_SECONDS", "INTERNAL_MAX_BODY_BYTES"]

log = logging.getLogger("dkvs.http")

IDLE_TIMEOUT_SECONDS = 30.0
INTERNAL_MAX_BODY_BYTES = 256 * 1024 * 1024
POLL_INTERVAL_SECONDS = 0.05  # how fast serve_forever notices shutdown()
STOP_TIMEOUT_SECONDS = 5.0


class DkvsHTTPServer(ThreadingHTTPServer):
    """Serves the dkvs HTTP API of ``service``; see the module docstring for the tuning."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, service: KeyValueService, host: str = "127.0.0.1", port: int = 0, *,
                 cors_origins: Iterable[str] = ("*",), request_queue_size: int = 1024,
                 idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
                 internal_max_body_bytes: int = INTERNAL_MAX_BODY_BYTES,
                 forwarder: Forwarder | None = None) -> None:
        self.service = service
        self.request_queue_size = request_queue_size  # read by server_activate (listen)
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.cors = CorsPolicy(cors_origins)
        self.metrics = RequestMetrics()
        self.idle_timeout_seconds = idle_timeout_seconds
        self.internal_max_body_bytes = internal_max_body_bytes
        self.forwarder = forwarder if forwarder is not None else Forwarder()
        self.server_line = f"Server: dkvs/{__version__}\r\n"
        self.stopping = False
        self._lock = threading.Lock()
        self._handlers: set[DkvsRequestHandler] = set()
        self._connection_threads: set[threading.Thread] = set()
        self._serve_thread: threading.Thread | None = None
        super().__init__((host, port), DkvsRequestHandler)
        bound_host, bound_port = self.server_address[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"

    # --- socketserver hooks -----------------------------------------------------------

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: no getfqdn DNS lookup
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, address = super().get_request()
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (tests may pass other sockets); harmless
            pass
        return sock, address

    def process_request(self, request, client_address) -> None:
        """One daemon thread per connection, remembered so :meth:`stop` can join it."""
        if self.stopping:
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name="dkvs-http-connection", daemon=True)
        with self._lock:
            self._connection_threads.add(thread)
        thread.start()

    def _serve_connection(self, request, client_address) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connection_threads.discard(threading.current_thread())

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("connection from %s failed: %r", client_address, exc)
        else:
            log.error("unexpected error on the connection from %s", client_address, exc_info=True)

    # --- handler bookkeeping (called from connection threads) ---------------------------

    def track(self, handler: DkvsRequestHandler) -> None:
        with self._lock:
            self._handlers.add(handler)

    def untrack(self, handler: DkvsRequestHandler) -> None:
        with self._lock:
            self._handlers.discard(handler)

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> DkvsHTTPServer:
        """Serve from a daemon thread; returns once the loop runs (the socket already listens)."""
        if self._serve_thread is not None or self.stopping:
            raise RuntimeError("this server was already started")
        running = threading.Event()

        def serve() -> None:
            running.set()
            self.serve_forever(poll_interval=POLL_INTERVAL_SECONDS)

        self._serve_thread = threading.Thread(target=serve, name="dkvs-http-accept", daemon=True)
        self._serve_thread.start()
        running.wait()
        return self

    def stop(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop serving and release every socket and thread this server owns."""
        with self._lock:
            if self.stopping:
                return
            self.stopping = True  # handlers check it each time they turn idle
        if self._serve_thread is not None:
            self.shutdown()
            self._serve_thread.join()
        self.server_close()
        with self._lock:
            handlers = list(self._handlers)
            threads = list(self._connection_threads)
        for handler in handlers:
            if handler.idle:  # set before it re-checks ``stopping``: none is missed
                _shutdown_quietly(handler.connection)
        deadline = time.monotonic() + timeout_seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.forwarder.close()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _shutdown_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def make_server(service: KeyValueService, host: str = "127.0.0.1", port: int = 0, *,
                cors_origins: Iterable[str] = ("*",), request_queue_size: int = 1024,
                idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
                internal_max_body_bytes: int = INTERNAL_MAX_BODY_BYTES) -> DkvsHTTPServer:
    """A bound, not yet started server for ``service``; call ``start()`` then ``stop()``.

    ``idle_timeout_seconds`` bounds the silence on a connection, between requests and in the
    middle of a body; ``internal_max_body_bytes`` caps bodies of ``/internal/`` routes.
    """
    return DkvsHTTPServer(service, host, port, cors_origins=cors_origins,
                          request_queue_size=request_queue_size,
                          idle_timeout_seconds=idle_timeout_seconds,
                          internal_max_body_bytes=internal_max_body_bytes)
