"""Cluster membership as a fold over the log.

Members are added and removed by log entries, so every node learns the same member list
in the same order. A node uses the latest membership entry it holds, committed or not
(as Raft does for single-server changes); a truncation recomputes it.
"""

from __future__ import annotations

from collections.abc import Iterable

from .log import OP_MEMBER_ADD, OP_MEMBER_REMOVE, Entry

__all__ = ["apply_membership", "fold_members"]


def apply_membership(members: dict[str, str], entry: Entry) -> bool:
    """Apply one entry to ``members`` in place; True when it was a membership entry."""
    if entry.op == OP_MEMBER_ADD:
        members[entry.key] = entry.value or ""
        return True
    if entry.op == OP_MEMBER_REMOVE:
        members.pop(entry.key, None)
        return True
    return False


def fold_members(base: Iterable[tuple[str, str]], entries: Iterable[Entry]) -> dict[str, str]:
    """Members after ``entries``, starting from the snapshot's ``base`` list."""
    members = dict(base)
    for entry in entries:
        apply_membership(members, entry)
    return members
