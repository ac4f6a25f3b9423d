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

Why a hand-written HTTP/1.1 exchange instead of :mod:`http.client`: a slave under many
clients spends its CPU forwarding, and ``http.client`` parses every answer's headers with
the :mod:`email` package and builds the request from several small pieces; a profile of a
slave forwarding 1,000 clients' writes put over half of its forwarding CPU there. The
peer is a dkvs node, whose answers are small and framed by ``Content-Length``; this
module still reads ``chunked`` and close-delimited bodies, skips ``1xx`` answers, and sends
the request (head and body) with one ``sendall`` on a ``TCP_NODELAY`` socket.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..errors import BadRequest, NoMaster
from ..transport.tls import peer_context
from .response import JSON_TYPE, Reply, error_reply

__all__ = ["Forwarder", "FORWARDED_HEADER", "CONNECT_TIMEOUT_SECONDS", "RETRY_AFTER_SECONDS"]

FORWARDED_HEADER = "X-Dkvs-Forwarded"
CONNECT_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 1.0
MAX_IDLE_PER_TARGET = 8
MAX_HEAD_BYTES = 64 * 1024  # an answer head longer than this is garbage
RECV_BYTES = 64 * 1024

# Request headers worth passing on; X-Dkvs-* (e.g. a cluster secret) are passed too.
_PASSED_HEADERS = ("Content-Type", "Accept", "Authorization")
# Answer headers relayed back: when to retry, and the seq a write got (read-your-writes).
_RELAYED_HEADERS = ("Retry-After", "X-Dkvs-Seq")
_SCHEMES = ("http", "https")
_UNSENDABLE = re.compile(r"[^\x21-\x7e]")  # a request target is visible ASCII only
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))  # Content-Length: 0 even without a body
_NO_BODY_STATUSES = frozenset((204, 304))


class _BadAnswer(Exception):
    """The peer's answer is not HTTP/1.x we can read."""


class _Stale(Exception):
    """The connection was closed before any byte of the answer: safe to resend once."""


class _Link:
    """One persistent connection to a node: its socket and the bytes read past an answer."""

    __slots__ = ("sock", "buf", "timeout")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.timeout: float | None = None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Forwarder:
    """Sends requests to other nodes and returns their answers as :class:`Reply`."""

    def __init__(self, *, max_idle_per_target: int = MAX_IDLE_PER_TARGET,
                 connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS) -> None:
        self.max_idle_per_target = max_idle_per_target
        self.connect_timeout_seconds = connect_timeout_seconds
        self._idle: dict[tuple, list[_Link]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def forward(self, base_url: str, method: str, target: str, body: bytes | None,
                headers: Mapping[str, str], timeout_seconds: float) -> Reply:
        """Send ``method target`` to the node at ``base_url``; its answer, relayed.

        ``target`` is the original path and query, sent as is (still percent-encoded);
        ``headers`` the incoming request's headers, of which the relevant ones pass.
        Raises NoMaster when the node cannot be reached or answers garbage; a request that
        cannot be sent as it is gets a 400 answer of our own (a retry would fail alike).
        """
        place, prefix = _parse_base(base_url)
        try:
            request = _render_request(method, prefix + target, place, body, _outgoing_headers(headers))
        except BadRequest as exc:  # answered here: the front end relays any Reply we return
            return error_reply(exc)
        link, reused = self._acquire(place)
        try:
            try:
                reply, keep = _exchange(link, request, method, timeout_seconds)
            except _Stale:
                link.close()
                if not reused:
                    raise
                link, reused = self._new_link(place), False
                reply, keep = _exchange(link, request, method, timeout_seconds)
        except (OSError, _Stale, _BadAnswer, ValueError) as exc:
            link.close()
            raise NoMaster(f"the master at {base_url} did not answer ({type(exc).__name__}); "
                           "retry shortly", retry_after=RETRY_AFTER_SECONDS) from None
        if keep:
            self._release(place, link)
        else:
            link.close()
        return reply

    def close(self) -> None:
        """Close every idle connection; later forwards still work, on new connections."""
        with self._lock:
            pools, self._idle = self._idle, {}
        for pool in pools.values():
            for conn in pool:
                conn.close()

    # --- connections ----------------------------------------------------------------

    def _acquire(self, place: tuple) -> tuple[_Link, bool]:
        with self._lock:
            pool = self._idle.get(place)
            if pool:
                return pool.pop(), True
        try:
            return self._new_link(place), False
        except OSError as exc:
            raise NoMaster(f"the master at {place[0]}://{place[1]}:{place[2]} did not answer "
                           f"({type(exc).__name__}); retry shortly", retry_after=RETRY_AFTER_SECONDS) from None

    def _new_link(self, place: tuple) -> _Link:
        scheme, host, port = place
        sock = socket.create_connection((host, port), timeout=self.connect_timeout_seconds)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":  # verified with the node's peer context (dkvs.transport.tls)
                sock = peer_context().wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError):
            sock.close()
            raise
        return _Link(sock)

    def _release(self, place: tuple, link: _Link) -> None:
        with self._lock:
            pool = self._idle.setdefault(place, [])
            # bytes left over after the answer: the link is out of step, never reuse it
            if len(pool) < self.max_idle_per_target and not link.buf:
                pool.append(link)
                return
        link.close()


