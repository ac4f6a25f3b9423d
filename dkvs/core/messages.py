"""Node-to-node messages: frozen dataclasses, the only things nodes say to each other.

Every message carries the sender's ``epoch`` and id (``sender``), so that fencing is one
rule applied before dispatch: a message from an older epoch is answered with the newer
epoch and otherwise ignored; a message from a newer epoch makes the receiver adopt it
(and step down if it was master or candidate). The wire format lives in
:mod:`dkvs.transport.codec`; nothing here knows about bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .log import Entry

__all__ = [
    "Message",
    "Append",
    "AppendReply",
    "VoteRequest",
    "VoteReply",
    "Snapshot",
    "PeerView",
    "TimeoutNow",
]


@dataclass(frozen=True, slots=True)
class Message:
    epoch: int
    sender: str


@dataclass(frozen=True, slots=True)
class PeerView:
    """What the master knows of one member; shipped to slaves so every /status agrees."""

    id: str
    last_seq: int
    alive: bool


@dataclass(frozen=True, slots=True)
class Append(Message):
    """A batch of consecutive entries continuing ``(prev_epoch, prev_seq)``.

    With no entries it is a heartbeat. ``commit_seq`` is the master's commit point and
    ``round`` the read round this message confirms (for linearizable reads). The first
    Append of a new epoch is the coordinator announcement of the bully algorithm.
    """

    prev_seq: int
    prev_epoch: int
    entries: tuple[Entry, ...]
    commit_seq: int
    round: int = 0
    view: tuple[PeerView, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class AppendReply(Message):
    """A slave's answer to :class:`Append` or :class:`Snapshot`.

    On success ``match_seq`` is the highest seq known to equal the master's log. On
    failure ``(hint_epoch, hint_seq)`` is the slave's last entry at or below the asked
    ``prev_seq``: the master continues the fork-point search from there.
    """

    success: bool
    match_seq: int
    hint_seq: int = 0
    hint_epoch: int = 0
    round: int = 0
    last_seq: int = 0


@dataclass(frozen=True, slots=True)
class VoteRequest(Message):
    """Ask for a vote for ``epoch``. With ``pre_vote`` nothing is recorded by anyone:
    it only probes whether an election could be won (and whether a fresher node exists).
    For a pre-vote, ``epoch`` is the epoch the candidate *would* use. ``transfer``: the
    candidate campaigns because its master handed leadership over (:class:`TimeoutNow`), so
    voters that still hear that master grant it all the same (leadership transfer)."""

    last_seq: int
    last_epoch: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class VoteReply(Message):
    """``granted``; or refused, with ``fresher`` set when the voter outranks the candidate
    (bully rule: the candidate defers and the voter campaigns itself)."""

    granted: bool
    pre_vote: bool = False
    fresher: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot(Message):
    """A whole state at one committed seq, for a slave behind the master's retained log.

    ``data`` is opaque to the core except for ``members``: the runtime produced it from
    storage and the receiving runtime restores its store from it.
    """

    seq: int
    snap_epoch: int
    members: tuple[tuple[str, str], ...]
    data: object = None


@dataclass(frozen=True, slots=True)
class TimeoutNow(Message):
    """Leadership transfer (Raft §3.10): the master, having brought the receiver fully up
    to date and stopped taking writes, tells it to campaign for ``epoch + 1`` at once,
    without a pre-vote. Only the receiver's own master of this epoch is obeyed."""
