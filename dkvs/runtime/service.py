"""The node as the HTTP front end sees it: :class:`NodeService` implements
:class:`dkvs.api.service.KeyValueService` on top of a :class:`NodeHost`.

Writes go through the node's thread (ordered by the core); plain reads come straight
from the key-value state under its lock; consistent reads first pass the core's read
barrier. Internal routes (node-to-node messages, join/leave) are authenticated with
the cluster secret and dispatched by a table: the signature (sender, target, time, nonce,
query and body digest) is checked from the head before the body is read
(:meth:`NodeService.internal_head`), the body against its signed digest after.
Admin routes (``remove``, ``faults``) take an admin token instead when client auth is on.
"""

from __future__ import annotations

import json
import logging

from ..api.service import STREAM_QUERY, KeyValueService, Limits, NotMaster
from ..core.log import OP_DELETE_PREFIX, OP_LEASE_GRANT, OP_LEASE_REVOKE, OP_TXN
from ..core.node import CANDIDATE, MASTER, SLAVE
from ..core.transfer import TRANSFER_IN_PROGRESS
from ..core.txn import encode_txn
from ..driver.narrator import quorum_view
from ..errors import BadRequest, DkvsError, KeyNotFound, LeaseNotFound, NoMaster, NotFound, Unauthorized
from ..transport import codec
from ..transport.auth import SIGNATURE_HEADER, Signer
from ..transport.snapshot_stream import SnapshotAssembler, parse_chunk_query, receive_chunk
from .admin import ClusterAdmin
from .backups import BACKUPS_LOCK, EXPORT_IDLE_SECONDS, BackupExports
from .answers import (delete_prefix_answer, lease_grant_answer, lease_revoke_answer,
                      leased_put_answer, raise_for, txn_answer, write_answer)
from .forward_writes import write_batch
from .handover import propose_through_handover, transfer_route
from .host import NodeHost
from .lane_requests import read_async, write_async
from .node_status import StatusMixin

__all__ = ["NodeService"]

log = logging.getLogger("dkvs.service")

INTERNAL_TIMEOUT_SECONDS = 5.0
RETRY_KNOWN_MASTER_SECONDS = 0.05  # Retry-After hint of a 503 that names another master
# Routes an operator calls: with client auth on, the admin token is their credential.
_ADMIN_ROUTES = frozenset({"remove", "faults", "transfer"})


