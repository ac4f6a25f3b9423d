"""Cluster identity: a node never mixes clusters (issue 12, deliverable 1).

A cluster id (16 hex digits) is made when a cluster is bootstrapped and kept in every
member's data dir (``cluster_id``, :mod:`dkvs.storage.cluster_file`). It travels in the
``X-Dkvs-Cluster`` header of internal traffic (signed with the cluster secret when there is
one, :mod:`dkvs.transport.auth`) and is shown in ``/status``.

Rules, all in :class:`ClusterIdentity`:

* **Join-time refusal.** A node whose data dir names a cluster asks each ``--join`` URL
  for its identity first (a read that changes nothing); a different id ends the start with
  one line naming both ids and the way out (:func:`mismatch_message`), before the join is
  sent. The master checks it again on the join itself.
* **Adoption.** A data dir without an id (new, or made before ids existed) takes the
  cluster's from the join answer or from the first message of its master, and says so in
  the log. Only the master's traffic (``/internal/raft``, ``/internal/snapshot``) is
  adopted from: a joiner must never impose its id on the cluster.
* **Foreign traffic.** A request that carries another cluster's id is refused, and logged
  once per (sender, cluster), never obeyed. Requests without the header (older nodes,
  a joiner that has none yet) pass. The node's ``on_foreign`` hook is told (with the
  sender's URL, from the unsigned ``X-Dkvs-Sender-Url`` hint that :class:`UrlSigner`
  adds): a node that bootstrapped a fresh cluster at an address another cluster lists
  as a member may rejoin that cluster (:mod:`dkvs.runtime.fresh_rejoin`).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping

from ..transport.auth import CLUSTER_HEADER, SENDER_HEADER, Signer

__all__ = ["ClusterIdentity", "UrlSigner", "new_cluster_id", "mismatch_message", "ADOPT_FROM_PATHS",
           "CHECK_EXEMPT_PATHS", "SENDER_URL_HEADER"]

log = logging.getLogger("dkvs.identity")

# The master's traffic: a node that has no cluster id yet adopts the one it carries.
ADOPT_FROM_PATHS = frozenset({"/internal/raft", "/internal/snapshot"})
# Answered whatever the caller's cluster: identity is how a joiner finds out it is foreign;
# a join is checked by the admin (with a sentence naming both ids).
CHECK_EXEMPT_PATHS = frozenset({"/internal/identity", "/internal/join"})
# Where the sender of an internal request can be reached: a hint only (unsigned), used by a
# node that hears from another cluster to ask that cluster who it is (never trusted as is).
SENDER_URL_HEADER = "X-Dkvs-Sender-Url"
MAX_URL_CHARS = 512


class UrlSigner(Signer):
    """A :class:`Signer` whose requests also name the sender's base URL (``url``, once known).

    The URL is not part of the signature: a receiver only uses it to *ask* the sender's
    cluster for its identity, and acts on nothing it has not confirmed that way.
    """

    url: str = ""

    def headers(self, method: str, target: str, body: bytes | Iterable[bytes] = b"", *, to: str = "",
                digest: str | None = None) -> dict[str, str]:
        headers = super().headers(method, target, body, to=to, digest=digest)
        if self.url:
            headers[SENDER_URL_HEADER] = self.url
        return headers


def new_cluster_id() -> str:
    return secrets.token_hex(8)


def mismatch_message(mine: str, theirs: str, where: str) -> str:
    """The one line for a data dir of another cluster, with the way out."""
    return (f"this node's data dir belongs to cluster {mine}, but {where} is a member of cluster {theirs}; "
            f"to join cluster {theirs} start with an empty --data-dir, or --join a member of cluster {mine}")


class ClusterIdentity:
    """This node's cluster id, kept in ``storage`` and sent by ``signer``; thread safe."""

    def __init__(self, storage, signer: Signer, cluster_id: str | None, *, fresh: bool = True,
                 on_foreign: Callable[[str, str | None], None] | None = None) -> None:
        self._fresh = fresh  # an empty data dir: adopting an id is joining, not news
        # Told (theirs, sender_url or None) on every refused foreign request; must be cheap.
        self.on_foreign = on_foreign
        self._storage = storage
        self._signer = signer
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()
        signer.cluster_id = cluster_id

    @property
    def cluster_id(self) -> str | None:
        return self._signer.cluster_id

    def create(self) -> str:
        """A new cluster (bootstrap): make its id and keep it."""
        return self.adopt(new_cluster_id(), "a new cluster")

    def adopt(self, cluster_id: str, source: str) -> str:
        """Take ``cluster_id`` if this node has none yet; return the id in force."""
        with self._lock:
            if self._signer.cluster_id is None:
                self._storage.save_cluster_id(cluster_id)
                self._signer.cluster_id = cluster_id
                if source == "a new cluster":
                    pass
                elif self._fresh:
                    log.info("member of cluster %s (from %s)", cluster_id, source)
                else:
                    log.warning("this data dir had no cluster id; adopted cluster %s from %s", cluster_id, source)
            return self._signer.cluster_id

    def check_incoming(self, path: str, headers: Mapping[str, str]) -> str | None:
        """None to handle an (authenticated) internal request, else why it is ignored."""
        theirs = headers.get(CLUSTER_HEADER)
        if not theirs or path in CHECK_EXEMPT_PATHS:
            return None
        mine = self.cluster_id
        if mine is None:
            if path in ADOPT_FROM_PATHS:
                self.adopt(theirs, f"its master ({headers.get(SENDER_HEADER) or 'unsigned'})")
            return None
        if theirs == mine:
            return None
        sender = str(headers.get(SENDER_HEADER) or "unknown sender")[:64]
        key = (sender, theirs)
        with self._lock:
            first = key not in self._warned
            if first and len(self._warned) < 1024:
                self._warned.add(key)
        if first:
            log.warning("ignoring %s from %s of another cluster (%s; this node is in cluster %s)",
                        path, sender, theirs[:64], mine)
        if self.on_foreign is not None:
            url = headers.get(SENDER_URL_HEADER)
            usable = isinstance(url, str) and url.startswith(("http://", "https://")) and len(url) <= MAX_URL_CHARS
            self.on_foreign(theirs[:64], url if usable else None)
        return f"from another cluster ({theirs[:64]}; this node is in cluster {mine})"
