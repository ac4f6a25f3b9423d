"""Operator routes: backups (``GET /snapshot``), members (``/members``), leadership (``/leader``).

They are public routes with role ``admin`` (an admin token when client auth is on), and
they work sent to *any* node:

* ``GET /snapshot`` is served by the node asked, from its own committed state (a slave's
  answer says its role and the seq it is at): a backup never loads the master.
  The bytes are a snapshot file (docs/storage.md), served one chunk per request by offset
  (:mod:`dkvs.runtime.backups` says why); the first answer names the export (``id``) and
  carries its seq, key count, size and SHA-256 in headers (docs/http-api.md, "Backups").
* ``GET /members`` is this node's view of the membership (the master's liveness view as
  last heard on a slave), so it answers during an outage too.
* ``DELETE /members/{id}`` and ``POST /leader/transfer`` change the cluster: a slave relays
  them to the master itself, signed with the cluster secret and carrying the caller's
  ``Authorization`` (:class:`~dkvs.runtime.admin.ClusterAdmin`, :mod:`dkvs.runtime.handover`).

Membership must not be changed by outsiders (issue 11): when client auth is off but the
node has a cluster secret, the two changing routes also need a request signed with that
secret (``dkvs members --cluster-secret-file``), exactly like ``/internal/remove``.
"""

from __future__ import annotations

import json

from ..errors import BadRequest, DkvsError, InternalError, NoMaster, NotFound, Unauthorized
from .auth import ADMIN
from .params import Param, _parse_boolean
from .response import Reply, json_reply

__all__ = ["ADMIN_ROUTE_SPECS", "SNAPSHOT_CHUNK_BYTES", "BUILD_WAIT_SECONDS", "SNAPSHOT_TYPE",
           "get_snapshot", "get_members", "delete_member", "post_leader_transfer"]

SNAPSHOT_CHUNK_BYTES = 4 * 1024 * 1024  # one answer of GET /snapshot at most
BUILD_WAIT_SECONDS = 20.0  # an answer waits this long for a backup being built, then says 202
SNAPSHOT_TYPE = "application/octet-stream"
_ID_CHARS = frozenset("0123456789abcdef")
_MAX_MEMBER_ID_CHARS = 256


def _parse_export_id(raw: str | None, limits) -> str | None:
    if raw is None:
        return None
    if not (0 < len(raw) <= 32 and set(raw) <= _ID_CHARS):
        raise BadRequest(f"id must be the X-Dkvs-Snapshot value of an earlier answer; got {raw[:40]!r}",
                         parameter="id")
    return raw


def _parse_offset(raw: str | None, limits) -> int:
    if raw is None:
        return 0
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    raise BadRequest(f"offset must be a byte offset (an integer >= 0); got {raw[:40]!r}", parameter="offset")


def _parse_member_id(raw: str | None, limits) -> str:
    from urllib.parse import unquote

    member_id = unquote(raw or "")
    if not member_id or len(member_id) > _MAX_MEMBER_ID_CHARS or not member_id.isprintable():
        raise BadRequest("the path must name a member: /members/{id}", parameter="id")
    return member_id


def _parse_to(raw: str | None, limits) -> str | None:
    if raw is None:
        return None
    if not raw or len(raw) > _MAX_MEMBER_ID_CHARS or not raw.isprintable():
        raise BadRequest("to must name a member id", parameter="to")
    return raw


def _parse_transfer_timeout(raw: str | None, limits) -> float | None:
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= 60:  # also false for nan
        raise BadRequest(f"timeout must be a number of seconds in (0, 60]; got {raw[:40]!r}", parameter="timeout")
    return seconds


EXPORT_ID = Param("id", "query", "The backup to read on (the X-Dkvs-Snapshot header of the first answer); "
                  "without it a new backup of the committed state begins.", _parse_export_id,
                  lambda limits: {"type": "string"})
