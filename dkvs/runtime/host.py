"""Running the node: a thin, threaded executor of the :class:`~dkvs.driver.NodeDriver`.

Every decision is the driver's; this module only feeds it inputs and executes its
:class:`~dkvs.driver.Ready` batches (:mod:`dkvs.runtime.executor`).

Threads. Everything that wants the node — HTTP handlers proposing writes, transport threads
delivering answers, worker threads reporting finished work, the status page — appends an
input to one queue and then tries to take the *node lock* (flat combining). Whoever holds
the lock drains the queue, feeds the inputs to the driver, adds the ticks real time has
produced, takes one ready batch (a burst of writes leaves as one batch per slave and one
storage append: group commit) and executes it. An input queued while the lock was held is
always drained: by this thread, the next holder, or the ticker.

Fairness bound: a request thread combines for at most ``MAX_COMBINE_BURSTS`` bursts after
its own input is done; then it wakes the ticker thread to drain the rest and returns to
its client, so under a steady stream no HTTP thread is held hostage by other clients' work.
The ticker keeps logical time going when no input arrives.

Reads do not queue: HTTP threads read the :class:`KVState` under ``state_lock``.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable

from ..driver import NodeDriver
from ..storage.base import Storage
from ..transport.base import Transport
from .changes import ChangeFeed
from .events import ClusterEvents
from .executor import Executor
from .inline_work import InlineSnapshotWork
from .persist_timing import TimedStorage

__all__ = ["NodeHost", "Outcome", "MAX_COMBINE_BURSTS"]

log = logging.getLogger("dkvs.runtime")

MAX_BURST_INPUTS = 2048
MAX_CATCH_UP_TICKS = 1000
MAX_COMBINE_BURSTS = 4


class Outcome:
    """A caller's handle on one request: completed once, by whoever runs the node.

    ``request_id`` numbers a client request for the driver (0 for inputs that are not
    requests); the reply carrying it completes this outcome.

    The lock a waiter sleeps on is made only when the waiter has to sleep: a request the
    calling thread completed itself (the usual single-node write, flat combining) never
    allocates one. Completing and waiting meet through two fields, each written by one
    side before it reads the other's (``_done`` by :meth:`done`, ``_lock`` by
    :meth:`wait`), so at least one side sees the other: either the waiter sees ``_done``
    or :meth:`done` sees the lock and releases it. :meth:`done` runs only on the thread
    that holds the node lock."""

    __slots__ = ("_lock", "_done", "request_id", "result", "error", "rejected", "messages", "on_done")

    def __init__(self, request_id: int = 0) -> None:
        self._lock: threading.Lock | None = None
        self._done = False
        self.on_done: Callable[[Outcome], None] | None = None  # instead of a waiter (propose_async)
        self.request_id = request_id
        self.result: dict | None = None
        self.error: str | None = None
        self.rejected: int | None = None  # changed nothing: the key's current seq (0 = absent)
        self.messages: list = []  # answers addressed back to a message's sender

    def set(self, result, error, rejected: int | None = None) -> None:
        self.result, self.error, self.rejected = result, error, rejected
        self.done()

    def done(self) -> None:
        if not self._done:
            self._done = True
            lock = self._lock
            if lock is not None:
                lock.release()
            if self.on_done is not None:
                try:
                    self.on_done(self)
                except Exception:  # noqa: BLE001 - a caller's bug must not stop the node
                    log.exception("answering request %d failed", self.request_id)

    def wait(self, timeout: float | None) -> bool:
        if self._done:
            return True
        lock = self._lock
        if lock is None:
            lock = threading.Lock()
            lock.acquire()  # released by done(): waiting is acquiring
            self._lock = lock
            if self._done:  # done() ran before it could see the lock
                return True
        return lock.acquire(True, -1 if timeout is None else max(0.0, timeout)) or self._done


class NodeHost:
    """Runs ``driver`` for the threads of one process; see the module docstring."""

    def __init__(self, driver: NodeDriver, storage: Storage, transport: Transport, tick_seconds: float,
                 *, work_factory: Callable | None = None) -> None:
        self.driver = driver
        self.state_lock = threading.Lock()
        self.storage = storage
        self.transport = transport
        self.tick_seconds = tick_seconds
        self._inbox: collections.deque = collections.deque()
        self._node_lock = threading.Lock()
        self._next_tick = time.monotonic() + tick_seconds
        self._waiters: dict[int, Outcome] = {}
        self._ids = itertools.count(1)
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._tick_loop, name="dkvs-ticker", daemon=True)
        self._stopping = threading.Event()
        self.failed: BaseException | None = None
        self.feed = ChangeFeed()
        self.feed.reset(driver.state.applied_seq)  # changes before this start are not in the feed
        factory = work_factory or InlineSnapshotWork
        self.work = factory(storage, transport, on_built=self._on_built, on_streamed=self._on_streamed)
        self.events = ClusterEvents(role_of=lambda: driver.node.role)  # GET /events (dkvs.runtime.events)
        # Appends fsync in the thread that runs a burst (dkvs.storage.file, "always").
        self.persists_inline = getattr(storage, "fsync_policy", None) == "always"
        self._holder: int | None = None  # the thread collecting inputs for one burst (hold_bursts)
        self._held = False
        self._held_write = False  # a held input persists (a write): under fsync=always, the ticker's
        self.timed_storage = TimedStorage(storage, self.events, lambda: driver.node.id, lambda: driver.node.epoch)
        self.executor = Executor(driver, self.timed_storage, transport, self.work, self.feed, self.state_lock,
                                 complete=self._complete, on_note=self.events.record)

    # -- what the service layer reads -----------------------------------------------------------
    @property
    def node(self):
        return self.driver.node

    @property
    def state(self):
        return self.driver.state

    @property
    def snapshots_taken(self) -> int:
        return self.driver.snapshots_taken

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, initial_effects: list | None = None) -> None:
        self.transport.start(self._answered, self._unreachable)
        self._submit((_CALL, lambda d: d.bootstrap(initial_effects or []), None))
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        close = getattr(self.work, "close", None)
        if close is not None:
            close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self.failed is None

    # -- inputs from other threads ---------------------------------------------------------------
    def deliver_and_wait(self, message, timeout: float) -> list:
        """A message from an HTTP request: returns the node's answers to its sender."""
        outcome = Outcome()
        self._submit((_STEP, message, outcome))
        outcome.wait(timeout)
        return outcome.messages

    def propose(self, op: str, key: str, value: str | None, acks: str, timeout: float,
                cond: int | None = None) -> Outcome:
        """Order a write on this (master) node and wait for its acknowledgement.

        The hot path of every write: one queue item holding the driver's arguments (no
        closures), one lock per request (its :class:`Outcome`)."""
        outcome = Outcome(next(self._ids))
        self._inbox.append((_PROPOSE, (op, key, value, acks, self._ticks(timeout), cond), outcome))
        self._combine(MAX_COMBINE_BURSTS)
        if outcome._done:  # this thread ran it (flat combining): nothing to wait for
            return outcome
        return self._wait(outcome, timeout)

    def propose_async(self, op: str, key: str, value: str | None, acks: str, timeout: float,
                      cond: int | None, on_done: Callable[[Outcome], None]) -> None:
        """:meth:`propose` without a waiting thread: ``on_done(outcome)`` runs once, on the
        thread that completes the write (it holds the node lock: it must not block).

        The calling thread runs the burst itself when the lock is free, unless the storage
        fsyncs in the appending thread (``--fsync always``): then the ticker runs it, so a
        caller that must never wait (the HTTP selector) never waits for a disk."""
        self._queue_async(_PROPOSE, (op, key, value, acks, self._ticks(timeout), cond), on_done)

    def read_barrier_async(self, timeout: float, on_done: Callable[[Outcome], None]) -> None:
        """:meth:`read_barrier` without a waiting thread (see :meth:`propose_async`)."""
        self._queue_async(_READ, self._ticks(timeout), on_done)

    def _queue_async(self, kind: str, payload, on_done: Callable[[Outcome], None]) -> None:
        outcome = Outcome(next(self._ids))
        outcome.on_done = on_done
        self._inbox.append((kind, payload, outcome))
        if not self._held_here(kind is _PROPOSE):
            self._combine_where_safe(may_persist=True)

    def _held_here(self, persists: bool) -> bool:
        """True when this thread holds its inputs (:meth:`hold_bursts`): the one just queued
        then runs with the rest of them at :meth:`release_bursts`."""
        if self._holder is None or self._holder != threading.get_ident():
            return False
        self._held = True
        self._held_write = self._held_write or persists
        return True

    def _combine_where_safe(self, may_persist: bool) -> None:
        """Run the queue on this thread — unless bursts fsync where they run (``--fsync
        always``) and the queue may hold a write: then the ticker runs it, so a caller that
        must never wait (the HTTP selector) never waits for a disk. A burst of inputs that
        persist nothing (replication answers) runs here, one burst at most."""
        if not self.persists_inline:
            self._combine(MAX_COMBINE_BURSTS)
        else:
            self._combine(0 if may_persist else 1)

    def hold_bursts(self) -> None:
        """From now until :meth:`release_bursts`, the asynchronous inputs this thread queues
        (:meth:`propose_async`, :meth:`read_barrier_async`, replication answers) wait in the
        queue instead of each running a burst of its own.

        The HTTP selector holds while it handles one poll's events: the writes and reads of
        every ready connection, and the slaves' answers among them, then run as one burst —
        one pass of the driver and the executor, one storage append, one batch per slave —
        instead of one burst each. Only this thread's own inputs wait, and only until it
        releases; other threads' inputs run as always."""
        self._holder = threading.get_ident()

    def release_bursts(self) -> None:
        """Stop holding (:meth:`hold_bursts`) and run what was held."""
        self._holder = None
        if self._held:
            may_persist, self._held, self._held_write = self._held_write, False, False
            self._combine_where_safe(may_persist)

    def propose_many(self, requests: list[tuple]) -> list[Outcome]:
        """:meth:`propose` for several writes ``(op, key, value, acks, timeout, cond)`` with one
        drain of the queue (a forwarded batch, dkvs.runtime.forward_writes: group commit);
        waits for each within its own timeout."""
        outcomes = []
        for op, key, value, acks, timeout, cond in requests:
            outcome = Outcome(next(self._ids))
            outcomes.append(outcome)
            self._inbox.append((_PROPOSE, (op, key, value, acks, self._ticks(timeout), cond), outcome))
        self._combine(MAX_COMBINE_BURSTS)
        start = time.monotonic()
        for request, outcome in zip(requests, outcomes):
            self._wait(outcome, max(0.0, start + request[4] - time.monotonic()))
        return outcomes

    def read_barrier(self, timeout: float) -> Outcome:
        """The read index: answered once a consistent read may read the committed state."""
        outcome = Outcome(next(self._ids))
        self._inbox.append((_READ, self._ticks(timeout), outcome))
        self._combine(MAX_COMBINE_BURSTS)
        return self._wait(outcome, timeout)

    def transfer(self, to: str | None, ticks: int, wait: float) -> Outcome:
        """Hand the master role to ``to`` (``None``: the freshest live slave) within ``ticks``."""
        return self._call(lambda d, rid: d.transfer(rid, to, ticks), wait)

    def _ticks(self, timeout: float) -> int:
        """Whole ticks covering ``timeout``, plus one for the tick already under way, so a
        request is never answered "timed out" before the time it asked for."""
        return math.ceil(timeout / self.tick_seconds) + 1

    def query(self, fn: Callable, timeout: float = 5.0):
        """Run ``fn(node)`` under the node lock and return its value (for status pages)."""
        outcome = Outcome()
        self._submit((_QUERY, fn, outcome))
        if not outcome.wait(timeout):
            raise TimeoutError("the node did not answer")
        if outcome.error:
            raise RuntimeError(outcome.error)
        return outcome.result

    def _call(self, call: Callable, timeout: float) -> Outcome:
        outcome = Outcome(next(self._ids))
        self._submit((_CALL, lambda d: call(d, outcome.request_id), outcome))
        return self._wait(outcome, timeout)

    def _wait(self, outcome: Outcome, timeout: float) -> Outcome:
        if not outcome.wait(timeout + 1.0):
            self._waiters.pop(outcome.request_id, None)
            outcome.error = outcome.error or "no_answer"
        return outcome

    def _answered(self, peer: str, send_id: int, messages: list) -> None:
        """Every replication answer. It may arrive on the HTTP selector
        (dkvs.transport.stream_loop), which must never wait for a disk: where bursts fsync
        (``--fsync always``) this thread runs the burst only when the answer is alone in the
        queue (an answer persists nothing), and leaves it to the ticker when proposals wait
        with it. (A proposal queued in the instant between the check and the burst is
        persisted here: rare, and only a delay.)"""
        inbox = self._inbox
        inbox.append((_RECEIVED, (peer, send_id, messages), None))
        if not self._held_here(False):
            self._combine_where_safe(may_persist=len(inbox) > 1)

    def _unreachable(self, peer: str, send_id: int) -> None:
        self._submit((_CALL, lambda d: d.send_failed(peer, send_id), None))

    def _on_built(self, seq: int, nbytes: int, error: str | None) -> None:
        self._submit((_CALL, lambda d: d.snapshot_built(seq, nbytes, error), None))

    def _on_streamed(self, peer: str, seq: int, error: str | None) -> None:
        self._submit((_CALL, lambda d: d.snapshot_streamed(peer, seq, error), None))

    # -- running the driver ----------------------------------------------------------------------
    def _submit(self, item) -> None:
        """Queue an input, then help drain the queue if nobody is running the node."""
        self._inbox.append(item)
        self._combine(MAX_COMBINE_BURSTS)

    def _combine(self, max_bursts: int | None, tick: bool = False) -> bool:
        """Drain the queue under the node lock, at most ``max_bursts`` bursts (``None``: until
        empty). The check after each release is what makes this safe: an input queued
        while another thread held the lock is seen here, and either this thread takes the
        lock and runs it, the thread that holds it by then drains it, or — past the
        fairness bound — the ticker, which this thread wakes.

        Returns False when it found the lock held (the holder drains the queue and ticks the
        time owed), True otherwise."""
        inbox = self._inbox
        bursts = 0
        while (inbox or tick) and self.failed is None:
            if max_bursts is not None and bursts >= max_bursts:
                self._wake.set()
                return True
            if not self._node_lock.acquire(blocking=False):
                return False
            try:
                items = []
                while inbox and len(items) < MAX_BURST_INPUTS:
                    items.append(inbox.popleft())
                self._burst(items)
                tick = False
                bursts += 1
            except BaseException as exc:
                self.failed = exc
                log.critical("running the node failed; it stops serving", exc_info=True)
                self._fail_waiters()
                raise
            finally:
                self._node_lock.release()
        return True

    def _tick_loop(self) -> None:
        """Keep logical time going when no input arrives; drain what others left behind.

        When the lock is held by another thread the ticker waits a whole tick (or a wake-up)
        before trying again: the holder ticks the time owed itself, and retrying at once
        while a tick is overdue spun ~5,000 times a second under load."""
        contended = False
        while not self._stopping.is_set():
            if contended:
                self._wake.wait(self.tick_seconds)
            else:
                self._wake.wait(max(0.0, self._next_tick - time.monotonic()))
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                contended = not self._combine(None, tick=True)
            except BaseException:  # noqa: BLE001 - already logged; the node is down
                return

    def _burst(self, items: list) -> None:
        driver = self.driver
        woken: list[Outcome] = []
        # Time owed first: the ticks for the time that passed *before* these inputs arrived
        # must not eat into their deadlines (a write's timeout, a slave's election timer).
        now = time.monotonic()
        if now >= self._next_tick:
            behind = int((now - self._next_tick) / self.tick_seconds) + 1
            for _ in range(min(behind, MAX_CATCH_UP_TICKS)):
                driver.tick()
            if behind > MAX_CATCH_UP_TICKS:  # ticks dropped: logical time ran slow (read lease)
                driver.clock_jumped()
            self._next_tick += behind * self.tick_seconds
        waiters = self._waiters
        for kind, payload, outcome in items:
            if kind is _PROPOSE:
                waiters[outcome.request_id] = outcome
                driver.propose(outcome.request_id, *payload)
            elif kind is _RECEIVED:
                driver.received(*payload)
            elif kind is _STEP:
                driver.step(payload, token=outcome)
                woken.append(outcome)
            elif kind is _CALL:
                if outcome is not None:
                    waiters[outcome.request_id] = outcome
                payload(driver)
            elif kind is _READ:
                waiters[outcome.request_id] = outcome
                driver.read(outcome.request_id, payload)
            else:  # _QUERY
                try:
                    outcome.result = payload(driver.node)
                except Exception as exc:  # noqa: BLE001 - reported to the caller
                    outcome.error = repr(exc)
                woken.append(outcome)
        self.executor.run(driver.ready())
        for outcome in woken:
            outcome.done()

    def _complete(self, reply) -> None:
        outcome = self._waiters.pop(reply.request_id, None)
        if outcome is not None:
            outcome.set(reply.result, reply.error, reply.rejected)

    def _fail_waiters(self) -> None:
        for outcome in list(self._waiters.values()):
            outcome.set(None, "node_stopped")
        self._waiters.clear()


_PROPOSE, _READ, _RECEIVED, _STEP, _CALL, _QUERY = "propose", "read", "received", "step", "call", "query"
