"""What the client's calls return: small frozen records built from the JSON answers."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Item", "WriteResult", "WatchEvent"]


@dataclass(frozen=True)
class Item:
    """A key's value (``bytes`` when it is not UTF-8 text) and the seq of the write that set it."""

    key: str
    value: str | bytes
    seq: int


@dataclass(frozen=True)
class WriteResult:
    """An acknowledged PUT or DELETE: its seq, the master's epoch, and how many members
    held it when the master answered (``None`` if the node did not say)."""

    key: str
    seq: int
    epoch: int | None = None
    replicas: int | None = None


@dataclass(frozen=True)
class WatchEvent:
    """One change seen by :meth:`dkvs.client.Client.watch`.

    ``value`` is None when the key was deleted. ``reset`` is True for the events of a
    prefix watch that fell too far behind the node's change history: those events are the
    prefix's *current* items, and keys not among them should be treated as deleted.
    """

    key: str
    value: str | bytes | None
    seq: int
    reset: bool = False

    @property
    def deleted(self) -> bool:
        return self.value is None
