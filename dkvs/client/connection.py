"""Keep-alive connections to one node, and what a failed exchange means.

A :class:`NodePool` holds a few idle ``http.client`` connections to one node. A thread
takes one, makes one request on it and gives it back; no connection is ever used by two
threads at once, so the pool is thread safe without locking around I/O.

The client's retry contract rests on one distinction, drawn here and nowhere else:

* :class:`NotSent` — the node cannot have acted on the request: connecting failed
  (refused, unreachable, connect timeout), or sending failed part-way and no answer could
  be read. A node only acts on a request whose bytes all arrived (the body is framed by
  ``Content-Length``), so any request may be sent again.
* :class:`NoAnswer` — the whole request was handed to the network, and no complete answer
  came back (reset, EOF, read timeout, a 2xx without a JSON object). The node may have
  acted on it.

Two habits keep ``NoAnswer`` for real failures. An idle connection is checked before
reuse: if the node closed it (it was restarted, killed, or timed the connection out), the
socket is readable at EOF and the connection is dropped instead of used. And a connection
idle for more than :data:`MAX_IDLE_SECONDS` (below the node's 30 s idle timeout) is not
reused at all, so the node does not close it while our request is on the way.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Answer", "NodePool", "NotSent", "NoAnswer", "normalize_url", "tls_context",
           "MAX_IDLE_CONNECTIONS", "MAX_IDLE_SECONDS"]

MAX_IDLE_CONNECTIONS = 8  # per node; more threads than this open and close extra ones
MAX_IDLE_SECONDS = 20.0   # a node closes a connection idle for 30 s; never race it

_CONNECTION_CLASSES = {"http": http.client.HTTPConnection, "https": http.client.HTTPSConnection}
_FAILURES = (OSError, http.client.HTTPException)


class NotSent(Exception):
    """The request certainly did not reach the node in full; ``cause`` says why."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"{url}: {type(cause).__name__}: {cause}")
        self.url, self.cause = url, cause


class NoAnswer(Exception):
    """The request was sent and no complete answer came back; it may have been acted on."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"{url}: {type(cause).__name__}: {cause}")
        self.url, self.cause = url, cause


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer: status, the JSON object of the body (None if it is not one),
    and ``Retry-After`` in seconds (None if absent or not a number)."""

    status: int
    body: dict | None
    retry_after: float | None


def normalize_url(url: str) -> str:
    """``http://h:p/`` → ``http://h:p``; raises ValueError for anything but http(s) URLs."""
    parts = urlsplit(url.strip())
    if parts.scheme not in _CONNECTION_CLASSES or not parts.hostname:
        raise ValueError(f"not an http:// or https:// node URL: {url!r}")
    parts.port  # raises ValueError for a bad port
    return f"{parts.scheme}://{parts.netloc}"


class NodePool:
    """Idle keep-alive connections to the node at ``url``; see the module docstring.

    ``connect_timeout_seconds`` bounds connecting; each exchange sets its own read timeout.
    """

    def __init__(self, url: str, connect_timeout_seconds: float,
                 max_idle: int = MAX_IDLE_CONNECTIONS, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self.url = url
        if parts.scheme == "https":  # ssl_context None: verified against the system's CAs
            self._make = lambda: http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=connect_timeout_seconds, context=ssl_context)
        else:
            self._make = lambda: http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=connect_timeout_seconds)
        self._max_idle = max_idle
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []  # (conn, idle since)
        self._lock = threading.Lock()
        self._closed = False

    def exchange(self, method: str, target: str, body: bytes | None, headers: dict[str, str],
                 read_timeout_seconds: float) -> Answer:
        """Send one request and read the whole answer. Raises NotSent or NoAnswer."""
        conn = self._acquire()
        try:
            conn.sock.settimeout(read_timeout_seconds)
            try:
                conn.request(method, target, body=body, headers=headers)
                send_error = None
            except _FAILURES as exc:
                # The node may have answered early and closed (e.g. 413 before the body):
                # read that answer if it is there; if not, nothing complete was sent.
                send_error = exc
            try:
                response = conn.getresponse()
                data = response.read()
            except _FAILURES as exc:
                if send_error is not None:
                    raise NotSent(self.url, send_error) from send_error
                raise NoAnswer(self.url, exc) from exc
        except BaseException:
            conn.close()
            raise
        if response.will_close or send_error is not None:
            conn.close()
        else:
            self._release(conn)
        body = _json_object(data)
        if body is None and response.status < 300:
            raise NoAnswer(self.url, ValueError(f"HTTP {response.status} without a JSON object"))
        return Answer(response.status, body, _seconds(response.getheader("Retry-After")))

    def close(self) -> None:
        """Close the idle connections; connections in use are closed when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    # --- connections --------------------------------------------------------------------

    def _acquire(self) -> http.client.HTTPConnection:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, since = self._idle.pop()
            if now - since <= MAX_IDLE_SECONDS and not _dropped(conn.sock):
                return conn
            conn.close()
        conn = self._make()
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except _FAILURES as exc:
            conn.close()
            raise NotSent(self.url, exc) from exc
        return conn

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()


def tls_context(ca_file: str | None = None, ssl_context: ssl.SSLContext | None = None) -> ssl.SSLContext | None:
    """The context a client verifies ``https://`` nodes with: ``ssl_context`` as given, else
    one trusting ``ca_file`` (the cluster's CA), else None (the system's CAs)."""
    if ssl_context is not None:
        return ssl_context
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return None


def _dropped(sock: socket.socket | None) -> bool:
    """True if an idle connection is unusable: closed, or readable (EOF or stray bytes)."""
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


def _json_object(data: bytes) -> dict | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _seconds(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value < float("inf") else None
