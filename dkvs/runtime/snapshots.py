"""Whole-state work off the node's thread: building snapshots and streaming them to peers.

The node's thread only decides (the driver) and takes the copy-on-write view
(``KVState.committed_view``, one ``dict.copy``); everything proportional to the state —
sorting, encoding, writing, fsyncing, reading the file back and sending it — runs here,
on worker threads, and reports back through callbacks that the host turns into driver
inputs ("snapshot built", "snapshot streamed").

Rules this class keeps, so the driver can rely on them:

* at most one build at a time (:meth:`SnapshotWorker.build` returns False while one runs);
* at most one stream per peer (:meth:`SnapshotWorker.stream` returns False while one to
  that peer runs); streams to different peers and a build may run side by side;
* every accepted job ends with exactly one callback, from the worker thread, unless
  :meth:`SnapshotWorker.close` began first (then none: the host is going away);
* a stream reads the newest stored snapshot by chunks through a
  :class:`~dkvs.storage.base.SnapshotReader`: no whole copy in memory, nothing re-read per
  attempt beyond the chunks sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..storage.base import Storage
from ..transport.base import Transport

__all__ = ["SnapshotWorker"]

log = logging.getLogger("dkvs.snapshots")


class SnapshotWorker:
    """Runs snapshot builds and streams on daemon threads; thread-safe.

    ``on_built(seq, nbytes, error)``: the build of the snapshot at ``seq`` ended;
    ``error`` is None when it is durable (the driver may then compact up to ``seq``), or
    the exception (e.g. :class:`~dkvs.storage.base.SnapshotSuperseded`, ``OSError``).
    ``on_streamed(peer, seq, error)``: the stream of the snapshot at ``seq`` to ``peer``
    ended (``seq`` is 0 when no snapshot was stored); ``error`` None means the peer
    took it (its answer was delivered through the transport like any reply).
    """

    def __init__(self, storage: Storage, transport: Transport,
                 on_built: Callable[[int, int, BaseException | None], None],
                 on_streamed: Callable[[str, int, BaseException | None], None]) -> None:
        self.storage = storage
        self.transport = transport
        self.on_built = on_built
        self.on_streamed = on_streamed
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._building = False
        self._streams: dict[str, threading.Event] = {}  # peer -> its cancel flag, while streaming
        self._threads: set[threading.Thread] = set()

    # -- starting work ---------------------------------------------------------------------------
    def build(self, seq: int, epoch: int, members, data: dict) -> bool:
        """Write ``data`` (a private copy: key -> (value, seq)) as the snapshot at committed
        ``seq`` on a worker. False (and nothing started) if a build runs or we are closing."""
        with self._lock:
            if self._closing.is_set() or self._building:
                return False
            self._building = True
            self._start(self._run_build, "dkvs-snapshot-build", seq, epoch, tuple(members), data)
        return True

    def stream(self, peer: str, sender_epoch: int, sender_id: str) -> bool:
        """Stream the newest stored snapshot to ``peer`` on a worker. False (and nothing
        started) if a stream to ``peer`` runs or we are closing."""
        with self._lock:
            if self._closing.is_set() or peer in self._streams:
                return False
            cancel = self._streams[peer] = threading.Event()
            self._start(self._run_stream, f"dkvs-snapshot-send-{peer}", peer, sender_epoch, sender_id, cancel)
        return True

    def cancel_stream(self, peer: str) -> None:
        """Ask the stream to ``peer`` (if any) to stop after its current chunk; it ends
        with ``on_streamed(peer, seq, InterruptedError)``."""
        with self._lock:
            cancel = self._streams.get(peer)
        if cancel is not None:
            cancel.set()

    # -- looking -----------------------------------------------------------------------------------
    @property
    def building(self) -> bool:
        """True from an accepted :meth:`build` until just before its ``on_built``."""
        return self._building

    def streaming(self, peer: str) -> bool:
        """True from an accepted :meth:`stream` until just before its ``on_streamed``."""
        return peer in self._streams

    # -- stopping ----------------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting work, ask running jobs to stop, wait up to ``timeout`` seconds
        for them. No callback runs once this has begun."""
        self._closing.set()
        with self._lock:
            threads = list(self._threads)
            for cancel in self._streams.values():
                cancel.set()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- the workers -------------------------------------------------------------------------------
    def _run_build(self, seq: int, epoch: int, members, data: dict) -> None:
        started = time.monotonic()
        nbytes, error = 0, None
        try:
            nbytes = self.storage.write_snapshot(seq, epoch, members, data, should_stop=self._closing.is_set)
        except Exception as exc:  # noqa: BLE001 - reported to the driver
            error = exc
        del data  # the copy is ours: let it go before the callback runs
        if error is None:
            log.info("snapshot at seq %d written (%d bytes) in %.3f s", seq, nbytes, time.monotonic() - started)
        elif self._closing.is_set():
            log.info("snapshot at seq %d abandoned: shutting down", seq)
        else:
            log.warning("snapshot at seq %d not kept: %s", seq, error)
        with self._lock:
            self._building = False
        self._report(self.on_built, seq, nbytes, error)

    def _run_stream(self, peer: str, sender_epoch: int, sender_id: str, cancel: threading.Event) -> None:
        started = time.monotonic()
        seq, error = 0, None
        try:
            reader = self.storage.snapshot_reader()
            if reader is None:
                raise LookupError("no snapshot is stored")
            with reader:
                seq = reader.meta.seq
                self.transport.stream_snapshot(peer, reader, sender_epoch, sender_id,
                                               should_stop=lambda: cancel.is_set() or self._closing.is_set())
        except Exception as exc:  # noqa: BLE001 - reported to the driver
            error = exc
        if error is None:
            log.info("snapshot at seq %d sent to %s in %.3f s", seq, peer, time.monotonic() - started)
        else:
            log.warning("snapshot at seq %d to %s failed: %s", seq, peer, error)
        with self._lock:
            del self._streams[peer]
        self._report(self.on_streamed, peer, seq, error)

    def _start(self, target, name: str, *args) -> None:
        """(Under ``_lock``.) Run ``target(*args)`` on a new daemon thread, tracked for close."""
        box = [args]  # popped, so the worker's frame holds the only reference to the data

        def run() -> None:
            try:
                target(*box.pop())
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.add(thread)
        thread.start()

    def _report(self, callback, *args) -> None:
        if self._closing.is_set():
            return
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - a failing callback must not kill the worker silently
            log.exception("snapshot callback %r failed", callback)
