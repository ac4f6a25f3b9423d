"""Membership operations: join, leave, remove — on the master, reached from any node.

Membership changes are ordinary log entries (``learner_add`` / ``replica_add`` /
``member_remove``) proposed on the master with ``acks=majority``, one at a time (the core refuses a second change
while one is uncommitted). A request arriving at a slave is relayed to the master, signed
by the slave and carrying the client's ``Authorization`` header (an admin token is checked
again by the master).

Outsiders must not be able to change the membership (issue 11), so every change is
confirmed with the node it is about:

* **join** ``(id, url)``: the master calls the joiner back at ``url``
  (``GET /internal/identity``) and adds it only if that answers with ``id``; an unreachable
  or wrong answer refuses the join (403) and adds nothing, so nobody can add members that
  do not exist.
* **leave** ``id``: only a node may ask to leave, for itself. With a secret the signed
  sender must be ``id`` (or a member relaying it); in every case the master calls ``id``
  back and it must answer that it is leaving (``DkvsNode.leave`` sets that), so an outsider
  cannot make a live member leave.
* **remove** ``id``: an operator's repair of dead members; an admin token when client auth
  is on (checked by the route table), ``force`` to remove a live one.

A joining node is added as a **learner** (dkvs.core.membership): it is replicated to but
counts in no quorum, so the cluster's writes never wait for its catch-up; the master
promotes it to voter once it keeps up. With ``learner`` (``--join URL --learner``) it joins
with ``replica_add`` and stays a learner (read replica, backup). A member that is already a
voter stays one when it rejoins.

Rules for a join of ``(id, url)``:
* the same id at the same url: already a member, nothing to do (restarts are idempotent);
* the same id at another url while that member is alive: refused (409, duplicate id);
* another id at the same url: that member must be a dead predecessor (two live processes
  cannot own one address, and the callback proved the new one answers there), so it is
  removed first — a node restarted in memory gets a new id and takes its old place
  instead of leaving a dead member behind.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request

from ..core.log import OP_LEARNER_ADD, OP_MEMBER_REMOVE, OP_REPLICA_ADD
from ..core.node import MASTER
from ..errors import BadRequest, Conflict, DkvsError, Forbidden, KeyNotFound, NoMaster
from ..transport.auth import Signer
from ..transport.tls import peer_context
from .answers import raise_for
from .identity import mismatch_message

__all__ = ["ClusterAdmin", "join_cluster", "post_internal", "fetch_identity", "JoinRefused",
           "IDENTITY_TIMEOUT_SECONDS"]

log = logging.getLogger("dkvs.admin")

MEMBERSHIP_TIMEOUT_SECONDS = 10.0
# A join is answered once the joiner was promoted to voter, or after this long (then it is
# still a learner catching up): below the joiner's 5 s per attempt (runtime.startup), and
# long enough for a small catch-up (3 heartbeats), so that a node that printed its startup
# line is usually a voter already, as before learners existed.
PROMOTION_WAIT_SECONDS = 3.0
PROMOTION_POLL_SECONDS = 0.02
IDENTITY_TIMEOUT_SECONDS = 2.0  # the callback to a joining or leaving node


class JoinRefused(Exception):
    """The cluster refused this node for good (e.g. its id is taken by a live member)."""


class ClusterAdmin:
    def __init__(self, service) -> None:
        self.service = service
        self.host = service.host

    def _relay_to_master(self, route: str, body: dict, headers=None) -> dict:
        master_url = self.service.master_url()
        if master_url is None or master_url == self.service.url:
            raise NoMaster()
        passed = {}
        if headers is not None and headers.get("Authorization"):
            passed["Authorization"] = headers["Authorization"]
        status, answer = post_internal(master_url, route, body, self.service.signer,
                                       to=self.host.node.master_id or "", headers=passed)
        if status != 200:
            error = DkvsError(answer.get("message", "the master refused"))
            error.status, error.code = status, answer.get("error", "error")
            raise error
        return answer

    def _membership(self) -> tuple[dict[str, str], dict[str, bool]]:
        def read(node):
            alive = {v.id: v.alive for v in node.build_view()} if node.role == MASTER else {}
            return dict(node.members), alive
        return self.host.query(read)

    def _propose(self, op: str, node_id: str, url: str | None) -> None:
        outcome = self.host.propose(op, node_id, url, "majority", MEMBERSHIP_TIMEOUT_SECONDS)
        raise_for(outcome, "majority", MEMBERSHIP_TIMEOUT_SECONDS, self.service.master_url())

    def _confirm(self, node_id: str, url: str, *, leaving: bool) -> None:
        """Call ``node_id`` back at ``url``; Forbidden unless it answers as that node
        (and, for a leave, says that it is leaving)."""
        try:
            identity = fetch_identity(url, node_id, self.service.signer)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise Forbidden(f"{'leave' if leaving else 'join'} refused: {node_id!r} could not be reached "
                            f"at {url} to confirm it ({exc})", id=node_id) from None
        if identity.get("id") != node_id:
            raise Forbidden(f"{'leave' if leaving else 'join'} refused: the node at {url} answers as "
                            f"{str(identity.get('id'))[:64]!r}, not {node_id!r}", id=node_id)
        if leaving and identity.get("leaving") is not True:
            raise Forbidden(f"leave refused: {node_id!r} is not leaving (a node can only leave for itself)",
                            id=node_id)

    def join(self, node_id: str, url: str, headers=None, cluster_id=None, learner: bool = False) -> dict:
        """Add ``node_id`` at ``url`` as a learner (promoted once caught up), or with
        ``learner`` as one that stays a learner."""
        if not node_id or not url.startswith(("http://", "https://")):
            raise BadRequest("join needs a node id and an http:// or https:// url")
        mine = self.service.cluster_id
        if mine is None and self.host.node.role == MASTER and self.service.identity is not None:
            # Every data dir of this cluster predates cluster ids: the master names it now,
            # and the id spreads with the join answer and the master's traffic.
            mine = self.service.identity.create()
            log.warning("this cluster had no id (data dirs older than cluster ids); it is now %s", mine)
        if isinstance(cluster_id, str) and cluster_id and mine and cluster_id != mine:
            # Refused before anything changes: a node never mixes clusters.
            raise Conflict(mismatch_message(cluster_id[:64], mine, self.service.url), id=node_id,
                           cluster_id=mine)
        if self.host.node.role != MASTER:
            body = {"id": node_id, "url": url, **({"cluster_id": cluster_id} if cluster_id else {}),
                    **({"learner": True} if learner else {})}
            return self._relay_to_master("join", body, headers)
        members, alive = self._membership()
        if members.get(node_id) == url:
            return self._answer(node_id)
        if node_id in members and alive.get(node_id):
            raise Conflict(f"node id {node_id!r} is already used by a live member at {members[node_id]}; "
                           "pick another --id", id=node_id)
        self._confirm(node_id, url, leaving=False)
        replaced = [other for other, other_url in members.items() if other_url == url and other != node_id]
        for other_id in replaced:
            log.info("node %s replaces %s at %s", node_id, other_id, url)
            self._propose(OP_MEMBER_REMOVE, other_id, None)
        self._propose(OP_REPLICA_ADD if learner else OP_LEARNER_ADD, node_id, url)
        log.info("node %s joined from %s as a learner%s", node_id, url,
                 " (stays one: --learner)" if learner else " (promoted to voter once caught up)")
        if not learner:
            self._await_promotion(node_id)
        return self._answer(node_id)

    def _await_promotion(self, node_id: str) -> None:
        """Wait (bounded, on this request's thread) until the master promoted ``node_id``,
        it stopped being master, or ``PROMOTION_WAIT_SECONDS`` passed."""
        deadline = time.monotonic() + PROMOTION_WAIT_SECONDS
        while time.monotonic() < deadline:
            waiting = self.host.query(lambda node: node.role == MASTER and node_id in node.learners)
            if not waiting:
                return
            time.sleep(PROMOTION_POLL_SECONDS)

    def leave(self, node_id: str, sender: str | None, relayed: bool, headers=None) -> dict:
        """``node_id`` asks to leave; ``sender`` is the signed sender (None without a secret)."""
        if not node_id:
            raise BadRequest("missing node id")
        if sender is not None and sender != node_id and not (relayed and sender in self.host.node.members):
            raise Forbidden(f"a node can only leave for itself ({sender!r} asked for {node_id!r})", id=node_id)
        if self.host.node.role != MASTER:
            return self._relay_to_master("leave", {"id": node_id, "relayed": True}, headers)
        members, _ = self._membership()
        if node_id not in members:
            raise KeyNotFound(f"no member {node_id!r}", id=node_id)
        self._confirm(node_id, members[node_id], leaving=True)
        self._propose(OP_MEMBER_REMOVE, node_id, None)
        log.info("member %s left", node_id)
        return {"removed": node_id}

    def remove(self, node_id: str, force: bool = False, headers=None) -> dict:
        """An operator removes ``node_id``: refused while it is alive unless ``force``."""
        if not node_id:
            raise BadRequest("missing node id")
        if self.host.node.role != MASTER:
            return self._relay_to_master("remove", {"id": node_id, "force": force}, headers)
        members, alive = self._membership()
        if node_id not in members:
            raise KeyNotFound(f"no member {node_id!r}", id=node_id)
        if not force and (alive.get(node_id) or node_id == self.host.node.id):
            raise Conflict(f"member {node_id!r} is alive; stop it first (it then leaves), or add force=true",
                           id=node_id)
        self._propose(OP_MEMBER_REMOVE, node_id, None)
        log.warning("member %s removed by an operator%s", node_id, " (force)" if force else "")
        return {"removed": node_id}

    def _answer(self, node_id: str) -> dict:
        node = self.host.node
        return {"id": node_id, "epoch": node.epoch, "master": {"id": node.id, "url": self.service.url},
                "members": dict(node.members), "learners": sorted(node.learners),
                "voter": node.is_voter(node_id),
                "cluster_id": self.service.cluster_id}


def _call(request: urllib.request.Request, timeout: float) -> tuple[int, dict]:
    try:
        context = peer_context() if request.full_url.startswith("https://") else None
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read() or b"{}")
        except ValueError:
            answer = {"error": "error", "message": str(exc)}
        return exc.code, answer


def post_internal(url: str, route: str, body: dict, signer: Signer, timeout: float = 15.0, *,
                  to: str = "", headers: dict | None = None) -> tuple[int, dict]:
    """POST a JSON body to ``url``'s ``/internal/<route>``; returns (status, JSON answer).

    Signed for the node ``to`` ("" = any node, allowed for a join only). ``headers`` are
    added (e.g. a relayed ``Authorization``). Raises ``OSError`` when the node cannot be
    reached.
    """
    path = "/internal/" + route
    data = json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {}),
                   **signer.headers("POST", path, data, to=to)}
    request = urllib.request.Request(url.rstrip("/") + path, data=data, headers=all_headers, method="POST")
    return _call(request, timeout)


def fetch_identity(url: str, node_id: str, signer: Signer, timeout: float = IDENTITY_TIMEOUT_SECONDS) -> dict:
    """``GET /internal/identity`` of the node expected to be ``node_id`` at ``url``.

    Raises ``OSError`` when it cannot be reached or does not answer 200, ValueError when the
    answer is not a JSON object.
    """
    path = "/internal/identity"
    request = urllib.request.Request(url.rstrip("/") + path, headers=signer.headers("GET", path, b"", to=node_id),
                                     method="GET")
    status, answer = _call(request, timeout)
    if status != 200:
        raise OSError(f"it answered {status} {str(answer.get('message', ''))[:100]}")
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    return answer


def join_cluster(join_url: str, node_id: str, my_url: str, signer: Signer, deadline_seconds: float = 30.0,
                 learner: bool = False) -> dict:
    """Ask the cluster at ``join_url`` to add this node; retry while it has no master.

    Raises :class:`JoinRefused` when refused for good, ``TimeoutError`` when the cluster
    stayed unreachable or masterless until the deadline.
    """
    deadline = time.monotonic() + deadline_seconds
    delay = 0.1
    last = "no answer"
    while True:
        try:
            body = {"id": node_id, "url": my_url, **({"learner": True} if learner else {})}
            status, answer = post_internal(join_url, "join", body, signer)
            if status == 200:
                return answer
            last = f"{status} {answer.get('message', answer)}"
            if status not in (503, 504):
                raise JoinRefused(f"the cluster at {join_url} refused this node: {last}")
        except OSError as exc:
            last = str(exc)
        if time.monotonic() + delay > deadline:
            raise TimeoutError(f"could not join {join_url}: {last}")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
