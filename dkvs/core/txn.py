"""Transactions: a compare / success / failure program, checked at the door, decided at apply.

``POST /txn`` takes ``{"compare": [...], "success": [ops], "failure": [ops]}`` (etcd's
shape). :func:`parse_txn` checks a decoded JSON document completely *before* anything is
proposed (unknown fields, wrong types, sizes: a :class:`TxnError` naming the place), and
normalises it; :func:`encode_txn` turns it into the compact text a log entry of op
``txn`` carries, and :func:`run_txn` is what every replica does when it applies that
entry: evaluate the comparisons against its state and run one branch. The verdict and the
``get`` results are therefore decided in log order, identically on every node, never from
the master's state at proposal time.

Values in the normalised form are held values (:mod:`dkvs.core.values`); the entry text is
ASCII JSON, so binary values survive every encoding of entries.
"""

from __future__ import annotations

import base64
import binascii
import json

from .values import from_bytes, is_text

__all__ = ["TxnError", "parse_txn", "encode_txn", "decode_txn", "run_txn", "MAX_TXN_OPS", "MAX_TXN_COMPARES",
           "TXN_OPS"]

MAX_TXN_OPS = 10_000  # per branch: a bulk load fits, one entry stays bounded
MAX_TXN_COMPARES = 1_000
TXN_OPS = ("put", "delete", "delete_prefix", "get")
_COMPARE_KINDS = ("seq", "value", "exists")
_OP_FIELDS = {"put": {"op", "key", "value", "value_base64", "lease"}, "delete": {"op", "key"},
              "delete_prefix": {"op", "prefix"}, "get": {"op", "key"}}


class TxnError(ValueError):
    """A transaction that must be refused: ``status`` 400 (malformed) or 413 (too large)."""

    def __init__(self, message: str, where: str, status: int = 400) -> None:
        super().__init__(message)
        self.where = where
        self.status = status


def _key(doc: dict, name: str, where: str, max_key_bytes: int, *, allow_empty: bool = False) -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise TxnError(f"{where}.{name} must be a string", f"{where}.{name}")
    if not value and not allow_empty:
        raise TxnError(f"{where}.{name} must not be empty", f"{where}.{name}")
    if not is_text(value):
        raise TxnError(f"{where}.{name} is not valid Unicode text", f"{where}.{name}")
    if len(value.encode("utf-8")) > max_key_bytes:
        raise TxnError(f"{where}.{name} is over the {max_key_bytes}-byte key limit", f"{where}.{name}", 413)
    return value


def _value(doc: dict, where: str, max_value_bytes: int) -> str:
    has_text, has_b64 = "value" in doc, "value_base64" in doc
    if has_text == has_b64:
        raise TxnError(f"{where} needs exactly one of value (text) or value_base64", f"{where}.value")
    if has_text:
        value = doc["value"]
        if not isinstance(value, str) or not is_text(value):
            raise TxnError(f"{where}.value must be a string of valid Unicode text", f"{where}.value")
        size = len(value.encode("utf-8"))
    else:
        raw = doc["value_base64"]
        try:
            data = base64.b64decode(raw, validate=True) if isinstance(raw, str) else None
        except (binascii.Error, ValueError):
            data = None
        if data is None:
            raise TxnError(f"{where}.value_base64 must be a base64 string", f"{where}.value_base64")
        value, size = from_bytes(data), len(data)
    if size > max_value_bytes:
        raise TxnError(f"{where}.value is {size} bytes; the limit is {max_value_bytes}", f"{where}.value", 413)
    return value


def _fields(doc, allowed: set, where: str) -> dict:
    if not isinstance(doc, dict):
        raise TxnError(f"{where} must be a JSON object", where)
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise TxnError(f"{where} has unknown field {unknown[0]!r}; accepted: {', '.join(sorted(allowed))}",
                       f"{where}.{unknown[0]}")
    return doc


def _compare(doc, where: str, max_key_bytes: int, max_value_bytes: int) -> list:
    _fields(doc, {"key", *_COMPARE_KINDS}, where)
    key = _key(doc, "key", where, max_key_bytes)
    kinds = [k for k in _COMPARE_KINDS if k in doc]
    if len(kinds) != 1:
        raise TxnError(f"{where} needs exactly one of seq, value, exists", where)
    kind = kinds[0]
    arg = doc[kind]
    if kind == "seq" and not (type(arg) is int and 0 <= arg < 2 ** 63):
        raise TxnError(f"{where}.seq must be a non-negative integer", f"{where}.seq")
    if kind == "exists" and type(arg) is not bool:
        raise TxnError(f"{where}.exists must be true or false", f"{where}.exists")
    if kind == "value":
        arg = _value(doc, where, max_value_bytes)
    return [key, kind, arg]