OFFSET = Param("offset", "query", "Byte offset in the backup to answer from (with id).", _parse_offset,
               lambda limits: {"type": "integer", "minimum": 0, "default": 0})
MEMBER_ID = Param("id", "path", "The member's id.", _parse_member_id, lambda limits: {"type": "string"},
                  required=True)
FORCE = Param("force", "query", "Remove the member even though it is alive.", _parse_boolean("force"),
              lambda limits: {"type": "boolean", "default": False})
TO = Param("to", "query", "The member to hand over to (default: the most up-to-date slave).", _parse_to,
           lambda limits: {"type": "string"})
TRANSFER_TIMEOUT = Param("timeout", "query", "Seconds the master waits for the target before it takes "
                         "writes again (default: one election timeout).", _parse_transfer_timeout,
                         lambda limits: {"type": "number", "exclusiveMinimum": 0, "maximum": 60})


# --- handlers -----------------------------------------------------------------------------

def get_snapshot(ex, args: dict) -> Reply:
    export_id, offset = args["id"], args["offset"]
    if export_id is None and offset:
        raise BadRequest("offset needs the id of the backup (X-Dkvs-Snapshot)", parameter="offset")
    export = _supported(ex, "backup_export", "backups")(export_id)
    if not export.done.is_set():
        blocking = getattr(ex.server, "blocking", None)
        if blocking is not None and getattr(ex, "conn", None) is not None:
            with blocking(ex.conn):  # a wait on another thread, not on the CPU: lend our place
                export.done.wait(BUILD_WAIT_SECONDS)
        else:
            export.done.wait(BUILD_WAIT_SECONDS)
    headers = (("X-Dkvs-Snapshot", export.id), ("X-Dkvs-Seq", str(export.seq)), ("X-Dkvs-Epoch", str(export.epoch)),
               ("X-Dkvs-Keys", str(export.keys)), ("X-Dkvs-Node", export.node_id), ("X-Dkvs-Role", export.role))
    if not export.done.is_set():
        body = {"id": export.id, "seq": export.seq, "keys": export.keys, "building": True}
        return Reply(202, json.dumps(body).encode(), headers=headers + (("Retry-After", "0"),))
    if export.error is not None:
        raise InternalError(f"the backup at seq {export.seq} failed on this node: {export.error}")
    if offset > export.size:
        raise BadRequest(f"offset {offset} is past the end of the backup ({export.size} bytes)", parameter="offset")
    try:
        data = export.read(offset, SNAPSHOT_CHUNK_BYTES)
    except (ValueError, OSError):  # dropped (replaced, expired, node stopping) meanwhile
        error = NotFound(f"backup {export.id} was dropped: start the backup again")
        error.code = "backup_gone"
        raise error from None
    headers += (("X-Dkvs-Size", str(export.size)), ("X-Dkvs-Offset", str(offset)),
                ("X-Dkvs-Checksum", f"sha256={export.sha256}"))
    return Reply(200, data, SNAPSHOT_TYPE, headers)


def get_members(ex, args: dict) -> Reply:
    status = ex.service.status()
    keep = ("id", "role", "epoch", "master", "members", "quorum", "cluster_id")
    return json_reply({k: status[k] for k in keep if k in status})


def delete_member(ex, args: dict) -> Reply:
    _require_signature_without_auth(ex)
    try:
        return json_reply(_supported(ex, "admin", "membership changes").remove(args["id"], args["force"], ex.headers))
    except OSError as exc:  # a slave relaying it to the master failed
        raise _relay_failed(exc) from None


def post_leader_transfer(ex, args: dict) -> Reply:
    from ..runtime.handover import transfer_route

    _require_signature_without_auth(ex)
    _supported(ex, "host", "leadership transfers")
    try:
        status, answer = transfer_route(ex.service, args["to"], args["timeout"], ex.headers)
    except OSError as exc:  # a slave relaying it to the master failed
        raise _relay_failed(exc) from None
    if status != 200:
        error = DkvsError(answer.get("message", "the master refused the transfer"))
        error.status, error.code = status, answer.get("error", "error")
        raise error
    return json_reply(answer)


