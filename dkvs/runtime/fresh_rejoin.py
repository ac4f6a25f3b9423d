"""A fresh node at an address its old cluster still lists: rejoin it, never serve apart.

The mistake (issue 12): the first node of a cluster — started without ``--join``, in
memory — crashes and is restarted with its original command line. It bootstraps a new
cluster of one at the address the others still list as a member, and answers 404 for
keys that exist: a zombie. The others keep sending to that address; the new node hears
their traffic, which carries another cluster's id (:mod:`dkvs.runtime.identity`).

**The rule.** Such a node rejoins the cluster that speaks to it, by itself, only when
every one of these holds (:meth:`FreshRejoin.notice`):

1. it bootstrapped a new cluster *at this start*: no ``--join`` and no earlier state;
2. it listens on a port the operator chose (not ``--port 0``): it is at the same
   address as before, which is what the other cluster's traffic is addressed to;
3. it keeps nothing: no ``--data-dir`` (a fresh one is not wiped for it, see below);
4. it has acknowledged nothing: its log is its bootstrap entry alone (seq 1, epoch 1,
   itself the only member) — checked once more after it stopped serving;
5. the sender's URL (a hint in the request, :class:`~dkvs.runtime.identity.UrlSigner`)
   answers ``/internal/identity`` with the cluster id that traffic carried.

Then it stops serving and starts again as ``--join <that URL>`` with the same node id
and port. The master confirms it at its address and replaces the dead predecessor there
(:meth:`~dkvs.runtime.admin.ClusterAdmin.join`): no dead member stays behind, no election
is held, the epoch does not move. Nothing is lost: the node held nothing.

When 1, 2 and 5 hold but 3 or 4 does not (a fresh data dir, or a write already
acknowledged as the separate cluster), the node must not go on serving apart either, and
it may not throw data away on its own: it stops, with one line naming both cluster ids
and the way out (``--join URL``, with an empty data dir). The process exits with status 2.
Otherwise (``--port 0``, a node with state, no usable URL) foreign traffic is only
logged, once, like any node does.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import threading

from ..storage import MemoryStorage
from .admin import fetch_identity
from .startup import StartupError

__all__ = ["FreshRejoin", "holds_only_bootstrap", "MAX_ATTEMPTED_URLS"]

log = logging.getLogger("dkvs")

MAX_ATTEMPTED_URLS = 16  # sender URLs asked for their identity (each once)
BOOTSTRAP_SEQ = 1  # Node.bootstrap: epoch 1, one entry, the node adding itself


def holds_only_bootstrap(node) -> bool:
    """Whether ``node`` (a core Node) holds nothing but its own bootstrap: it has
    acknowledged no write, lease or membership change to anyone."""
    return (node.epoch == 1 and node.log.last_seq == BOOTSTRAP_SEQ and node.log.snapshot_seq == 0
            and list(node.members) == [node.id])


class FreshRejoin:
    """The rule above, for one :class:`~dkvs.runtime.app.DkvsNode`; thread safe.

    ``armed`` is set by the node at each start (conditions 1 and 2); :meth:`notice` is the
    identity's ``on_foreign`` hook, called on HTTP worker threads: it only starts (at most
    one) worker thread. ``restarting`` is true while the node restarts as a joiner;
    ``refusal`` holds the line the node stopped with, when it did.
    """

    def __init__(self, node) -> None:
        self.node = node
        self.armed = False
        self.restarting = False
        self.refusal: str | None = None
        self._lock = threading.Lock()
        self._busy = False
        self._asked: set[str] = set()
        self._warned_no_url = False

    def notice(self, theirs: str, sender_url: str | None) -> None:
        """Traffic of cluster ``theirs`` reached this node (sent from ``sender_url``)."""
        if not self.armed:
            return
        with self._lock:
            if sender_url is None:
                if not self._warned_no_url:
                    self._warned_no_url = True
                    log.error("cluster %s lists this node's address as a member, but its traffic names "
                              "no URL to rejoin it through: stop this node and start it with --join URL "
                              "(a member of cluster %s)", theirs, theirs)
                return
            if self._busy or sender_url in self._asked or len(self._asked) >= MAX_ATTEMPTED_URLS:
                return
            self._busy = True
            self._asked.add(sender_url)
        threading.Thread(target=self._run, args=(theirs, sender_url), name="dkvs-fresh-rejoin",
                         daemon=True).start()

    def _run(self, theirs: str, url: str) -> None:
        try:
            if self._confirmed(theirs, url):
                self._act(theirs, url)
        except Exception:  # noqa: BLE001 — a background thread: say it, never die silently
            log.exception("rejoining cluster %s through %s failed", theirs, url)
        finally:
            with self._lock:
                self._busy = False

    def _confirmed(self, theirs: str, url: str) -> bool:
        """Condition 5: the URL answers as a member of cluster ``theirs``."""
        try:
            identity = fetch_identity(url, "", self.node.signer)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            log.warning("cluster %s speaks to this node's address, but %s could not confirm it (%s)",
                        theirs, url, exc)
            return False
        return identity.get("cluster_id") == theirs

    def _act(self, theirs: str, url: str) -> None:
        node = self.node
        mine = node.identity.cluster_id
        if node.settings.data_dir:
            self._refuse(theirs, url, f"it started a new cluster {mine} in --data-dir {node.settings.data_dir}, "
                         f"which is not wiped for you: stop it, empty that data dir and start it with --join {url}")
            return
        if not node.host.query(holds_only_bootstrap):
            self._refuse(theirs, url, f"it already acknowledged writes as a separate cluster {mine} (they are not "
                         f"in cluster {theirs}): stop it and start it with --join {url}")
            return
        self._restart_joining(theirs, url)

    def _refuse(self, theirs: str, url: str, why: str) -> None:
        self.refusal = (f"this node's address is a member of cluster {theirs} (as {url} says), but {why}")
        log.critical("%s", self.refusal)
        self.node.stop()

    def _restart_joining(self, theirs: str, url: str) -> None:
        """Stop serving; re-check condition 4 on the stopped node; start again as a joiner."""
        node = self.node
        mine = node.identity.cluster_id
        log.warning("cluster %s lists this node's address as a member and this node, started moments ago "
                    "without --join and in memory, holds nothing: leaving the new cluster %s and rejoining "
                    "cluster %s through %s", theirs, mine, theirs, url)
        self.restarting = True
        try:
            port = node.server.server_address[1]
            node.server.stop()
            node.host.stop()
            if not holds_only_bootstrap(node.host.node):  # a write slipped in before the server stopped
                self._refuse(theirs, url, f"it acknowledged a write as a separate cluster {mine} while "
                             f"leaving it: start it with --join {url}")
                return
            node.stop()
            node.storage = MemoryStorage()
            node.settings = dataclasses.replace(node.settings, join=url, node_id=node.node_id, port=port)
            try:
                node.start()
            except StartupError as exc:
                self.refusal = f"could not rejoin cluster {theirs}: {exc}"
                log.critical("%s", self.refusal)
                return
            log.warning("node %s rejoined cluster %s at %s", node.node_id, theirs, node.url)
        finally:
            self.restarting = False