def _render_request(method: str, path: str, place: tuple, body: bytes | None,
                    headers: dict[str, str]) -> bytes:
    """The whole request as one ``bytes``; BadRequest if it cannot be sent as it is (a retry
    would fail the same way, so not a 503)."""
    if not path.startswith("/") or _UNSENDABLE.search(path) or not method.isalpha():
        raise BadRequest("the request target has characters that cannot be forwarded to the "
                         "master; percent-encode them")
    scheme, host, port = place
    default_port = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    lines = [f"{method} {path} HTTP/1.1", f"Host: {shown}" + ("" if port == default_port else f":{port}")]
    if body is not None or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body or b'')}")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise BadRequest("a header of the request cannot be forwarded to the master "
                         "(not ISO-8859-1)") from None
    return head + body if body else head


def _exchange(link: _Link, request: bytes, method: str, timeout_seconds: float) -> tuple[Reply, bool]:
    """Send ``request`` on ``link`` and read one answer: ``(reply, keep the link)``.

    Raises _Stale when the peer closed the connection before any byte of the answer
    (an idle connection the peer had dropped), OSError / _BadAnswer otherwise.
    """
    sock = link.sock
    if link.timeout != timeout_seconds:
        sock.settimeout(timeout_seconds)
        link.timeout = timeout_seconds
    try:
        sock.sendall(request)
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
        raise _Stale() from None
    while True:  # 1xx answers come before the real one
        status, fields, version_11 = _read_head(link)
        if status >= 200:
            break
    if method == "HEAD" or status in _NO_BODY_STATUSES:
        data, framed = b"", True
    else:
        data, framed = _read_body(link, fields)
    connection = fields.get("connection", "").lower()
    keep = framed and version_11 and "close" not in connection
    relayed = tuple((name, fields[name.lower()].strip()) for name in _RELAYED_HEADERS
                    if name.lower() in fields and _clean(fields[name.lower()]))
    content_type = fields.get("content-type") or JSON_TYPE
    if not _clean(content_type):
        content_type = JSON_TYPE
    return Reply(status, data, content_type.strip(), relayed), keep


def _fill(link: _Link, first: bool = False) -> None:
    """Read more bytes into the link's buffer; _Stale/_BadAnswer when the peer closed."""
    try:
        data = link.sock.recv(RECV_BYTES)
    except (ConnectionResetError, ConnectionAbortedError):
        if first:
            raise _Stale() from None
        raise
    if not data:
        if first:
            raise _Stale()
        raise _BadAnswer("the connection closed in the middle of an answer")
    link.buf += data


def _read_head(link: _Link) -> tuple[int, dict[str, str], bool]:
    """The status, the header fields (names lower-cased; repeated ones joined with ", ")
    and whether the answer is HTTP/1.1, of the next answer on ``link``."""
    buf = link.buf
    first = not buf
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(buf) > MAX_HEAD_BYTES:
            raise _BadAnswer("the answer's head is too long")
        _fill(link, first)
        first = False
    head = bytes(buf[:end]).decode("latin-1")
    del buf[:end + 4]
    status_line, *header_lines = head.split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise _BadAnswer(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    fields: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadAnswer("a header line without a colon")
        name, value = name.strip().lower(), value.strip()
        fields[name] = f"{fields[name]}, {value}" if name in fields else value
    return int(parts[1]), fields, parts[0] == "HTTP/1.1"


def _read_body(link: _Link, fields: dict[str, str]) -> tuple[bytes, bool]:
    """The answer's body and whether it was framed (False: it ran to the connection's end)."""
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return _read_chunked(link), True
    length = fields.get("content-length")
    if length is None:
        while True:
            try:
                _fill(link)
            except _BadAnswer:  # the end of a close-delimited body
                data = bytes(link.buf)
                link.buf.clear()
                return data, False
    if not length.isdigit():
        raise _BadAnswer("a bad Content-Length")
    return _take(link, int(length)), True


def _take(link: _Link, n: int) -> bytes:
    while len(link.buf) < n:
        _fill(link)
    data = bytes(link.buf[:n])
    del link.buf[:n]
    return data


def _read_line(link: _Link) -> bytes:
    while True:
        end = link.buf.find(b"\r\n")
        if end >= 0:
            line = bytes(link.buf[:end])
            del link.buf[:end + 2]
            return line
        if len(link.buf) > MAX_HEAD_BYTES:
            raise _BadAnswer("a chunk line is too long")
        _fill(link)


def _read_chunked(link: _Link) -> bytes:
    parts = []
    while True:
        size_text = _read_line(link).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadAnswer("a bad chunk size") from None
        if size == 0:
            while _read_line(link):  # trailers, then the empty line
                pass
            return b"".join(parts)
        parts.append(_take(link, size))
        if _read_line(link):
            raise _BadAnswer("a chunk not followed by CRLF")


def _parse_base(base_url: str) -> tuple[tuple, str]:
    """``http://h:p/prefix`` → ((scheme, host, port), "/prefix"); NoMaster if unusable."""
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in _SCHEMES or not parts.hostname:
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
