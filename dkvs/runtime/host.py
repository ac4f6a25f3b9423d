"""Running the node: one thread at a time inside the :class:`~dkvs.core.node.Node`.

Everything that wants the node — HTTP handlers proposing writes, transport threads
delivering messages, the status page — appends an input to one queue and then tries to
take the *node lock* (flat combining). Whoever holds the lock drains every queued input,
feeds them to the node, adds the ticks real time has produced, calls ``flush()`` so a
burst of writes leaves as one batch per slave, and runs all effects of the burst through
the :class:`EffectRunner` (one storage append and one fsync for the burst: group commit).
Then it releases the lock and looks at the queue again: an input queued while the lock was
held is always drained, by this thread or the next holder. Callers are woken when their
reply effect runs.

So the core is still single threaded — never two threads inside it — without paying a
hand-off to a dedicated thread on every write: the HTTP thread of an uncontended write
runs it to completion itself. A ticker thread keeps logical time going when no request
arrives.

Reads do not queue: HTTP threads read the :class:`KVState` under ``state_lock``.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable

from ..core.effects import Send
from ..core.kvstate import KVState
from ..core.node import Node
from ..storage.base import Storage, StoredSnapshot
from ..transport.base import Transport
from .changes import ChangeFeed
from .runner import EffectRunner

__all__ = ["NodeHost", "Outcome"]

log = logging.getLogger("dkvs.runtime")

MAX_BURST_INPUTS = 2048
MAX_CATCH_UP_TICKS = 1000
DEFAULT_SNAPSHOT_THRESHOLD_BYTES = 1024 * 1024


class Outcome:
    """A caller's handle on one request: completed once, by whoever runs the node."""

    __slots__ = ("_lock", "result", "error", "rejected", "messages")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # released when done: waiting is acquiring
        self.result: dict | None = None
        self.error: str | None = None
        self.rejected: int | None = None  # changed nothing: the key's current seq (0 = absent)
        self.messages: list = []  # replies addressed back to a message's sender

    def set(self, result, error) -> None:
        self.result, self.error = result, error
        self.done()

    def done(self) -> None:
        if self._lock.locked():
            self._lock.release()

    def wait(self, timeout: float | None) -> bool:
        if self._lock.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            self._lock.release()
            return True
        return False


