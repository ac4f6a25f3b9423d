"""Answers as data (:class:`Reply`), and their bytes on the wire (:func:`render`).

Route handlers return a :class:`Reply`; only :func:`render` turns one into bytes, and it
produces the status line, the headers and the body as *one* ``bytes`` object, which the
handler hands to a single ``write``. ``http.server``'s own ``send_response`` /
``end_headers`` / ``wfile.write`` sequence sends headers and body as two small segments;
with Nagle's algorithm on one side and delayed ACKs on the other, the second waits ~40 ms
(DESIGN.md §6). One write per answer makes that impossible whatever the socket options.

Every error answer is JSON ``{"error": code, "message": sentence, ...details}`` built from
a :class:`~dkvs.errors.DkvsError`; 503 answers carry ``Retry-After`` in whole seconds, at
least 1 (RFC 9110 §10.2.3 allows only integers).
"""

from __future__ import annotations

import json
import math
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import NamedTuple

from ..errors import DkvsError

__all__ = ["Reply", "JSON_TYPE", "json_reply", "error_reply", "retry_after_value", "render",
           "encode_json", "date_line"]

JSON_TYPE = "application/json"

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _one_shot_encoder():
    """``encode_json`` without ``JSONEncoder.encode``'s per-call set-up: the C encoder its
    ``iterencode`` builds on every call, built once (no circular-reference check: our
    documents are trees; a cycle would end in RecursionError, a 500, instead of
    ValueError). ``json.dumps`` costs ~2 µs a call for a write's answer, this ~0.9. Falls
    back to the plain encoder where the C accelerator is missing or differs."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _ENCODER.encode
    try:
        chunks = make(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",",
                      False, False, True)
        probe = {"k": ["é", 1, 1.5, None, True]}
        if "".join(chunks(probe, 0)) != _ENCODER.encode(probe):
            return _ENCODER.encode
    except TypeError:  # another signature
        return _ENCODER.encode

    def encode_json(doc: object) -> str:
        if isinstance(doc, str):  # the C encoder takes containers (and numbers) only
            return _ENCODER.encode(doc)
        return "".join(chunks(doc, 0))
    return encode_json


encode_json = _one_shot_encoder()
"""Compact JSON text, non-ASCII kept as is (the body is UTF-8); one encoder, built once."""

_STATUS_LINES = {int(s): f"HTTP/1.1 {int(s)} {s.phrase}\r\n" for s in HTTPStatus}


class Reply(NamedTuple):
    """One answer: status, body bytes, media type, and extra ``(name, value)`` headers."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple = ()


def json_reply(doc: object, status: int = 200) -> Reply:
    return Reply(status, encode_json(doc).encode("utf-8"))


def written_reply(result: dict, body: object = None) -> Reply:
    """A write's answer: ``body`` (default: the result) plus ``X-Dkvs-Seq``, which lets a
    forwarding node wait until it has applied the write (read-your-writes)."""
    doc = result if body is None else body
    return Reply(200, encode_json(doc).encode("utf-8"), JSON_TYPE, (("X-Dkvs-Seq", str(result["seq"])),))


def retry_after_value(seconds: float) -> str:
    """``Retry-After`` takes whole seconds: a hint under half a second (a leadership handover
    in progress) is "0" — come back at once — rather than a whole second of idling."""
    return "0" if seconds < 0.5 else str(max(1, math.ceil(seconds)))


def error_reply(exc: DkvsError, headers: tuple = ()) -> Reply:
    """The JSON answer for ``exc``; ``Retry-After`` when it says when to come back."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers = headers + (("Retry-After", retry_after_value(retry_after)),)
    return Reply(exc.status, encode_json(exc.to_json()).encode("utf-8"), JSON_TYPE, headers)


_date_cache = [0, ""]


def date_line() -> str:
    """``Date: ...\\r\\n`` for now, formatted at most once a second (RFC 9110 §6.6.1)."""
    now = int(time.time())
    cache = _date_cache
    if cache[0] != now:
        # Two threads may both format it in the same second; each writes a correct value.
        cache[1] = f"Date: {formatdate(now, usegmt=True)}\r\n"
        cache[0] = now
    return cache[1]


def render(reply: Reply, extra: str = "") -> bytes:
    """Status line, headers and body as one bytes object.

    ``extra`` is ready-made header lines (each ending in CRLF): server, date, CORS,
    ``Connection``. Header values are ours or checked by the caller: no CR/LF inside.
    """
    status, body, content_type, headers = reply
    line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Status {status}\r\n"
    if status == 204 or status < 200:  # RFC 9110 §8.6: no Content-Length on 1xx and 204
        head = f"{line}{extra}"
    else:
        head = f"{line}Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}"
    for name, value in headers:
        head += f"{name}: {value}\r\n"
    return (head + "\r\n").encode("latin-1") + body
