"""Majority arithmetic, in one place so every rule uses the same definition."""

from __future__ import annotations

__all__ = ["majority", "quorum_seq"]


def majority(member_count: int) -> int:
    """Smallest number of members that is more than half (1 for a cluster of one)."""
    return member_count // 2 + 1


def quorum_seq(match_seqs: list[int], member_count: int) -> int:
    """The highest seq held by a majority, given each member's highest held seq.

    Members missing from ``match_seqs`` count as holding nothing.
    """
    need = majority(member_count)
    if len(match_seqs) < need:
        return 0
    return sorted(match_seqs, reverse=True)[need - 1]
