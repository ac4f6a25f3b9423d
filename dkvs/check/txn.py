"""Multi-key transactions in a history: their body and their answer, as frozen records.

A transaction (``POST /txn``) is recorded with ``"f": "txn"``. Its invoke carries the body
the client sent, ``{"compare": [...], "success": [...], "failure": [...]}``, in the HTTP
API's own shape (docs/http-api.md); its ``ok`` carries ``succeeded``, ``results`` (one per op
of the branch that ran) and ``seq``. This module turns both into hashable records and
refuses what the checker does not model (``delete_prefix``, binary values): a transaction
the checker cannot read must stop the check, never be guessed at.

The records are only data; what a transaction *does* to the state of its keys is
:mod:`dkvs.check.multikey`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Compare", "TxnOp", "TxnResult", "TxnSpec", "parse_results", "parse_txn"]

_COMPARE_KINDS = ("seq", "value", "exists")
_OPS = ("put", "delete", "get")


@dataclass(frozen=True, slots=True)
class Compare:
    """``kind`` is ``seq`` (an int, 0 = absent), ``value`` (text) or ``exists`` (bool)."""

    key: str
    kind: str
    target: object


@dataclass(frozen=True, slots=True)
class TxnOp:
    """One op of a branch; ``value`` only for a put, ``lease`` when the put is leased."""

    op: str
    key: str
    value: str | None = None
    lease: bool = False


@dataclass(frozen=True, slots=True)
class TxnResult:
    """What the answer said about one op: a get's ``found``/``value``/``seq``; a delete's
    ``found`` (``deleted == 1``); a put's ``seq``."""

    op: str
    key: str
    found: bool | None = None
    value: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class TxnSpec:
    compare: tuple[Compare, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key the transaction compares, reads or writes, sorted."""
        keys = {c.key for c in self.compare} | {op.key for op in self.success + self.failure}
        return tuple(sorted(keys))

    def branch(self, succeeded: bool) -> tuple[TxnOp, ...]:
        return self.success if succeeded else self.failure

    @property
    def writes(self) -> bool:
        """Whether some branch may change a key."""
        return any(op.op != "get" for op in self.success + self.failure)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _key(item: dict, where: str) -> str:
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise ValueError(f"{where}: key must be a non-empty string, not {key!r}")
    return key


def _compare(item: object, where: str) -> Compare:
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object")
    kinds = [kind for kind in _COMPARE_KINDS if kind in item]
    if len(kinds) != 1 or set(item) != {"key", kinds[0]}:
        raise ValueError(f"{where} must be {{key, seq|value|exists}}, not {sorted(item)}")
    kind, target = kinds[0], item[kinds[0]]
    valid = {"seq": _is_int(target) and target >= 0, "value": isinstance(target, str),
             "exists": isinstance(target, bool)}[kind]
    if not valid:
        raise ValueError(f"{where}.{kind} has the wrong type: {target!r}")
    return Compare(_key(item, where), kind, target)


def _op(item: object, where: str) -> TxnOp:
    if not isinstance(item, dict) or item.get("op") not in _OPS:
        op = item.get("op") if isinstance(item, dict) else item
        raise ValueError(f"{where}: op {op!r} is not modelled (the checker knows {', '.join(_OPS)})")
    if item["op"] == "put":
        if not isinstance(item.get("value"), str):
            raise ValueError(f"{where}: a put needs a text value")
        return TxnOp("put", _key(item, where), item["value"], item.get("lease") is not None)
    return TxnOp(item["op"], _key(item, where))


def parse_txn(body: object) -> TxnSpec:
    """The ``txn`` field of an invoke; ``ValueError`` names what is wrong."""
    if not isinstance(body, dict) or not set(body) <= {"compare", "success", "failure"}:
        raise ValueError("txn must be an object with compare, success and failure lists")
    parts = {}
    for name in ("compare", "success", "failure"):
        items = body.get(name, [])
        if not isinstance(items, list):
            raise ValueError(f"txn.{name} must be a list")
        parse = _compare if name == "compare" else _op
        parts[name] = tuple(parse(item, f"txn.{name}[{i}]") for i, item in enumerate(items))
    spec = TxnSpec(parts["compare"], parts["success"], parts["failure"])
    if not spec.keys:
        raise ValueError("txn touches no key")
    return spec


def parse_results(spec: TxnSpec, succeeded: object, results: object) -> tuple[TxnResult, ...]:
    """The ``results`` of a txn's ok, checked against the branch ``succeeded`` names."""
    if not isinstance(succeeded, bool):
        raise ValueError("a txn's ok must carry succeeded: true or false")
    branch = spec.branch(succeeded)
    if not isinstance(results, list) or len(results) != len(branch):
        raise ValueError(f"a txn's ok must carry one result per op of its branch ({len(branch)})")
    parsed = []
    for index, (op, item) in enumerate(zip(branch, results)):
        if not isinstance(item, dict) or item.get("op") != op.op or item.get("key") != op.key:
            raise ValueError(f"results[{index}] does not answer {op.op} {op.key!r}")
        seq = item.get("seq") if _is_int(item.get("seq")) else None
        if op.op == "get":
            found, value = item.get("found"), item.get("value")
            if not isinstance(found, bool) or (found and not isinstance(value, str)):
                raise ValueError(f"results[{index}]: a get result needs found and a text value")
            parsed.append(TxnResult("get", op.key, found, value if found else None, seq if found else 0))
        elif op.op == "delete":
            parsed.append(TxnResult("delete", op.key, found=item.get("deleted") == 1))
        else:
            parsed.append(TxnResult("put", op.key, seq=seq))
    return tuple(parsed)
