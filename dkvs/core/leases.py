"""Leases as replicated state: which leases exist (with their ttl) and which keys each holds.

Part of the key-value state machine (:class:`~dkvs.core.kvstate.KVState` owns one), so it
changes only by applying log entries: a grant, a revoke (which deletes the lease's keys),
and puts that attach a key to a lease (any other write of the key detaches it). Like the
data, every change above the commit point keeps an undo record, so a rollback restores
exactly the leases and attachments the surviving log implies.

*When* a lease expires is not here: that is the master's decision, made on its own tick
count (:mod:`dkvs.driver.leases`), and it reaches this table as a revoke entry, so slaves
never expire anything on their own clocks. Lease ids are ``epoch << 32 | seq`` of the grant
entry: unique even when a rollback hands the same seq to another entry.
"""

from __future__ import annotations

import json
from collections import deque

__all__ = ["LeaseTable", "lease_id_of", "SNAPSHOT_KEY"]

SNAPSHOT_KEY = ""  # the snapshot item holding the lease table: no real key is empty
_ATTACH, _GRANT, _REVOKE = "attach", "grant", "revoke"


def lease_id_of(epoch: int, seq: int) -> int:
    """The id of the lease granted by the entry ``(epoch, seq)``."""
    return (epoch << 32) | seq


class LeaseTable:
    def __init__(self) -> None:
        self.ttl_ms: dict[int, int] = {}  # lease id -> ttl in milliseconds
        self.keys: dict[int, set[str]] = {}  # lease id -> keys attached
        self.lease_of: dict[str, int] = {}  # key -> lease id
        self._undo: deque[tuple[int, str, object, object]] = deque()  # (seq, kind, a, b)

    def __bool__(self) -> bool:
        return bool(self.ttl_ms)

    # -- changes (called by KVState.apply, in log order) ---------------------------------------
    def grant(self, seq: int, lease_id: int, ttl_ms: int, commit_seq: int) -> None:
        self.ttl_ms[lease_id] = ttl_ms
        self.keys[lease_id] = set()
        if seq > commit_seq:
            self._undo.append((seq, _GRANT, lease_id, None))

    def revoke(self, seq: int, lease_id: int, commit_seq: int) -> None:
        """Forget the lease (its keys must already be deleted and detached)."""
        ttl = self.ttl_ms.pop(lease_id)
        self.keys.pop(lease_id, None)
        if seq > commit_seq:
            self._undo.append((seq, _REVOKE, lease_id, ttl))

    def attach(self, seq: int, key: str, lease_id: int | None, commit_seq: int) -> None:
        """``key`` now belongs to ``lease_id`` (None: to no lease)."""
        old = self.lease_of.get(key)
        if old == lease_id:
            return
        if seq > commit_seq:
            self._undo.append((seq, _ATTACH, key, old))
        self._set_attachment(key, old, lease_id)

    def _set_attachment(self, key: str, old: int | None, new: int | None) -> None:
        if old is not None:
            self.keys.get(old, set()).discard(key)
            del self.lease_of[key]
        if new is not None:
            self.keys.setdefault(new, set()).add(key)
            self.lease_of[key] = new

    # -- commit, rollback, snapshots -----------------------------------------------------------
    def set_commit(self, commit_seq: int) -> None:
        undo = self._undo
        while undo and undo[0][0] <= commit_seq:
            undo.popleft()

    def rollback(self, after_seq: int) -> None:
        undo = self._undo
        while undo and undo[-1][0] > after_seq:
            _, kind, a, b = undo.pop()
            if kind == _ATTACH:
                self._set_attachment(a, self.lease_of.get(a), b)
            elif kind == _GRANT:
                self.ttl_ms.pop(a, None)
                self.keys.pop(a, None)
            else:
                self.ttl_ms[a] = b
                self.keys.setdefault(a, set())

    def committed_item(self) -> list | None:
        """The lease table as of the commit point, as one snapshot item (None when empty)."""
        ttl_ms, lease_of = dict(self.ttl_ms), dict(self.lease_of)
        for _, kind, a, b in reversed(self._undo):
            if kind == _ATTACH:
                if b is None:
                    lease_of.pop(a, None)
                else:
                    lease_of[a] = b
            elif kind == _GRANT:
                ttl_ms.pop(a, None)
            else:
                ttl_ms[a] = b
        if not ttl_ms:
            return None
        doc = {"ttl_ms": {str(k): v for k, v in ttl_ms.items()}, "keys": lease_of}
        return [SNAPSHOT_KEY, json.dumps(doc, separators=(",", ":")), 0]

    def restore(self, item: list | None) -> None:
        self.ttl_ms, self.keys, self.lease_of = {}, {}, {}
        self._undo.clear()
        if item is None:
            return
        doc = json.loads(item[1])
        for lease_id, ttl in doc["ttl_ms"].items():
            self.ttl_ms[int(lease_id)] = int(ttl)
            self.keys[int(lease_id)] = set()
        for key, lease_id in doc["keys"].items():
            self._set_attachment(key, None, int(lease_id))
