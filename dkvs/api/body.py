"""Reading request bodies within a byte budget (RFC 9112 §6).

A body is framed by ``Content-Length`` or by ``Transfer-Encoding: chunked``; with neither,
a request has no body. Rules kept here:

* The declared length is checked against the budget *before* a byte is read, so a huge
  ``Content-Length`` costs nothing; chunked bodies are counted as they arrive and refused
  as soon as they pass the budget.
* Large bodies are read in slices, never by asking for ``Content-Length`` bytes at once
  (``BufferedReader.read(n)`` allocates ``n`` up front; a lying header must not cost 256 MiB).
* A body that ends early (EOF, reset, or the socket timeout of a stalled client) raises
  :class:`IncompleteBody`; the caller answers 400 if it still can and closes the connection,
  because the stream position is lost. A body too slow for the request's deadline
  (:class:`~dkvs.api.connection.RequestTimedOut`) raises :class:`BodyTooSlow`, a 408.
* Both ``Content-Length`` and ``Transfer-Encoding``, or conflicting ``Content-Length``
  values, are refused (400): that ambiguity is how request smuggling starts.

These functions know files and headers, not sockets or handlers, so they stay testable.
"""

from __future__ import annotations

from typing import BinaryIO

from ..errors import BadRequest, PayloadTooLarge
from .connection import MIN_BODY_RATE, RequestTimedOut

__all__ = ["CHUNKED", "IncompleteBody", "BodyTooSlow", "declared_length", "read_exact", "read_chunked", "discard"]

CHUNKED = -1  # declared_length's answer for a chunked body
READ_SLICE_BYTES = 1024 * 1024
MAX_CHUNK_LINE_BYTES = 1024
MAX_TRAILER_LINES = 64
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class IncompleteBody(BadRequest):
    """The body ended before its declared end: client stalled, closed, or lied."""


class BodyTooSlow(IncompleteBody):
    """The body did not arrive within the request's deadline (RFC 9110 §15.5.9: 408)."""

    status = 408
    code = "request_timeout"


_TOO_SLOW = ("the request body did not arrive in time: after the node's --request-timeout a body "
             f"must keep {MIN_BODY_RATE // 1024} KiB/s")


def declared_length(headers) -> int | None:
    """The body's framing: a byte count, :data:`CHUNKED`, or ``None`` (no body)."""
    coding = headers.get("Transfer-Encoding")
    lengths = headers.get_all("Content-Length")
    if coding is not None:
        if lengths:
            raise BadRequest("send either Content-Length or Transfer-Encoding, not both")
        if coding.strip().lower() != "chunked":
            raise BadRequest(f"unsupported Transfer-Encoding {coding[:40]!r}; only chunked is")
        return CHUNKED
    if not lengths:
        return None
    text = lengths[0].strip()
    if any(other.strip() != text for other in lengths[1:]):
        raise BadRequest("conflicting Content-Length headers")
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise BadRequest(f"Content-Length must be a non-negative integer; got {text[:40]!r}")
    return int(text)


def read_exact(rfile: BinaryIO, length: int) -> bytes:
    """Exactly ``length`` bytes, read in slices; IncompleteBody if the stream ends first."""
    if length <= READ_SLICE_BYTES:
        data = _read(rfile, length)
        if len(data) < length:
            raise _short(len(data), length)
        return data
    parts, got = [], 0
    while got < length:
        part = _read(rfile, min(READ_SLICE_BYTES, length - got))
        if not part:
            raise _short(got, length)
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_chunked(rfile: BinaryIO, limit: int) -> bytes:
    """A chunked body of at most ``limit`` bytes (trailers are read and dropped)."""
    parts, got = [], 0
    while True:
        size = _chunk_size(_read_line(rfile))
        if size == 0:
            break
        got += size
        if got > limit:
            raise PayloadTooLarge(f"the chunked body passes the {limit}-byte limit")
        parts.append(read_exact(rfile, size))
        if _read_line(rfile) not in (b"\r\n", b"\n"):
            raise BadRequest("a chunk is not followed by CRLF")
    for _ in range(MAX_TRAILER_LINES):
        if _read_line(rfile) in (b"\r\n", b"\n"):
            return b"".join(parts)
    raise BadRequest("too many trailer lines after the chunked body")


def discard(rfile: BinaryIO, length: int) -> None:
    """Read and drop ``length`` bytes (a small unread body) so the connection can be reused."""
    left = length
    while left > 0:
        part = _read(rfile, min(READ_SLICE_BYTES, left))
        if not part:
            raise _short(length - left, length)
        left -= len(part)


def _read(rfile: BinaryIO, size: int) -> bytes:
    try:
        return rfile.read(size)
    except RequestTimedOut:
        raise BodyTooSlow(_TOO_SLOW) from None
    except TimeoutError:
        raise IncompleteBody("timed out waiting for the rest of the request body") from None
    except (OSError, ValueError):  # reset, or a file already closed after an earlier timeout
        raise IncompleteBody("the connection failed while reading the request body") from None


def _read_line(rfile: BinaryIO) -> bytes:
    try:
        line = rfile.readline(MAX_CHUNK_LINE_BYTES + 1)
    except RequestTimedOut:
        raise BodyTooSlow(_TOO_SLOW) from None
    except TimeoutError:
        raise IncompleteBody("timed out waiting for the rest of the request body") from None
    except (OSError, ValueError):
        raise IncompleteBody("the connection failed while reading the request body") from None
    if not line:
        raise IncompleteBody("the connection closed in the middle of a chunked body")
    if len(line) > MAX_CHUNK_LINE_BYTES or not line.endswith(b"\n"):
        raise BadRequest("a chunk header line is too long")
    return line


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip().decode("latin-1")
    if not digits or len(digits) > 15 or not set(digits) <= _HEX_DIGITS:
        raise BadRequest(f"bad chunk size {digits[:20]!r}")
    return int(digits, 16)


def _short(got: int, length: int) -> IncompleteBody:
    return IncompleteBody(f"the request body ended after {got} of the {length} bytes "
                          "Content-Length announced")
