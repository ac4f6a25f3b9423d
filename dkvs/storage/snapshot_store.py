"""The snapshot files of one data dir: which one is newest, writing new ones, reading them.

Two ways a snapshot file is born, and why they differ:

* :meth:`SnapshotStore.install` (node's thread): a snapshot received from the master,
  written with :func:`.atomic.write_atomically`; it replaces the log wholesale.
* :meth:`SnapshotStore.build` (a worker thread): the node's own state at its commit
  point, sorted and written to ``snapshot-build-<seq>.snap.tmp`` while the node keeps
  appending to its log. Only the last step, under ``lock``, touches shared state: ask the
  caller whether the snapshot may still be kept, rename it into place, fsync the
  directory, and unlink older snapshot files.

Older files are unlinked while a stream may still be reading them: a
:class:`.snapshot_reader.FileSnapshotReader` holds its own descriptor, so it finishes the
snapshot it began. Each file's size and crc32 (what a receiver verifies) are recorded
when this object writes it, or computed once, by the first reader, for a file found at
start.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable

from ..core.membership import parse_member_rows
from .atomic import TEMP_SUFFIX, fsync_dir, write_atomically
from .base import CorruptStorage, SnapshotMeta, SnapshotReader, SnapshotSuperseded, StoredSnapshot
from .snapshot_file import (SnapshotItems, encode_snapshot, item_blocks, parse_snapshot_name, read_snapshot,
                            read_snapshot_from, snapshot_name, sorted_item_chunks, write_snapshot_to)
from .snapshot_reader import FileSnapshotReader, file_crc32

__all__ = ["SnapshotStore"]

log = logging.getLogger("dkvs.storage")

_COPY_BYTES = 1024 * 1024


def _verified_source(snapshot: StoredSnapshot):
    """The received file behind ``snapshot.items``, if it holds exactly this snapshot."""
    items = snapshot.items
    if not isinstance(items, SnapshotItems) or getattr(items, "source", None) is None:
        return None
    members = tuple(tuple(m) for m in snapshot.members)
    return items.source if items.header == (snapshot.seq, snapshot.epoch, members) else None


class SnapshotStore:
    """Snapshot files in ``directory``; every method is thread-safe.

    ``count(n)`` is told about every fsync done. ``seq`` is the seq of the newest stored
    snapshot (0: none); ``installs`` counts :meth:`install` calls, so a build that began
    before an install can tell it is stale.
    """

    def __init__(self, directory: str, count: Callable[[int], None]) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self._count = count
        self.generation = 0
        self.path: str | None = None
        self.seq = 0
        self.installs = 0
        self._meta: SnapshotMeta | None = None  # of ``path``; size/crc None until known
        self._closed = False

    # -- start -----------------------------------------------------------------------------------
    def recover(self) -> StoredSnapshot | None:
        """Load the newest whole snapshot (skipping damaged ones); delete older files."""
        found = sorted(((parsed[0], name) for name in os.listdir(self.directory)
                        if (parsed := parse_snapshot_name(name))), reverse=True)
        self.generation = found[0][0] if found else 0
        snapshot, superseded = None, []
        for _, name in found:
            path = os.path.join(self.directory, name)
            if snapshot is not None:
                superseded.append(path)
                continue
            try:
                snapshot = read_snapshot(path)
                self._set_current(path, snapshot.seq, snapshot.epoch, snapshot.members, None, None)
            except (CorruptStorage, LookupError, TypeError, ValueError) as exc:  # fall back
                log.warning("ignoring damaged snapshot %s: %s", path, exc)
        self._unlink(superseded)
        return snapshot

    # -- writing ---------------------------------------------------------------------------------
    def install(self, snapshot: StoredSnapshot) -> None:
        """Store ``snapshot`` atomically and durably as the newest; unlink older files."""
        with self.lock:
            self._check_open()
            self.installs += 1
            self.generation += 1
            path = os.path.join(self.directory, snapshot_name(self.generation, snapshot.seq))
            if self._adopt(snapshot, path):
                return
            sizes: list[tuple[int, int]] = []

            def write(file) -> None:
                source = _verified_source(snapshot)
                if source is not None:  # received as a file: copy its bytes, do not re-encode
                    source.seek(0)
                    shutil.copyfileobj(source, file, _COPY_BYTES)
                    sizes.append((snapshot.items.size, snapshot.items.crc32))
                    snapshot.items.release()
                    return
                pieces = encode_snapshot(snapshot.seq, snapshot.epoch, snapshot.members, item_blocks(snapshot.items))
                sizes.append(write_snapshot_to(file, pieces))

            self._count(write_atomically(path, write))
            self._replace_current(path, snapshot.seq, snapshot.epoch, snapshot.members, *sizes[0])

    def _adopt(self, snapshot: StoredSnapshot, path: str) -> bool:
        """(Under ``lock``.) Rename a received, fsynced file of this data dir into ``path``."""
        items = snapshot.items
        if _verified_source(snapshot) is None or not getattr(items, "path", None):
            return False
        if os.path.dirname(os.path.abspath(items.path)) != os.path.abspath(self.directory):
            return False
        os.replace(items.adopt_path(), path)
        items.release()
        self._replace_current(path, snapshot.seq, snapshot.epoch, snapshot.members, items.size, items.crc32)
        return True

    def build(self, seq: int, epoch: int, members, data: dict, should_stop: Callable[[], bool] | None,
              problem: Callable[[int], str | None]) -> int:
        """Sort and write ``data`` as the snapshot at ``seq``; return its size in bytes.

        Runs on a worker. ``problem(seq)`` is asked under ``lock`` just before the rename:
        a reason not to keep the snapshot (raised as :class:`SnapshotSuperseded`), or None.
        """
        with self.lock:
            installs = self.installs
        members = parse_member_rows(members)
        temp = os.path.join(self.directory, f"snapshot-build-{seq:020d}-{threading.get_ident()}.snap{TEMP_SUFFIX}")
        try:
            with open(temp, "wb") as file:
                size, crc = write_snapshot_to(file, encode_snapshot(seq, epoch, members,
                                                                   sorted_item_chunks(data, should_stop)))
                file.flush()
                os.fsync(file.fileno())
            self._count(1)
            with self.lock:
                reason = ("storage closed" if self._closed
                          else "a snapshot was installed while this one was built" if installs != self.installs
                          else f"snapshot at {seq} is older than the stored one at {self.seq}" if seq < self.seq
                          else problem(seq))
                if reason is not None:
                    raise SnapshotSuperseded(reason)
                self.generation += 1
                path = os.path.join(self.directory, snapshot_name(self.generation, seq))
                os.replace(temp, path)
                self._replace_current(path, seq, epoch, members, size, crc)
        except InterruptedError as exc:
            self._discard(temp)
            raise SnapshotSuperseded(str(exc)) from None
        except BaseException:
            self._discard(temp)
            raise
        return size

    # -- reading ---------------------------------------------------------------------------------
    def load(self) -> StoredSnapshot | None:
        with self.lock:
            path = self.path
            fd = os.open(path, os.O_RDONLY) if path else None
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as file:
            return read_snapshot_from(file, path)

    def reader(self) -> SnapshotReader | None:
        """A reader on the newest snapshot (its crc32 computed here once if unknown)."""
        with self.lock:
            if self.path is None:
                return None
            path, meta = self.path, self._meta
            fd = os.open(path, os.O_RDONLY)
        try:
            if meta.crc32 is None:
                size = os.fstat(fd).st_size
                meta = SnapshotMeta(meta.seq, meta.epoch, meta.members, size, file_crc32(fd, size))
                with self.lock:
                    if self.path == path:
                        self._meta = meta
            return FileSnapshotReader(fd, meta)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        """Refuse later writes; waits for a build that is renaming its file right now."""
        with self.lock:
            self._closed = True

    # -- helpers ---------------------------------------------------------------------------------
    def _set_current(self, path, seq, epoch, members, size, crc) -> None:
        self.path, self.seq = path, seq
        self._meta = SnapshotMeta(seq, epoch, tuple(tuple(m) for m in members), size, crc)

    def _replace_current(self, path, seq, epoch, members, size, crc) -> None:
        """(Under ``lock``.) Make ``path`` the newest; fsync the dir; unlink the others."""
        self._set_current(path, seq, epoch, members, size, crc)
        doomed = [os.path.join(self.directory, name) for name in os.listdir(self.directory)
                  if parse_snapshot_name(name) and name != os.path.basename(path)]
        for doomed_path in doomed:
            os.remove(doomed_path)
        fsync_dir(self.directory)
        self._count(1)

    def _unlink(self, paths: list[str]) -> None:
        for path in paths:
            os.remove(path)
        if paths:
            fsync_dir(self.directory)
            self._count(1)

    def _discard(self, temp: str) -> None:
        try:
            os.remove(temp)
        except OSError:
            pass

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the storage is closed")