def _op(doc, where: str, max_key_bytes: int, max_value_bytes: int) -> list:
    if not isinstance(doc, dict):
        raise TxnError(f"{where} must be a JSON object", where)
    name = doc.get("op")
    if name not in _OP_FIELDS:
        raise TxnError(f"{where}.op must be one of {', '.join(TXN_OPS)}", f"{where}.op")
    _fields(doc, _OP_FIELDS[name], where)
    if name == "delete_prefix":
        return [name, _key(doc, "prefix", where, max_key_bytes)]
    key = _key(doc, "key", where, max_key_bytes)
    if name != "put":
        return [name, key]
    value = _value(doc, where, max_value_bytes)
    lease = doc.get("lease")
    if lease is None:
        return [name, key, value]
    if not (type(lease) is int and 0 < lease < 2 ** 63):
        raise TxnError(f"{where}.lease must be a lease id (a positive integer)", f"{where}.lease")
    return [name, key, value, lease]


def parse_txn(doc, *, max_key_bytes: int, max_value_bytes: int, max_ops: int = MAX_TXN_OPS,
              max_compares: int = MAX_TXN_COMPARES) -> dict:
    """The checked, normalised transaction ``{"c": [...], "s": [...], "f": [...]}``."""
    _fields(doc, {"compare", "success", "failure"}, "txn")
    out = {}
    for name, short, limit in (("compare", "c", max_compares), ("success", "s", max_ops),
                               ("failure", "f", max_ops)):
        items = doc.get(name, [])
        if not isinstance(items, list):
            raise TxnError(f"{name} must be a JSON array", name)
        if len(items) > limit:
            raise TxnError(f"{name} has {len(items)} items; the limit is {limit}", name, 413)
        if name == "compare":
            out[short] = [_compare(c, f"compare[{i}]", max_key_bytes, max_value_bytes) for i, c in enumerate(items)]
        else:
            out[short] = [_op(o, f"{name}[{i}]", max_key_bytes, max_value_bytes) for i, o in enumerate(items)]
    return out


def encode_txn(txn: dict) -> str:
    """The text of the log entry (ASCII JSON: lone surrogates are escaped, so binary values survive)."""
    return json.dumps(txn, separators=(",", ":"))


def decode_txn(text: str) -> dict:
    return json.loads(text)


def _holds(current, kind: str, arg) -> bool:
    if kind == "seq":
        return (current[1] if current is not None else 0) == arg
    if kind == "exists":
        return (current is not None) == arg
    return current is not None and current[0] == arg


def run_txn(txn: dict, get, put, delete, delete_prefix, has_lease=lambda lease: False) -> dict:
    """Evaluate ``txn`` against a state given as functions, run its branch; the raw result.

    ``get(key) -> (value, seq) | None``; ``put(key, value, lease=None)``; ``delete(key) ->
    bool``; ``delete_prefix(prefix) -> count``; ``has_lease(id) -> bool``. Results of ``get``
    ops hold held values. A branch that puts with a lease that does not exist (any more)
    runs no op at all: the answer is ``succeeded: false`` with ``lease_not_found``.
    """
    succeeded = all(_holds(get(key), kind, arg) for key, kind, arg in txn["c"])
    branch = txn["s"] if succeeded else txn["f"]
    for op in branch:
        if op[0] == "put" and len(op) > 3 and not has_lease(op[3]):
            return {"succeeded": False, "compared": succeeded, "lease_not_found": op[3], "results": []}
    results = []
    for op in branch:
        name = op[0]
        if name == "put":
            put(op[1], op[2], op[3] if len(op) > 3 else None)
            results.append({"op": "put", "key": op[1]})
        elif name == "delete":
            results.append({"op": "delete", "key": op[1], "deleted": int(delete(op[1]))})
        elif name == "delete_prefix":
            results.append({"op": "delete_prefix", "prefix": op[1], "deleted": delete_prefix(op[1])})
        else:
            found = get(op[1])
            results.append({"op": "get", "key": op[1], "found": found is not None,
                            "value": found[0] if found else None, "seq": found[1] if found else 0})
    return {"succeeded": succeeded, "results": results}
