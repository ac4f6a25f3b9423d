"""The safety properties the simulator checks after every step, and the final ones.

A *step* is one message delivery or one round of ticks. After each, :meth:`Invariants.check`
looks at every live node; anything wrong raises :class:`SimFailure` whose message starts
with the seed and the tick, so the run can be replayed.

Checked after every step:

* **One master per epoch**, over the whole run: ``(epoch -> master id)`` is recorded the
  first time any node is master in an epoch and may never change.
* **Entry identity**: two entries with the same ``(seq, epoch)`` are identical, on every
  node, at any time (checked on every ``Storage.append``, which every entry passes through).
* **Committed entries never change**: whenever a node's commit point passes a seq, its entry
  there must equal the one any node ever had committed at that seq.
* **Slaves are prefixes of the master**: a node holding an entry of the current master's
  epoch (so it follows that master) has a log that is a prefix of the master's log.
* **No acknowledged durable write is lost**: an ``acks=majority``/``all`` write is committed
  when it is acknowledged, and its ``(seq, epoch)`` is in the log of every node that becomes
  master afterwards.
* **Monotonic commit**: ``commit_seq`` never decreases on a node that did not crash and
  never passes its ``last_seq``; the key-value state has applied exactly the log.
* **Memory matches disk**: the persisted epoch and vote equal the node's, and the persisted
  log ends where the in-memory log ends (the whole log is compared at crashes and the end)
  — except on a node whose persist failed (``SimDisk.full``) until its retry succeeds.
* Each client request is answered at most once.
* **Persist before send** (the cluster installs :meth:`Invariants.on_send` as the
  network's send hook): a node never speaks in an epoch its disk does not hold, a real vote
  (asked for or granted) is on the voter's disk before the message leaves, and a slave
  confirms only entries its disk holds. One step of the simulator is atomic, so without
  this check a host that sent before persisting would look correct here and lose votes or
  entries in a real crash.

Checked at the end (:meth:`Invariants.check_final`), once the cluster converged: every
durable acknowledged write is in every log; every acknowledged ``acks=1`` write either
survived or is in the rollback record of the node that acknowledged it (nothing is
dropped silently; a node removed from the cluster keeps its unreplicated tail on its own
disk and is exempt); each node's state equals a fresh replay of its own storage.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from dkvs.core.messages import AppendReply, VoteReply, VoteRequest
from dkvs.core.node import CANDIDATE, MASTER
from dkvs.runtime.recovery import restore_node

__all__ = ["SimFailure", "Invariants"]


class SimFailure(AssertionError):
    """An invariant broke (or the core raised) during a simulated run."""


class Invariants:
    def __init__(self, where: Callable[[], str]) -> None:
        self.where = where
        self.masters_by_epoch: dict[int, str] = {}
        self.entries: dict[tuple[int, int], object] = {}  # (seq, epoch) -> Entry
        self.committed: dict[int, object] = {}  # seq -> Entry committed there
        self.durable_acks: list[tuple[int, int, int]] = []  # (seq, epoch, request_id)
        self.one_acks: list[tuple[str, int, int, int]] = []  # (node, seq, epoch, request_id)
        self.rolled_back: dict[str, set[tuple[int, int]]] = {}  # node -> {(seq, epoch)}
        self._last_commit: dict[str, int] = {}
        self._last_role: dict[str, str] = {}
        self._pending_acks: list = []
        self._answered: set[int] = set()
        self.elections = 0  # distinct (epoch, master) pairs seen
        self.campaigns: dict[int, set[str]] = {}  # epoch -> candidates that asked for real votes

    def fail(self, message: str) -> None:
        raise SimFailure(f"{self.where()}: {message}")

    # -- hooks called by the cluster ---------------------------------------------------------
    def on_persist(self, node_id: str, entries) -> None:
        registry = self.entries
        for entry in entries:
            key = (entry.seq, entry.epoch)
            known = registry.get(key)
            if known is None:
                registry[key] = entry
            elif known is not entry and known != entry:
                self.fail(f"two different entries at (seq, epoch) {key}: {known!r} and {entry!r} on {node_id}")

    def on_rollback(self, node_id: str, entries) -> None:
        self.rolled_back.setdefault(node_id, set()).update((e.seq, e.epoch) for e in entries)

    def on_reply(self, node_id: str, op) -> None:
        """A client request completed; durable acks are verified at the end of the step."""
        if op.request_id in self._answered:
            self.fail(f"request {op.request_id} answered twice (second time by {node_id})")
        self._answered.add(op.request_id)
        if op.error is None and op.kind in ("put", "delete", "member_add", "member_remove"):
            self._pending_acks.append(op)

    def on_send(self, sim, to: str, message) -> None:
        """A message leaves ``sim``: what it claims must already be on ``sim``'s disk."""
        disk = sim.storage
        if message.epoch > disk.epoch and not (isinstance(message, VoteRequest) and message.pre_vote):
            self.fail(f"{sim.id} sent {type(message).__name__} in epoch {message.epoch} "
                      f"but its disk holds epoch {disk.epoch}")
        if isinstance(message, VoteRequest) and not message.pre_vote:
            if (disk.epoch, disk.voted_for) != (message.epoch, sim.id):
                self.fail(f"{sim.id} asked for votes in epoch {message.epoch} before persisting its own "
                          f"(disk: epoch {disk.epoch} voting {disk.voted_for!r})")
        elif isinstance(message, VoteReply) and message.granted and not message.pre_vote:
            if (disk.epoch, disk.voted_for) != (message.epoch, to):
                self.fail(f"{sim.id} granted its epoch {message.epoch} vote to {to} before persisting it "
                          f"(disk: epoch {disk.epoch} voting {disk.voted_for!r})")
        elif isinstance(message, AppendReply) and message.success:
            disk_last = disk.entries[-1].seq if disk.entries else (disk.snapshot.seq if disk.snapshot else 0)
            if message.match_seq > disk_last:
                self.fail(f"{sim.id} confirmed entries up to {message.match_seq} to {to} but its disk "
                          f"ends at {disk_last}")

    def on_restart(self, node_id: str) -> None:
        """A crash may lose the in-memory commit point: start its monotonic check afresh."""
        self._last_commit.pop(node_id, None)
        self._last_role.pop(node_id, None)

    # -- every step -------------------------------------------------------------------------
    def check(self, sims) -> None:
        masters = []
        for sim in sims:
            self._check_node(sim)
            if sim.node.role == MASTER:
                masters.append(sim)
        for master in masters:
            epoch = master.node.epoch
            for sim in sims:
                if sim is not master and sim.node.log.last_epoch == epoch:
                    self._check_prefix(sim, master)
        if self._pending_acks:
            self._check_acks()

    def _check_node(self, sim) -> None:
        node, nid = sim.node, sim.id
        log = node.log
        role = node.role
        if role == MASTER:
            owner = self.masters_by_epoch.setdefault(node.epoch, nid)
            if owner != nid:
                self.fail(f"two masters in epoch {node.epoch}: {owner} and {nid}")
            if self._last_role.get(nid) != MASTER:
                self.elections += 1
                self._check_new_master(sim)
            if node.master_id != nid:
                self.fail(f"{nid} is master but believes {node.master_id} is")
        elif role == CANDIDATE and not node.pre_voting:
            self.campaigns.setdefault(node.epoch, set()).add(nid)
        self._last_role[nid] = role
        commit = node.commit_seq
        before = self._last_commit.get(nid, log.snapshot_seq)
        if commit < before:
            self.fail(f"commit_seq of {nid} went back from {before} to {commit}")
        if commit > log.last_seq or commit < log.snapshot_seq:
            self.fail(f"commit_seq {commit} of {nid} outside its log [{log.snapshot_seq}, {log.last_seq}]")
        if commit > before:
            self._check_committed(nid, log, before, commit)
        self._last_commit[nid] = commit
        if sim.runner is not None and sim.runner.backlog:
            return  # a persist failed (a full disk): memory runs ahead of disk until it is retried
        state = sim.state
        if state.applied_seq != log.last_seq:
            self.fail(f"{nid} applied up to {state.applied_seq} but its log ends at {log.last_seq}")
        if state.commit_seq > commit:
            self.fail(f"{nid}'s state claims commit {state.commit_seq} beyond the node's {commit}")
        disk = sim.storage
        if disk.epoch != node.epoch or disk.voted_for != node.voted_for:
            self.fail(f"{nid} is in epoch {node.epoch} voting {node.voted_for!r} but persisted "
                      f"epoch {disk.epoch} voting {disk.voted_for!r}")
        disk_last = disk.entries[-1].seq if disk.entries else (disk.snapshot.seq if disk.snapshot else 0)
        if disk_last != log.last_seq:
            self.fail(f"{nid}'s log ends at {log.last_seq} but its disk at {disk_last}")

    def _check_committed(self, nid: str, log, before: int, commit: int) -> None:
        committed = self.committed
        for seq in range(max(before, log.snapshot_seq) + 1, commit + 1):
            entry = log.get(seq)
            known = committed.get(seq)
            if known is None:
                committed[seq] = entry
            elif known is not entry and known != entry:
                self.fail(f"{nid} committed {entry!r} at seq {seq} where {known!r} was committed")

    def _check_prefix(self, sim, master) -> None:
        """``sim`` holds entries of ``master``'s epoch: its log must be a prefix of the master's."""
        slog, mlog = sim.node.log, master.node.log
        if slog.last_seq > mlog.last_seq:
            self.fail(f"{sim.id} (log to {slog.last_seq}) is ahead of its master {master.id} "
                      f"(log to {mlog.last_seq}) in epoch {master.node.epoch}")
        lo = max(slog.snapshot_seq, mlog.snapshot_seq)
        mine = slog.entries[lo - slog.snapshot_seq:]
        theirs = mlog.entries[lo - mlog.snapshot_seq: lo - mlog.snapshot_seq + len(mine)]
        if mine != theirs:
            first = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b)
            self.fail(f"{sim.id}'s log is not a prefix of master {master.id}'s: at seq {lo + first + 1} "
                      f"{mine[first]!r} != {theirs[first]!r}")

    def _check_new_master(self, sim) -> None:
        log = sim.node.log
        for seq, epoch, rid in self.durable_acks:
            if seq > log.snapshot_seq and log.epoch_at(seq) != epoch:
                self.fail(f"new master {sim.id} (epoch {sim.node.epoch}) lacks acknowledged durable "
                          f"write {rid} at (seq {seq}, epoch {epoch}); it has epoch {log.epoch_at(seq)} there")

    def _check_acks(self) -> None:
        for op in self._pending_acks:
            seq, epoch = op.result["seq"], op.result["epoch"]
            if op.acks == "1":
                self.one_acks.append((op.node, seq, epoch, op.request_id))
                continue
            known = self.committed.get(seq)
            if known is None or known.epoch != epoch:
                self.fail(f"request {op.request_id} acknowledged with acks={op.acks} at (seq {seq}, epoch "
                          f"{epoch}) but the committed entry there is {known!r}")
            self.durable_acks.append((seq, epoch, op.request_id))
        self._pending_acks = []

    def split_votes(self) -> list[int]:
        """Epochs in which two or more candidates asked for votes and nobody won."""
        return sorted(e for e, who in self.campaigns.items() if len(who) > 1 and e not in self.masters_by_epoch)

    # -- at the end --------------------------------------------------------------------------
    def check_final(self, sims, config) -> None:
        """After convergence: acknowledged writes survived (or were reported), state = replay."""
        for sim in sims:
            self.check_disk(sim)
            log = sim.node.log
            for seq, epoch, rid in self.durable_acks:
                if seq > log.snapshot_seq and log.epoch_at(seq) != epoch:
                    self.fail(f"acknowledged durable write {rid} (seq {seq}, epoch {epoch}) missing on {sim.id}")
            _, fresh = restore_node(sim.id, sim.storage, config, random.Random(0))
            if fresh.data != sim.state.data:
                diff = sorted(set(fresh.data.items()) ^ set(sim.state.data.items()))[:6]
                self.fail(f"{sim.id}'s state differs from a replay of its own storage: {diff}")
        final = sims[0].node.log
        members = {sim.id for sim in sims}
        for nid, seq, epoch, rid in self.one_acks:
            if nid not in members:
                continue  # acknowledged by a node since removed: its tail stays on its own disk
            if seq > final.snapshot_seq and final.epoch_at(seq) == epoch:
                continue
            known = self.committed.get(seq)
            if seq <= final.snapshot_seq and known is not None and known.epoch == epoch:
                continue
            if (seq, epoch) not in self.rolled_back.get(nid, ()):
                self.fail(f"acks=1 write {rid} (seq {seq}, epoch {epoch}) acknowledged by {nid} vanished "
                          f"without a rollback record")

    def check_disk(self, sim) -> None:
        """The durable log and snapshot point equal the in-memory ones."""
        node, disk = sim.node, sim.storage
        snap_seq = disk.snapshot.seq if disk.snapshot else 0
        if snap_seq != node.log.snapshot_seq:
            self.fail(f"{sim.id}'s snapshot is at {node.log.snapshot_seq} in memory, {snap_seq} on disk")
        if disk.entries != node.log.entries:
            self.fail(f"{sim.id}'s log in memory differs from its log on disk")
