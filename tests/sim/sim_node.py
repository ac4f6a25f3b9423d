"""One simulated member's process and its disk, and a client request with its outcome.

:class:`SimNode` holds what a production process holds (driver, executor, transport,
worker — gone while crashed) and its :class:`SimDisk`, a memory storage that survives
crashes and reports every write to the invariants. :class:`ClientOp` is one client
request as the cluster sends it and, once answered, what the client was told.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from dkvs.core.kvstate import KVState
from dkvs.core.node import Node
from dkvs.driver import NodeDriver
from dkvs.runtime.executor import Executor
from dkvs.storage.memory import MemoryStorage

from .invariants import Invariants
from .node_io import SimFeed, SimTransport, SimWork

__all__ = ["SimDisk", "ClientOp", "SimNode"]


class SimDisk(MemoryStorage):
    """Memory storage that reports what is written to it (and survives crashes). While
    ``full`` is set every append fails as a full disk does (``ENOSPC``): a master's batch
    then is on the wire (its sends leave before its persist) but not on its disk."""

    def __init__(self, node_id: str, invariants: Invariants) -> None:
        super().__init__()
        self._id = node_id
        self._inv = invariants
        self.rollbacks: list[list] = []
        self.full = False

    def append(self, entries) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        self._inv.on_persist(self._id, entries)
        super().append(entries)

    def save_rollback(self, entries) -> str:
        self.rollbacks.append(list(entries))
        self._inv.on_rollback(self._id, entries)
        return f"rollback #{len(self.rollbacks)} of {self._id}"


@dataclass
class ClientOp:
    """One client request and, once answered, its outcome."""

    request_id: int
    kind: str  # put, delete, read, member_add, member_remove
    key: str
    value: str | None
    acks: str
    node: str | None  # where it was proposed (None: no master to send it to)
    invoked: int
    completed: int | None = None
    result: dict | None = None
    error: str | None = None
    read_value: tuple | None = None  # reads: (value, seq) found on the master, or None
    rejected: int | None = None  # the driver's verdict: applied but changed nothing
    status: int | None = None  # the HTTP status the service layer answers with
    answer: dict | None = None  # and its JSON body
    cond: int | None = None  # compare-and-set: the key's expected seq (0: absent)
    invoke_order: int = 0  # position in the run's total order of client events
    complete_order: int = 0

    @property
    def done(self) -> bool:
        return self.completed is not None

    @property
    def ok(self) -> bool:
        return self.done and self.error is None


class SimNode:
    """One member's process: driver, executor, transport and worker (gone while crashed),
    and its disk."""

    def __init__(self, node_id: str, disk: SimDisk, rate: float) -> None:
        self.id = node_id
        self.url = f"http://{node_id}.sim:7070"
        self.storage = disk
        self.rate = rate
        self.acc = 0.0
        self.driver: NodeDriver | None = None
        self.runner: Executor | None = None
        self.transport: SimTransport | None = None
        self.work: SimWork | None = None
        self.feed: SimFeed | None = None
        self.restarts = 0
        self.paused_until = 0  # a scheduling pause: no input runs before this tick

    @property
    def node(self) -> Node | None:
        return self.driver.node if self.driver is not None else None

    @property
    def state(self) -> KVState | None:
        return self.driver.state if self.driver is not None else None

    @property
    def alive(self) -> bool:
        return self.node is not None

    def __repr__(self) -> str:
        if self.node is None:
            return f"<{self.id} crashed>"
        n = self.node
        return (f"<{self.id} {n.role} epoch={n.epoch} last=({n.log.last_epoch},{n.log.last_seq}) "
                f"commit={n.commit_seq} master={n.master_id} voted={n.voted_for} members={','.join(n.members)}>")
