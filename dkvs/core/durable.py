"""The master's own copy in a quorum: only what its disk holds counts.

A master's batch of entries leaves before its own fsync (Raft thesis §10.2.1, what etcd's
leader does; the order is the executor's, :mod:`dkvs.runtime.executor`), so its in-memory
log may hold entries no disk of its holds yet. The commit point, ``acks=all`` and the
read index therefore count this node only up to ``durable_seq``, which the host reports
after each successful persist; an entry whose master fsync failed commits only through a
majority of *other* durable copies. A host that persists before anything leaves (the
core tests drive the node that way) never sets ``durable_reported``: its log is its disk.
"""

from __future__ import annotations

from .effects import Effect
from .election import MASTER

__all__ = ["DurableCopyMixin"]


class DurableCopyMixin:
    """``durable_seq`` bookkeeping of :class:`dkvs.core.node.Node` (fields set in its
    ``__init__``; the commit rules that read it are in :mod:`dkvs.core.master`)."""

    def _own_durable_seq(self) -> int:
        """How far this master's own copy counts in a quorum: what its disk holds. Its
        batch leaves before its own fsync (Raft thesis §10.2.1), so its in-memory log may
        hold what no disk of its does. Without ``durable_reported`` (a host that persists
        before anything leaves, as the core tests drive it) the log is the disk."""
        if not self.durable_reported:
            return self.log.last_seq
        return min(self.durable_seq, self.log.last_seq)

    def persisted(self, seq: int) -> list[Effect]:
        """The host's storage holds this node's log up to ``seq`` (everything it was handed
        so far: so this also moves back after a truncation). On a master the commit point
        may move now: slaves' answers that arrived before the fsync ended count at last."""
        seq = min(seq, self.log.last_seq)
        out: list[Effect] = []
        if seq == self.durable_seq:
            return out
        self.durable_seq = seq
        if self.role == MASTER:
            self._maybe_commit(out)
            self._release_writes(out)
            self._release_reads(out)
        return out
