"""The key-value state machine: the log applied in order, with undo for uncommitted entries.

Nodes apply entries as soon as they are appended (so reads on slaves are fresh and an
``acks=1`` write is visible at once), before a majority holds them. Such entries can
still lose a failover; for each one the state keeps an undo record (the key's previous
value) until the commit point passes it. A rollback replays the undo records backwards.

Invariants: ``commit_seq <= applied_seq``; undo records exist exactly for applied
entries above ``commit_seq`` that changed a key; a snapshot is always taken at
``commit_seq`` (undo records make that possible while newer entries are applied), so a
snapshot never contains a write that can be rolled back.

Pure data structure; the host serialises access (the runtime wraps it in a lock).
"""

from __future__ import annotations

from collections import deque

from .leases import SNAPSHOT_KEY, LeaseTable, lease_id_of
from .log import OP_DELETE, OP_DELETE_PREFIX, OP_LEASE_GRANT, OP_LEASE_REVOKE, OP_PUT, OP_TXN, Entry
from .sortedkeys import SortedKeys
from .txn import decode_txn, run_txn

__all__ = ["KVState"]

_ABSENT = None


class KVState:
    def __init__(self) -> None:
        self.data: dict[str, tuple[str, int]] = {}  # key -> (value, seq of the write)
        self.keys = SortedKeys()
        self.applied_seq = 0
        self.commit_seq = 0
        self._undo: deque[tuple[int, str, tuple[str, int] | None]] = deque()
        self.leases = LeaseTable()

    def __len__(self) -> int:
        return len(self.data)

    # -- reading -------------------------------------------------------------------------------
    def get(self, key: str) -> tuple[str, int] | None:
        return self.data.get(key)

    def get_committed(self, key: str) -> tuple[str, int] | None:
        """The key as of ``commit_seq``, ignoring applied entries that may still roll back.

        This is what a consistent (linearizable) read must return: the master applies
        writes on append, so its ``data`` may hold a write proposed after the read arrived
        that later loses a failover. The oldest undo record of the key holds its value
        before the first uncommitted change.
        """
        for _, undo_key, old in self._undo:
            if undo_key == key:
                return old
        return self.data.get(key)

    def items(self, prefix: str, after: str | None, limit: int) -> tuple[list[tuple[str, str, int]], str | None]:
        """Up to ``limit`` items with ``prefix``, strictly after ``after``; and the key to
        continue from (``None`` when the listing is complete)."""
        if after is not None and after >= prefix:
            keys = self.keys.iter_from(after, inclusive=False)
        else:
            keys = self.keys.iter_from(prefix)
        out = []
        for key in keys:
            if not key.startswith(prefix):
                return out, None
            if len(out) == limit:
                return out, out[-1][0]
            value, seq = self.data[key]
            out.append((key, value, seq))
        return out, None

    # -- applying ------------------------------------------------------------------------------
    def apply(self, entries, commit_seq: int, results: dict | None = None) -> list[tuple[int, int]]:
        """Apply ``entries`` in order. Returns ``(seq, current seq of the key)`` for each
        entry that changed nothing: a delete of an absent key, or a put or delete whose
        condition did not hold. Every node reaches the same verdicts (same log, same state).

        Multi-key entries (prefix delete, transaction) put ``seq -> (answer, changes)`` in
        ``results`` when it is given: their apply-time answer, and the ``(key, value or
        None)`` changes they made, in order (for watches)."""
        rejected = []
        data = self.data
        for entry in entries:
            if entry.seq <= self.applied_seq:
                continue  # already applied (replayed after a restart)
            if entry.op == OP_PUT:
                if entry.cond is not None:
                    current = data.get(entry.key)
                    current_seq = current[1] if current is not None else 0
                    if current_seq != entry.cond:
                        rejected.append((entry.seq, current_seq))
                        self.applied_seq = entry.seq
                        continue
                self._set(entry, (entry.value, entry.seq), commit_seq)
            elif entry.op == OP_DELETE:
                current = data.get(entry.key)
                if current is None:
                    rejected.append((entry.seq, 0))
                elif entry.cond is not None and current[1] != entry.cond:
                    rejected.append((entry.seq, current[1]))
                else:
                    self._set(entry, _ABSENT, commit_seq)
            elif entry.op in self._MULTI:
                outcome = self._MULTI[entry.op](self, entry, commit_seq)
                if results is not None:
                    results[entry.seq] = outcome
            self.applied_seq = entry.seq
        self.set_commit(commit_seq)
        return rejected

    def _apply_delete_prefix(self, entry: Entry, commit_seq: int) -> tuple:
        deleted = self._delete_prefix(entry.key, entry.seq, commit_seq)
        return {"deleted": len(deleted)}, [(key, None) for key in deleted]

    def _delete_prefix(self, prefix: str, seq: int, commit_seq: int) -> list[str]:
        keys = []
        for key in self.keys.iter_from(prefix):
            if not key.startswith(prefix):
                break
            keys.append(key)
        for key in keys:
            self._change(seq, key, _ABSENT, commit_seq)
        return keys

    def _apply_txn(self, entry: Entry, commit_seq: int) -> tuple:
        seq, data, changes = entry.seq, self.data, []

        def put(key, value, lease=None):
            self._change(seq, key, (value, seq), commit_seq)
            if lease is not None:
                self.leases.attach(seq, key, lease, commit_seq)
            changes.append((key, value))

        def delete(key):
            if key not in data:
                return False
            self._change(seq, key, _ABSENT, commit_seq)
            changes.append((key, None))
            return True

        def delete_prefix(prefix):
            keys = self._delete_prefix(prefix, seq, commit_seq)
            changes.extend((key, None) for key in keys)
            return len(keys)

        return run_txn(decode_txn(entry.value), data.get, put, delete, delete_prefix,
                       self.leases.ttl_ms.__contains__), changes

    def _apply_lease_grant(self, entry: Entry, commit_seq: int) -> tuple:
        lease_id, ttl_ms = lease_id_of(entry.epoch, entry.seq), int(entry.value)
        self.leases.grant(entry.seq, lease_id, ttl_ms, commit_seq)
        return {"id": lease_id, "ttl_ms": ttl_ms}, []

    def _apply_lease_revoke(self, entry: Entry, commit_seq: int) -> tuple:
        lease_id = int(entry.key)
        leases = self.leases
        if lease_id not in leases.ttl_ms:
            return {"id": lease_id, "found": False, "deleted": 0}, []
        keys = sorted(leases.keys.get(lease_id, ()))
        for key in keys:
            self._change(entry.seq, key, _ABSENT, commit_seq)  # detaches it too
        leases.revoke(entry.seq, lease_id, commit_seq)
        return {"id": lease_id, "found": True, "deleted": len(keys)}, [(key, None) for key in keys]

    _MULTI = {OP_DELETE_PREFIX: _apply_delete_prefix, OP_TXN: _apply_txn,
              OP_LEASE_GRANT: _apply_lease_grant, OP_LEASE_REVOKE: _apply_lease_revoke}

    def _change(self, seq: int, key: str, new: tuple[str, int] | None, commit_seq: int) -> None:
        old = self.data.get(key)
        if seq > commit_seq:
            self._undo.append((seq, key, old))
        self._store(key, old, new)
        if key in self.leases.lease_of:  # any write detaches; a leased put re-attaches after
            self.leases.attach(seq, key, None, commit_seq)

    def _set(self, entry: Entry, new: tuple[str, int] | None, commit_seq: int) -> None:
        key = entry.key
        old = self.data.get(key)
        if entry.seq > commit_seq:
            self._undo.append((entry.seq, key, old))
        if key in self.leases.lease_of:  # a plain write of a leased key detaches it
            self.leases.attach(entry.seq, key, None, commit_seq)
        self._store(key, old, new)

    def _store(self, key: str, old, new) -> None:
        if new is None:
            del self.data[key]
            self.keys.remove(key)
        else:
            self.data[key] = new
            if old is None:
                self.keys.add(key)

    def set_commit(self, commit_seq: int) -> None:
        """Entries up to ``commit_seq`` can no longer be rolled back: drop their undo."""
        commit_seq = min(commit_seq, self.applied_seq)  # never claim more than is applied
        if commit_seq <= self.commit_seq:
            return
        self.commit_seq = commit_seq
        undo = self._undo
        while undo and undo[0][0] <= commit_seq:
            undo.popleft()
        if self.leases:
            self.leases.set_commit(commit_seq)

    def rollback(self, after_seq: int) -> None:
        """Undo every applied entry after ``after_seq`` (they lost a failover)."""
        assert after_seq >= self.commit_seq, (after_seq, self.commit_seq)
        undo = self._undo
        while undo and undo[-1][0] > after_seq:
            _, key, old = undo.pop()
            self._store(key, self.data.get(key), old)
        self.leases.rollback(after_seq)
        self.applied_seq = min(self.applied_seq, after_seq)

    # -- snapshots -----------------------------------------------------------------------------
    def snapshot_items(self) -> tuple[int, list[list]]:
        """``(commit_seq, items)``: the state as of the commit point, sorted by key (whole
        work on the calling thread: for tests and tools; nodes use :meth:`committed_view`)."""
        seq, data = self.committed_view()
        return seq, [[k, v, s] for k, (v, s) in sorted(data.items())]

    def committed_view(self) -> tuple[int, dict[str, tuple[str, int]]]:
        """``(commit_seq, data)``: a private dict of the state as of the commit point.

        Why it exists: a snapshot must be built from one consistent point while writes
        go on. This is the copy-on-write step, and it is cheap enough to run on the
        node's thread under the state lock: one ``dict.copy`` (C speed, no per-key Python
        code; values are immutable tuples shared with the live state) plus the undo list
        replayed backwards (only the uncommitted writes). The caller then owns ``data``:
        sorting and writing it can happen on another thread while the live state moves
        on. ``data`` maps key -> ``(value, seq of the write)``; when leases exist, the
        empty key (no real key is empty) holds the lease table (:mod:`dkvs.core.leases`),
        which :meth:`restore` takes back out.
        """
        data = self.data.copy()
        for _, key, old in reversed(self._undo):
            if old is None:
                data.pop(key, None)
            else:
                data[key] = old
        lease_item = self.leases.committed_item()
        if lease_item is not None:  # the lease table rides along as the empty key (sorts first)
            data[SNAPSHOT_KEY] = (lease_item[1], lease_item[2])
        return self.commit_seq, data

    def restore(self, seq: int, items) -> None:
        """Replace everything by a snapshot's ``[key, value, seq]`` items at ``seq`` (the
        lease table, when there is one, is the first item, with the empty key)."""
        lease_item = None
        if items and items[0][0] == SNAPSHOT_KEY:
            lease_item, items = items[0], items[1:]
        self.leases.restore(lease_item)
        self.data = {k: (v, s) for k, v, s in items}
        self.keys.update_sorted(sorted(self.data))
        self.applied_seq = self.commit_seq = seq
        self._undo.clear()
