"""The slave's side of batched forwarding: gather writes while a batch is in flight.

A :class:`WriteBatcher` serves one master (and one durability class, see below). It keeps
at most :data:`MAX_BATCHES_IN_FLIGHT` batches in flight, each alone on its own pipelined
connection (:mod:`dkvs.api.pipeline`; the master serves a connection's requests one at a
time, so two batches on one connection would wait for each other). A write that finds a
free slot leaves at once, alone: no write waits for company on an idle node. Writes that
arrive while every slot is busy queue up and leave together, as one batch
(:mod:`dkvs.api.forward_batch`, at most :data:`MAX_WRITES_PER_BATCH` writes and
:data:`MAX_BYTES_PER_BATCH` bytes), as soon as a slot's answer comes back. So the batch
size follows the load: 1 when quiet, hundreds under 1,000 clients.

What each client is told (``done(reply, None)`` or ``done(None, NoMaster)``, exactly once):

* the master's answer for its own write, relayed as a single forward's answer;
* ``NoMaster`` (503, ``Retry-After``) when the batch's connection failed or its answer is
  unusable: the write's outcome is unknown, as for a single forward that got no answer.
  Nothing is retried: a write that may have been applied is never sent twice;
* a batch refused whole (400, 401, 403, 404, 405, 413: nothing in it ran, e.g. a master
  without the route, or a signature it does not accept) sends its writes again one by one
  through ``fallback`` (the single-request path), and batching to that master pauses for
  :data:`DISABLED_SECONDS`.

The forwarder keeps one batcher per (master, ``acks``/``timeout`` query): a write that
waits for ``acks=all`` does not hold back the answers of ``acks=1`` writes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ..errors import NoMaster
from .forward_batch import BrokenBatch, BatchWrite, decode_answers, encode_writes
from .pipeline import Pending, PipelinedConnection, request_bytes
from .response import Reply

__all__ = ["WriteBatcher", "MAX_BATCHES_IN_FLIGHT", "MAX_WRITES_PER_BATCH", "MAX_BYTES_PER_BATCH",
           "REFUSED_WHOLE"]

MAX_BATCHES_IN_FLIGHT = 2
MAX_WRITES_PER_BATCH = 512
MAX_BYTES_PER_BATCH = 2 * 1024 * 1024
REFUSED_WHOLE = frozenset({400, 401, 403, 404, 405, 413})  # the master ran nothing of the batch
RETRY_AFTER_SECONDS = 1.0
DISABLED_SECONDS = 30.0  # after a batch refused whole, single requests for this long

Done = Callable[[Reply | None, NoMaster | None], None]


class _Item:
    __slots__ = ("write", "size", "deadline", "done", "fallback")

    def __init__(self, write: BatchWrite, deadline: float, done: Done, fallback: Callable[[], None]) -> None:
        self.write, self.deadline, self.done, self.fallback = write, deadline, done, fallback
        self.size = len(write.target) + len(write.body or b"") + 64


class WriteBatcher:
    """Batches writes to the master at ``place`` (``(scheme, host, port)``); thread safe.

    ``sign(base_url, target, body)`` returns the headers that sign a batch, or None when
    ``base_url`` is no longer the master (the writes then go one by one)."""

    def __init__(self, place: tuple, prefix: str, base_url: str, *, sign: Callable[[str, str, bytes], dict | None],
                 connect_timeout_seconds: float, idle_close_seconds: float, name: str,
                 slots: int = MAX_BATCHES_IN_FLIGHT) -> None:
        self.place, self.base_url = place, base_url
        self.target = prefix + "/internal/forward"
        self._sign = sign
        self._connect_timeout = connect_timeout_seconds
        self._idle_close = idle_close_seconds
        self._name = name
        self._lock = threading.Lock()
        self._queue: deque[_Item] = deque()
        self._busy = [False] * max(1, slots)
        self._conns: list[PipelinedConnection | None] = [None] * len(self._busy)
        self.disabled_until = 0.0  # the master refused a batch whole: single requests until then
        self.closed = False
        self.batches = 0  # batches sent (for tests and benchmarks)
        self.writes = 0

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch in flight."""
        return not self._queue and not any(self._busy)

    def submit(self, write: BatchWrite, deadline: float, done: Done, fallback: Callable[[], None]) -> None:
        """Queue ``write``; it leaves now if a slot is free, else with the next batch."""
        with self._lock:
            self._queue.append(_Item(write, deadline, done, fallback))
            slot = self._free_slot_locked()
        if slot is not None:
            self._launch(slot)

    def close(self) -> None:
        with self._lock:
            self.closed = True  # no new connection from here on: _connection checks it
            conns = [conn for conn in self._conns if conn is not None]
            queued, self._queue = list(self._queue), deque()
        for conn in conns:
            conn.close()
        _fail(queued, "the forwarder was closed")

    def join(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for the connections' reader threads to end."""
        deadline = time.monotonic() + timeout
        for conn in list(self._conns):
            if conn is not None:
                conn.join(max(0.0, deadline - time.monotonic()))

    # --- sending --------------------------------------------------------------------

    def _free_slot_locked(self) -> int | None:
        for slot, busy in enumerate(self._busy):
            if not busy:
                self._busy[slot] = True
                return slot
        return None

    def _launch(self, slot: int) -> None:
        """Send the next batch on ``slot`` (marked busy by the caller), or free it."""
        while True:
            with self._lock:
                items, size = [], 0
                queue = self._queue
                while queue and len(items) < MAX_WRITES_PER_BATCH and (not items or size + queue[0].size
                                                                         <= MAX_BYTES_PER_BATCH):
                    item = queue.popleft()
                    items.append(item)
                    size += item.size
                if not items:
                    self._busy[slot] = False
                    return
                disabled = self.closed or time.monotonic() < self.disabled_until
            if disabled:
                for item in items:
                    item.fallback()
                continue
            body = encode_writes([item.write for item in items])
            headers = self._sign(self.base_url, self.target, body)
            if headers is None:  # the master changed: these go as single requests
                for item in items:
                    item.fallback()
                continue
            self._send(slot, items, body, headers)
            return

    def _send(self, slot: int, items: list[_Item], body: bytes, headers: dict) -> None:
        data = request_bytes("POST", self.target, self.place, body,
                             {"Content-Type": "application/json", **headers})
        deadline = max(item.deadline for item in items)
        pending = Pending(data, False, deadline, lambda reply, reason: self._answered(slot, items, reply, reason))
        self.batches += 1
        self.writes += len(items)
        for _ in range(2):  # a kept connection found closing: one more try, on a fresh one
            conn = self._connection(slot)
            if conn is None:
                break
            if conn.send(pending):
                return
        self._answered(slot, items, None, "the connection was refused")

    def _connection(self, slot: int) -> PipelinedConnection | None:
        with self._lock:
            if self.closed:
                return None
            conn = self._conns[slot]
            if conn is None or conn.dead:
                conn = self._conns[slot] = PipelinedConnection(
                    self.place[1], self.place[2], connect_timeout_seconds=self._connect_timeout,
                    idle_close_seconds=self._idle_close, resend=_refuse_resend, name=f"{self._name}-{slot}")
            return conn

    # --- answers --------------------------------------------------------------------

    def _answered(self, slot: int, items: list[_Item], reply: Reply | None, reason: str) -> None:
        """The batch's answer (on a reader thread): next batch first, then every client."""
        refused = reply is not None and reply.status in REFUSED_WHOLE
        if refused:
            self.disabled_until = time.monotonic() + DISABLED_SECONDS
        self._launch(slot)
        if refused:
            for item in items:
                item.fallback()
            return
        if reply is not None and reply.status != 200:
            reason = f"status {reply.status} for the batch"
            reply = None
        if reply is not None:
            try:
                replies = decode_answers(reply.body, len(items))
            except BrokenBatch as exc:
                reason = str(exc)
            else:
                for item, answer in zip(items, replies):
                    item.done(answer, None)
                return
        _fail(items, reason, self.base_url)


def _refuse_resend(pending: Pending) -> None:
    """One batch per connection: nothing is ever behind a closing answer; never resend."""
    pending.done(None, "the other node closed the connection")


def _fail(items: list[_Item], reason: str, base_url: str = "the master") -> None:
    for item in items:
        item.done(None, NoMaster(f"the master at {base_url} did not answer ({reason}); retry shortly",
                                 retry_after=RETRY_AFTER_SECONDS))
