"""Effects: what the core asks its host to do, as plain data.

A host executes the effects of one batch of inputs phase by phase: every *persist*
effect, then every *send*, then every *apply*, then every *reply* (etcd-raft's
persist → send → apply → acknowledge). Within a phase the original order holds. That
order is what makes the protocol safe: a vote or an entry is durable before anyone hears
of it, and a client hears "ok" only after its write is applied.
"""

from __future__ import annotations

from dataclasses import dataclass

from .log import Entry
from .messages import Message

__all__ = [
    "Effect",
    "PersistEntries",
    "PersistTruncate",
    "PersistState",
    "Send",
    "SendSnapshot",
    "Apply",
    "Rollback",
    "InstallSnapshot",
    "Reply",
    "PHASE_PERSIST",
    "PHASE_SEND",
    "PHASE_APPLY",
    "PHASE_REPLY",
]

PHASE_PERSIST, PHASE_SEND, PHASE_APPLY, PHASE_REPLY = range(4)


@dataclass(frozen=True, slots=True)
class Effect:
    phases = ()


@dataclass(frozen=True, slots=True)
class PersistEntries(Effect):
    """Append these entries to durable storage (they follow its last entry)."""

    entries: tuple[Entry, ...]
    phases = (PHASE_PERSIST,)


@dataclass(frozen=True, slots=True)
class PersistTruncate(Effect):
    """Delete durable entries after ``after_seq`` (divergence repair)."""

    after_seq: int
    phases = (PHASE_PERSIST,)


@dataclass(frozen=True, slots=True)
class PersistState(Effect):
    """Durably record the current epoch and the vote cast in it, before any message leaves."""

    epoch: int
    voted_for: str | None
    phases = (PHASE_PERSIST,)


@dataclass(frozen=True, slots=True)
class Send(Effect):
    """Best-effort delivery of ``message`` to node ``to``; loss is handled by the core."""

    to: str
    message: Message
    phases = (PHASE_SEND,)


@dataclass(frozen=True, slots=True)
class SendSnapshot(Effect):
    """Ship the stored snapshot to ``to`` (the host reads it from storage)."""

    to: str
    phases = (PHASE_SEND,)


@dataclass(frozen=True, slots=True)
class Apply(Effect):
    """Apply these entries to the key-value state, in order; ``commit_seq`` tells the state
    which applied entries can no longer be rolled back."""

    entries: tuple[Entry, ...]
    commit_seq: int
    phases = (PHASE_APPLY,)


@dataclass(frozen=True, slots=True)
class Rollback(Effect):
    """Undo applied entries after ``after_seq`` (they lost a failover); the host keeps
    ``discarded`` in a rollback file, never drops them silently."""

    after_seq: int
    discarded: tuple[Entry, ...]
    phases = (PHASE_APPLY,)


@dataclass(frozen=True, slots=True)
class InstallSnapshot(Effect):
    """Replace storage and state by the snapshot received from the master."""

    snapshot: object  # a dkvs.core.messages.Snapshot
    phases = (PHASE_PERSIST, PHASE_APPLY)


@dataclass(frozen=True, slots=True)
class Reply(Effect):
    """Complete client request ``request_id`` with ``result`` (a dict) or ``error``
    (an error code from :mod:`dkvs.errors` terms: ``"no_master"``, ``"acks_timeout"``)."""

    request_id: int
    result: dict | None = None
    error: str | None = None
    phases = (PHASE_REPLY,)