def _relay_failed(exc: OSError) -> DkvsError:
    """A slave's relay to the master failed: 503 (retry) when the master certainly got
    nothing (the connection was refused), else 502: the change may have been applied."""
    if isinstance(exc, ConnectionRefusedError):
        return NoMaster(f"the master could not be reached ({exc}); retry shortly")
    error = DkvsError(f"relaying to the master failed midway ({exc}): the change may or may not have "
                      "been applied; look with GET /members or /status")
    error.status, error.code = 502, "relay_failed"
    return error


def _supported(ex, attribute: str, what: str):
    """The service's ``attribute``; a service without it (a test double, a read-only
    front end) answers 404 ``not_supported`` rather than failing."""
    found = getattr(ex.service, attribute, None)
    if found is None:
        error = NotFound(f"this node does not serve {what}")
        error.code = "not_supported"
        raise error
    return found


def _require_signature_without_auth(ex) -> None:
    """With client auth on, the route table checked the admin token; with it off and a
    cluster secret set, the request must be signed with the secret (as /internal/remove)."""
    if getattr(ex, "grant", None) is not None:
        return
    auth = getattr(ex.server, "auth", None)
    if auth is not None and getattr(auth, "enabled", False):
        return  # checked by the route table (a grant of None would not have passed)
    signer = getattr(ex.service, "signer", None)
    if signer is None or not signer.enabled:
        return
    problem = ex.service.internal_head(ex.command, ex.path, ex.headers)
    if problem is None:
        problem = signer.verify_body(ex.headers, ex.read_body(0, required=False))
    if problem is not None:
        raise Unauthorized("this node has a cluster secret and no client auth: sign the request with the "
                           f"secret (dkvs members/leader --cluster-secret-file) ({problem})")


_E400 = {400: ("Bad input: a parameter (see `error`, `parameter`).", "Error")}
_E503 = {503: ("No master is known; retry after Retry-After seconds.", "Error")}

# A backup holds every key: a token limited to key prefixes may not take one.
_ALL_KEYS = "namespace:"
# (method, pattern, handler, summary, params, responses, role, scope) for dkvs.api.routes.
ADMIN_ROUTE_SPECS = (
    ("GET", "/snapshot", get_snapshot, "A backup: this node's committed state as a snapshot file, by chunks (admin)",
     (EXPORT_ID, OFFSET),
     {200: ("Bytes of the backup from `offset` (application/octet-stream); headers X-Dkvs-Snapshot, -Seq, "
            "-Keys, -Size, -Offset, -Checksum (sha256=hex of the whole file).", None),
      202: ("Still being built: ask again with id.", None),
      404: ("The backup named by id was dropped: start again.", "Error"), **_E400}, ADMIN, _ALL_KEYS),
    ("GET", "/members", get_members, "The members as this node sees them (admin)", (),
     {200: ("{id, role, epoch, master, members: [{id, url, role, last_seq, alive}], quorum}.", None)}, ADMIN,
     None),
    ("DELETE", "/members/{id}", delete_member, "Remove a member (dead; or live with force=true) (admin; any node)",
     (MEMBER_ID, FORCE),
     {200: ("{removed: id}.", None), 404: ("No such member.", "Error"),
      409: ("The member is alive (stop it first, or force=true).", "Error"), **_E400, **_E503}, ADMIN, None),
    ("POST", "/leader/transfer", post_leader_transfer, "Hand leadership to a slave (admin; any node)",
     (TO, TRANSFER_TIMEOUT),
     {200: ("{from, to, epoch, master}.", None), 409: ("No slave can take over, or a transfer runs.", "Error"),
      504: ("The target did not take over in time; the old master takes writes again.", "Error"),
      **_E400, **_E503}, ADMIN, None),
)
