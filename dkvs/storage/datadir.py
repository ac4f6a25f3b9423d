"""The small files of a data dir: the lock, the state file, and rollback files.

* ``LOCK`` — held with ``fcntl.flock`` (exclusive, non-blocking) for as long as a
  FileStorage has the dir open, so two processes never write the same log. The kernel
  drops the lock when the holder dies, so a crash never leaves a stale lock behind. The
  file holds the holder's pid, for the error message and for operators.
* ``state.json`` — ``{"crc32": C, "state": {"format": 1, "node_id", "epoch", "voted_for"}}``
  where ``C`` is the CRC32 of the state object as compact, key-sorted JSON. Rewritten whole
  and atomically (:mod:`.atomic`) on every change: the vote must never be half-written.
* ``rollback/rollback-<UTC time>-seq<first>-<last>.jsonl`` — entries discarded by a
  divergence repair, one JSON object a line, so an operator can inspect or replay them.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import zlib

from ..core.log import Entry
from .atomic import fsync_dir, write_atomically
from .records import corruption

__all__ = [
    "DataDirLocked",
    "LOCK_FILE_NAME",
    "STATE_FILE_NAME",
    "STATE_FORMAT",
    "ROLLBACK_DIR_NAME",
    "lock_data_dir",
    "read_state",
    "write_state",
    "write_rollback",
]

LOCK_FILE_NAME = "LOCK"
STATE_FILE_NAME = "state.json"
STATE_FORMAT = 1
ROLLBACK_DIR_NAME = "rollback"


class DataDirLocked(OSError):
    """Another FileStorage (in this process or another) has the data dir open."""


def lock_data_dir(directory: str) -> int:
    """Take the data dir's lock and return its descriptor (closing it releases the lock).

    Raises :class:`DataDirLocked` at once, naming the holder's pid, if it is taken.
    """
    path = os.path.join(directory, LOCK_FILE_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise DataDirLocked(f"data dir {directory} is in use by another dkvs storage (pid "
                            f"{holder}, lock file {path}); stop that node or use another "
                            f"--data-dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return fd


def _canonical(state: dict) -> bytes:
    """The bytes the state file's CRC covers."""
    return json.dumps(state, sort_keys=True, separators=(",", ":")).encode("utf-8")


def read_state(directory: str) -> tuple[str | None, int, str | None]:
    """``(node_id, epoch, voted_for)``; the empty state when there is no state file yet."""
    path = os.path.join(directory, STATE_FILE_NAME)
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        return None, 0, None
    try:
        doc = json.loads(raw)
        state = doc["state"]
        ok = doc["crc32"] == zlib.crc32(_canonical(state)) and state["format"] == STATE_FORMAT
        result = (state["node_id"], state["epoch"], state["voted_for"])
    except (ValueError, LookupError, TypeError):
        ok = False
    if not ok:
        raise corruption(path, 0, "state file does not parse or fails its CRC")
    return result


def write_state(directory: str, node_id: str | None, epoch: int, voted_for: str | None) -> int:
    """Replace the state file atomically and durably; return the fsyncs done."""
    state = {"format": STATE_FORMAT, "node_id": node_id, "epoch": epoch, "voted_for": voted_for}
    doc = json.dumps({"crc32": zlib.crc32(_canonical(state)), "state": state}, sort_keys=True)
    data = (doc + "\n").encode("utf-8")
    return write_atomically(os.path.join(directory, STATE_FILE_NAME), lambda file: file.write(data))


def write_rollback(directory: str, entries: list[Entry]) -> tuple[str, int]:
    """Write ``entries`` durably to a new file under ``rollback/``; return its path and
    the fsyncs done. The name carries the time (UTC, microseconds) and the seq span."""
    fsyncs = 0
    rollback_dir = os.path.join(directory, ROLLBACK_DIR_NAME)
    if not os.path.isdir(rollback_dir):
        os.mkdir(rollback_dir)
        fsync_dir(directory)
        fsyncs += 1
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    span = f"seq{entries[0].seq}-{entries[-1].seq}" if entries else "empty"
    path = os.path.join(rollback_dir, f"rollback-{stamp}-{span}.jsonl")
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(rollback_dir, f"rollback-{stamp}-{span}-{n}.jsonl")
    data = "".join(json.dumps({"epoch": e.epoch, "seq": e.seq, "op": e.op, "key": e.key,
                               "value": e.value}) + "\n" for e in entries).encode("ascii")
    fsyncs += write_atomically(path, lambda file: file.write(data))
    return path, fsyncs
