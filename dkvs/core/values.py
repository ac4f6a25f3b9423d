"""Values as the state machine holds them: text, with binary values surrogate-escaped.

Every layer below the HTTP front end (log entries, the wire codec, log records, snapshots,
the change feed) was built for ``str`` values. A binary value is kept as the ``str`` that
``bytes.decode("utf-8", "surrogateescape")`` gives: valid UTF-8 runs stay text, every other
byte becomes one lone surrogate U+DC80..U+DCFF. The mapping is a bijection between byte
strings and ``str`` without other lone surrogates, and text a client sends as UTF-8 can
never hold a lone surrogate, so no flag is needed: a value *is* binary exactly when it is
not valid UTF-8, which is also the rule for answering ``"value"`` or ``"value_base64"``.

Encodings must carry lone surrogates: ASCII JSON (``ensure_ascii=True``) escapes them as
``\\udcXX``; byte encodings use ``"surrogatepass"``. Both round-trip exactly.
"""

from __future__ import annotations

import base64

__all__ = ["from_bytes", "to_bytes", "is_text", "value_fields", "value_from_fields"]


def from_bytes(data: bytes) -> str:
    """The held form of a binary value (plain text when ``data`` is valid UTF-8)."""
    return data.decode("utf-8", "surrogateescape")


def to_bytes(value: str) -> bytes:
    """The raw bytes of a held value (its UTF-8 when it is text)."""
    return value.encode("utf-8", "surrogateescape")


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode text (no escaped byte in it)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def value_fields(value: str | None) -> dict:
    """``{"value": text}`` or ``{"value_base64": ...}`` for a JSON answer (``None`` stays ``value``)."""
    if value is None or is_text(value):
        return {"value": value}
    return {"value_base64": base64.b64encode(to_bytes(value)).decode("ascii")}


def value_from_fields(doc: dict) -> str | None:
    """The inverse of :func:`value_fields` (for clients); ``None`` when neither is there."""
    if doc.get("value_base64") is not None:
        return from_bytes(base64.b64decode(doc["value_base64"]))
    return doc.get("value")
