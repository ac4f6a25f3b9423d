"""Cluster secret: HMAC-SHA256 signatures on internal requests.

When a secret is set, every internal request carries ``X-Dkvs-Timestamp`` (Unix
seconds) and ``X-Dkvs-Signature`` = hex HMAC-SHA256 over ``timestamp, method, path and
the body``. The receiver recomputes it and compares with :func:`hmac.compare_digest`
(constant time), and refuses timestamps more than ``MAX_CLOCK_SKEW_SECONDS`` away from its
own clock, which bounds replays of captured requests. Without a secret internal routes are
open, and the node warns about it at start.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["Signer", "MAX_CLOCK_SKEW_SECONDS", "TIMESTAMP_HEADER", "SIGNATURE_HEADER"]

MAX_CLOCK_SKEW_SECONDS = 30.0
TIMESTAMP_HEADER = "X-Dkvs-Timestamp"
SIGNATURE_HEADER = "X-Dkvs-Signature"


class Signer:
    """Signs and verifies internal requests with one shared secret (``None``: disabled)."""

    def __init__(self, secret: str | None, clock=time.time) -> None:
        self._key = secret.encode() if secret else None
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def _mac(self, timestamp: str, method: str, path: str, body: bytes) -> str:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        mac.update(f"{timestamp}\n{method}\n{path}\n".encode())
        mac.update(body)
        return mac.hexdigest()

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """Headers to add to an outgoing internal request (empty when disabled)."""
        if self._key is None:
            return {}
        timestamp = f"{self._clock():.3f}"
        return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: self._mac(timestamp, method, path, body)}

    def verify(self, method: str, path: str, body: bytes, headers) -> str | None:
        """``None`` when the request is authentic, else the reason it is not."""
        if self._key is None:
            return None
        timestamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not timestamp or not signature:
            return "unsigned internal request"
        try:
            skew = abs(self._clock() - float(timestamp))
        except ValueError:
            return "malformed timestamp"
        if not skew <= MAX_CLOCK_SKEW_SECONDS:
            return f"stale or future timestamp ({skew:.0f} s off)"
        if not hmac.compare_digest(self._mac(timestamp, method, path, body), signature):
            return "bad signature"
        return None
