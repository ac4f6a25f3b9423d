"""What the HTTP front end needs from a node: the :class:`KeyValueService` contract.

The front end (``dkvs.api.server``) parses and validates HTTP, then calls these methods
with clean Python values; the runtime implements them. Keeping this seam narrow lets the
HTTP layer be tested against a fake service, and the node be driven without HTTP.

All methods are called from HTTP handler threads, concurrently; implementations are
thread safe. They return JSON-ready dicts (the body of a 200 answer) or raise a
:class:`dkvs.errors.DkvsError`. :class:`NotMaster` asks the front end to forward the
request to the master (``master_url``) or, with no master known, answer 503.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from ..errors import NoMaster, NotFound

__all__ = ["KeyValueService", "NotMaster", "Limits", "ACKS_LEVELS", "STREAM_QUERY"]

ACKS_LEVELS = ("1", "majority", "all")


class _FromStream:
    """The query key of a message that came on a replication stream (dkvs.api.stream)."""


# The ``query`` the stream passes to :meth:`KeyValueService.internal` for each message. HTTP
# cannot produce its key (query keys are strings), so only the stream can ask that
# ``raft``'s answers come back in the stream's binary form (``codec.encode_binary_many``)
# instead of JSON that the stream would decode and encode again.
STREAM_QUERY = {_FromStream: True}


class NotMaster(NoMaster):
    """This node cannot do it; the master at ``master_url`` can (``None``: none known)."""

    def __init__(self, master_url: str | None, retry_after: float = 1.0) -> None:
        super().__init__("no master is known; an election may be in progress, retry shortly",
                         retry_after=retry_after)
        self.master_url = master_url


@dataclass(frozen=True)
class Limits:
    """Input limits, set by flags. Keys and values are measured in UTF-8 bytes."""

    max_key_bytes: int = 1024
    max_value_bytes: int = 1024 * 1024
    default_acks: str = "1"
    default_timeout_seconds: float = 5.0
    max_timeout_seconds: float = 60.0
    max_list_limit: int = 1000


class KeyValueService(abc.ABC):
    """The node as the HTTP layer sees it."""

    limits: Limits

    @abc.abstractmethod
    def put(self, key: str, value: str, *, acks: str, timeout: float, if_seq: int | None = None) -> dict:
        """Write (``value`` is text, or binary held surrogate-escaped: :mod:`dkvs.core.values`;
        the front end passes ``lease=ID`` or ``ttl=S`` only when given: a leased key); returns ``{"key", "seq", "epoch", "replicas"}``. Raises NotMaster, AcksTimeout;
        Conflict when ``if_seq`` is given and is not the key's current seq (0 = absent)."""

    @abc.abstractmethod
    def delete(self, key: str, *, acks: str, timeout: float, if_seq: int | None = None) -> dict:
        """Delete; returns ``{"key", "seq", "epoch", "replicas"}``. Raises KeyNotFound, NotMaster;
        Conflict when ``if_seq`` is given and the key exists at another seq."""

    def delete_prefix(self, prefix: str, *, acks: str, timeout: float) -> dict:
        """Delete every key starting with ``prefix`` ("" = all) as one atomic write:
        ``{"prefix", "deleted", "seq", "epoch", "replicas"}``."""
        raise NotFound("this node does not support prefix deletes")

    def lease_grant(self, ttl: float, *, acks: str, timeout: float) -> dict:
        """Grant a lease of ``ttl`` seconds (one log entry): ``{"id", "ttl", "seq"}``."""
        raise NotFound("this node does not support leases")

    def lease_revoke(self, lease_id: int, *, acks: str, timeout: float) -> dict:
        """Revoke a lease and delete its keys (one log entry); NotFound if unknown."""
        raise NotFound("this node does not support leases")

    def lease_keepalive(self, lease_id: int) -> dict:
        """Renew a lease's full ttl (the master's clock; no log entry): ``{"id", "ttl"}``."""
        raise NotFound("this node does not support leases")

    def lease_info(self, lease_id: int) -> dict:
        """``{"id", "ttl", "remaining", "keys"}`` as the master sees it."""
        raise NotFound("this node does not support leases")

    def txn(self, txn: dict, *, acks: str, timeout: float) -> dict:
        """Run a transaction normalised by :func:`dkvs.core.txn.parse_txn` as one atomic
        write: ``{"succeeded", "seq", "epoch", "replicas", "results"}``."""
        raise NotFound("this node does not support transactions")

    @abc.abstractmethod
    def get(self, key: str, *, consistent: bool) -> dict:
        """Read; returns ``{"key", "value", "seq"}``. Raises KeyNotFound; NotMaster when
        ``consistent`` and this node is not the master."""

    @abc.abstractmethod
    def items(self, prefix: str, after: str | None, limit: int) -> dict:
        """Keys starting with ``prefix``, strictly after ``after``, in key order, at most
        ``limit``: ``{"items": [{"key","value","seq"}], "next": last key or None}``; ``next``
        is set only when more items may follow."""

    @abc.abstractmethod
    def status(self) -> dict:
        """The ``/status`` document of DESIGN.md §5."""

    def watch_key(self, key: str, after_seq: int, wait: float) -> dict:
        """Long poll one key (docs/watch.md): ``{"key","value","seq","changed","index"}``."""
        raise NotFound("this node does not support watches")

    def watch_prefix(self, prefix: str, after_seq: int, wait: float, limit: int) -> dict:
        """Long poll a prefix (docs/watch.md): ``{"changes": [...], "index", "reset"}``."""
        raise NotFound("this node does not support watches")

    def wait_applied(self, seq: int, timeout: float) -> bool:
        """Wait until this node has applied ``seq`` (at most ``timeout`` s); whether it has."""
        return True

    def call_when_applied(self, seq: int, callback, timeout: float) -> None:
        """Call ``callback(applied)`` once this node has applied ``seq`` or ``timeout`` s passed,
        without holding the calling thread (a forwarded write's answer waits this way for
        read-your-writes). This default waits on the calling thread: fine for test doubles."""
        callback(self.wait_applied(seq, timeout))

    def events(self, after: int, wait: float | None) -> dict:
        """Cluster events after index ``after`` (docs/metrics.md), waiting up to ``wait`` s for
        one: ``{"events": [{index, time, node, epoch, kind, level, text, details}], "next",
        "dropped", "started"}``."""
        raise NotFound("this node does not keep events")

    def metrics(self) -> list:
        """Node metrics for ``/metrics``: ``[(name, type, help, [(labels, value), ...])]``."""
        return []

    def internal_head(self, method: str, target: str, headers, *, token_checked: bool = False) -> str | None:
        """Check an internal request from its head, before its body is read.

        ``target`` is the request target as received (path and raw query);
        ``token_checked``: the route needed an admin token and the request carried one.
        Returns None to go on, or the reason to refuse it (401). Default: accept.
        """
        return None

    @abc.abstractmethod
    def internal(self, method: str, path: str, query: dict, body: bytes,
                 headers: dict) -> tuple[int, bytes]:
        """Node-to-node and admin routes under ``/internal/``.

        ``path`` is the part after ``/internal/`` (e.g. ``"raft"``, ``"join"``), ``query``
        the parsed query string (``{name: last value}``), ``headers`` a case-insensitive
        mapping. Returns (HTTP status, JSON body bytes). The service authenticates (cluster
        secret: the head in :meth:`internal_head`, which the front end calls first, before
        reading the body; the body against its signed digest here) and decodes; the front
        end only passes the raw request through.
        """
