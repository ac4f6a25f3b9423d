"""Membership operations: join, leave, remove — on the master, reached from any node.

Membership changes are ordinary log entries (``member_add`` / ``member_remove``) proposed
on the master with ``acks=majority``, one at a time (the core refuses a second change
while one is uncommitted). A request arriving at a slave is relayed to the master.

Rules for a join of ``(id, url)``:
* the same id at the same url: already a member, nothing to do (restarts are idempotent);
* the same id at another url while that member is alive: refused (409, duplicate id);
* another id at the same url: that member must be a dead predecessor (two live processes
  cannot own one address), so it is removed first — a node restarted in memory gets a
  new id and takes its old place instead of leaving a dead member behind.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

from ..core.log import OP_MEMBER_ADD, OP_MEMBER_REMOVE
from ..core.node import MASTER
from ..errors import BadRequest, Conflict, DkvsError, KeyNotFound, NoMaster
from ..transport.auth import Signer
from .answers import raise_for

__all__ = ["ClusterAdmin", "join_cluster", "post_internal", "JoinRefused"]

log = logging.getLogger("dkvs.admin")

MEMBERSHIP_TIMEOUT_SECONDS = 10.0


class JoinRefused(Exception):
    """The cluster refused this node for good (e.g. its id is taken by a live member)."""


class ClusterAdmin:
    def __init__(self, service) -> None:
        self.service = service
        self.host = service.host

    def _relay_to_master(self, route: str, body: dict) -> dict:
        master_url = self.service.master_url()
        if master_url is None or master_url == self.service.url:
            raise NoMaster()
        status, answer = post_internal(master_url, route, body, self.service.signer)
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

    def join(self, node_id: str, url: str) -> dict:
        if not node_id or not url.startswith("http://"):
            raise BadRequest("join needs a node id and an http:// url")
        if self.host.node.role != MASTER:
            return self._relay_to_master("join", {"id": node_id, "url": url})
        members, alive = self._membership()
        if members.get(node_id) == url:
            return self._answer(node_id)
        if node_id in members and alive.get(node_id):
            raise Conflict(f"node id {node_id!r} is already used by a live member at {members[node_id]}; "
                           "pick another --id", id=node_id)
        for other_id, other_url in members.items():
            if other_url == url and other_id != node_id:
                log.info("node %s replaces %s at %s", node_id, other_id, url)
                self._propose(OP_MEMBER_REMOVE, other_id, None)
        self._propose(OP_MEMBER_ADD, node_id, url)
        log.info("node %s joined from %s", node_id, url)
        return self._answer(node_id)

    def remove(self, node_id: str, must_be_dead: bool) -> dict:
        if not node_id:
            raise BadRequest("missing node id")
        if self.host.node.role != MASTER:
            return self._relay_to_master("remove" if must_be_dead else "leave", {"id": node_id})
        members, alive = self._membership()
        if node_id not in members:
            raise KeyNotFound(f"no member {node_id!r}", id=node_id)
        if must_be_dead and alive.get(node_id) and node_id != self.host.node.id:
            raise Conflict(f"member {node_id!r} is alive; stop it first (or let it leave)", id=node_id)
        self._propose(OP_MEMBER_REMOVE, node_id, None)
        log.info("member %s removed", node_id)
        return {"removed": node_id}

    def _answer(self, node_id: str) -> dict:
        node = self.host.node
        return {"id": node_id, "epoch": node.epoch, "master": {"id": node.id, "url": self.service.url},
                "members": dict(node.members)}


def post_internal(url: str, route: str, body: dict, signer: Signer, timeout: float = 15.0) -> tuple[int, dict]:
    """POST a JSON body to ``url``'s ``/internal/<route>``; returns (status, JSON answer).

    Raises ``OSError`` when the node cannot be reached.
    """
    path = "/internal/" + route
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **signer.headers("POST", path, data)}
    request = urllib.request.Request(url.rstrip("/") + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read() or b"{}")
        except ValueError:
            answer = {"error": "error", "message": str(exc)}
        return exc.code, answer


def join_cluster(join_url: str, node_id: str, my_url: str, signer: Signer, deadline_seconds: float = 30.0) -> dict:
    """Ask the cluster at ``join_url`` to add this node; retry while it has no master.

    Raises :class:`JoinRefused` when refused for good, ``TimeoutError`` when the cluster
    stayed unreachable or masterless until the deadline.
    """
    deadline = time.monotonic() + deadline_seconds
    delay = 0.1
    last = "no answer"
    while True:
        try:
            status, answer = post_internal(join_url, "join", {"id": node_id, "url": my_url}, signer)
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
