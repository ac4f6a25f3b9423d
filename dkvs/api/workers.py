"""A bounded pool of worker threads fed by a FIFO queue.

The HTTP front end keeps three of these (see :mod:`dkvs.api.server`): client requests,
internal node-to-node requests, and long polls (``?wait=``). Separate pools are the
priority rule: a heartbeat never queues behind client writes, and a watch that waits a
minute never takes a thread a write needs.

Threads are started lazily, one when an item arrives and no worker is idle, up to
``size``; they then stay for the life of the pool. Items beyond that wait in the queue
(the number of connections, hence of queued items, is capped by the server). ``work(item)``
must not raise; if it does, the error is logged and the worker goes on.

``size`` bounds the workers that *run*; a worker about to wait on the network (a slave
forwarding a write to its master) says so with ``with pool.blocking():`` and lends its
place: the pool may then start another thread, up to ``max_threads`` in all. So a slave can
keep many forwards in flight while the number of threads competing for the GIL stays at
``size`` (Java's ``ForkJoinPool.ManagedBlocker`` is the same idea).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["WorkerPool"]

log = logging.getLogger("dkvs.http")


class WorkerPool:
    """``submit(item)`` runs ``work(item)`` on one of at most ``size`` threads."""

    def __init__(self, name: str, size: int, work: Callable[[object], None], *,
                 max_threads: int | None = None) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one thread")
        self.name = name
        self.size = size
        self.max_threads = max(size, max_threads or size)
        self._work = work
        self._queue: deque = deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        self._idle = 0  # workers waiting and not yet claimed by a submit
        self._busy = 0
        self._blocked = 0  # workers inside blocking()
        self._closed = False

    def submit(self, item) -> bool:
        """Queue ``item``; False (and nothing queued) once the pool is closed."""
        with self._cond:
            if self._closed:
                return False
            self._queue.append(item)
            if self._idle > 0:
                self._idle -= 1
                self._cond.notify()
            else:
                self._maybe_spawn()
        return True

    def _maybe_spawn(self) -> None:
        """Start a thread if one may run (called with the lock held, no idle worker)."""
        threads = len(self._threads)
        if threads < self.max_threads and threads - self._blocked < self.size:
            thread = threading.Thread(target=self._run, name=f"dkvs-http-{self.name}-{threads}", daemon=True)
            self._threads.append(thread)
            thread.start()

    @contextmanager
    def blocking(self) -> Iterator[None]:
        """Around a wait for the network: queued items may get another thread meanwhile."""
        with self._cond:
            self._blocked += 1
            if self._queue and self._idle == 0 and not self._closed:
                self._maybe_spawn()
        try:
            yield
        finally:
            with self._cond:
                self._blocked -= 1

    @property
    def busy(self) -> int:
        """Workers running an item now (a gauge for tests and metrics)."""
        return self._busy

    @property
    def queued(self) -> int:
        """Items waiting for a worker."""
        return len(self._queue)

    @property
    def threads(self) -> int:
        return len(self._threads)

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._queue:
                    if self._closed:
                        return
                    self._idle += 1
                    cond.wait()
                item = self._queue.popleft()
                self._busy += 1
            try:
                self._work(item)
            except Exception:
                log.exception("unexpected error in an HTTP %s worker", self.name)
            finally:
                with cond:
                    self._busy -= 1

    def close(self) -> list:
        """Stop taking items; wake idle workers so they exit. Returns the items never run."""
        with self._cond:
            self._closed = True
            left, self._queue = list(self._queue), deque()
            self._idle = 0
            self._cond.notify_all()
        return left

    def join(self, deadline: float) -> None:
        """Wait for every worker to finish its item and exit, until ``deadline`` (monotonic)."""
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
