"""``dkvs backup``: download a node's backup (``GET /snapshot``) into a file, atomically, verified.

The node builds the backup of its committed state off its own thread and serves it by
offset (docs/http-api.md, "Backups"). This side asks for the chunks in order, writes them
to ``FILE.tmp-<pid>`` next to the target, checks every answer belongs to the same backup
(same id, the offset asked for, the size announced) and the SHA-256 of the whole against
the node's ``X-Dkvs-Checksum``, then fsyncs the file, renames it over ``FILE`` and fsyncs
the directory: ``FILE`` is either the old file or the whole verified backup, never a torn
one. A backup the node dropped meanwhile (``backup_gone``: replaced or idle too long) is
started again, a bounded number of times.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ..storage.atomic import write_atomically
from ..errors import DkvsError, NotFound
from .admin import NodeAdmin
from .errors import error_from_answer

__all__ = ["BackupInfo", "download_backup", "BackupFailed", "MAX_RESTARTS"]

MAX_RESTARTS = 3
BUILD_POLL_SECONDS = 0.05


class BackupFailed(DkvsError):
    """The download did not produce a verified file (the message says why)."""

    code = "backup_failed"


@dataclass(frozen=True)
class BackupInfo:
    """What was written: the node's committed ``seq`` and ``keys`` at the backup, its role."""

    path: str
    seq: int
    epoch: int
    keys: int
    size: int
    sha256: str
    node: str
    role: str


def download_backup(admin: NodeAdmin, path: str, *, deadline_seconds: float = 3600.0) -> BackupInfo:
    """Download a backup from ``admin``'s node into ``path``; see the module docstring."""
    deadline = time.monotonic() + deadline_seconds
    for attempt in range(MAX_RESTARTS + 1):
        try:
            return _download_once(admin, path, deadline)
        except NotFound as exc:
            if getattr(exc, "code", "") != "backup_gone" or attempt == MAX_RESTARTS:
                raise
    raise AssertionError("unreachable")


def _download_once(admin: NodeAdmin, path: str, deadline: float) -> BackupInfo:
    first = _get(admin, "/snapshot", deadline)
    export_id = first.headers.get("x-dkvs-snapshot", "")
    while first.status == 202:  # still being built: ask on the same export
        time.sleep(BUILD_POLL_SECONDS)
        first = _get(admin, f"/snapshot?id={export_id}&offset=0", deadline)
    facts = _facts(first)
    digest = hashlib.sha256()

    def write(file) -> None:  # into a temp file: write_atomically renames it only once it is whole
        answer, offset = first, 0
        while True:
            _check_same(answer, facts, offset)
            file.write(answer.body)
            digest.update(answer.body)
            offset += len(answer.body)
            if offset >= facts["size"] or not answer.body:
                break
            answer = _get(admin, f"/snapshot?id={export_id}&offset={offset}", deadline)
        if offset != facts["size"]:
            raise BackupFailed(f"the backup ended at {offset} bytes, the node announced {facts['size']}")
        if digest.hexdigest() != facts["sha256"]:
            raise BackupFailed(f"checksum mismatch: the node announced sha256={facts['sha256']}, "
                               f"the bytes received hash to {digest.hexdigest()}")

    write_atomically(path, write)
    return BackupInfo(path, facts["seq"], facts["epoch"], facts["keys"], facts["size"], facts["sha256"],
                      facts["node"], facts["role"])


def _get(admin: NodeAdmin, target: str, deadline: float):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise BackupFailed("the backup did not finish in time")
    answer = admin.request("GET", target, timeout=min(remaining, max(admin.timeout, 30.0)))
    if answer.status >= 400:
        raise error_from_answer(answer.status, answer.json(), None, where=admin.url or "")
    return answer


def _facts(answer) -> dict:
    headers = answer.headers
    try:
        checksum = headers["x-dkvs-checksum"]
        if not checksum.startswith("sha256="):
            raise ValueError(checksum)
        return {"id": headers["x-dkvs-snapshot"], "seq": int(headers["x-dkvs-seq"]),
                "epoch": int(headers.get("x-dkvs-epoch", 0)), "keys": int(headers["x-dkvs-keys"]),
                "size": int(headers["x-dkvs-size"]), "sha256": checksum[len("sha256="):],
                "node": headers.get("x-dkvs-node", ""), "role": headers.get("x-dkvs-role", "")}
    except (KeyError, ValueError) as exc:
        raise BackupFailed(f"the node's answer is not a dkvs backup (missing or bad header {exc})") from None


def _check_same(answer, facts: dict, offset: int) -> None:
    headers = answer.headers
    if answer.status != 200 or headers.get("x-dkvs-snapshot") != facts["id"] \
            or headers.get("x-dkvs-offset") != str(offset) or headers.get("x-dkvs-size") != str(facts["size"]):
        raise BackupFailed(f"the node answered a chunk of another backup or offset (status {answer.status}, "
                           f"offset {headers.get('x-dkvs-offset')}, expected {offset})")
