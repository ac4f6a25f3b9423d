"""Cluster secret: signed internal requests that cannot be forged, redirected or replayed.

With a secret every internal request carries these headers::

    X-Dkvs-Sender     the sending node's id
    X-Dkvs-Target     the id of the node it is meant for ("" only for a join, whose sender
                      knows a URL, not an id)
    X-Dkvs-Timestamp  Unix seconds, as the sender's clock reads them
    X-Dkvs-Nonce      128 random bits, hex
    X-Dkvs-Body-Digest  hex SHA-256 of the body
    X-Dkvs-Signature  hex HMAC-SHA256(secret, the canonical request below)
    X-Dkvs-Cluster    the sender's cluster id (also sent without a secret, unsigned then)

The canonical request is ``v3``, the method, the path, the raw query string, the body
digest, sender, target, timestamp, nonce and cluster id, one per line. The cluster id is
signed as sent, not as the receiver's own: a request from another cluster that shares the
secret still verifies, and the receiver can say "another cluster" instead of "bad
signature" (:mod:`dkvs.runtime.identity` decides what to do with it). So a captured request cannot be
replayed with another ``?id=``, another body, to another node, or later.

Verification is split so that it can run **before the body is read**:
:meth:`Signer.verify_head` needs only the method, the target (path and query) and the
headers; it checks the signature, the clock skew (``MAX_CLOCK_SKEW_SECONDS``), the target
id and the nonce. :meth:`Signer.verify_body` then checks the body against the signed digest
once it is read (an unsigned or forged request is refused without reading its body).

Replays: a nonce is remembered until its timestamp leaves the validity window, in a
:class:`NonceCache` bounded to ``MAX_NONCES`` entries (a signed request beyond that is
refused rather than forgetting a nonce early; only holders of the secret can fill it). A
request whose nonce was seen is refused. Comparisons use :func:`hmac.compare_digest`.
Without a secret nothing is signed or checked, and the node warns about it at start.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import secrets
import threading
import time
from collections.abc import Iterable, Mapping

from .stream_frames import session_keys

__all__ = ["Signer", "NonceCache", "body_digest", "MAX_CLOCK_SKEW_SECONDS", "MAX_NONCES", "SENDER_HEADER",
           "TARGET_HEADER", "TIMESTAMP_HEADER", "NONCE_HEADER", "DIGEST_HEADER", "SIGNATURE_HEADER",
           "CLUSTER_HEADER", "UNTARGETED_PATHS"]

MAX_CLOCK_SKEW_SECONDS = 30.0
MAX_NONCES = 262_144
SENDER_HEADER = "X-Dkvs-Sender"
TARGET_HEADER = "X-Dkvs-Target"
TIMESTAMP_HEADER = "X-Dkvs-Timestamp"
NONCE_HEADER = "X-Dkvs-Nonce"
DIGEST_HEADER = "X-Dkvs-Body-Digest"
SIGNATURE_HEADER = "X-Dkvs-Signature"
CLUSTER_HEADER = "X-Dkvs-Cluster"
# Paths a sender may address to "any node": the joiner knows the cluster's URL, not an id
# (it asks for the node's identity first, to refuse a cluster that is not its own).
UNTARGETED_PATHS = frozenset({"/internal/join", "/internal/identity"})
_VERSION = "v3"


def body_digest(body: bytes | Iterable[bytes]) -> str:
    """Hex SHA-256 of a body given whole or as chunks (streamed bodies hash as they go)."""
    digest = hashlib.sha256()
    for chunk in ([body] if isinstance(body, (bytes, bytearray, memoryview)) else body):
        digest.update(chunk)
    return digest.hexdigest()


class NonceCache:
    """Nonces seen within the validity window, at most ``capacity`` of them; thread safe."""

    def __init__(self, capacity: int = MAX_NONCES) -> None:
        self.capacity = capacity
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, nonce: str, expires_at: float, now: float) -> str | None:
        """Remember ``nonce`` until ``expires_at``; None if new, else why it is refused."""
        with self._lock:
            while self._heap and self._heap[0][0] < now:
                _, old = heapq.heappop(self._heap)
                if self._expiry.get(old, now) < now:
                    del self._expiry[old]
            if nonce in self._expiry:
                return "replayed request (nonce already seen)"
            if len(self._expiry) >= self.capacity:
                return "too many signed requests in the validity window"
            self._expiry[nonce] = expires_at
            heapq.heappush(self._heap, (expires_at, nonce))
            return None


class Signer:
    """Signs and verifies internal requests with one shared secret (``None``: disabled).

    ``node_id`` is this node's id: the sender of what it signs and the only target it
    accepts (set with :meth:`bind` once the id is known).
    """

    def __init__(self, secret: str | None, clock=time.time, node_id: str = "",
                 nonces: NonceCache | None = None) -> None:
        self._key = secret.encode() if secret else None
        self._clock = clock
        self.node_id = node_id
        self.cluster_id: str | None = None  # sent in CLUSTER_HEADER once known
        self.nonces = nonces if nonces is not None else NonceCache()

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def bind(self, node_id: str) -> None:
        self.node_id = node_id

    def _mac(self, method: str, target: str, digest: str, sender: str, to: str, timestamp: str,
             nonce: str, cluster: str) -> str:
        path, _, query = target.partition("?")
        canonical = "\n".join((_VERSION, method, path, query, digest, sender, to, timestamp, nonce, cluster))
        return hmac.new(self._key, canonical.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()

    def headers(self, method: str, target: str, body: bytes | Iterable[bytes] = b"", *, to: str = "",
                digest: str | None = None) -> dict[str, str]:
        """Headers to add to an outgoing request for ``target`` (path and query) on node ``to``.

        ``digest`` may be given instead of hashing ``body`` (a streamed body hashes its
        chunks with :func:`body_digest`). Without a secret only the cluster id (if known).
        """
        cluster = {CLUSTER_HEADER: self.cluster_id} if self.cluster_id else {}
        if self._key is None:
            return cluster
        digest = digest if digest is not None else body_digest(body)
        timestamp = f"{self._clock():.3f}"
        nonce = secrets.token_hex(16)
        return {SENDER_HEADER: self.node_id, TARGET_HEADER: to, TIMESTAMP_HEADER: timestamp,
                NONCE_HEADER: nonce, DIGEST_HEADER: digest, **cluster,
                SIGNATURE_HEADER: self._mac(method, target, digest, self.node_id, to, timestamp, nonce,
                                            self.cluster_id or "")}

    def verify_head(self, method: str, target: str, headers: Mapping[str, str]) -> str | None:
        """Check a request from its head alone; None when authentic, else the reason.

        ``target`` is the request target as received (path and raw query). Records the
        nonce, so the same request is refused the second time.
        """
        if self._key is None:
            return None
        values = [headers.get(name) for name in (SENDER_HEADER, TARGET_HEADER, TIMESTAMP_HEADER,
                                                 NONCE_HEADER, DIGEST_HEADER, SIGNATURE_HEADER)]
        if any(value is None for value in values):
            return "unsigned internal request"
        sender, to, timestamp, nonce, digest, signature = values
        try:
            sent_at = float(timestamp)
        except ValueError:
            return "malformed timestamp"
        now = self._clock()
        skew = abs(now - sent_at)
        if not skew <= MAX_CLOCK_SKEW_SECONDS:
            return f"stale or future timestamp ({skew:.0f} s off)"
        cluster = headers.get(CLUSTER_HEADER) or ""
        if not hmac.compare_digest(self._mac(method, target, digest, sender, to, timestamp, nonce, cluster),
                                   signature):
            return "bad signature"
        path = target.partition("?")[0]
        if to != self.node_id and not (to == "" and path in UNTARGETED_PATHS):
            return f"meant for another node ({to or 'no target'!s}, this is {self.node_id})"
        return self.nonces.add(nonce, sent_at + MAX_CLOCK_SKEW_SECONDS, now)

    def verify_body(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """After :meth:`verify_head`: None when ``body`` is the one that was signed."""
        return self.verify_digest(headers, body_digest(body)) if self._key is not None else None

    def verify_digest(self, headers: Mapping[str, str], digest: str) -> str | None:
        """As :meth:`verify_body`, for a body streamed and hashed as it arrived."""
        if self._key is None:
            return None
        if not hmac.compare_digest(digest, headers.get(DIGEST_HEADER) or ""):
            return "the body does not match its signed digest"
        return None

    def stream_keys(self, request_nonce: str, accept_nonce: str) -> tuple[bytes | None, bytes | None]:
        """The two per-direction frame keys of a replication stream opened by a request
        signed with ``request_nonce`` and accepted with ``accept_nonce``
        (:func:`dkvs.transport.stream_frames.session_keys`); ``(None, None)`` without a secret."""
        return session_keys(self._key, request_nonce, accept_nonce)

    def sender(self, headers: Mapping[str, str]) -> str | None:
        """The signed sender id (only meaningful after a successful :meth:`verify_head`)."""
        return headers.get(SENDER_HEADER) if self._key is not None else None