class NodeHost:
    """Runs ``node`` on its own thread; see the module docstring."""

    def __init__(self, node: Node, state: KVState, storage: Storage, transport: Transport,
                 tick_seconds: float, *, snapshot_threshold_bytes: int = DEFAULT_SNAPSHOT_THRESHOLD_BYTES) -> None:
        self.node = node
        self.state = state
        self.state_lock = threading.Lock()
        self.storage = storage
        self.transport = transport
        self.tick_seconds = tick_seconds
        self.snapshot_threshold_bytes = snapshot_threshold_bytes
        self._inbox: collections.deque = collections.deque()
        self._node_lock = threading.Lock()
        self._next_tick = time.monotonic() + tick_seconds
        self._waiters: dict[int, Outcome] = {}
        self._ids = itertools.count(1)
        self._thread = threading.Thread(target=self._tick_loop, name="dkvs-ticker", daemon=True)
        self._stopping = threading.Event()
        self.failed: BaseException | None = None
        self._members_seen: dict[str, str] = {}
        self.feed = ChangeFeed()
        self.feed.reset(state.applied_seq)  # changes before this start are not in the feed
        self.runner = EffectRunner(lambda: self.node, storage, state, send=transport.send,
                                   send_snapshot=transport.send_snapshot, reply=self._on_reply,
                                   state_lock=self.state_lock, feed=self.feed)
        self.snapshots_taken = 0
        self.last_snapshot_bytes = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, initial_effects: list | None = None) -> None:
        self.transport.start(self.deliver, self._peer_unreachable)
        self._sync_peers()
        if initial_effects:
            self.runner.run(initial_effects)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        self._stopping.set()
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self.failed is None

    # -- inputs from other threads ---------------------------------------------------------------
    def deliver(self, message) -> None:
        """A message from another node, no answer expected (transport reply path)."""
        self._submit((_STEP, message, None))

    def deliver_and_wait(self, message, timeout: float) -> list:
        """A message from an HTTP request: returns the node's answers to its sender."""
        outcome = Outcome()
        self._submit((_STEP, message, outcome))
        outcome.wait(timeout)
        return outcome.messages

    def propose(self, op: str, key: str, value: str | None, acks: str, timeout: float,
                cond: int | None = None) -> Outcome:
        """Order a write on this (master) node and wait for its acknowledgement."""
        outcome = Outcome()
        request_id = next(self._ids)
        ticks = max(1, round(timeout / self.tick_seconds))
        self._submit((_CALL, lambda node: node.propose(request_id, op, key, value, acks, ticks, cond),
                      (request_id, outcome)))
        if not outcome.wait(timeout + 1.0):
            self._waiters.pop(request_id, None)
            outcome.error = outcome.error or "no_answer"
        return outcome

    def read_barrier(self, timeout: float) -> Outcome:
        outcome = Outcome()
        request_id = next(self._ids)
        ticks = max(1, round(timeout / self.tick_seconds))
        self._submit((_CALL, lambda node: node.propose_read(request_id, ticks), (request_id, outcome)))
        if not outcome.wait(timeout + 1.0):
            self._waiters.pop(request_id, None)
            outcome.error = outcome.error or "no_answer"
        return outcome

    def query(self, fn: Callable[[Node], object], timeout: float = 5.0):
        """Run ``fn(node)`` under the node lock and return its value (for status pages)."""
        outcome = Outcome()
        self._submit((_QUERY, fn, outcome))
        if not outcome.wait(timeout):
            raise TimeoutError("the node did not answer")
        if outcome.error:
            raise RuntimeError(outcome.error)
        return outcome.result

    def _peer_unreachable(self, peer_id: str) -> None:
        self._submit((_CALL, lambda node: node.unreachable(peer_id), None))

    # -- running the node ------------------------------------------------------------------------
    def _submit(self, item) -> None:
        """Queue an input, then help drain the queue if nobody is running the node."""
        self._inbox.append(item)
        self._combine()

    def _combine(self, tick: bool = False) -> None:
        """Drain the queue under the node lock, as often as needed to leave none behind.

        The check after each release is what makes this safe: an input queued while another
        thread held the lock is seen here, and either this thread takes the lock and runs it
        or the thread that holds the lock by then drains it.
        """
        inbox = self._inbox
        while (inbox or tick) and self.failed is None and self._node_lock.acquire(blocking=False):
            try:
                items = []
                while inbox and len(items) < MAX_BURST_INPUTS:
                    items.append(inbox.popleft())
                self._burst(items)
                tick = False
            except BaseException as exc:
                self.failed = exc
                log.critical("running the node failed; it stops serving", exc_info=True)
                self._fail_waiters()
                raise
            finally:
                self._node_lock.release()

    def _tick_loop(self) -> None:
        """Keep logical time going when no input arrives."""
        while not self._stopping.wait(max(0.0, self._next_tick - time.monotonic())):
            try:
                self._combine(tick=True)
            except BaseException:  # noqa: BLE001 - already logged; the node is down
                return

    def _burst(self, items: list) -> None:
        node = self.node
        effects: list = []
        woken: list[Outcome] = []
        for kind, payload, outcome in items:
            if kind is _STEP:
                produced = node.step(payload)
                if outcome is not None:
                    produced = self._divert_replies(produced, payload.sender, outcome)
                    woken.append(outcome)
                effects.extend(produced)
            elif kind is _CALL:
                if outcome is not None:
                    self._waiters[outcome[0]] = outcome[1]
                effects.extend(payload(node))
            else:  # _QUERY
                try:
                    outcome.result = payload(node)
                except Exception as exc:  # noqa: BLE001 - reported to the caller
                    outcome.error = repr(exc)
                woken.append(outcome)
        now = time.monotonic()
        if now >= self._next_tick:
            behind = int((now - self._next_tick) / self.tick_seconds) + 1
            for _ in range(min(behind, MAX_CATCH_UP_TICKS)):
                effects.extend(node.tick())
            self._next_tick += behind * self.tick_seconds
        effects.extend(node.flush())
        self.runner.run(effects)
        for outcome in woken:
            outcome.done()
        if node.members != self._members_seen:
            self._sync_peers()
        self._maybe_snapshot()

    @staticmethod
    def _divert_replies(effects: list, sender: str, outcome: Outcome) -> list:
        """Answers to an HTTP-delivered message travel back in its HTTP response."""
        kept = []
        for effect in effects:
            if type(effect) is Send and effect.to == sender:
                outcome.messages.append(effect.message)
            else:
                kept.append(effect)
        return kept

    def _on_reply(self, request_id: int, result, error) -> None:
        outcome = self._waiters.pop(request_id, None)
        if outcome is None:
            return
        if result is not None:
            outcome.rejected = self.runner.rejected.pop(result.get("seq"), None)
        outcome.set(result, error)

    def _fail_waiters(self) -> None:
        for outcome in list(self._waiters.values()):
            outcome.set(None, "node_stopped")
        self._waiters.clear()

    def _sync_peers(self) -> None:
        self._members_seen = dict(self.node.members)
        self.transport.set_peers({m: u for m, u in self._members_seen.items() if m != self.node.id})

    # -- compaction ------------------------------------------------------------------------------
    def _maybe_snapshot(self) -> None:
        """Compact when the log outgrows both the threshold and the last snapshot.

        Like Redis's AOF rewrite rule: the data dir stays within a small multiple of the
        live data whatever its size, and the cost of snapshots (proportional to the
        state) is amortised over at least as many bytes of log.
        """
        if self.storage.log_bytes() < max(self.snapshot_threshold_bytes, self.last_snapshot_bytes):
            return
        node = self.node
        with self.state_lock:
            seq, items = self.state.snapshot_items()
        if seq <= node.log.snapshot_seq or seq > node.commit_seq:
            return
        self.take_snapshot(seq, items)

    def take_snapshot(self, seq: int, items: list) -> None:
        """Store the state at committed ``seq`` and drop the log before it."""
        node = self.node
        started = time.monotonic()
        snapshot = StoredSnapshot(seq, node.log.epoch_at(seq), tuple(node.members_at(seq).items()), items)
        self.storage.save_snapshot(snapshot)
        node.compact(seq)
        self.snapshots_taken += 1
        self.last_snapshot_bytes = sum(len(k) + len(v) + 16 for k, v, _ in items)
        log.info("snapshot at seq %d (%d keys) in %.3f s; log compacted", seq, len(items),
                 time.monotonic() - started)


_STEP, _CALL, _QUERY = "step", "call", "query"
