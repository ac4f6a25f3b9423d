"""Values and transactions at the HTTP edge: media types in, ``value``/``value_base64`` out.

A PUT body is text (UTF-8, checked strictly) unless it says ``Content-Type:
application/octet-stream``; then it is bytes, held surrogate-escaped
(:mod:`dkvs.core.values`). Answers in JSON carry ``"value"`` for text and
``"value_base64"`` for anything else, in single reads, listings and watches alike; a GET
that asks for ``Accept: application/octet-stream`` gets the raw bytes. A ``POST /txn`` body
is checked completely here (:func:`dkvs.core.txn.parse_txn`) before the service sees it,
so a bad transaction is a 400/413 naming the place and nothing is proposed.
"""

from __future__ import annotations

import json

from ..core.txn import TxnError, parse_txn
from ..core.values import from_bytes, to_bytes, value_fields
from ..errors import BadRequest, PayloadTooLarge
from .params import decode_value
from .response import Reply

__all__ = ["BINARY_TYPE", "value_from_body", "wants_binary", "binary_reply", "item_json", "rows_json",
           "txn_from_body", "txn_body_limit", "MAX_TXN_BODY_BYTES"]

BINARY_TYPE = "application/octet-stream"
MAX_TXN_BODY_BYTES = 16 * 1024 * 1024  # a bulk load of thousands of puts in one request


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def value_from_body(headers, body: bytes) -> str:
    """The held value of a PUT body: bytes for octet-stream, strict UTF-8 text otherwise."""
    if _media_type(headers.get("Content-Type")) == BINARY_TYPE:
        return from_bytes(body)
    return decode_value(body)


def wants_binary(headers) -> bool:
    """Whether the client asked for the raw bytes (``Accept: application/octet-stream``)."""
    accept = headers.get("Accept")
    return bool(accept) and any(_media_type(part) == BINARY_TYPE for part in accept.split(","))


def binary_reply(answer: dict) -> Reply:
    return Reply(200, to_bytes(answer["value"]), BINARY_TYPE, (("X-Dkvs-Seq", str(answer["seq"])),))


def item_json(answer: dict) -> dict:
    """A one-key answer (read, watch) with its value as ``value`` or ``value_base64``."""
    value = answer.get("value")
    if value is None or value.isascii():
        return answer
    out = {k: v for k, v in answer.items() if k != "value"}
    out.update(value_fields(value))
    return out


def rows_json(answer: dict, field_name: str) -> dict:
    """A listing or watch answer with every row's value as ``value`` or ``value_base64``."""
    rows = answer.get(field_name)
    if not rows or all(row.get("value") is None or row["value"].isascii() for row in rows):
        return answer
    return {**answer, field_name: [item_json(row) for row in rows]}


def txn_body_limit(limits) -> int:
    return max(MAX_TXN_BODY_BYTES, 2 * limits.max_value_bytes)


def txn_from_body(body: bytes, limits) -> dict:
    """The checked, normalised transaction of a ``POST /txn`` body (400/413 otherwise)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}", parameter="body") from None
    try:
        return parse_txn(doc, max_key_bytes=limits.max_key_bytes, max_value_bytes=limits.max_value_bytes)
    except TxnError as exc:
        error = PayloadTooLarge if exc.status == 413 else BadRequest
        raise error(str(exc), parameter=exc.where) from None


def txn_keys(txn: dict) -> tuple[list[str], list[str]]:
    """Every key and every prefix a normalised transaction touches (for authorization)."""
    keys = [c[0] for c in txn["c"]]
    prefixes = []
    for op in (*txn["s"], *txn["f"]):
        (prefixes if op[0] == "delete_prefix" else keys).append(op[1])
    return keys, prefixes
