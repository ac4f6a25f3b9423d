"""The wire format of a forwarded batch: many client writes in one internal request.

A slave under many clients used to forward each write as its own HTTP request, so the
master parsed, authenticated, routed and answered one whole request per forwarded write
(issue 15). A slave now gathers the writes that arrive while its batches are in flight into
one ``POST /internal/forward`` (:mod:`dkvs.api.forward_batcher`); the master proposes them
in one burst and answers every write's own result in one response
(:mod:`dkvs.api.forward_route`). This module only knows the two JSON documents; both
sides call it, so the format lives in one place.

Request body (``application/json``)::

    {"w": [{"m": "PUT", "t": "/kv/a%2Fb?acks=majority", "c": "text/plain",
            "a": "Bearer ...", "b": "value text"}, ...]}

Each write is the request the client sent the slave, reduced to what a write needs: ``m``
method (``PUT`` or ``DELETE``), ``t`` target (path and raw query, exactly as received, so
the master parses it with the same code as a direct request), ``c`` Content-Type and ``a``
Authorization (absent when the client sent none), and the body as ``b`` (UTF-8 text) or
``x`` (base64, for bytes that are not UTF-8). A DELETE has no body.

Response body::

    {"r": [[status, content_type, [[header, value], ...], "body text"], ...]}

one answer per write, in order: exactly the :class:`~dkvs.api.response.Reply` the master
would have sent had the write come alone (the slave relays ``Retry-After`` and
``X-Dkvs-Seq`` from it, as from a single forwarded answer).

Rules kept: a batch is checked whole before anything runs (:func:`decode_writes` raises
:class:`~dkvs.errors.BadRequest` / :class:`~dkvs.errors.PayloadTooLarge`, the route
answers 400/413 and nothing is applied); at most :data:`MAX_BATCH_WRITES` writes and
:data:`MAX_BATCH_BODY_BYTES` bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import NamedTuple

from ..errors import BadRequest, PayloadTooLarge
from .response import JSON_TYPE, Reply, encode_json

__all__ = ["BatchWrite", "encode_writes", "decode_writes", "encode_answers", "decode_answers",
           "BATCH_PATH", "MAX_BATCH_WRITES", "MAX_BATCH_BODY_BYTES", "BATCH_METHODS", "BrokenBatch"]

BATCH_PATH = "/internal/forward"
MAX_BATCH_WRITES = 1024
MAX_BATCH_BODY_BYTES = 8 * 1024 * 1024
BATCH_METHODS = frozenset({"PUT", "DELETE"})
_KV_PREFIX = "/kv/"
_RELAYED = frozenset({"Retry-After", "X-Dkvs-Seq"})


class BatchWrite(NamedTuple):
    """One forwarded write: what the master needs to answer it as if it came alone."""

    method: str
    target: str
    content_type: str | None
    authorization: str | None
    body: bytes | None


class BrokenBatch(ValueError):
    """The master's answer to a batch is not one we can split into per-write answers."""


def encode_writes(writes: list[BatchWrite]) -> bytes:
    """The request body for ``writes`` (on the slave; the writes were checked there)."""
    items = []
    for write in writes:
        item = {"m": write.method, "t": write.target}
        if write.content_type is not None:
            item["c"] = write.content_type
        if write.authorization is not None:
            item["a"] = write.authorization
        if write.body is not None:
            try:
                item["b"] = write.body.decode("utf-8")
            except UnicodeDecodeError:
                item["x"] = base64.b64encode(write.body).decode("ascii")
        items.append(item)
    return encode_json({"w": items}).encode("utf-8")


def decode_writes(body: bytes) -> list[BatchWrite]:
    """The writes of a batch request body; BadRequest/PayloadTooLarge if any is malformed."""
    if len(body) > MAX_BATCH_BODY_BYTES:
        raise PayloadTooLarge(f"a forwarded batch is {len(body)} bytes; the limit is {MAX_BATCH_BODY_BYTES}",
                              parameter="body")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the batch is not JSON: {exc}", parameter="body") from None
    items = doc.get("w") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise BadRequest('a batch is {"w": [write, ...]} with at least one write', parameter="body")
    if len(items) > MAX_BATCH_WRITES:
        raise PayloadTooLarge(f"a batch holds at most {MAX_BATCH_WRITES} writes, not {len(items)}",
                              parameter="body")
    return [_decode_write(number, item) for number, item in enumerate(items)]


def _decode_write(number: int, item) -> BatchWrite:
    where = f"w[{number}]"
    if not isinstance(item, dict) or not set(item) <= {"m", "t", "c", "a", "b", "x"}:
        raise BadRequest(f"{where} must be an object with fields among m, t, c, a, b, x", parameter=where)
    method, target = item.get("m"), item.get("t")
    if method not in BATCH_METHODS:
        raise BadRequest(f"{where}.m must be PUT or DELETE", parameter=where)
    if not isinstance(target, str) or not target.startswith(_KV_PREFIX) or len(target) > 65536 \
            or not target.isprintable():
        raise BadRequest(f"{where}.t must be a /kv/{{key}} target", parameter=where)
    for name in ("c", "a"):
        value = item.get(name)
        if value is not None and not (isinstance(value, str) and len(value) <= 8192 and value.isprintable()):
            raise BadRequest(f"{where}.{name} must be a header value", parameter=where)
    text, packed = item.get("b"), item.get("x")
    if text is not None and packed is not None:
        raise BadRequest(f"{where} has both b and x", parameter=where)
    body = None
    if text is not None:
        if not isinstance(text, str):
            raise BadRequest(f"{where}.b must be a string", parameter=where)
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"{where}.b is not valid text", parameter=where) from None
    elif packed is not None:
        try:
            body = base64.b64decode(packed, validate=True) if isinstance(packed, str) else None
        except (binascii.Error, ValueError):
            body = None
        if body is None:
            raise BadRequest(f"{where}.x must be base64", parameter=where)
    if (method == "PUT") != (body is not None):
        raise BadRequest(f"{where}: a PUT has a body (b or x), a DELETE none", parameter=where)
    return BatchWrite(method, target, item.get("c"), item.get("a"), body)


def encode_answers(replies: list[Reply]) -> bytes:
    """The response body: every write's reply, in order (on the master)."""
    rows = []
    for reply in replies:
        headers = [[name, value] for name, value in reply.headers if name in _RELAYED]
        rows.append([reply.status, reply.content_type, headers, reply.body.decode("utf-8", "replace")])
    return encode_json({"r": rows}).encode("utf-8")


def decode_answers(body: bytes, count: int) -> list[Reply]:
    """The ``count`` replies of a batch response (on the slave); BrokenBatch otherwise."""
    try:
        rows = json.loads(body)["r"]
        if not isinstance(rows, list) or len(rows) != count:
            raise BrokenBatch(f"{count} answers expected")
        replies = []
        for status, content_type, headers, text in rows:
            relayed = tuple((str(name), str(value)) for name, value in headers
                            if name in _RELAYED and "\r" not in str(value) and "\n" not in str(value))
            if type(status) is not int or not 200 <= status <= 599 or not isinstance(text, str):
                raise BrokenBatch("a malformed answer")
            ctype = content_type if isinstance(content_type, str) and content_type.isprintable() else JSON_TYPE
            replies.append(Reply(status, text.encode("utf-8"), ctype, relayed))
        return replies
    except BrokenBatch:
        raise
    except (ValueError, TypeError, KeyError, UnicodeError) as exc:
        raise BrokenBatch(f"the batch answer is malformed ({type(exc).__name__})") from None
