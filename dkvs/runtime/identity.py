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
  a joiner that has none yet) pass.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Mapping

from ..transport.auth import CLUSTER_HEADER, SENDER_HEADER, Signer

__all__ = ["ClusterIdentity", "new_cluster_id", "mismatch_message", "ADOPT_FROM_PATHS", "CHECK_EXEMPT_PATHS"]

log = logging.getLogger("dkvs.identity")

# The master's traffic: a node that has no cluster id yet adopts the one it carries.
ADOPT_FROM_PATHS = frozenset({"/internal/raft", "/internal/snapshot"})
# Answered whatever the caller's cluster: identity is how a joiner finds out it is foreign;
# a join is checked by the admin (with a sentence naming both ids).
CHECK_EXEMPT_PATHS = frozenset({"/internal/identity", "/internal/join"})


def new_cluster_id() -> str:
    return secrets.token_hex(8)


def mismatch_message(mine: str, theirs: str, where: str) -> str:
    """The one line for a data dir of another cluster, with the way out."""
    return (f"this node's data dir belongs to cluster {mine}, but {where} is a member of cluster {theirs}; "
            f"to join cluster {theirs} start with an empty --data-dir, or --join a member of cluster {mine}")


class ClusterIdentity:
    """This node's cluster id, kept in ``storage`` and sent by ``signer``; thread safe."""

    def __init__(self, storage, signer: Signer, cluster_id: str | None, *, fresh: bool = True) -> None:
        self._fresh = fresh  # an empty data dir: adopting an id is joining, not news
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
        return f"from another cluster ({theirs[:64]}; this node is in cluster {mine})"