class NodeService(StatusMixin, KeyValueService):
    def __init__(self, limits: Limits, signer: Signer, assembler: SnapshotAssembler | None = None) -> None:
        self.host: NodeHost | None = None
        self.assembler = assembler or SnapshotAssembler()  # incoming streamed snapshots
        self._refusals_logged: set[tuple] = set()  # (sender, kind of problem) already warned of
        self.url = ""
        self.limits = limits
        self.signer = signer
        self.admin: ClusterAdmin | None = None
        self.leaving = False  # set by DkvsNode.leave: the master calls back to confirm a leave
        self.identity = None  # a ClusterIdentity, set by DkvsNode before the server starts

    def attach(self, host: NodeHost, url: str) -> None:
        """Connect to the running node (the HTTP server is bound first, to learn the url)."""
        self.host, self.url = host, url
        host.driver.lease_clock.ticks_per_second = 1.0 / host.tick_seconds  # leases count real ticks
        self.admin = ClusterAdmin(self)

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def cluster_id(self) -> str | None:
        return self.identity.cluster_id if self.identity is not None else None

    def master_url(self) -> str | None:
        node = self.host.node
        return node.members.get(node.master_id) if node.master_id is not None else None

    def _require_master(self) -> None:
        if self.host.node.role != MASTER:
            master_url = self.master_url()
            if master_url is not None and self.host.node.role != CANDIDATE:
                # A known master can be asked at once (e.g. right after a handover).
                raise NotMaster(master_url, retry_after=RETRY_KNOWN_MASTER_SECONDS)  # forwarded to it
            quorum = self.host.query(self._quorum)
            if master_url is not None and quorum["ok"]:
                raise NotMaster(master_url, retry_after=RETRY_KNOWN_MASTER_SECONDS)
            # Answered with 503: say whether waiting can help. A candidate still knows its
            # last master, but with no majority reachable forwarding to it is pointless.
            error = NotMaster(None)
            error.message = f"no master is known: {quorum['reason']}"
            error.details["quorum"] = quorum
            raise error

    def _quorum(self, node) -> dict:
        """:func:`~dkvs.driver.narrator.quorum_view` of ``node`` (on the node's thread)."""
        return quorum_view(node, self.host.driver.narrator.heard)

    # -- public API ------------------------------------------------------------------------------
    def put(self, key: str, value: str, *, acks: str, timeout: float, if_seq: int | None = None,
            lease: int | None = None, ttl: float | None = None) -> dict:
        if lease is None and ttl is None:
            return self._write("put", key, value, acks, timeout, if_seq)
        # A leased put is a one-op transaction (its condition, if any, as a comparison), so
        # "the lease still exists" is decided at apply time like every other condition.
        granted = None
        if ttl is not None:
            granted = self.lease_grant(ttl, acks=acks, timeout=timeout)
            lease = granted["id"]
        txn = {"c": [] if if_seq is None else [[key, "seq", if_seq]],
               "s": [["put", key, value, lease]], "f": [["get", key]]}
        self._require_master()
        outcome = self._propose(OP_TXN, "", encode_txn(txn), acks, timeout)
        answer = leased_put_answer(key, lease, if_seq, outcome, acks, timeout, self.master_url())
        if granted is not None:
            answer["ttl"] = granted["ttl"]
        return answer

    # -- leases ----------------------------------------------------------------------------------
    def lease_grant(self, ttl: float, *, acks: str, timeout: float) -> dict:
        self._require_master()
        outcome = self._propose(OP_LEASE_GRANT, "", str(max(1, round(ttl * 1000))), acks, timeout)
        return lease_grant_answer(outcome, acks, timeout, self.master_url())

    def lease_revoke(self, lease_id: int, *, acks: str, timeout: float) -> dict:
        self._require_master()
        outcome = self._propose(OP_LEASE_REVOKE, str(lease_id), None, acks, timeout)
        return lease_revoke_answer(lease_id, outcome, acks, timeout, self.master_url())

    def lease_keepalive(self, lease_id: int) -> dict:
        self._require_master()
        driver = self.host.driver
        ttl = self.host.query(lambda node: driver.lease_keepalive(lease_id))
        if ttl is None:
            raise LeaseNotFound(f"lease {lease_id} does not exist (expired or revoked)", lease=lease_id)
        return {"id": lease_id, "ttl": ttl / 1000}

    def lease_info(self, lease_id: int) -> dict:
        self._require_master()
        driver = self.host.driver
        info = self.host.query(lambda node: driver.lease_info(lease_id))
        if info is None:
            raise LeaseNotFound(f"lease {lease_id} does not exist (expired or revoked)", lease=lease_id)
        ttl, remaining, keys = info
        return {"id": lease_id, "ttl": ttl / 1000, "remaining": remaining / 1000, "keys": keys}

    def delete(self, key: str, *, acks: str, timeout: float, if_seq: int | None = None) -> dict:
        # Always through the log, even when the key looks absent here: the master's state
        # may hold another client's delete that is not committed and can still roll back,
        # so "absent" is only known once this delete is applied in order, and only as
        # durable as its acks (a 404 for acks=majority is backed by a commit). The same
        # holds for the condition: it is evaluated at apply time on every replica.
        return self._write("delete", key, None, acks, timeout, if_seq)

    def delete_prefix(self, prefix: str, *, acks: str, timeout: float) -> dict:
        # One entry: every replica deletes the keys it holds under the prefix at that point of
        # the log, atomically; the count is the apply-time one.
        self._require_master()
        outcome = self._propose(OP_DELETE_PREFIX, prefix, None, acks, timeout)
        return delete_prefix_answer(prefix, outcome, acks, timeout, self.master_url())

    def txn(self, txn: dict, *, acks: str, timeout: float) -> dict:
        # ``txn`` was checked and normalised by the front end (dkvs.core.txn.parse_txn).
        self._require_master()
        outcome = self._propose(OP_TXN, "", encode_txn(txn), acks, timeout)
        return txn_answer(outcome, acks, timeout, self.master_url())

    def _propose(self, op: str, key: str, value, acks: str, timeout: float, cond: int | None = None):
        """Propose on this master; during a leadership handover, wait for the new master
        and go there (dkvs.runtime.handover) instead of failing the write."""
        host = self.host
        outcome = host.propose(op, key, value, acks, timeout, cond)  # the common case: no handover
        if outcome.error != TRANSFER_IN_PROGRESS:
            return outcome
        return propose_through_handover(
            self, lambda: host.propose(op, key, value, acks, timeout, cond), timeout)

    def _write(self, op: str, key: str, value: str | None, acks: str, timeout: float,
               cond: int | None = None) -> dict:
        self._require_master()
        # During a leadership transfer the write waits for the handover (then goes to the
        # new master) instead of failing: a planned handover costs clients latency only.
        outcome = self._propose(op, key, value, acks, timeout, cond)
        # The master's URL only matters to an error (where the front end forwards to).
        return write_answer(op, key, outcome, acks, timeout, cond,
                            self.master_url() if outcome.error is not None else None)

    def write_batch(self, writes: list[tuple]) -> list:
        """A forwarded batch, proposed as one burst (dkvs.runtime.forward_writes)."""
        return write_batch(self, writes)

    def write_async(self, write: tuple, on_answer) -> bool:
        """One checked write with no waiting thread (dkvs.runtime.lane_requests)."""
        return write_async(self, write, on_answer)

    def read_async(self, key: str, on_answer) -> bool:
        """One consistent read with no waiting thread (dkvs.runtime.lane_requests)."""
        return read_async(self, key, on_answer)

    def forward_target(self) -> str | None:
        """Where a write that reached this slave goes without asking the node anything: the
        master's URL when this node is a slave that knows one (the first case of
        :meth:`_require_master`); None when the answer needs the worker path (a master, a
        candidate, no master known)."""
        return self.master_url() if self.host.node.role == SLAVE else None

    def get(self, key: str, *, consistent: bool) -> dict:
        host = self.host
        state = host.driver.state
        read = state.get
        if consistent:
            self._require_master()
            timeout = self.limits.default_timeout_seconds
            barrier = self.host.read_barrier(timeout)
            if barrier.error is not None:
                raise_for(barrier, "majority", timeout, self.master_url())
            # The barrier made everything up to its read seq committed; writes applied
            # since may still roll back, so read the committed value (linearizable).
            read = state.get_committed
        with host.state_lock:
            found = read(key)
        if found is None:
            raise KeyNotFound(f"key {key!r} does not exist", key=key)
        return {"key": key, "value": found[0], "seq": found[1]}

    def items(self, prefix: str, after: str | None, limit: int) -> dict:
        with self.host.state_lock:
            rows, next_key = self.host.state.items(prefix, after, limit)
        return {"items": [{"key": k, "value": v, "seq": s} for k, v, s in rows], "next": next_key}

    def wait_applied(self, seq: int, timeout: float) -> bool:
        return self.host.feed.wait_index(seq, timeout)

    def call_when_applied(self, seq: int, callback, timeout: float) -> None:
        self.host.feed.call_when_applied(seq, callback, timeout)

    def watch_key(self, key: str, after_seq: int, wait: float) -> dict:
        host = self.host
        changes = host.feed.wait(after_seq, key.__eq__, wait)
        with host.state_lock:
            current = host.state.get(key)
            index = host.feed.index
        if current is not None:
            value, seq = current
        else:
            value, seq = None, changes[-1][0] if changes else 0
        changed = changes is None and (current is None or seq > after_seq) or bool(changes)
        return {"key": key, "value": value, "seq": seq, "changed": changed, "index": index}

    def watch_prefix(self, prefix: str, after_seq: int, wait: float, limit: int) -> dict:
        host = self.host
        changes = host.feed.wait(after_seq, lambda k: k.startswith(prefix), wait)
        if changes is None:  # fell out of the feed: hand back the current items instead
            with host.state_lock:
                rows, next_key = host.state.items(prefix, None, limit)
                index = host.feed.index
            return {"changes": [{"key": k, "value": v, "seq": s} for k, v, s in rows], "index": index,
                    "reset": True, "next": next_key}
        with host.state_lock:
            index = host.feed.index
        if len(changes) > limit:
            changes = changes[:limit]
            index = changes[-1][0]
        return {"changes": [{"key": k, "value": v, "seq": s} for s, k, v in changes], "index": index,
                "reset": False}

    # -- backups (GET /snapshot, dkvs.runtime.backups) ----------------------------------------
    def backup_export(self, export_id: str | None):
        """The backup ``export_id`` (None: a new one of the committed state now, or the
        one being built); NotFound once it was dropped (the client starts over)."""
        with BACKUPS_LOCK:
            exports = getattr(self, "_backups", None)
            if exports is None:
                exports = self._backups = BackupExports(self.host, getattr(self.host.storage, "path", None))
        try:
            export = exports.begin() if export_id is None else exports.get(export_id)
        except TimeoutError:  # the node's thread did not take the view in time
            error = DkvsError("this node is too busy to start a backup now; retry shortly")
            error.status, error.code, error.retry_after = 503, "busy", 1.0
            raise error from None
        if export is None:
            error = NotFound(f"no backup {export_id[:40]!r} on this node (dropped after "
                             f"{EXPORT_IDLE_SECONDS:g} s unread, or replaced): start the backup again")
            error.code = "backup_gone"
            raise error
        return export

    def close_backups(self) -> None:
        """Drop every backup export (their temporary files go; a build in progress stops).
        For the node's stop: exports otherwise live until the process exits."""
        exports = getattr(self, "_backups", None)
        if exports is not None:
            exports.close()

    # -- internal routes -------------------------------------------------------------------------
    def internal_head(self, method: str, target: str, headers, *, token_checked: bool = False) -> str | None:
        path = target.partition("?")[0]
        if token_checked and path[len("/internal/"):] in _ADMIN_ROUTES:
            return None  # the admin token was checked by the route table
        problem = self.signer.verify_head(method, target, headers)
        if problem is not None:
            self._log_refusal(method, path, problem, headers)
            if (problem.startswith("meant for another node") and self.identity is not None
                    and self.identity.cluster_id is not None):
                # Authentic, but addressed to the id that lived at this address before: maybe
                # this node is a fresh restart that its old cluster is still talking to.
                self.identity.check_incoming(path, headers)
        elif self.identity is not None:
            problem = self.identity.check_incoming(path, headers)  # logged once by the identity
        return problem

    def _log_refusal(self, method: str, path: str, problem: str, headers) -> None:
        """A warning once per (sender, kind of problem), then debug: a member that keeps
        sending heartbeats to a wrong address must not write 20 lines a second."""
        seen = self._refusals_logged
        kind = (self.signer.sender(headers), problem.split(":")[0][:60])
        if kind in seen or len(seen) > 1024:
            log.debug("refused internal request %s %s: %s", method, path[:100], problem)
            return
        seen.add(kind)
        log.warning("refused internal request %s %s: %s (logged once per sender)", method, path[:100], problem)

    def internal(self, method: str, path: str, query: dict, body: bytes, headers) -> tuple[int, bytes]:
        full_path = "/internal/" + path
        # The head was checked by internal_head (the front end always calls it first); a
        # signed body must be the one that was signed.
        signed = self.signer.sender(headers) is not None and headers.get(SIGNATURE_HEADER) is not None
        problem = self.signer.verify_body(headers, body) if signed else None
        if problem is not None:
            log.warning("refused internal request %s %s: %s", method, full_path, problem)
            return _error(Unauthorized(f"internal request refused: {problem}"))
        handler = self._INTERNAL.get((method, path))
        if handler is None:
            return 404, json.dumps({"error": "not_found", "message": f"no internal route {method} {path}"}).encode()
        try:
            return handler(self, query, body, headers)
        except codec.CodecError as exc:
            return _error(BadRequest(str(exc)))
        except DkvsError as exc:
            return _error(exc)

    def _check_sender(self, message, headers) -> None:
        """A signed message must come from the node it names as its sender."""
        sender = self.signer.sender(headers)
        if sender is not None and message.sender != sender:
            raise Unauthorized(f"the message names {message.sender!r} as its sender but was signed by {sender!r}")

    def _raft(self, query: dict, body: bytes, headers) -> tuple[int, bytes]:
        message = codec.decode(body)
        self._check_sender(message, headers)
        if message.sender in getattr(self.host.transport, "blocked", ()):
            return _error(NoMaster("partitioned (fault injection)"))
        replies = self.host.deliver_and_wait(message, INTERNAL_TIMEOUT_SECONDS)
        if query is STREAM_QUERY:  # the stream's own form: no JSON to decode and re-encode
            return 200, codec.encode_binary_many(replies)
        return 200, codec.encode_many(replies)

    def _snapshot(self, query: dict, body: bytes, headers) -> tuple[int, bytes]:
        if "offset" in query:  # one chunk of a streamed snapshot (docs/storage.md)
            return self._snapshot_chunk(query, body, headers)
        message = codec.decode_snapshot(body)
        self._check_sender(message, headers)
        if message.sender in getattr(self.host.transport, "blocked", ()):
            return _error(NoMaster("partitioned (fault injection)"))
        replies = self.host.deliver_and_wait(message, 60.0)
        return 200, codec.encode_many(replies)

    def _snapshot_chunk(self, query: dict, body: bytes, headers) -> tuple[int, bytes]:
        """Chunks are assembled into a file with bounded memory; the complete, verified
        snapshot is delivered to the node, whose answers travel back in this response."""
        meta = parse_chunk_query(query)
        if meta.sender in getattr(self.host.transport, "blocked", ()):
            return _error(NoMaster("partitioned (fault injection)"))
        signed = self.signer.sender(headers)
        if signed is not None and signed != meta.sender:
            raise Unauthorized(f"snapshot chunk says it is from {meta.sender!r} but was signed by {signed!r}")
        snapshot, answer = receive_chunk(self.assembler, query, body)
        if snapshot is None:
            return 200, answer
        return 200, codec.encode_snapshot_answer(messages=self.host.deliver_and_wait(snapshot, 60.0))

    def _identity(self, query: dict, body: bytes, headers) -> tuple[int, bytes]:
        # The master calls a joining (or leaving) node back here to confirm who answers at
        # its advertised URL, and that it really is leaving.
        return 200, _json({"id": self.host.node.id, "leaving": self.leaving, "cluster_id": self.cluster_id})

    def _join(self, query: dict, body: bytes, headers) -> tuple[int, bytes]:
        request = _json_object(body)
        return 200, _json(self.admin.join(str(request.get("id", "")), str(request.get("url", "")), headers,
                                          cluster_id=request.get("cluster_id"), learner=request.get("learner") is True))

    def _leave(self, query: dict, body: bytes, headers) -> tuple[int, bytes]:
        request = _json_object(body)
        return 200, _json(self.admin.leave(str(request.get("id", "")), self.signer.sender(headers),
                                           request.get("relayed") is True, headers))

    def _remove(self, query: dict, body: bytes, headers) -> tuple[int, bytes]:
        # ``?id=`` (and ``force=true``) from an operator; a slave relaying it puts them in the body.
        request = _json_object(body) if body else {}
        node_id = query.get("id") or str(request.get("id", ""))
        force = query.get("force", "").lower() in ("1", "true", "yes") or request.get("force") is True
        return 200, _json(self.admin.remove(node_id, force, headers))

    def _transfer(self, query: dict, body: bytes, headers) -> tuple[int, bytes]:
        """``?to=ID&timeout=S`` (both optional): hand leadership over; a slave relays it."""
        request = _json_object(body) if body else {}
        status, answer = transfer_route(self, query.get("to") or request.get("to") or None,
                                        query.get("timeout") or request.get("timeout"), headers)
        return status, _json(answer)

    def _faults(self, query: dict, body: bytes, headers) -> tuple[int, bytes]:
        request = _json_object(body)
        try:
            self.host.transport.block(request.get("block", []))
        except (PermissionError, AttributeError) as exc:
            return _error(Unauthorized(str(exc)))
        return 200, _json({"blocked": sorted(self.host.transport.blocked)})

    _INTERNAL = {
        ("POST", "raft"): _raft,
        ("POST", "snapshot"): _snapshot,
        ("GET", "identity"): _identity,
        ("POST", "join"): _join,
        ("POST", "leave"): _leave,
        ("POST", "remove"): _remove,
        ("POST", "faults"): _faults,
        ("POST", "transfer"): _transfer,
    }


def _json(body) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _error(exc: DkvsError) -> tuple[int, bytes]:
    return exc.status, _json(exc.to_json())


def _json_object(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("body must be a JSON object")
    return value
