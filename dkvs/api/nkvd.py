"""nkvd-compatible routes under ``/nkvd/``, answered exactly as nkvd answers.

nkvd is a small GET-only key-value service; its users can point their clients at
``http://node/nkvd`` and keep working. Rules kept from nkvd:

* every operation is a GET with query parameters ``k`` (key) and ``v`` (value); a
  parameter given blank (``k=``) counts as present;
* a key must be shorter than 64 and a value shorter than 256 UTF-16 code units
  (JavaScript string lengths); an empty value is fine; the key is checked before the
  value;
* answers: ``{"success": true}``; ``/get`` returns the value as a JSON string; errors
  are ``{"error": "CODE"}`` with 400 (bad input) or 404 (``MISSING_RECORD``).

nkvd records live in dkvs under the key prefix ``nkvd:`` (``/nkvd/set?k=a`` writes the
dkvs key ``nkvd:a``), so ``/nkvd/clear`` clears nkvd's records and nothing else. Writes
replicate like any other write (a slave forwards them to the master).
"""

from __future__ import annotations

import base64
import socket

from .. import __version__
from ..errors import KeyNotFound
from .params import Param
from .response import Reply, json_reply, written_reply

__all__ = ["NKVD_PREFIX", "NKVD_HANDLERS", "NKVD_PARAMS", "KEY_NAMESPACE"]

NKVD_PREFIX = "/nkvd"
KEY_NAMESPACE = "nkvd:"
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 256
_PAGE = 1000


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _error(code: str, status: int = 400) -> Reply:
    return json_reply({"error": code}, status)


_SUCCESS = json_reply({"success": True})


def _key(ex) -> tuple[str | None, Reply | None]:
    k = ex.query.get("k")
    if k is None:
        return None, _error("MISSING_KEY_PARAM")
    if k == "":
        return None, _error("EMPTY_KEY")
    if _utf16_length(k) >= MAX_KEY_LENGTH:
        return None, _error("MAXIMUM_KEY_LENGTH_REACHED")
    return KEY_NAMESPACE + k, None


def _text(doc: dict) -> str:
    """nkvd values are text: a binary value (set through the dkvs API) is shown decoded,
    invalid UTF-8 replaced, rather than failing the whole answer."""
    if "value" in doc:
        return doc["value"]
    return base64.b64decode(doc["value_base64"]).decode("utf-8", "replace")


def _records(service):
    """Every nkvd record as (nkvd key, value), in key order."""
    after = None
    while True:
        page = service.items(KEY_NAMESPACE, after, _PAGE)
        for item in page["items"]:
            yield item["key"][len(KEY_NAMESPACE):], _text(item)
        after = page["next"]
        if after is None:
            return


def nkvd_set(ex, args: dict) -> Reply:
    key, problem = _key(ex)
    if problem:
        return problem
    v = ex.query.get("v")
    if v is None:
        return _error("MISSING_VALUE_PARAM")
    if _utf16_length(v) >= MAX_VALUE_LENGTH:
        return _error("MAXIMUM_VALUE_LENGTH_REACHED")
    limits = ex.service.limits
    result = ex.service.put(key, v, acks=limits.default_acks, timeout=limits.default_timeout_seconds)
    return written_reply(result, {"success": True})


def nkvd_get(ex, args: dict) -> Reply:
    key, problem = _key(ex)
    if problem:
        return problem
    try:
        return json_reply(_text(ex.service.get(key, consistent=False)))
    except KeyNotFound:
        return _error("MISSING_RECORD", 404)


def nkvd_rm(ex, args: dict) -> Reply:
    key, problem = _key(ex)
    if problem:
        return problem
    limits = ex.service.limits
    try:
        result = ex.service.delete(key, acks=limits.default_acks, timeout=limits.default_timeout_seconds)
    except KeyNotFound:
        return _error("MISSING_RECORD", 404)
    return written_reply(result, {"success": True})


def nkvd_is(ex, args: dict) -> Reply:
    key, problem = _key(ex)
    if problem:
        return problem
    try:
        ex.service.get(key, consistent=False)
    except KeyNotFound:
        return _error("MISSING_RECORD", 404)
    return _SUCCESS


def nkvd_clear(ex, args: dict) -> Reply:
    limits = ex.service.limits
    for k, _ in list(_records(ex.service)):
        try:
            ex.service.delete(KEY_NAMESPACE + k, acks=limits.default_acks, timeout=limits.default_timeout_seconds)
        except KeyNotFound:
            pass  # removed concurrently
    return _SUCCESS


def nkvd_get_keys(ex, args: dict) -> Reply:
    return json_reply([k for k, _ in _records(ex.service)])


def nkvd_get_values(ex, args: dict) -> Reply:
    return json_reply([v for _, v in _records(ex.service)])


def nkvd_get_all(ex, args: dict) -> Reply:
    return json_reply([{"k": k, "v": v} for k, v in _records(ex.service)])


def nkvd_healthcheck(ex, args: dict) -> Reply:
    return json_reply({"status": "ok"})


def nkvd_status(ex, args: dict) -> Reply:
    count = sum(1 for _ in _records(ex.service))
    return json_reply({"version": __version__, "hostname": socket.gethostname(),
                       "port": ex.server.server_address[1], "maxKeyLength": MAX_KEY_LENGTH,
                       "maxValueLength": MAX_VALUE_LENGTH, "availableRecords": count})


_RAW = (lambda raw, limits: raw)
K = Param("k", "query", "nkvd key (shorter than 64 UTF-16 code units).", _RAW, lambda limits: {"type": "string"})
V = Param("v", "query", "nkvd value (shorter than 256 UTF-16 code units; may be empty).", _RAW,
          lambda limits: {"type": "string"})

NKVD_PARAMS = {"k": K, "v": V}

# (path under /nkvd, handler, summary, params)
NKVD_HANDLERS = (
    ("/set", nkvd_set, "nkvd: set k to v", (K, V)),
    ("/get", nkvd_get, "nkvd: the value of k, as a JSON string", (K,)),
    ("/rm", nkvd_rm, "nkvd: remove k", (K,)),
    ("/is", nkvd_is, "nkvd: whether k exists", (K,)),
    ("/clear", nkvd_clear, "nkvd: remove every nkvd record", ()),
    ("/getKeys", nkvd_get_keys, "nkvd: every key", ()),
    ("/getValues", nkvd_get_values, "nkvd: every value", ()),
    ("/getAll", nkvd_get_all, "nkvd: every record as {k, v}", ()),
    ("/healthcheck", nkvd_healthcheck, "nkvd: liveness", ()),
    ("/status", nkvd_status, "nkvd: version, limits and record count", ()),
)
