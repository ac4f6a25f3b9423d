"""The replicated log: entries ordered by ``seq``, with the epoch each was written in.

Invariants this module keeps (and asserts):

* ``seq`` of consecutive entries increases by exactly one; the first retained entry
  follows the snapshot point (``snapshot_seq + 1``).
* Epochs never decrease along the log. ``epoch_starts`` records where each epoch begins,
  which is the *epoch history* a master uses to find the fork point of a diverged slave.
* Entries at or below the snapshot point are gone; only their last ``(epoch, seq)`` is kept,
  so that a batch continuing the snapshot can still be checked.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

__all__ = ["Entry", "Log", "OP_PUT", "OP_DELETE", "OP_NOOP", "OP_MEMBER_ADD", "OP_MEMBER_REMOVE",
           "OP_LEARNER_ADD", "OP_REPLICA_ADD", "OP_MEMBER_PROMOTE", "MEMBERSHIP_OPS",
           "OP_DELETE_PREFIX", "OP_TXN", "OP_LEASE_GRANT", "OP_LEASE_REVOKE", "DATA_OPS", "MULTI_KEY_OPS"]

OP_PUT = "put"
OP_DELETE = "delete"
OP_DELETE_PREFIX = "delete_prefix"  # key = the prefix ("" = every key); one entry, atomic everywhere
OP_TXN = "txn"  # value = the transaction as compact JSON (dkvs.core.txn), decided at apply time
OP_LEASE_GRANT = "lease_grant"  # value = ttl in ms; the lease id is epoch << 32 | seq (dkvs.core.leases)
OP_LEASE_REVOKE = "lease_revoke"  # key = lease id: deletes its keys (an expiry is one of these)
OP_NOOP = "noop"  # written by each new master: it opens the epoch and lets the commit point move
OP_MEMBER_ADD = "member_add"  # key = node id, value = its URL
OP_MEMBER_REMOVE = "member_remove"  # key = node id
# Learners (dkvs.core.membership): replicated to, counted in no quorum.
OP_LEARNER_ADD = "learner_add"  # key = node id, value = its URL; promoted by the master once caught up
OP_REPLICA_ADD = "replica_add"  # key = node id, value = its URL; stays a learner (read replica, backup)
OP_MEMBER_PROMOTE = "member_promote"  # key = node id: the learner becomes a voter

DATA_OPS = frozenset({OP_PUT, OP_DELETE, OP_DELETE_PREFIX, OP_TXN, OP_LEASE_GRANT, OP_LEASE_REVOKE})
MULTI_KEY_OPS = frozenset({OP_DELETE_PREFIX, OP_TXN, OP_LEASE_GRANT, OP_LEASE_REVOKE})  # may change many keys; have an apply result
MEMBERSHIP_OPS = frozenset({OP_MEMBER_ADD, OP_MEMBER_REMOVE, OP_LEARNER_ADD, OP_REPLICA_ADD, OP_MEMBER_PROMOTE})


@dataclass(frozen=True, slots=True)
class Entry:
    """One log record. ``value`` is ``None`` for deletes and no-ops.

    A put or delete with ``cond`` is conditional (compare-and-set): every node evaluates
    the condition when it applies the entry, against the same state, so all reach the same
    verdict. Values are ``str``; a binary value is held in its surrogate-escaped text form
    (:mod:`dkvs.core.values`), which every encoding of entries carries unchanged.
    """

    epoch: int
    seq: int
    op: str
    key: str = ""
    value: str | None = None
    cond: int | None = None  # put/delete: apply only if the key's current seq is this (0: absent)

    def size(self) -> int:
        """Approximate encoded size in bytes, used to bound batches."""
        return 24 + len(self.key) + (len(self.value) if self.value is not None else 0)


class Log:
    """The retained suffix of the log, in memory. Storage keeps the durable copy."""

    def __init__(self, snapshot_seq: int = 0, snapshot_epoch: int = 0) -> None:
        self.entries: list[Entry] = []
        self.snapshot_seq = snapshot_seq
        self.snapshot_epoch = snapshot_epoch
        # Parallel sorted lists: epoch_starts_seq[i] is the first retained seq of epoch_starts_epoch[i].
        self._starts_seq: list[int] = []
        self._starts_epoch: list[int] = []

    # -- positions -------------------------------------------------------------------------
    @property
    def first_seq(self) -> int:
        """The seq of the first retained entry (``last_seq + 1`` when empty)."""
        return self.snapshot_seq + 1

    @property
    def last_seq(self) -> int:
        return self.snapshot_seq + len(self.entries)

    @property
    def last_epoch(self) -> int:
        return self.entries[-1].epoch if self.entries else self.snapshot_epoch

    def epoch_at(self, seq: int) -> int | None:
        """The epoch of the entry at ``seq``; ``None`` when past the end or compacted away."""
        if seq == self.snapshot_seq:
            return self.snapshot_epoch
        if seq < self.snapshot_seq or seq > self.last_seq:
            return None
        return self.entries[seq - self.snapshot_seq - 1].epoch

    def get(self, seq: int) -> Entry:
        return self.entries[seq - self.snapshot_seq - 1]

    def first_seq_of_epoch(self, epoch: int) -> int | None:
        """The first retained seq written in ``epoch`` (``None`` if no retained entry has it)."""
        i = bisect.bisect_left(self._starts_epoch, epoch)
        if i < len(self._starts_epoch) and self._starts_epoch[i] == epoch:
            return self._starts_seq[i]
        return None

    def last_seq_of_epoch(self, epoch: int) -> int | None:
        """The last seq written in ``epoch``, or ``None`` if this log holds none of it.

        This is the master's half of the fork-point search: entries of one epoch come
        from one master, so two logs that both hold entries of ``epoch`` agree on them
        up to the shorter run (the log matching property).
        """
        i = bisect.bisect_left(self._starts_epoch, epoch)
        if i < len(self._starts_epoch) and self._starts_epoch[i] == epoch:
            if i + 1 < len(self._starts_seq):
                return self._starts_seq[i + 1] - 1
            return self.last_seq
        if epoch == self.snapshot_epoch and self.snapshot_seq > 0:
            return self.snapshot_seq
        return None

    # -- reading ---------------------------------------------------------------------------
    def slice(self, start: int, max_count: int, max_bytes: int) -> list[Entry]:
        """Up to ``max_count`` entries from ``start`` on, stopping before ``max_bytes``
        (at least one entry is returned when any exists)."""
        if start <= self.snapshot_seq:
            raise ValueError(f"seq {start} is compacted (snapshot at {self.snapshot_seq})")
        lo = start - self.snapshot_seq - 1
        out = self.entries[lo : lo + max_count]
        total = 0
        for i, entry in enumerate(out):
            total += entry.size()
            if total > max_bytes and i > 0:
                return out[:i]
        return out

    # -- changing --------------------------------------------------------------------------
    def append(self, entry: Entry) -> None:
        assert entry.seq == self.last_seq + 1, (entry.seq, self.last_seq)
        assert entry.epoch >= self.last_epoch, (entry.epoch, self.last_epoch)
        if not self._starts_epoch or entry.epoch != self._starts_epoch[-1]:
            self._starts_epoch.append(entry.epoch)
            self._starts_seq.append(entry.seq)
        self.entries.append(entry)

    def truncate_after(self, seq: int) -> list[Entry]:
        """Drop every entry after ``seq`` and return them (for the rollback file)."""
        assert seq >= self.snapshot_seq, "cannot truncate into the snapshot"
        keep = seq - self.snapshot_seq
        dropped = self.entries[keep:]
        del self.entries[keep:]
        while self._starts_seq and self._starts_seq[-1] > seq:
            self._starts_seq.pop()
            self._starts_epoch.pop()
        return dropped

    def compact(self, upto_seq: int) -> None:
        """Forget entries up to ``upto_seq`` inclusive; a snapshot now stands for them."""
        if upto_seq <= self.snapshot_seq:
            return
        assert upto_seq <= self.last_seq
        epoch = self.epoch_at(upto_seq)
        assert epoch is not None
        del self.entries[: upto_seq - self.snapshot_seq]
        self.snapshot_seq, self.snapshot_epoch = upto_seq, epoch
        self._reindex()

    def reset(self, snapshot_seq: int, snapshot_epoch: int) -> list[Entry]:
        """Replace everything by a snapshot point (installing a snapshot). Returns dropped entries."""
        dropped = self.entries
        self.entries = []
        self.snapshot_seq, self.snapshot_epoch = snapshot_seq, snapshot_epoch
        self._reindex()
        return dropped

    def _reindex(self) -> None:
        self._starts_seq, self._starts_epoch = [], []
        for entry in self.entries:
            if not self._starts_epoch or entry.epoch != self._starts_epoch[-1]:
                self._starts_epoch.append(entry.epoch)
                self._starts_seq.append(entry.seq)
