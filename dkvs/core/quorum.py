"""Majority arithmetic, in one place so every rule uses the same definition.

Only voters count (:mod:`dkvs.core.membership`): a learner's copy of the log is replicated
and reported, but never part of a quorum.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

__all__ = ["majority", "quorum_seq"]


def majority(member_count: int) -> int:
    """Smallest number of members that is more than half (1 for a cluster of one)."""
    return member_count // 2 + 1


def quorum_seq(match_seqs: Mapping[str, int], voters: Collection[str]) -> int:
    """The highest seq held by a majority of ``voters``, given each member's highest held seq.

    Voters missing from ``match_seqs`` count as holding nothing; members that are not
    voters (learners) are ignored whatever they hold.
    """
    held = [match_seqs.get(voter, 0) for voter in voters]
    need = majority(len(held))
    if len(held) < need:
        return 0
    return sorted(held, reverse=True)[need - 1]
