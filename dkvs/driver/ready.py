"""What the driver hands its host: one :class:`Ready` batch per round, as plain data.

A host executes a batch in a fixed order (etcd-raft's ``Ready``/``Advance`` contract):

1. ``peers`` — the transport's peer table, when membership changed (before any send, so a
   message to a brand-new member is never dropped for want of its address);
2. ``persist`` — the core's persist effects, in order (group commit: consecutive entry
   appends may share one storage call and one fsync);
3. ``sends`` and ``responses`` — messages to peers, and the answers to a message that came
   in an HTTP request (they travel back in its response);
4. ``apply`` — handed back to :meth:`NodeDriver.apply` under the state lock, which applies
   entries to the key-value state and returns the client replies with their verdicts;
5. ``work`` — long-running jobs for worker threads (build or stream a snapshot) and cheap
   storage housekeeping (drop the log a durable snapshot covers); their completions come
   back to the driver as inputs;
6. ``notes`` — what an operator should read in the log (role changes, elections, rollbacks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Ready",
    "OutgoingMessage",
    "ClientReply",
    "BuildSnapshot",
    "StreamSnapshot",
    "CompactStorage",
    "Note",
    "INFO",
    "WARNING",
]

INFO, WARNING = "info", "warning"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """Send ``message`` to ``to``; ``send_id`` names this request in the per-peer in-flight
    table, so a late answer to an abandoned request is recognised and dropped."""

    send_id: int
    to: str
    message: object


@dataclass(frozen=True, slots=True)
class ClientReply:
    """The answer to client request ``request_id``. ``rejected`` is set when the write was
    applied but changed nothing (a delete of an absent key, a failed compare-and-set): the
    key's current seq (0 = absent). It is bound to the request's own log entry, never to a
    seq number that a rollback may hand to another write."""

    request_id: int
    result: dict | None
    error: str | None
    rejected: int | None = None


@dataclass(frozen=True, slots=True)
class BuildSnapshot:
    """Write a snapshot of the committed state off the node thread. The host takes the view
    with :meth:`NodeDriver.snapshot_view` (cheap, consistent) and reports back with
    :meth:`NodeDriver.snapshot_built`."""


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """Stream the stored snapshot to ``to`` in bounded chunks, off the node thread; report
    with :meth:`NodeDriver.snapshot_streamed`."""

    to: str


@dataclass(frozen=True, slots=True)
class CompactStorage:
    """A durable snapshot covers everything up to ``seq``: storage may drop that log."""

    seq: int


@dataclass(frozen=True, slots=True)
class Note:
    """Something an operator should know, as one log line (``text``, which starts with the
    node id and ``epoch=N``) and as data for the event feed: ``kind`` names what happened
    (``elected``, ``stepped_down``, ``member_added``, ``quorum_lost``, ``snapshot_sent``…),
    ``details`` carries its particulars (reason, peer, seq…). ``level`` is ``INFO`` or
    ``WARNING``."""

    level: str
    kind: str
    text: str
    node_id: str = ""
    epoch: int = 0
    details: dict = field(default_factory=dict)


@dataclass(slots=True)
class Ready:
    peers: dict[str, str] | None = None
    persist: list = field(default_factory=list)
    sends: list[OutgoingMessage] = field(default_factory=list)
    responses: dict = field(default_factory=dict)  # token -> [messages] for its HTTP response
    apply: list = field(default_factory=list)
    replies: list = field(default_factory=list)  # core Reply effects, bound by apply()
    work: list = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.peers is not None or self.persist or self.sends or self.responses or self.apply
                    or self.replies or self.work or self.notes)
