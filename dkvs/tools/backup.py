"""``dkvs restore FILE --data-dir DIR``: seed an empty data dir from a backup, for a *new* cluster.

A backup (``dkvs backup``) is a snapshot file (docs/storage.md). Restoring writes, through
the storage layer itself (:class:`~dkvs.storage.FileStorage`: state file, cluster id file,
snapshot, manifest), the data dir of a node that:

* has a **new node id** (``--id``, or generated) and belongs to a **new cluster** (a new
  cluster id): the old cluster's members and id are not carried over, so the restored
  node can never be mistaken for, or mixed with, the cluster the backup came from;
* is the only member of that cluster, at ``--url`` (the URL it will be reached at: its
  ``--advertise-url``, or ``http://HOST:PORT`` of its ``--host``/``--port``). The member
  list stores URLs, so give the real one; more nodes then ``--join`` it as usual;
* holds exactly the backup's keys, values (binary too), per-key seqs and leases, at the
  backup's seq and epoch. Its normal start-up loads it like any restarted node: it
  elects itself (one election timeout) and serves.

Why the directory must be empty (or absent): restoring over a node's data would mix two
histories, which a data dir must never hold. The whole file is parsed and checked (frame
CRCs, counts) before anything is written.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from ..runtime.identity import new_cluster_id
from ..storage import FileStorage
from ..storage.base import CorruptStorage, StoredSnapshot
from ..storage.snapshot_file import read_snapshot

__all__ = ["RestoreError", "Restored", "restore_backup", "DEFAULT_RESTORE_URL"]

DEFAULT_RESTORE_URL = "http://127.0.0.1:7070"  # a node started with the default --host and --port
_SNAPSHOT_KEY = ""  # the lease table rides in the snapshot as the empty key


class RestoreError(Exception):
    """The restore cannot be done; the message is one line for the operator."""


@dataclass(frozen=True)
class Restored:
    data_dir: str
    node_id: str
    cluster_id: str
    url: str
    seq: int
    keys: int


def restore_backup(backup: str, data_dir: str, url: str = DEFAULT_RESTORE_URL,
                   node_id: str | None = None) -> Restored:
    """Seed ``data_dir`` from the backup file ``backup``; see the module docstring."""
    if not url.startswith(("http://", "https://")) or not url.split("://", 1)[1].strip("/"):
        raise RestoreError(f"--url {url!r} must be the new node's URL, such as http://10.0.0.5:7070")
    url = url.rstrip("/")
    if node_id is not None and (not node_id.strip() or not node_id.isprintable()):
        raise RestoreError("--id must be a non-empty printable node id")
    _check_empty(data_dir)
    try:
        snapshot = read_snapshot(backup)
    except FileNotFoundError:
        raise RestoreError(f"no backup file {backup}") from None
    except IsADirectoryError:
        raise RestoreError(f"{backup} is a directory, not a backup file") from None
    except OSError as exc:
        raise RestoreError(f"cannot read {backup}: {exc.strerror or exc}") from None
    except CorruptStorage as exc:
        raise RestoreError(f"{backup} is not a whole dkvs backup: {exc}") from None
    node_id = node_id or secrets.token_hex(4)
    cluster_id = new_cluster_id()
    created = not os.path.exists(data_dir)
    try:
        storage = FileStorage(data_dir, fsync="always")
        try:
            storage.load()
            storage.save_node_id(node_id)
            storage.save_state(snapshot.epoch, None)
            storage.save_cluster_id(cluster_id)
            storage.save_snapshot(StoredSnapshot(snapshot.seq, snapshot.epoch, ((node_id, url),), snapshot.items))
        finally:
            storage.close()
    except OSError as exc:
        _clean(data_dir, created)
        raise RestoreError(f"cannot write {data_dir}: {exc.strerror or exc}") from None
    keys = sum(1 for item in snapshot.items if item[0] != _SNAPSHOT_KEY)
    return Restored(os.path.abspath(data_dir), node_id, cluster_id, url, snapshot.seq, keys)


def _check_empty(data_dir: str) -> None:
    if os.path.isdir(data_dir):
        try:
            entries = os.listdir(data_dir)
        except OSError as exc:
            raise RestoreError(f"cannot read --data-dir {data_dir}: {exc.strerror or exc}") from None
        if entries:
            raise RestoreError(f"--data-dir {data_dir} is not empty ({len(entries)} entries); restore only into "
                               "a new or empty directory (a data dir must never mix two histories)")
    elif os.path.exists(data_dir):
        raise RestoreError(f"--data-dir {data_dir} exists and is not a directory")
    elif not os.path.isdir(os.path.dirname(os.path.abspath(data_dir))):
        raise RestoreError(f"the parent directory of --data-dir {data_dir} does not exist")


def _clean(data_dir: str, created: bool) -> None:
    """Leave the directory as empty as it was given after a failed restore."""
    if not os.path.isdir(data_dir):
        return
    for root, dirs, files in os.walk(data_dir, topdown=False):
        for name in files:
            os.remove(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    if created:
        os.rmdir(data_dir)
