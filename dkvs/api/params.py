"""Path and query parameters: one spec per parameter, used both to validate and to document.

Each :class:`Param` couples a parser (raw text → clean Python value, or a 4xx
:class:`~dkvs.errors.DkvsError`) with the OpenAPI schema that describes it. The route table
lists the specs a route takes; the dispatcher runs the parsers and the OpenAPI generator
reads the schemas, so what the server accepts and what the document says cannot drift.

Parsers receive ``None`` when the parameter is absent, and the node's
:class:`~dkvs.api.service.Limits` so defaults and bounds follow the node's flags.
Bad input raises before the service is called, so it never changes state.

Text in the request line reaches us decoded as ISO-8859-1 (that is what ``http.server``
does); :func:`decode_key` and :func:`parse_query` turn it back into bytes and decode UTF-8
strictly, so a client that sends raw UTF-8 instead of percent-escapes is understood, and
invalid UTF-8 is a 400 rather than a silently mangled key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_to_bytes

from ..errors import BadRequest, DkvsError, NotFound as NotFoundError, PayloadTooLarge
from .service import ACKS_LEVELS, Limits

__all__ = [
    "Param",
    "LengthRequired",
    "KEY",
    "INTERNAL_PATH",
    "ACKS",
    "TIMEOUT",
    "CONSISTENT",
    "PREFIX",
    "AFTER",
    "LIMIT",
    "WAIT",
    "AFTER_SEQ",
    "IF_SEQ",
    "DELETE_PREFIX",
    "ALL",
    "LEASE",
    "TTL",
    "LEASE_PATH",
    "MAX_TTL_SECONDS",
    "MAX_WAIT_SECONDS",
    "DEFAULT_LIST_LIMIT",
    "MAX_QUERY_FIELDS",
    "parse_query",
    "parse_query_pairs",
    "check_query",
    "decode_key",
    "decode_value",
]

DEFAULT_LIST_LIMIT = 100
MAX_WAIT_SECONDS = 60.0
MAX_QUERY_FIELDS = 64
_ECHO_CHARS = 60  # how much of a bad value an error message quotes back


class LengthRequired(DkvsError):
    """A PUT without Content-Length (nor chunked encoding): RFC 9110 §15.5.12.

    Belongs with the shared vocabulary in :mod:`dkvs.errors`; kept here until it moves.
    """

    status = 411
    code = "length_required"


@dataclass(frozen=True)
class Param:
    """One path or query parameter: how to parse it and how to document it."""

    name: str
    location: str  # "path" or "query" (OpenAPI's ``in``)
    description: str
    parse: Callable[[str | None, Limits], object]
    schema: Callable[[Limits], dict]
    required: bool = False


def _echo(raw: str) -> str:
    """A bad value quoted back in a message, truncated so errors stay small."""
    return repr(raw if len(raw) <= _ECHO_CHARS else raw[:_ECHO_CHARS] + "...")


def _bad(name: str, message: str) -> BadRequest:
    return BadRequest(message, parameter=name)


def _utf8_from_latin1(text: str, what: str) -> str:
    """Undo http.server's ISO-8859-1 decoding of the request line, then decode UTF-8."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise _bad(what, f"the {what} is not valid UTF-8") from None


def decode_key(raw: str | None, limits: Limits) -> str:
    """The key from the path: percent-decoded UTF-8, non-empty, at most max_key_bytes."""
    if not raw:
        raise _bad("key", "the key is missing: use /kv/{key} with a non-empty, percent-encoded key")
    if raw.isascii() and "%" not in raw:
        key, size = raw, len(raw)
    else:
        data = unquote_to_bytes(raw.encode("latin-1"))
        try:
            key = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("key", "the key is not valid UTF-8 after percent-decoding") from None
        size = len(data)
    if size > limits.max_key_bytes:
        raise PayloadTooLarge(f"the key is {size} bytes of UTF-8; the limit is {limits.max_key_bytes}",
                              parameter="key")
    return key


