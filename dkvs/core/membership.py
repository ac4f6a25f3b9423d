"""Cluster membership as a fold over the log: who is a member, and who of them votes.

Members are added, promoted and removed by log entries, so every node learns the same
member list in the same order. A node uses the latest membership entry it holds, committed
or not (as Raft does for single-server changes); a truncation recomputes it.

Two kinds of member (etcd's learner design):

* a **voter** counts in every quorum: commits, ``acks=majority``, elections, check-quorum
  and read rounds;
* a **learner** receives replication (snapshot and log tail) like any member but counts in
  none of them. It joins with ``learner_add`` and the master promotes it to voter
  (``member_promote``) once it has caught up (:mod:`dkvs.core.master`), or it joins with
  ``replica_add`` and stays a learner for good (read replicas, backups).

Why: a node that counts as a voter while it still holds nothing makes a 1-node cluster a
2-node one whose every majority needs the newcomer, so ``acks=majority`` writes stall for the
whole catch-up. A learner catches up first and becomes a voter only when it can keep up.

Promoting a learner adds one voter, so the old and the new voter sets share a majority
(the single-server change rule), exactly as when a voter is added directly.

Snapshot rows: a voter is ``(id, url)`` as it always was (old data dirs load unchanged: a
member without a kind is a voter); a learner is ``(id, url, "learner")`` or
``(id, url, "replica")``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .log import OP_LEARNER_ADD, OP_MEMBER_ADD, OP_MEMBER_PROMOTE, OP_MEMBER_REMOVE, OP_REPLICA_ADD, Entry

__all__ = ["Membership", "apply_membership", "fold_members", "member_rows", "parse_member_rows",
           "LEARNER", "REPLICA"]

LEARNER = "learner"  # a learner the master promotes once it has caught up
REPLICA = "replica"  # a learner that stays one (``--join URL --learner``)
_KINDS = frozenset({LEARNER, REPLICA})


class Membership:
    """The member list at one point of the log: ``urls`` (every member, learners included:
    all of them are replicated to) and ``learners`` (id -> LEARNER or REPLICA)."""

    __slots__ = ("urls", "learners")

    def __init__(self, urls: dict[str, str] | None = None, learners: dict[str, str] | None = None) -> None:
        self.urls: dict[str, str] = urls if urls is not None else {}
        self.learners: dict[str, str] = learners if learners is not None else {}

    def voters(self) -> list[str]:
        return [m for m in self.urls if m not in self.learners]

    def rows(self) -> tuple[tuple[str, ...], ...]:
        return member_rows(self.urls, self.learners)


def apply_membership(members: Membership, entry: Entry) -> bool:
    """Apply one entry to ``members`` in place; True when it was a membership entry."""
    op = entry.op
    if op == OP_MEMBER_ADD:
        members.urls[entry.key] = entry.value or ""
        members.learners.pop(entry.key, None)
    elif op in (OP_LEARNER_ADD, OP_REPLICA_ADD):
        voter = entry.key in members.urls and entry.key not in members.learners
        members.urls[entry.key] = entry.value or ""
        if not voter:  # a voter rejoining (at a new url) is never demoted by its join
            members.learners[entry.key] = LEARNER if op == OP_LEARNER_ADD else REPLICA
    elif op == OP_MEMBER_PROMOTE:
        if entry.key in members.urls:
            members.learners.pop(entry.key, None)
    elif op == OP_MEMBER_REMOVE:
        members.urls.pop(entry.key, None)
        members.learners.pop(entry.key, None)
    else:
        return False
    return True


def fold_members(base: Iterable[tuple[str, ...]], entries: Iterable[Entry]) -> Membership:
    """Membership after ``entries``, starting from the snapshot's ``base`` rows."""
    members = Membership()
    for row in base:
        members.urls[row[0]] = row[1]
        if len(row) > 2 and row[2] in _KINDS:
            members.learners[row[0]] = row[2]
    for entry in entries:
        apply_membership(members, entry)
    return members


def member_rows(urls: dict[str, str], learners: dict[str, str]) -> tuple[tuple[str, ...], ...]:
    """Snapshot rows: ``(id, url)`` for a voter, ``(id, url, kind)`` for a learner."""
    return tuple((m, u, learners[m]) if m in learners else (m, u) for m, u in urls.items())


def parse_member_rows(rows) -> tuple[tuple[str, ...], ...]:
    """Rows read from a snapshot file or the wire, as strings; an unknown kind is dropped
    (the member is then a voter, as in data dirs older than learners). Raises
    ``TypeError``/``ValueError``/``IndexError`` on a malformed row."""
    out = []
    for row in rows:
        if isinstance(row, (str, bytes)) or len(row) < 2:
            raise ValueError(f"malformed member row {row!r}")
        kind = str(row[2]) if len(row) > 2 else ""
        out.append((str(row[0]), str(row[1]), kind) if kind in _KINDS else (str(row[0]), str(row[1])))
    return tuple(out)
