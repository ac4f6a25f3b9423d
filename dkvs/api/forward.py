"""Forwarding a request to the master, over a small pool of persistent connections.

Any node accepts writes (DESIGN.md §5): when the service raises ``NotMaster(url)``, the
front end replays the request to ``url`` and relays the master's answer (status,
``Content-Type``, ``Retry-After``, ``X-Dkvs-Seq``, body) verbatim. A redirect would be simpler but plain
``urllib`` does not follow a 307 for PUT.

Rules kept here:

* The forwarded request carries ``X-Dkvs-Forwarded: 1``. A node that receives a forwarded
  request and is not the master either answers 503 instead of forwarding again, so two
  nodes that each think the other leads cannot bounce a request forever (the front end
  applies that rule; this module only sets the header).
* Connections are kept per target (scheme, host, port) and reused; at most
  ``max_idle_per_target`` idle ones are kept, the rest closed. The pool is thread safe:
  a connection is used by one thread at a time.
* A pooled connection may have been closed by the master while idle. If sending on a
  *reused* connection fails before any answer arrives, it is replaced and the request sent
  once more; a fresh connection's failure is not retried.
* Refused connections, timeouts and broken answers become ``NoMaster`` (503 with
  ``Retry-After``): the client should retry once the cluster settles.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..errors import NoMaster
from ..transport.tls import peer_context
from .response import JSON_TYPE, Reply

__all__ = ["Forwarder", "FORWARDED_HEADER", "CONNECT_TIMEOUT_SECONDS", "RETRY_AFTER_SECONDS"]

FORWARDED_HEADER = "X-Dkvs-Forwarded"
CONNECT_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 1.0
MAX_IDLE_PER_TARGET = 8

# Request headers worth passing on; X-Dkvs-* (e.g. a cluster secret) are passed too.
_PASSED_HEADERS = ("Content-Type", "Accept", "Authorization")
# Answer headers relayed back: when to retry, and the seq a write got (read-your-writes).
_RELAYED_HEADERS = ("Retry-After", "X-Dkvs-Seq")
_CONNECTION_CLASSES = {"http": http.client.HTTPConnection, "https": http.client.HTTPSConnection}
# Failures that mean "the idle connection was already dead": safe to retry once.
_STALE_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                 ConnectionAbortedError)


class Forwarder:
    """Sends requests to other nodes and returns their answers as :class:`Reply`."""

    def __init__(self, *, max_idle_per_target: int = MAX_IDLE_PER_TARGET,
                 connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS) -> None:
        self.max_idle_per_target = max_idle_per_target
        self.connect_timeout_seconds = connect_timeout_seconds
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def forward(self, base_url: str, method: str, target: str, body: bytes | None,
                headers: Mapping[str, str], timeout_seconds: float) -> Reply:
        """Send ``method target`` to the node at ``base_url``; its answer, relayed.

        ``target`` is the original path and query, sent as is (still percent-encoded);
        ``headers`` the incoming request's headers, of which the relevant ones pass.
        Raises NoMaster when the node cannot be reached or answers garbage.
        """
        place, prefix = _parse_base(base_url)
        out_headers = _outgoing_headers(headers)
        path = prefix + target
        conn, reused = self._acquire(place)
        try:
            try:
                answer = self._exchange(conn, method, path, body, out_headers, timeout_seconds)
            except _STALE_ERRORS:
                conn.close()
                if not reused:
                    raise
                conn, reused = self._new_connection(place), False
                answer = self._exchange(conn, method, path, body, out_headers, timeout_seconds)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise NoMaster(f"the master at {base_url} did not answer ({type(exc).__name__}); "
                           "retry shortly", retry_after=RETRY_AFTER_SECONDS) from None
        reply, keep = answer
        if keep:
            self._release(place, conn)
        else:
            conn.close()
        return reply

    def close(self) -> None:
        """Close every idle connection; later forwards still work, on new connections."""
        with self._lock:
            pools, self._idle = self._idle, {}
        for pool in pools.values():
            for conn in pool:
                conn.close()

    # --- connections ----------------------------------------------------------------

    def _acquire(self, place: tuple) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            pool = self._idle.get(place)
            if pool:
                return pool.pop(), True
        return self._new_connection(place), False

    def _new_connection(self, place: tuple) -> http.client.HTTPConnection:
        scheme, host, port = place
        if scheme == "https":  # verified with the node's peer context (dkvs.transport.tls)
            return http.client.HTTPSConnection(host, port, timeout=self.connect_timeout_seconds,
                                               context=peer_context())
        return _CONNECTION_CLASSES[scheme](host, port, timeout=self.connect_timeout_seconds)

    def _release(self, place: tuple, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            pool = self._idle.setdefault(place, [])
            if len(pool) < self.max_idle_per_target:
                pool.append(conn)
                return
        conn.close()

    @staticmethod
    def _exchange(conn, method, path, body, headers, timeout_seconds) -> tuple[Reply, bool]:
        if conn.sock is None:
            conn.connect()  # with the connect timeout
        conn.sock.settimeout(timeout_seconds)
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        relayed = ()
        for name in _RELAYED_HEADERS:
            value = response.getheader(name)
            if value is not None and _clean(value):
                relayed += ((name, value.strip()),)
        content_type = response.getheader("Content-Type") or JSON_TYPE
        if not _clean(content_type):
            content_type = JSON_TYPE
        return Reply(response.status, data, content_type.strip(), relayed), not response.will_close


def _parse_base(base_url: str) -> tuple[tuple, str]:
    """``http://h:p/prefix`` → ((scheme, host, port), "/prefix"); NoMaster if unusable."""
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in _CONNECTION_CLASSES or not parts.hostname:
        raise NoMaster(f"the master's address {base_url[:100]!r} is not an http URL",
                       retry_after=RETRY_AFTER_SECONDS)
    default_port = 443 if parts.scheme == "https" else 80
    return (parts.scheme, parts.hostname, port or default_port), parts.path.rstrip("/")


def _outgoing_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out = {FORWARDED_HEADER: "1"}
    for name in _PASSED_HEADERS:
        value = headers.get(name)
        if value is not None and _clean(value):
            out[name] = value
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith("x-dkvs-") and lowered != "x-dkvs-forwarded" and _clean(value):
            out[name] = value
    return out


def _clean(value: str) -> bool:
    """A header value safe to copy into our answer: no line breaks."""
    return "\r" not in value and "\n" not in value
