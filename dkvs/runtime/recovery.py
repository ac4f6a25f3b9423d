"""Rebuild a node after a (re)start: from its storage, or — damaged — from its cluster.

:func:`restore_node` replays what storage kept. :func:`move_damaged_aside` is the
``--rebuild`` way out of a damaged data dir (issue 12, deliverable 2).

**The rebuild rule: a member whose log is damaged rejoins as a new member id.** Keeping
its old id and ``state.json`` would keep its vote, but not what it acknowledged: a voter
grants its vote only to candidates at least as up to date as itself, and an emptied log
is behind everyone, so it could help elect a master that lacks a write it helped commit.
A new id has never voted and acknowledged nothing, and the join that adds it at the old
address first removes the old id (:meth:`~dkvs.runtime.admin.ClusterAdmin.join`) through
a majority that holds every committed entry. So it never votes twice in an epoch, and no
acknowledged write depends on what it lost. The damaged files are kept, moved into
``DIR/damaged-<UTC time>/`` for the operator; ``cluster_id`` stays, so the join is still
refused by any other cluster.
"""

from __future__ import annotations

import datetime
import logging
import os

from ..core.config import CoreConfig
from ..core.kvstate import KVState
from ..core.node import Node
from ..storage.atomic import fsync_dir
from ..storage.base import CorruptStorage, Recovered, Storage
from ..storage.cluster_file import CLUSTER_ID_FILE_NAME
from ..storage.datadir import LOCK_FILE_NAME, ROLLBACK_DIR_NAME, read_state

__all__ = ["restore_node", "move_damaged_aside", "former_id", "warn_if_left_behind", "DAMAGED_DIR_PREFIX"]

log = logging.getLogger("dkvs")

DAMAGED_DIR_PREFIX = "damaged-"
# What a rebuild leaves in place: the lock, the cluster's id, the operator's files.
_KEPT = (LOCK_FILE_NAME, CLUSTER_ID_FILE_NAME, ROLLBACK_DIR_NAME)


def restore_node(node_id: str, storage: Storage, config: CoreConfig, rng,
                 recovered: Recovered | None = None) -> tuple[Node, KVState]:
    """A slave holding everything ``storage`` kept, with its state replayed.

    Every stored entry was applied before the crash (nodes apply on append), so all of
    them are replayed; only the snapshot's seq is known to be committed. The node starts
    as a slave and learns the current master from the next heartbeat, or campaigns.
    """
    rec = recovered if recovered is not None else storage.load()
    snap = rec.snapshot
    state = KVState()
    if snap is not None:
        state.restore(snap.seq, snap.items)
    node = Node(node_id, config, rng, epoch=rec.epoch, voted_for=rec.voted_for,
                snapshot_seq=snap.seq if snap else 0, snapshot_epoch=snap.epoch if snap else 0,
                snapshot_members=snap.members if snap else (), entries=rec.entries)
    state.apply(rec.entries, node.commit_seq)
    return node, state


def move_damaged_aside(directory: str, now: datetime.datetime | None = None) -> str:
    """Move every file of a damaged data dir but the lock, ``cluster_id``, ``rollback/``
    and earlier ``damaged-*`` dirs into a new ``damaged-<UTC time>`` dir; return its path.

    The caller holds the data dir's lock (a FileStorage opened, not yet loaded), so no
    other node writes here meanwhile. Nothing is deleted.
    """
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = os.path.join(directory, DAMAGED_DIR_PREFIX + stamp)
    os.mkdir(aside)
    for name in sorted(os.listdir(directory)):
        if name in _KEPT or name.startswith(DAMAGED_DIR_PREFIX):
            continue
        os.rename(os.path.join(directory, name), os.path.join(aside, name))
    fsync_dir(aside)
    fsync_dir(directory)
    return aside


def former_id(aside: str) -> str | None:
    """The node id a damaged data dir had (its moved state file), if it can still be read."""
    try:
        return read_state(aside)[0]
    except (CorruptStorage, OSError):
        return None


def warn_if_left_behind(old_id: str | None, join_answer: dict) -> None:
    """After a rebuild's join: the old id is removed only when the node came back at its old
    address; otherwise say how to remove it (it counts in every majority until then)."""
    members = join_answer.get("members") if isinstance(join_answer, dict) else None
    if old_id and isinstance(members, dict) and old_id in members:
        log.warning("the damaged node's former id %s is still a member at %s (the rebuild came back at another "
                    "address): remove it with python3 -m dkvs.tools.members remove URL %s", old_id,
                    members[old_id], old_id)
