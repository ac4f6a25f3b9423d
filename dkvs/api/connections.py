"""The selector thread: accepts connections and watches every one that no worker serves.

One thread does all the waiting, so waiting costs no thread: it accepts, reads without
blocking until a request head (and a small body) is buffered, then hands the connection
to a worker pool (``dispatch``), and takes it back after the answer (:meth:`give_back`).
It also enforces the limits an outsider could otherwise abuse:

* ``max_connections``: a connection accepted beyond it gets one 503 JSON answer, its
  write side is shut and it is closed shortly after (those lingering rejects are capped
  too); connections already open keep being served. Node-to-node traffic must not be
  locked out by clients, so up to :data:`INTERNAL_RESERVE` connections over the cap are
  admitted on probation: each of their requests is served only if it is internal
  (``/internal/*``), otherwise it is answered with the same 503.
* ``request_timeout``: a request head must arrive within it; a body must then keep the
  average rate of :data:`~dkvs.api.connection.MIN_BODY_RATE` (the rule is spelled out in
  :mod:`dkvs.api.connection`). A head that misses it gets 408 and the connection closes;
  a body that misses it is handed to a worker marked expired, which answers 408 at once.
* ``idle_timeout``: a keep-alive connection with no request for that long is closed; a
  body silent that long is a stall (400).
* Bodies up to :data:`PREFETCH_MAX_BYTES` are read here while the total buffered stays
  under :data:`PREFETCH_BUDGET_BYTES`; larger, chunked or ``Expect: 100-continue``
  bodies are read by the worker under the same deadline.

Every connection no worker holds is closed by :meth:`stop`. Only this thread changes the
connection table. Sockets are watched one event at a time (:mod:`dkvs.api.poller`): a
connection handed to a worker cannot wake the selector, and a worker done with a
keep-alive connection re-arms it itself (with epoll), so the common request costs the
selector one wake-up. Everything else a worker gives back (close, lingering close,
pipelined bytes already buffered) goes through :meth:`give_back`: a locked list plus a
one-byte wake-up on a socket pair.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from .connection import BODY, BUSY, HEAD, IDLE, LINGER, NEW, RECV_BYTES, Connection
from .poller import OneShotPoller
from .prefetch import PREFETCH_MAX_BYTES, framing, head_length
from .response import Reply, encode_json, render
from .watched import WatchedSockets

__all__ = ["ConnectionManager", "INTERNAL_RESERVE", "PREFETCH_BUDGET_BYTES", "HEAD_BUFFER_MAX_BYTES"]

log = logging.getLogger("dkvs.http")

PREFETCH_BUDGET_BYTES = 64 * 1024 * 1024
HEAD_BUFFER_MAX_BYTES = 128 * 1024  # a head not done by then is read on by a worker (414/431)
LINGER_SECONDS = 2.0  # after an error answer: read and drop what the client still sends
LINGER_MAX_BYTES = 64 * 1024 * 1024
REJECT_LINGER_SECONDS = 1.0
INTERNAL_RESERVE = 64  # connections over the cap admitted for node-to-node requests only
MAX_LINGERING = 256  # lingering connections beyond this are closed at once
ACCEPT_BATCH = 64
_LISTENER, _WAKE = object(), object()


def _answer(status: int, code: str, message: str, extra: str) -> bytes:
    body = encode_json({"error": code, "message": message}).encode("utf-8")
    return render(Reply(status, body), extra + "Connection: close\r\n")


class ConnectionManager:
    """Owns the listening socket and every connection not in a worker's hands."""

    def __init__(self, listener: socket.socket, *, classify: Callable[[Connection], str],
                 dispatch: Callable[[Connection], None], max_connections: int,
                 request_timeout: float, idle_timeout: float, header_lines: Callable[[], str],
                 poller: OneShotPoller | None = None, wrap: Callable | None = None) -> None:
        self.listener = listener
        self.wrap = wrap  # TLS: accepted sockets are wrapped (dkvs.api.tls; the handshake comes with the first reads)
        self.classify = classify  # sets and returns conn.kind: "internal", "client", "watch"
        self.dispatch = dispatch
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.header_lines = header_lines  # Server and Date lines for the answers sent here
        self.live = 0  # open connections, lingering ones excepted (read by tests/metrics)
        self.rejected = 0
        self.timed_out = 0
        self._conns: dict[int, Connection] = {}  # fd -> every open connection, busy ones too
        self._lingering = 0
        self._over_cap = 0  # open connections admitted on probation beyond max_connections
        self._prefetched = 0
        self._poller = poller if poller is not None else OneShotPoller()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._returned: list[tuple[Connection, str]] = []
        # Other sockets this thread reads: the node's replication streams (dkvs.transport.stream_loop).
        self.watched = WatchedSockets(self._poller)
        # The node (NodeHost.hold_bursts/release_bursts): the writes, reads and replication
        # answers of one poll's events run as one burst. None: each runs at once.
        self.batcher = None
        self._lock = threading.Lock()
        self._wake_pending = False
        self._stopping = False
        self._stopped = False
        self._accept_paused_until = 0.0
        self._tick = max(0.01, min(0.25, request_timeout / 8, idle_timeout / 8))

    # --- called from workers ---------------------------------------------------------

    def give_back(self, conn: Connection, mode: str) -> None:
        """A worker is done with ``conn``: ``"keep"`` (keep-alive), ``"linger"`` or ``"close"``."""
        if mode == "keep" and self._poller.threadsafe_rearm:
            conn.compact()
            if not conn.buffered:  # the usual case: wait for the next request, no wake-up
                now = time.monotonic()
                conn.start_request(now)
                conn.deadline = now + self.idle_timeout
                conn.state = IDLE  # the selector owns it again from here
                try:
                    self._poller.rearm(conn.fd)
                except (OSError, ValueError):  # the poller is closed (stop)
                    pass
                if self._stopped:  # stop() may have missed it while it was busy
                    conn.close()
                return
        with self._lock:
            if not self._stopped:
                self._returned.append((conn, mode))
                if self._wake_pending:
                    return
                self._wake_pending = True
                wake = True
            else:
                wake = False
        if wake:
            try:
                self._wake_w.send(b"\0")
            except OSError:  # the pair is full or closed: the selector is awake anyway
                pass
            return
        conn.close()  # the selector is gone (stop): nothing watches the connection anymore

    def stop(self) -> None:
        self._stopping = True
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    # --- the loop -------------------------------------------------------------------

    def run(self) -> None:
        poller = self._poller
        poller.add(self.listener.fileno(), _LISTENER, oneshot=False)
        poller.add(self._wake_r.fileno(), _WAKE, oneshot=False)
        next_sweep = time.monotonic() + self._tick
        try:
            while not self._stopping:
                ready = poller.poll(max(0.0, next_sweep - time.monotonic()))
                batcher = self.batcher if len(ready) > 1 else None
                if batcher is not None:  # one burst for the requests and answers of this poll
                    batcher.hold_bursts()
                try:
                    for data in ready:
                        if data is _LISTENER:
                            self._accept()
                        elif data is _WAKE:
                            self._take_returned()
                        elif self._conns.get(data.fd) is data and data.state != BUSY:
                            self._on_readable(data)
                        elif type(data) is not Connection:
                            self.watched.ready(data)
                finally:
                    if batcher is not None:
                        batcher.release_bursts()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + self._tick
        finally:
            self.shutdown()

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of file descriptors, most likely: pause a little
                log.warning("cannot accept connections: %s", exc)
                self._poller.remove(self.listener.fileno())
                self._accept_paused_until = time.monotonic() + self._tick
                return
            now = time.monotonic()
            try:
                sock = self.wrap(sock) if self.wrap is not None else sock
            except OSError:  # gone already
                sock.close()
                continue
            conn = Connection(sock, address, now)
            conn.setup_socket()
            with self._lock:
                over = self.live >= self.max_connections
                admitted = not over or self._over_cap < INTERNAL_RESERVE
                if admitted:
                    self.live += 1
            if not admitted:
                self._reject(conn, now)
                continue
            if over:
                conn.over_cap = True
                self._over_cap += 1
            conn.deadline = now + self.request_timeout
            self._watch(conn)

    def _reject(self, conn: Connection, now: float) -> None:
        self.rejected += 1
        answer = _answer(503, "too_many_connections",
                         f"this node already serves {self.max_connections} connections "
                         "(its --max-connections); retry shortly", self.header_lines() + "Retry-After: 1\r\n")
        self._send_and_linger(conn, answer, now + REJECT_LINGER_SECONDS)

    def _send_and_linger(self, conn: Connection, answer: bytes, until: float) -> None:
        """Best-effort answer, then read and drop input until EOF or ``until``, then close.

        ``conn`` no longer counts as live (the caller made sure of it).
        """
        conn.state = LINGER
        try:
            if answer:
                conn.sock.send(answer, socket.MSG_DONTWAIT)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._discard(conn)
            return
        if self._lingering >= MAX_LINGERING:
            self._discard(conn)
            return
        self._lingering += 1
        conn.deadline, conn.linger_left = until, LINGER_MAX_BYTES
        self._watch(conn)

    def _watch(self, conn: Connection) -> None:
        """Watch ``conn`` for its next event (adding it to the table if new)."""
        if conn.fd in self._conns:
            self._poller.rearm(conn.fd)
        else:
            self._conns[conn.fd] = conn
            self._poller.add(conn.fd, conn)

    def _discard(self, conn: Connection) -> None:
        """Forget and close ``conn`` without touching the counters."""
        if self._conns.get(conn.fd) is conn:
            del self._conns[conn.fd]
            self._poller.remove(conn.fd)
        self._release_prefetch(conn)
        conn.close()

    def _close(self, conn: Connection) -> None:
        self._discard(conn)
        self._drop_over_cap(conn)
        if conn.state == LINGER:
            self._lingering -= 1
        else:
            with self._lock:
                self.live -= 1

    def _drop_over_cap(self, conn: Connection) -> None:
        if conn.over_cap:
            conn.over_cap = False
            self._over_cap -= 1

    def _release_prefetch(self, conn: Connection) -> None:
        self._prefetched -= conn.reserved
        conn.reserved = 0

    def _stop_counting(self, conn: Connection) -> None:
        """``conn`` goes to a lingering close: it no longer takes a connection slot."""
        self._drop_over_cap(conn)
        with self._lock:
            self.live -= 1

    def _on_readable(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES, socket.MSG_DONTWAIT)
        except BlockingIOError:
            self._watch(conn)
            return
        except OSError:
            self._close(conn)
            return
        now = time.monotonic()
        if conn.state == LINGER:
            conn.linger_left -= len(data)
            if not data or conn.linger_left <= 0:
                self._close(conn)
            else:
                self._watch(conn)
            return
        if not data:
            conn.eof = True
            if conn.state in (HEAD, BODY):  # let the handler answer what it can (400)
                self._hand_over(conn)
            else:
                self._close(conn)
            return
        if conn.state in (NEW, IDLE):
            if conn.state == IDLE:
                conn.start_request(now)
            conn.state = HEAD
        conn.received(data, now)
        self._advance(conn)

    def _advance(self, conn: Connection) -> None:
        """Dispatch ``conn`` if its request is ready, else watch it for more bytes."""
        if conn.state == HEAD:
            length = head_length(conn.buf, conn.pos)
            if length < 0:
                if conn.buffered > HEAD_BUFFER_MAX_BYTES:
                    self._hand_over(conn)
                else:
                    conn.deadline = conn.request_deadline(self.request_timeout)
                    self._watch(conn)
                return
            conn.head_end = conn.pos + length
            body = framing(bytes(conn.buf[conn.pos:conn.head_end]))
            if not body or body > PREFETCH_MAX_BYTES or self._prefetched + body > PREFETCH_BUDGET_BYTES:
                self._hand_over(conn)
                return
            conn.reserved = body
            self._prefetched += body
            conn.need = length + body
            conn.state = BODY
        if conn.state == BODY:
            if conn.buffered >= conn.need:
                self._hand_over(conn)
            else:
                conn.deadline = conn.request_deadline(self.request_timeout)
                self._watch(conn)

    def _hand_over(self, conn: Connection) -> None:
        """Give ``conn`` (not armed) to a worker; over the cap, only internal requests pass."""
        self._release_prefetch(conn)
        if self.classify(conn) != "internal" and conn.over_cap:  # probation: internal only
            self._stop_counting(conn)
            self._reject(conn, time.monotonic())
            return
        conn.state = BUSY
        self.dispatch(conn)

    def _take_returned(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        with self._lock:
            returned, self._returned = self._returned, []
            self._wake_pending = False
        now = time.monotonic()
        for conn, mode in returned:
            if mode == "keep":
                conn.compact()
                conn.start_request(now)
                if conn.buffered:  # pipelined: the next request is (partly) here already
                    conn.state = HEAD
                    self._advance(conn)
                else:
                    conn.state, conn.deadline = IDLE, now + self.idle_timeout
                    self._watch(conn)
            elif mode == "linger":
                self._stop_counting(conn)
                self._send_and_linger(conn, b"", now + LINGER_SECONDS)
            else:
                self._close(conn)

    def _sweep(self, now: float) -> None:
        """Apply the deadlines; also resume accepting after a pause."""
        self.watched.sweep(now)
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._poller.add(self.listener.fileno(), _LISTENER, oneshot=False)
        for conn in list(self._conns.values()):
            state = conn.state
            if state == BUSY:
                continue
            if state == BODY and now - conn.last_read >= self.idle_timeout:
                conn.expired = "stall"
            elif now < conn.deadline:
                continue
            if state == HEAD:
                self.timed_out += 1
                answer = _answer(408, "request_timeout", "the request head did not arrive within "
                                 f"{self.request_timeout:g} s (the node's --request-timeout)", self.header_lines())
                self._stop_counting(conn)
                self._send_and_linger(conn, answer, now + REJECT_LINGER_SECONDS)
            elif state == BODY:
                self.timed_out += conn.expired is None
                conn.expired = conn.expired or "deadline"
                self._poller.disarm(conn.fd)
                self._hand_over(conn)
            else:  # NEW, IDLE, LINGER: close quietly
                self._close(conn)

    def shutdown(self) -> None:
        """Close the listening side of things and every connection no worker holds."""
        with self._lock:
            self._stopped = True
            returned, self._returned = self._returned, []
        self.watched.close()
        for conn, _ in returned:
            conn.close()
        for conn in list(self._conns.values()):
            if conn.state != BUSY:
                conn.close()
        self._conns.clear()
        self._poller.close()
        self._wake_r.close()
        self._wake_w.close()
