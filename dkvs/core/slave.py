"""Slave behaviour: accept only batches that continue the log, repair divergence.

Rules:

* A batch is accepted only if the slave holds ``(prev_epoch, prev_seq)``; entries the
  slave already has with the same epoch are skipped (duplicates and reordered batches are
  harmless), the first entry with a different epoch truncates the log there.
* Truncation never touches committed entries (asserted). Truncated entries were applied
  (slaves apply on append so that reads see fresh data); the host rolls them back and
  keeps them in a rollback file: nothing is dropped silently.
* A refusal carries a hint for the fork-point search: the first seq of the slave's
  conflicting epoch, or its end when it is simply behind.
* A snapshot replaces everything unless the slave already holds its last entry.
* Entries at or below the slave's own snapshot are committed, hence equal to the
  master's: they are skipped without checking.
"""

from __future__ import annotations

from .effects import Apply, Effect, InstallSnapshot, PersistTruncate, Rollback, Send
from .messages import Append, AppendReply, Snapshot

__all__ = ["SlaveMixin"]


class SlaveMixin:
    """The slave half of :class:`dkvs.core.node.Node`."""

    def handle_append(self, msg: Append, out: list[Effect]) -> None:
        if self.role == "master":
            return  # same epoch, other master: impossible by election; never obey it
        self.heard_from_master(msg.sender, out)
        if msg.view:
            self.view = msg.view
        log = self.log
        prev, entries = msg.prev_seq, msg.entries
        if prev < log.snapshot_seq:
            skip = log.snapshot_seq - prev
            prev, entries = log.snapshot_seq, entries[skip:]
        elif log.epoch_at(prev) != msg.prev_epoch:
            out.append(Send(msg.sender, self._refusal(msg)))
            return
        fresh = self._merge(entries, out)
        match = msg.prev_seq + len(msg.entries)
        old_commit = self.commit_seq
        self.commit_seq = max(self.commit_seq, min(msg.commit_seq, match))
        if fresh:
            self._emit_appended(fresh, out)
        elif self.commit_seq != old_commit:
            out.append(Apply((), self.commit_seq))
        out.append(Send(msg.sender, AppendReply(self.epoch, self.id, True, match, round=msg.round,
                                                last_seq=log.last_seq)))

    def _merge(self, entries, out: list[Effect]) -> tuple:
        """Skip entries already held, truncate at the first conflict, append the rest."""
        log = self.log
        for i, entry in enumerate(entries):
            held = log.epoch_at(entry.seq)
            if held is None:
                return tuple(self._append_to_log(entries[i:]))
            if held != entry.epoch:
                self._truncate(entry.seq - 1, out)
                return tuple(self._append_to_log(entries[i:]))
        return ()

    def _truncate(self, after_seq: int, out: list[Effect]) -> None:
        assert after_seq >= self.commit_seq, f"would truncate committed entries ({after_seq} < {self.commit_seq})"
        dropped = self.log.truncate_after(after_seq)
        out.append(PersistTruncate(after_seq))
        out.append(Rollback(after_seq, tuple(dropped)))
        self._recompute_members()

    def _refusal(self, msg: Append) -> AppendReply:
        log = self.log
        if msg.prev_seq > log.last_seq:
            hint_epoch, hint_seq = 0, log.last_seq + 1
        else:
            hint_epoch = log.epoch_at(msg.prev_seq) or 0
            hint_seq = log.first_seq_of_epoch(hint_epoch) or msg.prev_seq
        return AppendReply(self.epoch, self.id, False, msg.prev_seq, hint_seq, hint_epoch,
                           round=msg.round, last_seq=log.last_seq)

    def handle_snapshot(self, msg: Snapshot, out: list[Effect]) -> None:
        if self.role == "master":
            return
        self.heard_from_master(msg.sender, out)
        log = self.log
        if msg.seq <= self.commit_seq or log.epoch_at(msg.seq) == msg.snap_epoch:
            # Already hold its last entry, hence everything before it: nothing to install.
            self.commit_seq = max(self.commit_seq, msg.seq)
            out.append(Apply((), self.commit_seq))
        else:
            old_commit = self.commit_seq
            dropped = tuple(e for e in log.entries if e.seq > old_commit)
            log.reset(msg.seq, msg.snap_epoch)
            self._base_members = tuple(msg.members)
            self.commit_seq = msg.seq
            if dropped:
                # Uncommitted entries the snapshot does not vouch for: keep them in a
                # rollback file, then clear them from storage before installing.
                out.append(PersistTruncate(old_commit))
                out.append(Rollback(old_commit, dropped))
            out.append(InstallSnapshot(msg))
            self._recompute_members()
        out.append(Send(msg.sender, AppendReply(self.epoch, self.id, True, msg.seq, round=0,
                                                last_seq=log.last_seq)))
