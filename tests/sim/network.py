"""A seeded, lossy message network with logical time, for the deterministic simulator.

Every message sent gets a delivery tick ``now + delay`` (delay drawn uniformly from
``[min_delay, max_delay]``, so messages overtake each other: reordering), may be dropped
(``drop_rate``) or duplicated (``dup_rate``: a second copy with its own delay). Pending
messages sit in one heap ordered by ``(deliver_tick, counter)``; the counter makes ties
deterministic, so one seed always produces one run.

Faults between nodes are *links that are down*, checked when a message is delivered (a
message in flight when a partition starts is lost, as on a real network):

* :meth:`partition` splits the nodes into groups that cannot talk to each other;
* :meth:`isolate` cuts one node (or a few) off from everyone else;
* :meth:`cut` blocks one direction only (``frm`` can no longer reach ``to``);
* :meth:`heal` restores every link;
* :meth:`pause` holds every message to a node (a long GC or a starved process: it hears
  nothing, but nothing is lost) until :meth:`resume`, which delivers them in order;
* :meth:`hold` does the same for one direction of one link (a message stuck in a slow
  connection) until :meth:`release`: scenarios use it to deliver a request *late*.

A lost message can be *noticed*, as the HTTP transport notices a failed request: with
probability ``notice_rate`` the node that made the request (the sender of a request, the
receiver of a lost reply, decided by ``requester_of``) later gets an :data:`UNREACHABLE`
notice naming the peer, and the host calls ``Node.unreachable(peer)``. With
``notice_rate=0`` every loss is silent and the core must rely on its own timeouts.

The network knows nothing about nodes crashing: the cluster drops deliveries to a node
that is down. It never reads a clock and takes randomness only from its own seeded
``random.Random``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["SimNetwork", "NetStats", "UNREACHABLE"]


class _Unreachable:
    def __repr__(self) -> str:
        return "UNREACHABLE"


UNREACHABLE = _Unreachable()  # (UNREACHABLE, lost message): "your request failed", from the lost peer


def _is_notice(message) -> bool:
    return isinstance(message, tuple) and bool(message) and message[0] is UNREACHABLE


@dataclass
class NetStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    cut: int = 0  # lost to a partition or a one-way cut
    noticed: int = 0  # losses reported to the requester


class SimNetwork:
    """Pending messages in a heap; links that are down in a set of ``(frm, to)`` pairs."""

    def __init__(self, seed: int, *, min_delay: int = 1, max_delay: int = 3,
                 drop_rate: float = 0.0, dup_rate: float = 0.0, notice_rate: float = 0.0,
                 requester_of=None) -> None:
        self.rng = random.Random(f"net-{seed}")
        self.now = 0
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.drop_rate = drop_rate
        self.dup_rate = dup_rate
        self.notice_rate = notice_rate
        # (frm, to, message) -> (node that made the request, the peer it failed to reach)
        self.requester_of = requester_of or (lambda frm, to, message: (frm, to))
        self.stats = NetStats()
        # (deliver_tick, counter, frm, to, message, is_duplicate_copy)
        self._heap: list[tuple[int, int, str, str, object, bool]] = []
        self._counter = 0
        self._down: set[tuple[str, str]] = set()
        self._paused: dict[str, list] = {}  # node -> held heap items, in arrival order
        self._held: dict[tuple[str, str], list] = {}  # (frm, to) -> held heap items
        self.on_send = None  # optional hook(frm, to, message), called as a message leaves

    # -- faults ------------------------------------------------------------------------------
    def set_faults(self, *, drop_rate: float | None = None, dup_rate: float | None = None,
                   min_delay: int | None = None, max_delay: int | None = None,
                   notice_rate: float | None = None) -> None:
        if drop_rate is not None:
            self.drop_rate = drop_rate
        if dup_rate is not None:
            self.dup_rate = dup_rate
        if min_delay is not None:
            self.min_delay = min_delay
        if max_delay is not None:
            self.max_delay = max_delay
        if notice_rate is not None:
            self.notice_rate = notice_rate
        assert 1 <= self.min_delay <= self.max_delay, "delays are at least one tick"

    def partition(self, *groups: Iterable[str]) -> None:
        """Nodes in different groups can no longer exchange messages (both directions)."""
        groups = [sorted(g) for g in groups]
        for i, group in enumerate(groups):
            for other in groups[i + 1:]:
                for a in group:
                    for b in other:
                        self._down.add((a, b))
                        self._down.add((b, a))

    def isolate(self, nodes: Iterable[str], everyone: Iterable[str]) -> None:
        """Cut ``nodes`` off from the rest of ``everyone`` (they still talk among themselves)."""
        inside = set(nodes)
        self.partition(sorted(inside), sorted(n for n in everyone if n not in inside))

    def cut(self, frm: str, to: str) -> None:
        """One-way cut: messages from ``frm`` to ``to`` are lost; the other way still works."""
        self._down.add((frm, to))

    def heal(self) -> None:
        self._down.clear()

    def pause(self, node: str) -> None:
        """Hold messages to ``node`` (the cluster stops its clock); nothing is lost."""
        self._paused.setdefault(node, [])

    def resume(self, node: str) -> None:
        """Deliver what was held for ``node``, in order, from the next tick on."""
        self._redeliver(self._paused.pop(node, []))

    def paused(self, node: str) -> bool:
        return node in self._paused

    def hold(self, frm: str, to: str) -> None:
        """Hold messages from ``frm`` to ``to`` (none is lost) until :meth:`release`."""
        self._held.setdefault((frm, to), [])

    def release(self, frm: str, to: str) -> None:
        self._redeliver(self._held.pop((frm, to), []))

    def _redeliver(self, items: list) -> None:
        for item in items:
            self._counter += 1
            heapq.heappush(self._heap, (self.now + 1, self._counter) + item[2:])

    def link_up(self, frm: str, to: str) -> bool:
        return (frm, to) not in self._down

    @property
    def faulty(self) -> bool:
        """True while any link is down or messages are dropped or duplicated."""
        return bool(self._down) or self.drop_rate > 0 or self.dup_rate > 0

    # -- sending -----------------------------------------------------------------------------
    def send(self, frm: str, to: str, message: object) -> None:
        """Queue ``message``; it may be dropped, duplicated and delayed."""
        if self.on_send is not None:
            self.on_send(frm, to, message)
        self.stats.sent += 1
        rng = self.rng
        if self.drop_rate and rng.random() < self.drop_rate:
            self.stats.dropped += 1
            self._lost(frm, to, message)
            return
        self._push(frm, to, message)
        if self.dup_rate and rng.random() < self.dup_rate:
            self.stats.duplicated += 1
            self._push(frm, to, message, copy=True)

    send_snapshot = send  # snapshots travel like any other message in the simulator

    def refused(self, frm: str, to: str, message: object) -> None:
        """``to`` is down: the delivery failed like a refused connection."""
        self._lost(frm, to, message)

    def _lost(self, frm: str, to: str, message: object) -> None:
        """Maybe tell the requester, later, that its request failed (a request fails once:
        losing a duplicate copy is never reported)."""
        if self.notice_rate and not _is_notice(message) and self.rng.random() < self.notice_rate:
            requester, peer = self.requester_of(frm, to, message)
            self.stats.noticed += 1
            self._push(peer, requester, (UNREACHABLE, message))

    def _push(self, frm: str, to: str, message: object, copy: bool = False) -> None:
        delay = self.min_delay if self.min_delay == self.max_delay else \
            self.rng.randint(self.min_delay, self.max_delay)
        self._counter += 1
        heapq.heappush(self._heap, (self.now + delay, self._counter, frm, to, message, copy))

    # -- delivering --------------------------------------------------------------------------
    def due(self) -> Iterator[tuple[str, str, object, bool]]:
        """Pop, one at a time, every message due at or before ``now`` whose link is up, as
        ``(frm, to, message, is_duplicate_copy)``.

        A generator, so messages sent while handling one delivery (due later, since every
        delay is at least one tick) never join the current round.
        """
        heap = self._heap
        while heap and heap[0][0] <= self.now:
            item = heapq.heappop(heap)
            _, _, frm, to, message, copy = item
            if to in self._paused:
                self._paused[to].append(item)
                continue
            if (frm, to) in self._held:
                self._held[(frm, to)].append(item)
                continue
            if (frm, to) in self._down and not _is_notice(message):
                self.stats.cut += 1
                if not copy:
                    self._lost(frm, to, message)
                continue
            self.stats.delivered += 1
            yield frm, to, message, copy

    def defer(self, frm: str, to: str, message: object, until: int, copy: bool = False) -> None:
        """Deliver ``message`` again at tick ``until`` (its receiver is paused for a while)."""
        self._counter += 1
        heapq.heappush(self._heap, (until, self._counter, frm, to, message, copy))

    def in_flight(self) -> int:
        held = list(self._paused.values()) + list(self._held.values())
        return len(self._heap) + sum(len(items) for items in held)

    def clear(self) -> None:
        """Forget every message in flight (used by scenarios that want a quiet start)."""
        self._heap.clear()
