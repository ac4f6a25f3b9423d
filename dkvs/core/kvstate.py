"""The key-value state machine: the log applied in order, with undo for uncommitted entries.

Nodes apply entries as soon as they are appended (so reads on slaves are fresh and an
``acks=1`` write is visible at once), before a majority holds them. Such entries can
still lose a failover; for each one the state keeps an undo record (the key's previous
value) until the commit point passes it. A rollback replays the undo records backwards.

Invariants: ``commit_seq <= applied_seq``; undo records exist exactly for applied
entries above ``commit_seq`` that changed a key; a snapshot is always taken at
``commit_seq`` (undo records make that possible while newer entries are applied), so a
snapshot never contains a write that can be rolled back.

Representation: one ``bytes`` record per key (key, seq and value) in a sorted
:class:`~.recordtable.RecordTable` — no dict, no tuple, no ``str`` per key, ~400 bytes of
memory per key at 64 B keys and 256 B values instead of ~590 (see that module for the
layout and the price: a lookup is two ``bisect`` calls, ~1 µs). The answers are unchanged:
``get`` gives ``(value, seq)``, ``items`` ``(key, value, seq)`` rows, ``data`` reads as a
``key -> (value, seq)`` mapping. Snapshot files hold the same records, so a snapshot is
written by joining them and restored by adopting them (:meth:`restore`).

Pure data structure; the host serialises access (the runtime wraps it in a lock).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from .leases import SNAPSHOT_KEY, LeaseTable, lease_id_of
from .log import OP_DELETE, OP_DELETE_PREFIX, OP_LEASE_GRANT, OP_LEASE_REVOKE, OP_PUT, OP_TXN, Entry
from .recordtable import RecordTable, pack, pack_with_probe, prefix_bytes, probe, record_key, unpack, unpack_value
from .txn import decode_txn, run_txn

__all__ = ["KVState", "StateView"]

_ABSENT = None


class StateView(dict):
    """A read-only ``key -> (value, seq)`` mapping over a :class:`RecordTable`.

    Why a ``dict`` subclass whose own dict storage stays empty: callers of
    :meth:`KVState.committed_view` (the driver, the inline snapshot executor, tests) were
    written for a plain dict of tuples and test ``isinstance(view, dict)``. Every read
    method is overridden to decode records from the table, so the view behaves like that
    dict while holding no object per key; the snapshot writer reads :attr:`table` directly.
    Iteration is in key order.
    """

    def __init__(self, table: RecordTable) -> None:
        super().__init__()
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __iter__(self) -> Iterator[str]:
        return (record_key(r) for r in self.table.iter_from(b""))

    def __contains__(self, key) -> bool:
        return isinstance(key, str) and self.table.get(key) is not None

    def __getitem__(self, key: str) -> tuple[str, int]:
        record = self.table.get(key) if isinstance(key, str) else None
        if record is None:
            raise KeyError(key)
        return unpack_value(record)

    def get(self, key, default=None):
        record = self.table.get(key) if isinstance(key, str) else None
        return default if record is None else unpack_value(record)

    def keys(self):
        return list(self)

    def values(self):
        return [unpack_value(r) for r in self.table.iter_from(b"")]

    def items(self):
        return [(k, (v, s)) for k, v, s in map(unpack, self.table.iter_from(b""))]

    def __eq__(self, other) -> bool:
        if not isinstance(other, dict):
            return NotImplemented
        return len(self) == len(other) and dict(self.items()) == dict(other.items())

    def __ne__(self, other) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None

    def __repr__(self) -> str:
        return f"StateView({dict(self.items())!r})"

    def _readonly(self, *args, **kwargs):
        raise TypeError("a state view is read-only")

    __setitem__ = __delitem__ = pop = popitem = clear = update = setdefault = _readonly


class _KeyIndex:
    """The sorted keys (what ``KVState.keys`` used to be): for tests and tools."""

    def __init__(self, table: RecordTable) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def iter_from(self, start: str, inclusive: bool = True) -> Iterator[str]:
        skip = None if inclusive else probe(start)
        return (record_key(r) for r in self.table.iter_from(probe(start), skip))


class KVState:
    """The applied state. ``table`` holds one record per key (:mod:`.recordtable`);
    ``data`` is a read-only ``key -> (value, seq)`` view of it."""

    def __init__(self) -> None:
        self.table = RecordTable()
        self.applied_seq = 0
        self.commit_seq = 0
        self._undo: deque[tuple[int, str, bytes | None]] = deque()  # (seq, key, old record)
        self.leases = LeaseTable()

    def __len__(self) -> int:
        return len(self.table)

    @property
    def data(self) -> StateView:
        return StateView(self.table)

    @property
    def keys(self) -> _KeyIndex:
        return _KeyIndex(self.table)

    # -- reading -------------------------------------------------------------------------------
    def get(self, key: str) -> tuple[str, int] | None:
        record = self.table.get(key)
        return None if record is None else unpack_value(record)

    def get_committed(self, key: str) -> tuple[str, int] | None:
        """The key as of ``commit_seq``, ignoring applied entries that may still roll back.

        This is what a consistent (linearizable) read must return: the master applies
        writes on append, so its ``data`` may hold a write proposed after the read arrived
        that later loses a failover. The oldest undo record of the key holds its value
        before the first uncommitted change.
        """
        for _, undo_key, old in self._undo:
            if undo_key == key:
                return None if old is None else unpack_value(old)
        return self.get(key)

    def items(self, prefix: str, after: str | None, limit: int) -> tuple[list[tuple[str, str, int]], str | None]:
        """Up to ``limit`` items with ``prefix``, strictly after ``after``; and the key to
        continue from (``None`` when the listing is complete)."""
        head = prefix_bytes(prefix)
        if after is not None and after >= prefix:
            after_probe = probe(after)
            records = self.table.iter_from(after_probe, after_probe)
        else:
            records = self.table.iter_from(head)
        out = []
        for record in records:
            if not record.startswith(head):
                return out, None
            if len(out) == limit:
                return out, out[-1][0]
            out.append(unpack(record))
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
        get = self.get
        for entry in entries:
            if entry.seq <= self.applied_seq:
                continue  # already applied (replayed after a restart)
            if entry.op == OP_PUT:
                if entry.cond is not None:
                    current = get(entry.key)
                    current_seq = current[1] if current is not None else 0
                    if current_seq != entry.cond:
                        rejected.append((entry.seq, current_seq))
                        self.applied_seq = entry.seq
                        continue
                self._set(entry, *pack_with_probe(entry.key, entry.value, entry.seq), commit_seq)
            elif entry.op == OP_DELETE:
                current = get(entry.key)
                if current is None:
                    rejected.append((entry.seq, 0))
                elif entry.cond is not None and current[1] != entry.cond:
                    rejected.append((entry.seq, current[1]))
                else:
                    self._set(entry, None, _ABSENT, commit_seq)
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
        head = prefix_bytes(prefix)
        keys = []
        for record in self.table.iter_from(head):
            if not record.startswith(head):
                break
            keys.append(record_key(record))
        for key in keys:
            self._change(seq, key, _ABSENT, commit_seq)
        return keys

    def _apply_txn(self, entry: Entry, commit_seq: int) -> tuple:
        seq, table, changes = entry.seq, self.table, []

        def put(key, value, lease=None):
            self._change(seq, key, pack(key, value, seq), commit_seq)
            if lease is not None:
                self.leases.attach(seq, key, lease, commit_seq)
            changes.append((key, value))

        def delete(key):
            if table.get(key) is None:
                return False
            self._change(seq, key, _ABSENT, commit_seq)
            changes.append((key, None))
            return True

        def delete_prefix(prefix):
            keys = self._delete_prefix(prefix, seq, commit_seq)
            changes.extend((key, None) for key in keys)
            return len(keys)

        return run_txn(decode_txn(entry.value), self.get, put, delete, delete_prefix,
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

    def _change(self, seq: int, key: str, new: bytes | None, commit_seq: int) -> None:
        old = self.table.pop(key) if new is None else self.table.set(key, new)
        if seq > commit_seq:
            self._undo.append((seq, key, old))
        if key in self.leases.lease_of:  # any write detaches; a leased put re-attaches after
            self.leases.attach(seq, key, None, commit_seq)

    def _set(self, entry: Entry, head: bytes | None, new: bytes | None, commit_seq: int) -> None:
        """Apply a plain put (``head`` is the key's probe) or delete (``new`` is None)."""
        key = entry.key
        old = self.table.pop(key) if new is None else self.table.put(head, new)
        if entry.seq > commit_seq:
            self._undo.append((entry.seq, key, old))
        if key in self.leases.lease_of:  # a plain write of a leased key detaches it
            self.leases.attach(entry.seq, key, None, commit_seq)

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
            self.table.restore(key, old)
        self.leases.rollback(after_seq)
        self.applied_seq = min(self.applied_seq, after_seq)

    # -- snapshots -----------------------------------------------------------------------------
    def snapshot_items(self) -> tuple[int, list[list]]:
        """``(commit_seq, items)``: the state as of the commit point, sorted by key, as
        ``[key, value, seq]`` lists (whole work on the calling thread: for tests and tools;
        nodes use :meth:`committed_view`)."""
        seq, view = self.committed_view()
        return seq, [list(unpack(r)) for r in view.table.iter_from(b"")]

    def committed_view(self) -> tuple[int, StateView]:
        """``(commit_seq, view)``: a private copy of the state as of the commit point.

        Why it exists: a snapshot must be built from one consistent point while writes
        go on. This is the copy-on-write step, and it is cheap enough to run on the
        node's thread under the state lock: one list copy per chunk of records (C speed,
        no per-key Python code; records are immutable ``bytes`` shared with the live
        state) plus the undo list replayed backwards (only the uncommitted writes). The
        caller then owns the copy: encoding and writing it can happen on another thread
        while the live state moves on. The view reads as ``key -> (value, seq of the
        write)``; its ``table`` is what the snapshot writer encodes. When leases exist, the
        empty key (no real key is empty, and it sorts first) holds the lease table
        (:mod:`dkvs.core.leases`), which :meth:`restore` takes back out.
        """
        table = self.table.copy()
        for _, key, old in reversed(self._undo):
            table.restore(key, old)
        lease_item = self.leases.committed_item()
        if lease_item is not None:
            table.set(SNAPSHOT_KEY, pack(SNAPSHOT_KEY, lease_item[1], lease_item[2]))
        return self.commit_seq, StateView(table)

    def restore(self, seq: int, items) -> None:
        """Replace everything by a snapshot's items at ``seq``: ``[key, value, seq]`` items
        sorted by key, or record blocks (anything with a ``record_blocks()`` method, as
        snapshot files load: adopted without a Python object per key). When there is a
        lease table it is the first item, with the empty key."""
        if hasattr(items, "record_blocks"):
            table = RecordTable.from_sorted_blocks(items.record_blocks())
        else:
            table = RecordTable.from_sorted_blocks([sorted(pack(k, v, s) for k, v, s in items)])
        lease_record = table.pop(SNAPSHOT_KEY)
        self.leases.restore(None if lease_record is None else list(unpack(lease_record)))
        self.table = table
        self.applied_seq = self.commit_seq = seq
        self._undo.clear()
