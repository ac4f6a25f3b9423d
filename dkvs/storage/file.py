"""FileStorage: a node's log, snapshot and vote in a data dir (``--data-dir DIR``).

Layout of DIR (``docs/storage.md`` has the byte-level format)::

    LOCK                                   flock'ed by the process that has the dir open
    state.json                             node id, epoch, vote; rewritten atomically
    cluster_id                             the cluster's id, one line; written once
    manifest.json                          what was made durable (:mod:`.manifest`)
    log-<first seq>.seg ...                the log: CRC-framed entries (:mod:`.segments`)
    snapshot-<generation>-<seq>.snap       the newest snapshot (:mod:`.snapshot_file`)
    rollback/rollback-<time>-seq<a>-<b>.jsonl   entries discarded by divergence repair

Why segments: compaction must be cheap. :meth:`save_snapshot` and :meth:`compact` seal
the segment being written, the next append starts a new one, and a segment whose last seq
is at or below the snapshot point is deleted whole. Log files are only ever appended to, truncated at
their end, or unlinked; whole-file rewrites (state, snapshot, rollback) are atomic.

Invariants between calls:

* ``_segments`` are consecutive (each starts at the previous last seq + 1) and the first
  starts at or before ``_base_seq + 1``; ``_last_seq`` is the last stored seq, or
  ``_base_seq`` (the snapshot point) when no entry follows the snapshot;
* appends go only to ``_segments[-1]``, through ``_fd``; ``_fd is None`` means sealed,
  and the next append opens a new segment at its first seq.

Threads: every public method runs on the node's thread, except :meth:`write_snapshot`
(a worker) and :meth:`snapshot_reader` (any thread); the snapshot files and their lock
live in :class:`.snapshot_store.SnapshotStore`, and ``_base_seq`` changes only under that
lock. The ``batch`` policy adds one daemon flusher. ``_lock`` guards the identity of ``_fd`` and every fsync of it: the
flusher holds it for its whole fsync and the node's thread holds it to close or replace
the fd, so a :meth:`sync` that returns has waited for any fsync already in flight.
Appends do not take it: they write, then set ``_dirty`` (one attribute store); the
flusher clears ``_dirty`` *before* it fsyncs, so a write is never left unsynced.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from ..core.log import Entry
from .atomic import fsync_dir, remove_temp_files
from .base import CorruptStorage, Recovered, Storage, StoredSnapshot
from .cluster_file import read_cluster_id, write_cluster_id
from .datadir import (ROLLBACK_DIR_NAME, STATE_FILE_NAME, DataDirLocked, lock_data_dir, read_state,
                      write_rollback, write_state)
from .manifest import Manifest, check_recovered, check_state_file, read_manifest, write_manifest
from .records import encode_entries
from .log_scan import scan_log, truncate_torn_tail
from .segments import SEGMENT_HEADER_BYTES, Segment, SegmentRead, create_segment, parse_segment_name
from .snapshot_store import SnapshotStore

__all__ = ["FileStorage", "DataDirLocked", "FSYNC_POLICIES", "DEFAULT_FSYNC_INTERVAL_SECONDS"]

FSYNC_POLICIES = ("always", "batch", "never")
# How often appends may refresh the manifest's durable seq (two fsyncs each time).
MANIFEST_REFRESH_SECONDS = 1.0
DEFAULT_FSYNC_INTERVAL_SECONDS = 0.1

log = logging.getLogger("dkvs.storage")
# fdatasync flushes the data and the file size (all an append needs) without the inode times.
_fdatasync = getattr(os, "fdatasync", os.fsync)


class FileStorage(Storage):
    """Durable storage in a directory; see the module docstring for layout and threads.

    ``fsync`` policy for :meth:`append` (everything else is durable on return, always):
    ``always`` fsyncs once per call before returning (callers batch entries into one call:
    that is the group commit); ``batch`` has a flusher fsync at least every
    ``fsync_interval_seconds`` while there are unsynced writes; ``never`` leaves it to
    the OS. ``fsync_count`` counts every fsync this object has done (for metrics).
    """

    def __init__(self, path: str | os.PathLike, fsync: str = "batch",
                 fsync_interval_seconds: float = DEFAULT_FSYNC_INTERVAL_SECONDS) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}, not {fsync!r}")
        if not fsync_interval_seconds > 0:
            raise ValueError("fsync_interval_seconds must be positive")
        self.path = os.path.abspath(os.fspath(path))
        self.fsync_policy = fsync
        self.fsync_interval_seconds = fsync_interval_seconds
        self.fsync_count = 0
        os.makedirs(self.path, exist_ok=True)
        self._lock_fd: int | None = lock_data_dir(self.path)
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._fd: int | None = None
        self._dirty = False
        self._failure: OSError | None = None
        self._closed = self._loaded = False
        self._segments: list[Segment] = []
        self._base_seq = self._last_seq = 0
        self._snapshots = SnapshotStore(self.path, self._count)
        self._node_id: str | None = None
        self._epoch = 0
        self._voted_for: str | None = None
        self._manifest = Manifest()
        self._synced_seq = 0  # every seq up to it is fsynced (set under _lock)
        self._recorded_at = 0.0
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if fsync == "batch":
            self._flusher = threading.Thread(target=self._flush_loop, name="dkvs-fsync", daemon=True)
            self._flusher.start()

    # -- recovery --------------------------------------------------------------------------
    def load(self) -> Recovered:
        """Recover: state file, newest valid snapshot, then the log after it.

        Repairs a torn tail (with a warning) and raises :class:`CorruptStorage` for any
        other damage; on any error the storage is closed (the lock released).
        """
        self._check_open()
        try:
            return self._recover()
        except BaseException:
            self.close()
            raise

    def _recover(self) -> Recovered:
        self._seal()
        for path in remove_temp_files(self.path) + remove_temp_files(self._rollback_dir()):
            log.info("removed %s, left over by an interrupted write", path)
        manifest = read_manifest(self.path)
        names = os.listdir(self.path)
        has_data = any(parse_segment_name(name) is not None or name.startswith("snapshot-") for name in names)
        check_state_file(self.path, manifest, STATE_FILE_NAME in names)
        self._node_id, self._epoch, self._voted_for = read_state(self.path)
        snapshot = self._snapshots.recover()
        self._base_seq = snapshot.seq if snapshot else 0
        if manifest is not None:  # the snapshot and the newest segment, before reading the log
            check_recovered(self.path, manifest, self._base_seq, manifest.durable_seq, names)
        torn: list[SegmentRead] = []
        try:
            entries = self._recover_log(torn)
        except CorruptStorage as exc:
            if manifest is None or self._base_seq >= manifest.snapshot_seq:
                raise
            raise CorruptStorage(f"the snapshot at seq {manifest.snapshot_seq} is missing or damaged, and "
                                 f"the log does not make up for it: {exc}") from None
        check_recovered(self.path, manifest, self._base_seq, self._last_seq)  # before any repair
        for read in torn:
            self._truncate_torn_tail(read)
        if manifest is None and has_data:
            log.warning("%s has no manifest (written by an older dkvs?): writing one now", self.path)
        self._loaded = True
        self._manifest = manifest or Manifest()
        self._dirty = True
        self._sync_fd()  # what was read back may sit in the page cache only: fsync before recording it
        try:
            self._record(state=STATE_FILE_NAME in names)
        except OSError as exc:  # a full disk must not stop the start: the old manifest is a lower bound
            log.warning("%s: the manifest was not refreshed at start: %s", self.path, exc)
        return Recovered(self._node_id, self._epoch, self._voted_for, snapshot, entries,
                         read_cluster_id(self.path))

    def _recover_log(self, torn: list[SegmentRead]) -> list[Entry]:
        segments, entries, doomed = scan_log(self.path, self._base_seq, torn)
        self._remove(doomed)
        self._segments = segments
        self._last_seq = segments[-1].last_seq if segments else self._base_seq
        if segments:
            self._set_fd(os.open(segments[-1].path, os.O_WRONLY | os.O_APPEND))
        return entries

    def _truncate_torn_tail(self, read: SegmentRead) -> None:
        truncate_torn_tail(read)
        self._count(1)

    # -- election state --------------------------------------------------------------------
    def save_node_id(self, node_id: str) -> None:
        self._check_writable()
        self._node_id = node_id
        self._write_state()

    def save_state(self, epoch: int, voted_for: str | None) -> None:
        self._check_writable()
        self._epoch, self._voted_for = epoch, voted_for
        self._write_state()

    def save_cluster_id(self, cluster_id: str) -> None:
        self._check_writable()
        self._count(write_cluster_id(self.path, cluster_id))

    def _write_state(self) -> None:
        self._count(write_state(self.path, self._node_id, self._epoch, self._voted_for))
        if not self._manifest.state:
            self._record(state=True)

    def _record(self, durable_seq: int | None = None, state: bool | None = None) -> None:
        """Rewrite the manifest (a lower bound: ``durable_seq`` defaults to the seq of
        the last entry that is known durable, i.e. the current one after a seal)."""
        manifest = Manifest(self._last_seq if durable_seq is None else durable_seq, self._base_seq,
                            self._manifest.state if state is None else state,
                            self._segments[-1].first_seq if self._segments else 0)
        if manifest != self._manifest:
            self._count(write_manifest(self.path, manifest))
            self._manifest = manifest
            self._recorded_at = time.monotonic()

    # -- the log ---------------------------------------------------------------------------
    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        self._check_writable()
        sealed = self._fd is None
        start = SEGMENT_HEADER_BYTES if sealed else self._segments[-1].size_bytes
        data, ends = encode_entries(entries, self._last_seq + 1, start)  # checks the seqs first
        if sealed:
            self._open_segment(entries[0].seq)
        segment = self._segments[-1]
        self._write_all(data, start)
        segment.ends.extend(ends)
        self._last_seq = entries[-1].seq
        self._dirty = True
        if self.fsync_policy == "always":
            try:
                self._sync_fd()
            except OSError as exc:  # after a failed fsync the page cache cannot be trusted
                self._failure = exc
                raise
        if self._synced_seq > self._manifest.durable_seq and \
                time.monotonic() - self._recorded_at >= MANIFEST_REFRESH_SECONDS:
            try:
                self._record(durable_seq=min(self._synced_seq, self._last_seq))
            except OSError as exc:  # the entries are written; the manifest stays a lower bound
                log.debug("refreshing the manifest of %s failed: %s", self.path, exc)

    def _open_segment(self, first_seq: int) -> None:
        if self._segments and not self._segments[-1].ends and self._segments[-1].first_seq == first_seq:
            segment = self._segments[-1]  # an empty segment left sealed: reuse it
        else:
            segment, fsyncs = create_segment(self.path, first_seq)
            self._count(fsyncs)
            self._segments.append(segment)
        self._record()  # names the new newest segment: its loss is never silent
        self._set_fd(os.open(segment.path, os.O_WRONLY | os.O_APPEND))

    def _write_all(self, data: bytes, start: int) -> None:
        """One ``write`` (looped only if the OS writes less); on error, cut the partial
        record off again so that later appends do not land behind garbage."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                self._failure = exc  # garbage may stay at the tail: refuse further writes
            raise

    def truncate_after(self, seq: int) -> None:
        """Durably drop entries after ``seq``: later segments are unlinked first, then the
        one holding ``seq`` is cut, so a crash in between leaves a prefix of the old log."""
        self._check_writable()
        if seq < self._base_seq:
            raise ValueError(f"cannot truncate after {seq}: the snapshot covers up to {self._base_seq}")
        if seq >= self._last_seq:
            return
        self._seal()
        doomed = []
        while self._segments and self._segments[-1].first_seq > seq:
            doomed.append(self._segments.pop().path)
        self._synced_seq = min(self._synced_seq, seq)
        # First: the manifest must never promise the dropped entries or name a dropped file.
        self._record(durable_seq=min(self._manifest.durable_seq, seq))
        self._remove(doomed)
        if self._segments:
            segment = self._segments[-1]
            fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND)
            os.ftruncate(fd, segment.end_of(seq))
            _fdatasync(fd)
            self._count(1)
            del segment.ends[seq - segment.first_seq + 1:]
            self._set_fd(fd)
        self._last_seq = seq

    def log_bytes(self) -> int:
        self._check_loaded()
        return sum(segment.bytes_after(self._base_seq) for segment in self._segments)

    # -- snapshots -------------------------------------------------------------------------
    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Write the snapshot durably, delete older snapshots, then compact the log:
        seal the segment being written and unlink the segments the snapshot covers."""
        self._check_writable()
        seq = snapshot.seq
        self._snapshots.install(snapshot)
        self._seal()
        continues = self._last_seq > seq and self._base_seq <= seq  # the log continues the snapshot
        if not continues:
            self._last_seq = seq
        self._drop_log_through(seq, keep_tail=continues)

    def load_snapshot(self) -> StoredSnapshot | None:
        self._check_loaded()
        return self._snapshots.load()

    def snapshot_seq(self) -> int:
        self._check_loaded()
        return self._snapshots.seq

    def write_snapshot(self, seq, epoch, members, data, should_stop=None) -> int:
        """See :meth:`Storage.write_snapshot` (worker thread; :meth:`SnapshotStore.build`).
        ``problem`` runs under the snapshot lock, held by whoever moves ``_base_seq``."""
        self._check_writable()

        def problem(seq: int) -> str | None:
            if seq < self._base_seq or seq > self._last_seq:
                return f"snapshot at {seq} is outside the stored log ({self._base_seq}, {self._last_seq}]"
            return None

        return self._snapshots.build(seq, epoch, members, data,
                                     lambda: self._closed or bool(should_stop and should_stop()), problem)

    def compact(self, seq: int) -> None:
        """Seal the segment being written and unlink the segments a durable snapshot covers
        (a directory fsync; no snapshot or log bytes are written)."""
        self._check_writable()
        if seq <= self._base_seq:
            return
        with self._snapshots.lock:
            covered = self._snapshots.seq
        if seq > covered or seq > self._last_seq:
            raise ValueError(f"cannot compact to {seq}: the snapshot is at {covered}, "
                             f"the log ends at {self._last_seq}")
        self._seal()
        self._drop_log_through(seq, keep_tail=True)

    def _drop_log_through(self, seq: int, keep_tail: bool) -> None:
        """The log now starts after ``seq`` (a durable snapshot covers it): unlink the sealed
        segments it covers — every segment unless ``keep_tail`` — after the manifest says so."""
        keep = [segment for segment in self._segments if segment.last_seq > seq] if keep_tail else []
        doomed = [segment.path for segment in self._segments if segment not in keep]
        self._segments = keep
        with self._snapshots.lock:
            self._base_seq = seq
        self._record()
        self._remove(doomed)

    def snapshot_reader(self):
        self._check_loaded()
        return self._snapshots.reader()

    # -- rollback --------------------------------------------------------------------------
    def save_rollback(self, entries: list[Entry]) -> str:
        """Write discarded entries, one JSON object a line, to a new file in ``rollback/``."""
        self._check_open()
        path, fsyncs = write_rollback(self.path, entries)
        self._count(fsyncs)
        log.warning("rolled back %d entries into %s", len(entries), path)
        return path

    # -- syncing and closing ---------------------------------------------------------------
    def sync(self) -> None:
        self._check_open()
        self._raise_failure()
        self._sync_fd()

    def close(self) -> None:
        """Stop the flusher, fsync what is unsynced, close the files, release the lock."""
        if self._closed:
            return
        self._closed = True
        self._snapshots.close()
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            self._seal()
        finally:
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> FileStorage:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _sync_fd(self) -> None:
        with self._lock:
            if self._fd is not None and self._dirty:
                self._dirty = False
                seq = self._last_seq  # appends write before they move it: a lower bound
                _fdatasync(self._fd)
                self._synced_seq = seq
                self._count(1)

    def _seal(self) -> None:
        """Fsync and close the segment being written: the next append starts a new one."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            try:
                if self._dirty:
                    self._dirty = False
                    _fdatasync(fd)
                    self._count(1)
                self._synced_seq = self._last_seq
            finally:
                os.close(fd)

    def _set_fd(self, fd: int) -> None:
        with self._lock:
            assert self._fd is None
            self._fd, self._dirty = fd, False

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.fsync_interval_seconds):
            try:
                self._sync_fd()
            except OSError as exc:
                log.error("background fsync of %s failed: %s; the storage now refuses writes",
                          self.path, exc)
                self._failure = exc
                return

    # -- helpers ---------------------------------------------------------------------------
    def _count(self, fsyncs: int) -> None:
        with self._count_lock:
            self.fsync_count += fsyncs

    def _remove(self, paths: list[str]) -> None:
        """Unlink ``paths`` and make the unlinks durable."""
        for path in paths:
            os.remove(path)
        if paths:
            fsync_dir(self.path)
            self._count(1)

    def _rollback_dir(self) -> str:
        return os.path.join(self.path, ROLLBACK_DIR_NAME)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"FileStorage({self.path!r}) is closed")

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise OSError(f"an earlier write or fsync failed: {self._failure}") from self._failure

    def _check_loaded(self) -> None:
        """Recover first if the caller skipped :meth:`load` (the contract says it must not)."""
        self._check_open()
        if not self._loaded:
            self._recover()

    def _check_writable(self) -> None:
        self._check_loaded()
        self._raise_failure()

