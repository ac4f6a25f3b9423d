"""Values and transactions at the HTTP edge: media types in, ``value``/``value_base64`` out.

A PUT body is text (UTF-8, checked strictly) unless it says ``Content-Type:
application/octet-stream``; then it is bytes, held surrogate-escaped
(:mod:`dkvs.core.values`). Answers in JSON carry ``"value"`` for text and
``"value_base64"`` for anything else, in single reads, listings and watches alike; a GET
that asks for ``Accept: application/octet-stream`` gets the raw bytes. A ``POST /txn`` body
is checked completely here (:func:`dkvs.core.txn.parse_txn`) before the service sees it,
so a bad transaction is a 400/413 naming the place and nothing is proposed.

The route handlers of prefix deletes and leases live here too (the table in
:mod:`dkvs.api.routes` lists them); their parameters are parsed by the table.
"""

from __future__ import annotations

import json

from ..core.txn import TxnError, parse_txn
from ..core.values import from_bytes, to_bytes, value_fields
from ..errors import BadRequest, NotFound, PayloadTooLarge
from .params import decode_value
from .response import Reply, json_reply, written_reply

__all__ = ["BINARY_TYPE", "value_from_body", "wants_binary", "binary_reply", "item_json", "rows_json",
           "txn_from_body", "txn_body_limit", "txn_keys", "MAX_TXN_BODY_BYTES", "delete_keys", "post_lease",
           "keepalive_lease", "get_lease", "revoke_lease"]

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


# --- route handlers (listed in dkvs.api.routes.ROUTES) ------------------------------------

def delete_keys(ex, args: dict) -> Reply:
    prefix, everything = args["prefix"], args["all"]
    if everything and prefix:
        raise BadRequest("give either prefix or all=true, not both", parameter="all")
    if not everything and not prefix:
        raise BadRequest("a prefix delete needs a non-empty prefix (or all=true to delete every key)",
                         parameter="prefix")
    return written_reply(ex.service.delete_prefix(prefix, acks=args["acks"], timeout=args["timeout"]))


def post_lease(ex, args: dict) -> Reply:
    if args["ttl"] is None:
        raise BadRequest("POST /lease needs ttl (seconds)", parameter="ttl")
    return written_reply(ex.service.lease_grant(args["ttl"], acks=args["acks"], timeout=args["timeout"]))


def _lease_id(args: dict, action: str | None) -> int:
    lease_id, given = args["id"]
    if given != action:
        raise NotFound("lease routes: POST /lease/ID/keepalive, GET /lease/ID, DELETE /lease/ID")
    return lease_id


def keepalive_lease(ex, args: dict) -> Reply:
    return json_reply(ex.service.lease_keepalive(_lease_id(args, "keepalive")))


def get_lease(ex, args: dict) -> Reply:
    return json_reply(ex.service.lease_info(_lease_id(args, None)))


def revoke_lease(ex, args: dict) -> Reply:
    return written_reply(ex.service.lease_revoke(_lease_id(args, None), acks=args["acks"], timeout=args["timeout"]))