def decode_value(body: bytes) -> str:
    """The value of a PUT: the body, which must be UTF-8 text."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("value", f"the value is not valid UTF-8 (byte {exc.start})") from None


def parse_query(query: str) -> dict[str, str]:
    """``a=1&b=2`` → ``{"a": "1", "b": "2"}``; a repeated name keeps its last value."""
    return dict(parse_query_pairs(query))


def check_query(pairs: list[tuple[str, str]], accepted: tuple[str, ...]) -> None:
    """Refuse (400) a query parameter that is not in ``accepted``, or is given twice.

    A typo must not be ignored: ``?ack=majority`` would be an ``acks=1`` write, and
    ``?consistant=true`` a possibly stale read. The message names the parameter and the
    accepted ones, so the fix is in the answer.
    """
    seen: set[str] = set()
    for name, _ in pairs:
        if name not in accepted:
            shown = ", ".join(accepted) if accepted else "none"
            raise BadRequest(f"unknown query parameter {_echo(name)}; accepted: {shown}",
                             parameter=name, accepted=list(accepted))
        if name in seen:
            raise BadRequest(f"query parameter {_echo(name)} is given more than once; give it once",
                             parameter=name, accepted=list(accepted))
        seen.add(name)


def parse_query_pairs(query: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` → ``[("a", "1"), ("b", "2")]``, in order, repeats kept.

    Fast path: a plain ASCII query without escapes (``acks=majority``, the common case)
    is split here; ``parse_qsl`` cost 5% of a single-node PUT for that one parameter.
    The result is the one ``parse_qsl`` gives (a test compares them), so the strict rules
    of :func:`check_query` see the same names.
    """
    if not query:
        return []
    if query.isascii() and "%" not in query and "+" not in query:
        if "&" not in query:
            name, eq, value = query.partition("=")
            return [(name, value)]
        if query.count("&") >= MAX_QUERY_FIELDS:
            raise _bad("query", f"the query string has more than {MAX_QUERY_FIELDS} fields")
        return [(name, value) for name, _, value in (f.partition("=") for f in query.split("&") if f)]
    if not query.isascii():
        query = _utf8_from_latin1(query, "query")
    try:
        return parse_qsl(query, keep_blank_values=True, errors="strict",
                         max_num_fields=MAX_QUERY_FIELDS)
    except UnicodeDecodeError:
        raise _bad("query", "the query string is not valid UTF-8 after percent-decoding") from None
    except ValueError:
        raise _bad("query", f"the query string has more than {MAX_QUERY_FIELDS} fields") from None


def _parse_internal_path(raw: str | None, limits: Limits) -> str:
    return raw or ""


def _parse_acks(raw: str | None, limits: Limits) -> str:
    if raw is None:
        return limits.default_acks
    if raw in ACKS_LEVELS:
        return raw
    raise _bad("acks", f"acks must be one of {', '.join(ACKS_LEVELS)}; got {_echo(raw)}")


def _parse_timeout(raw: str | None, limits: Limits) -> float:
    if raw is None:
        return limits.default_timeout_seconds
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= limits.max_timeout_seconds):
        raise _bad("timeout", f"timeout must be a number of seconds above 0 and at most "
                              f"{limits.max_timeout_seconds:g}; got {_echo(raw)}")
    return seconds


_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _parse_boolean(name: str):
    """A parser for the boolean parameter ``name`` (absent: false)."""
    def parse(raw: str | None, limits: Limits) -> bool:
        if raw is None:
            return False
        try:
            return _BOOLEANS[raw.lower()]
        except KeyError:
            raise _bad(name, f"{name} must be true, false, 1 or 0; got {_echo(raw)}") from None
    return parse


def _default_list_limit(limits: Limits) -> int:
    return min(DEFAULT_LIST_LIMIT, limits.max_list_limit)


def _parse_limit(raw: str | None, limits: Limits) -> int:
    if raw is None:
        return _default_list_limit(limits)
    # isdigit alone accepts "²" and int() accepts " 5", "+5", "1_0": ask for plain ASCII digits.
    if raw.isascii() and raw.isdigit() and len(raw) <= 12 and 1 <= int(raw) <= limits.max_list_limit:
        return int(raw)
    raise _bad("limit", f"limit must be an integer from 1 to {limits.max_list_limit}; got {_echo(raw)}")


def _parse_prefix(raw: str | None, limits: Limits) -> str:
    return raw or ""


def _parse_after(raw: str | None, limits: Limits) -> str | None:
    return raw or None  # every key is non-empty, so after="" means "from the start"


KEY = Param(
    "key", "path",
    "The key: UTF-8, percent-encoded; may contain '/' (literal or as %2F). "
    "At most max_key_bytes bytes once decoded.",
    decode_key, lambda limits: {"type": "string", "minLength": 1}, required=True)

INTERNAL_PATH = Param(
    "path", "path", "Node-to-node route, interpreted by the node.",
    _parse_internal_path, lambda limits: {"type": "string"}, required=True)

ACKS = Param(
    "acks", "query",
    "Durability to wait for: 1 = applied by the master, majority = held by a majority, "
    "all = held by every live member.",
    _parse_acks, lambda limits: {"type": "string", "enum": list(ACKS_LEVELS),
                                 "default": limits.default_acks})

TIMEOUT = Param(
    "timeout", "query", "Seconds to wait for the asked acks before answering 504.",
    _parse_timeout, lambda limits: {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                                    "maximum": limits.max_timeout_seconds,
                                    "default": limits.default_timeout_seconds})

CONSISTENT = Param(
    "consistent", "query",
    "true: linearizable read, served by the master after it confirms it still leads "
    "(a slave forwards it). false: this node's own, possibly stale, state.",
    _parse_boolean("consistent"), lambda limits: {"type": "string", "enum": ["true", "false", "1", "0"],
                                       "default": "false"})

