"""The ``cluster_id`` file of a data dir: which cluster this node's data belongs to.

Kept apart from ``state.json`` (rewritten on every vote) because it is written once, and
so that a data dir made before cluster ids existed still loads: it simply has no such file
and adopts its cluster's id on first contact (:mod:`dkvs.runtime.identity`).
"""

from __future__ import annotations

import os

from .atomic import write_atomically

__all__ = ["CLUSTER_ID_FILE_NAME", "read_cluster_id", "write_cluster_id"]


CLUSTER_ID_FILE_NAME = "cluster_id"


def read_cluster_id(directory: str) -> str | None:
    """The cluster id kept in ``directory``; None when it has none (new, or older than ids)."""
    try:
        with open(os.path.join(directory, CLUSTER_ID_FILE_NAME), encoding="ascii") as file:
            return file.read().strip() or None
    except FileNotFoundError:
        return None


def write_cluster_id(directory: str, cluster_id: str) -> int:
    """Write the cluster id file atomically and durably; return the fsyncs done."""
    data = (cluster_id + "\n").encode("ascii")
    return write_atomically(os.path.join(directory, CLUSTER_ID_FILE_NAME), lambda file: file.write(data))
