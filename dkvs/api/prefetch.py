"""What the selector needs to know about a request before a worker parses it.

The selector hands a connection to a worker once the request head is buffered and, when
small enough, its body too (:mod:`dkvs.api.connections`); a worker serving a hot
connection asks the same question (:func:`request_ready`). These checks are deliberately
shallow — find the blank line, find one ``Content-Length`` — and anything unusual
(chunked, ``Expect``, duplicate or malformed lengths) is left to the worker, where the
handler applies the full rules of :mod:`dkvs.api.body` and answers errors.
"""

from __future__ import annotations

from .connection import Connection

__all__ = ["PREFETCH_MAX_BYTES", "head_length", "framing", "request_ready"]

PREFETCH_MAX_BYTES = 2 * 1024 * 1024  # bodies up to this size are read before a worker starts


def head_length(buf: bytearray, pos: int) -> int:
    """Length of the complete request head at ``buf[pos:]`` (blank line included), or -1."""
    end = buf.find(b"\n\r\n", pos)
    if end >= 0:  # the usual CRLF head; a bare-LF blank line may still come before it
        bare = buf.find(b"\n\n", pos, end + 2)
        return end + 3 - pos if bare < 0 else bare + 2 - pos
    bare = buf.find(b"\n\n", pos)
    return bare + 2 - pos if bare >= 0 else -1


def framing(head: bytes) -> int | None:
    """The body size to prefetch for ``head``, or None when the worker must read it.

    0 for no body; None for chunked, ``Expect`` or anything unusual (the handler applies
    the full rules, :mod:`dkvs.api.body`, and answers errors).
    """
    lower = head.lower()
    if b"\ntransfer-encoding:" in lower or b"\nexpect:" in lower:
        return None
    at = lower.find(b"\ncontent-length:")
    if at < 0:
        return 0
    if lower.find(b"\ncontent-length:", at + 1) >= 0:
        return None
    text = lower[at + 16:lower.find(b"\n", at + 1)].strip()
    if not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def request_ready(conn: Connection) -> bool:
    """Whether a worker can start on the bytes buffered on ``conn`` without the selector:
    a whole head, and the whole body when it is one the selector would have prefetched.
    Notes where the head ends (``conn.head_end``), as the selector does."""
    pos = conn.pos
    length = head_length(conn.buf, pos)
    if length < 0:
        return False
    conn.head_end = pos + length
    body = framing(bytes(conn.buf[pos:pos + length]))
    return not body or body > PREFETCH_MAX_BYTES or conn.buffered >= length + body
