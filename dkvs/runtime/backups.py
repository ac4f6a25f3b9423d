"""Backups a node serves (``GET /snapshot``): its committed state, built off the node's thread.

Why a backup is built rather than read from the data dir: the stored snapshot may be far
behind the commit point (the log after it is not in it), and an in-memory node has none.
So a backup is made exactly like a background snapshot (:mod:`dkvs.runtime.snapshots`):
the node's thread takes the copy-on-write view (``NodeDriver.snapshot_view``: one
``dict.copy`` at the commit point), and a worker thread sorts it in bounded runs and
encodes it with the snapshot file format (:func:`~dkvs.storage.snapshot_file.encode_snapshot`,
:func:`~dkvs.storage.snapshot_file.sorted_item_chunks`), yielding the GIL between pieces,
so writes go on while a million keys are written. A backup file *is* a snapshot file:
``dkvs restore`` reads it back with the storage layer.

The bytes go to an anonymous temporary file (``tempfile.TemporaryFile``: unlinked at once,
so nothing is left behind by a crash), in the data dir when there is one, and are served
by offset, one bounded chunk per request: no answer holds the whole state in memory, and
a download that breaks resumes where it stopped. Each export has an id; its size, seq,
key count and SHA-256 are known before its first byte is served.

Rules: at most :data:`MAX_EXPORTS` exports are held (the least recently read one goes
first); one that nobody read for :data:`EXPORT_IDLE_SECONDS` is dropped; a new backup while
one is being built joins it; a finished one at the current commit seq is reused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
import threading
import time

from ..core.leases import SNAPSHOT_KEY
from ..storage.snapshot_file import encode_snapshot, sorted_item_chunks

__all__ = ["BackupExports", "Export", "MAX_EXPORTS", "EXPORT_IDLE_SECONDS", "BACKUPS_LOCK"]

log = logging.getLogger("dkvs.backup")

MAX_EXPORTS = 2
EXPORT_IDLE_SECONDS = 120.0
BACKUPS_LOCK = threading.Lock()  # guards making a service's one BackupExports


class Export:
    """One backup: a snapshot file at ``seq`` in a temporary file, readable by offset.

    ``done`` is set once the file is complete (then ``size`` and ``sha256`` are final)
    or the build failed (``error``). Thread safe: reads use ``os.pread``.
    """

    def __init__(self, seq: int, epoch: int, keys: int, node_id: str, role: str) -> None:
        self.id = secrets.token_hex(8)
        self.seq, self.epoch, self.keys = seq, epoch, keys
        self.node_id, self.role = node_id, role
        self.size = 0
        self.sha256 = ""
        self.error: str | None = None
        self.done = threading.Event()
        self.last_used = time.monotonic()
        self._file = None
        self._cancel = threading.Event()

    def read(self, offset: int, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` from ``offset`` (``b""`` at the end); the export must be done."""
        file = self._file
        if file is None or not self.done.is_set():
            raise ValueError("the backup is not ready")
        self.last_used = time.monotonic()
        end = min(self.size, offset + max_bytes)
        parts, at = [], offset
        while at < end:
            data = os.pread(file.fileno(), end - at, at)
            if not data:
                break
            parts.append(data)
            at += len(data)
        return b"".join(parts)

    def build(self, members, data: dict, directory: str | None) -> None:
        """(Worker thread.) Encode ``data`` (our private copy) into the temporary file."""
        started = time.monotonic()
        digest = hashlib.sha256()
        size = 0
        try:
            file = tempfile.TemporaryFile(prefix="dkvs-backup-", dir=directory)
            try:
                pieces = encode_snapshot(self.seq, self.epoch, members,
                                         sorted_item_chunks(data, self._cancel.is_set))
                for piece in pieces:
                    file.write(piece)
                    digest.update(piece)
                    size += len(piece)
                file.flush()
            except BaseException:
                file.close()
                raise
            if self._cancel.is_set():  # closed while we wrote: nobody will read it
                file.close()
                raise InterruptedError("the backup was dropped")
            self._file, self.size, self.sha256 = file, size, digest.hexdigest()
            log.info("backup %s at seq %d: %d keys, %d bytes in %.3f s", self.id, self.seq, self.keys, size,
                     time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - reported to whoever asks for the export
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("backup at seq %d failed: %s", self.seq, self.error)
        finally:
            del data
            self.last_used = time.monotonic()
            self.done.set()

    def close(self) -> None:
        """Stop a build in progress and release the file (reads then fail)."""
        self._cancel.set()
        file, self._file = self._file, None
        if file is not None:
            file.close()


class BackupExports:
    """The exports of one node; thread safe. ``host`` is its :class:`~dkvs.runtime.host.NodeHost`;
    ``directory`` where temporary files go (None: the system's temp dir)."""

    def __init__(self, host, directory: str | None = None) -> None:
        self.host = host
        self.directory = directory
        self._lock = threading.Lock()
        self._exports: dict[str, Export] = {}
        self._closed = False

    def begin(self) -> Export:
        """An export of the committed state now: a running build is joined, a finished
        one at the current commit seq reused, else a new one is started."""
        host = self.host
        with self._lock:
            self._expire()
            commit_seq = host.node.commit_seq  # a hint: the view below is what counts
            for export in sorted(self._exports.values(), key=lambda e: -e.last_used):
                if not export.done.is_set() or (export.error is None and export.seq == commit_seq):
                    export.last_used = time.monotonic()
                    return export
        seq, epoch, members, data = host.query(lambda node: host.driver.snapshot_view())
        keys = len(data) - (1 if SNAPSHOT_KEY in data else 0)
        export = Export(seq, epoch, keys, host.node.id, host.node.role)
        with self._lock:
            if self._closed:
                raise RuntimeError("the node is stopping")
            while len(self._exports) >= MAX_EXPORTS:
                oldest = min(self._exports.values(), key=lambda e: e.last_used)
                self._drop(oldest.id)
            self._exports[export.id] = export
        box = [data]
        del data

        def run() -> None:
            export.build(members, box.pop(), self.directory)

        threading.Thread(target=run, name="dkvs-backup", daemon=True).start()
        return export

    def get(self, export_id: str) -> Export | None:
        with self._lock:
            self._expire()
            export = self._exports.get(export_id)
            if export is not None:
                export.last_used = time.monotonic()
            return export

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for export_id in list(self._exports):
                self._drop(export_id)

    def _expire(self) -> None:
        """(Under ``_lock``.) Drop finished exports nobody read for a while."""
        now = time.monotonic()
        for export in list(self._exports.values()):
            if export.done.is_set() and now - export.last_used > EXPORT_IDLE_SECONDS:
                self._drop(export.id)

    def _drop(self, export_id: str) -> None:
        export = self._exports.pop(export_id, None)
        if export is not None:
            export.close()