PREFIX = Param(
    "prefix", "query", "Only keys that start with this text.",
    _parse_prefix, lambda limits: {"type": "string", "default": ""})

AFTER = Param(
    "after", "query", "Only keys strictly after this one (the previous page's next).",
    _parse_after, lambda limits: {"type": "string"})

LIMIT = Param(
    "limit", "query", "Most items in one page.",
    _parse_limit, lambda limits: {"type": "integer", "minimum": 1,
                                  "maximum": limits.max_list_limit,
                                  "default": _default_list_limit(limits)})


def _parse_wait(raw: str | None, limits: Limits) -> float | None:
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_WAIT_SECONDS):
        raise _bad("wait", f"wait must be a number of seconds above 0 and at most {MAX_WAIT_SECONDS:g}; "
                           f"got {_echo(raw)}")
    return seconds


def _parse_seq(name: str, default: int | None):
    def parse(raw: str | None, limits: Limits) -> int | None:
        if raw is None:
            return default
        if raw.isascii() and raw.isdigit() and len(raw) <= 18:
            return int(raw)
        raise _bad(name, f"{name} must be a non-negative integer (a seq); got {_echo(raw)}")
    return parse


WAIT = Param(
    "wait", "query",
    "Long poll: wait up to this many seconds for a change newer than after_seq (see docs/watch.md).",
    _parse_wait, lambda limits: {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                                 "maximum": MAX_WAIT_SECONDS})

AFTER_SEQ = Param(
    "after_seq", "query", "With wait: only changes with a seq above this one (the previous answer's index).",
    _parse_seq("after_seq", 0), lambda limits: {"type": "integer", "minimum": 0, "default": 0})

IF_SEQ = Param(
    "if_seq", "query",
    "Compare-and-set: write only if the key's current seq is this one (0: only if absent); "
    "otherwise 409 with the current seq.",
    _parse_seq("if_seq", None), lambda limits: {"type": "integer", "minimum": 0})



def _parse_delete_prefix(raw: str | None, limits: Limits) -> str:
    prefix = raw or ""
    if len(prefix.encode("utf-8", "surrogatepass")) > limits.max_key_bytes:
        raise PayloadTooLarge(f"the prefix is over the {limits.max_key_bytes}-byte key limit", parameter="prefix")
    return prefix


DELETE_PREFIX = Param(
    "prefix", "query",
    "Delete every key that starts with this text (non-empty; use all=true to delete every key).",
    _parse_delete_prefix, lambda limits: {"type": "string", "minLength": 1})

ALL = Param(
    "all", "query", "true: delete every key (only without prefix).",
    _parse_boolean("all"), lambda limits: {"type": "string", "enum": ["true", "false", "1", "0"], "default": "false"})


MAX_TTL_SECONDS = 30 * 24 * 3600.0  # a month: longer is a mistake (a key meant to live forever needs no lease)


def _parse_ttl(raw: str | None, limits: Limits) -> float | None:
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0.001 <= seconds <= MAX_TTL_SECONDS):
        raise _bad("ttl", f"ttl must be a number of seconds from 0.001 to {MAX_TTL_SECONDS:g}; got {_echo(raw)}")
    return seconds


def _lease_id(name: str, raw: str) -> int:
    if raw.isascii() and raw.isdigit() and len(raw) <= 18 and int(raw) > 0:
        return int(raw)
    raise _bad(name, f"{name} must be a lease id (a positive integer); got {_echo(raw)}")


def _parse_lease(raw: str | None, limits: Limits) -> int | None:
    return None if raw is None else _lease_id("lease", raw)


def _parse_lease_path(raw: str | None, limits: Limits) -> tuple[int, str | None]:
    """``/lease/{id}`` or ``/lease/{id}/keepalive``: the id and the action (or None)."""
    text, _, action = (raw or "").partition("/")
    if action not in ("", "keepalive"):
        raise NotFoundError(f"no lease route /lease/{_echo(raw or '')[1:-1]}; use /lease/ID or /lease/ID/keepalive")
    return _lease_id("id", text), action or None


LEASE = Param(
    "lease", "query", "Attach the key to this lease: it is deleted when the lease expires or is revoked.",
    _parse_lease, lambda limits: {"type": "integer", "minimum": 1})

TTL = Param(
    "ttl", "query", "Seconds: with PUT, the key gets a lease of its own with this ttl; with POST /lease, the ttl.",
    _parse_ttl, lambda limits: {"type": "number", "minimum": 0.001, "maximum": MAX_TTL_SECONDS})

LEASE_PATH = Param(
    "id", "path", "The lease id (POST .../keepalive renews it).",
    _parse_lease_path, lambda limits: {"type": "string"}, required=True)
