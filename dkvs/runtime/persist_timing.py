"""Timing the node's writes to disk, from outside the storage (for metrics and events).

:class:`TimedStorage` wraps the storage the executor persists to. Around each persist
call it measures the time taken; a call during which the storage's ``fsync_count`` grew
did at least one fsync, and its duration is observed in ``dkvs_fsync_duration_seconds``
(so under ``--fsync always`` each group commit is one observation; a state save, which is
always durable, is one too). Under ``--fsync batch`` the fsyncs happen on the storage's
flusher thread: when the storage has one, its sync step is wrapped the same way (a
best-effort hook: without it only the node thread's fsyncs are measured). A compaction that
freed log space is a ``compaction`` event. A persist
slower than ``SLOW_FSYNC_SECONDS`` becomes a ``slow_fsync`` event (at most one per
``SLOW_FSYNC_EVENT_INTERVAL_SECONDS``, with the count since the last one); a write that
fails for lack of space becomes a ``disk_full`` event before the error goes on.

:class:`AppendClock` remembers when recent seqs were appended, for the master's
replication lag in seconds: a slave that holds everything up to ``match_seq`` is behind by
the age of entry ``match_seq + 1``, the oldest entry it lacks (0 when it lacks none).
"""

from __future__ import annotations

import bisect
import errno
import logging
import threading
import time
from collections import deque

from ..api.metrics import FSYNC_BUCKETS_SECONDS, Histogram

__all__ = ["TimedStorage", "AppendClock", "SLOW_FSYNC_SECONDS", "SLOW_FSYNC_EVENT_INTERVAL_SECONDS",
           "APPEND_CLOCK_SAMPLES"]

SLOW_FSYNC_SECONDS = 0.5
SLOW_FSYNC_EVENT_INTERVAL_SECONDS = 10.0
APPEND_CLOCK_SAMPLES = 4096
narration = logging.getLogger("dkvs.cluster")
_TIMED = ("append", "save_state", "truncate_after", "save_snapshot")


class AppendClock:
    """Bounded (seq, wall time) samples, one per append batch; thread safe."""

    def __init__(self, samples: int = APPEND_CLOCK_SAMPLES) -> None:
        self._seqs: deque[int] = deque(maxlen=samples)
        self._times: deque[float] = deque(maxlen=samples)
        self._lock = threading.Lock()

    def appended(self, first_seq: int, last_seq: int, at: float) -> None:
        with self._lock:
            if self._seqs and first_seq <= self._seqs[-1]:  # a rewrite after a truncation
                while self._seqs and self._seqs[-1] >= first_seq:
                    self._seqs.pop()
                    self._times.pop()
            self._seqs.append(last_seq)
            self._times.append(at)

    def age(self, seq: int, now: float) -> float:
        """Seconds since ``seq`` was appended here; for a seq older than every sample, the
        age of the oldest sample (a lower bound); 0 for an unknown future seq."""
        with self._lock:
            if not self._seqs or seq > self._seqs[-1]:
                return 0.0
            i = bisect.bisect_left(list(self._seqs), seq)
            return max(0.0, now - self._times[i])


class TimedStorage:
    """A transparent proxy of ``storage`` that times the persist calls (module docstring)."""

    def __init__(self, storage, events=None, node_id=lambda: "", epoch=lambda: 0) -> None:
        self._storage = storage
        self._events = events
        self._node_id, self._epoch = node_id, epoch
        self.fsync_seconds = Histogram(FSYNC_BUCKETS_SECONDS)
        self.append_clock = AppendClock()
        self._slow_lock = threading.Lock()
        self._slow_since_event = 0
        self._last_slow_event = -SLOW_FSYNC_EVENT_INTERVAL_SECONDS
        self._disk_full = False  # in a period of failed writes: one disk_full event for it
        for name in _TIMED:
            if hasattr(storage, name):
                setattr(self, name, self._timed(name, getattr(storage, name)))
        if callable(getattr(storage, "compact", None)):
            self.compact = self._compact
        sync = getattr(storage, "_sync_fd", None)  # the batch flusher's step, when there is one
        if callable(sync) and getattr(storage, "fsync_policy", None) == "batch":
            storage._sync_fd = self._timed("flush", sync)

    def __getattr__(self, name):
        return getattr(self._storage, name)

    def log_bytes(self) -> int:  # asked after every persist: spare it __getattr__
        return self._storage.log_bytes()

    def _timed(self, name: str, call):
        storage = self._storage
        if name == "append" and not hasattr(storage, "fsync_count"):
            return self._untimed_append(call)

        def timed(*args, **kwargs):
            before = getattr(storage, "fsync_count", 0)
            started = time.perf_counter()
            try:
                result = call(*args, **kwargs)
            except OSError as exc:
                # One event per period of failures: the executor retries every few ticks.
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) and not self._disk_full:
                    self._event("disk_full", "warning", f"disk full: {name} failed ({exc.strerror})",
                                operation=name, error=str(exc))
                self._disk_full = True
                raise
            self._disk_full = False
            seconds = time.perf_counter() - started
            if getattr(storage, "fsync_count", 0) != before:
                self.fsync_seconds.observe(seconds)
                if seconds >= SLOW_FSYNC_SECONDS:
                    self._slow(name, seconds)
            if name == "append" and args and args[0]:
                entries = args[0]
                self.append_clock.appended(entries[0].seq, entries[-1].seq, time.time())
            return result
        return timed

    def _untimed_append(self, call):
        """``append`` of a storage that never fsyncs (no ``fsync_count``: memory): nothing
        to time, only the append clock to feed (and disk-full events, as :meth:`_timed`)."""
        clock = self.append_clock

        def append(entries):
            try:
                result = call(entries)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) and not self._disk_full:
                    self._event("disk_full", "warning", f"disk full: append failed ({exc.strerror})",
                                operation="append", error=str(exc))
                self._disk_full = True
                raise
            self._disk_full = False
            if entries:
                clock.appended(entries[0].seq, entries[-1].seq, time.time())
            return result
        return append

    def _compact(self, seq: int) -> None:
        """Drop the log a durable snapshot covers; an event when it freed space."""
        storage = self._storage
        before = storage.log_bytes()
        storage.compact(seq)
        after = storage.log_bytes()
        if after < before and self._events is not None:
            node, epoch = self._node_id(), self._epoch()
            self._events.add("compaction", "info", f"node {node} epoch={epoch}: log compacted up to seq {seq} "
                             f"(snapshot): {before} -> {after} bytes", node, epoch, seq=seq,
                             bytes_before=before, bytes_after=after)

    def _slow(self, name: str, seconds: float) -> None:
        now = time.monotonic()
        with self._slow_lock:
            self._slow_since_event += 1
            if now - self._last_slow_event < SLOW_FSYNC_EVENT_INTERVAL_SECONDS:
                return
            count, self._slow_since_event = self._slow_since_event, 0
            self._last_slow_event = now
        self._event("slow_fsync", "warning",
                    f"slow fsync: {name} took {seconds * 1000:.0f} ms ({count} slow since the last such event)",
                    operation=name, seconds=round(seconds, 4), count=count)

    def _event(self, kind: str, level: str, text: str, **details) -> None:
        node, epoch = self._node_id(), self._epoch()
        text = f"node {node} epoch={epoch}: {text}"
        narration.warning("%s", text)  # the same line an operator reads in the log
        if self._events is not None:
            self._events.add(kind, level, text, node, epoch, **details)
