"""The nemesis: carries out a fault plan (:mod:`.faults`) on a :class:`ChaosCluster`.

One event at a time: start its fault(s), hold, heal everything, wait for the next slot.
Healing after every event keeps "at least a majority alive most of the time": only a
combo can take more than one node out at once, and never for longer than one hold.

Starting a fault is a table lookup (:data:`Nemesis.STARTS`): each entry picks its victim
(the master, or the first unused node of the event's random order) and acts. Every event
leaves a :class:`FaultWindow` with wall-clock-free monotonic times, which the analysis
lines up with the history to measure unavailability per fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .cluster import ChaosCluster
from .faults import FaultEvent, block_lists, bridge_cuts, isolate_cuts, split_cuts

__all__ = ["FaultWindow", "Nemesis", "MIN_QUIET_FRACTION"]

MIN_QUIET_FRACTION = 0.2  # of an interval: the least healthy time after each event


@dataclass
class FaultWindow:
    """What one event did and when: ``start_ns`` (first fault begun), ``heal_ns`` (all
    healed), in ``time.monotonic_ns()``; ``actions`` in words; ``problems`` met healing."""

    number: int
    name: str
    start_ns: int
    heal_ns: int = 0
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class _Active:
    """The state of the event in progress: nodes already used and the cuts in force."""

    event: FaultEvent
    window: FaultWindow
    used: set[int] = field(default_factory=set)
    cuts: set[frozenset] = field(default_factory=set)


class Nemesis:
    """Runs events against ``cluster``; ``say`` gets one progress line per event."""

    def __init__(self, cluster: ChaosCluster, say: Callable[[str], None] = lambda line: None) -> None:
        self.cluster = cluster
        self.say = say
        self.windows: list[FaultWindow] = []

    def run(self, plan: list[FaultEvent], interval_s: float, deadline: float) -> list[FaultWindow]:
        """Run ``plan`` one slot of ``interval_s`` per event, after one quiet slot; stop
        early once ``time.monotonic()`` would pass ``deadline`` during an event.

        A slow heal (a restart takes a while on a loaded machine) pushes the schedule back
        rather than eating the healthy part of the next slot: every event is followed by at
        least ``MIN_QUIET_FRACTION`` of an interval without faults.
        """
        start_at = time.monotonic() + interval_s
        for slot, event in enumerate(plan):
            now = time.monotonic()
            if max(now, start_at) + interval_s > deadline:
                self.say(f"stopping after {slot} fault events: time limit")
                break
            if start_at > now:
                time.sleep(start_at - now)
            self.windows.append(self.run_event(event, len(plan)))
            start_at = max(start_at + interval_s, time.monotonic() + MIN_QUIET_FRACTION * interval_s)
        return self.windows

    def run_event(self, event: FaultEvent, total: int) -> FaultWindow:
        active = _Active(event, FaultWindow(event.number, event.name, time.monotonic_ns()))
        self._start(active, event.kinds[0])
        if len(event.kinds) > 1:
            time.sleep(event.hold_s / 2)
            self._start(active, event.kinds[1])
            time.sleep(event.hold_s / 2)
        else:
            time.sleep(event.hold_s)
        active.window.problems = self.cluster.heal_all()
        active.window.heal_ns = time.monotonic_ns()
        held = (active.window.heal_ns - active.window.start_ns) / 1e9
        self.say(f"fault {event.number}/{total} {event.name}: {'; '.join(active.window.actions)} "
                 f"(healed after {held:.2f} s)" + (f" PROBLEMS: {active.window.problems}" if active.window.problems else ""))
        return active.window

    # -- starting faults -------------------------------------------------------------------
    def _start(self, active: _Active, kind: str) -> None:
        self.STARTS[kind](self, active)

    def _victim(self, active: _Active, master: bool) -> tuple[int, bool]:
        """The master if asked and known, else the first unused node of the event's order;
        and whether the node chosen is the master."""
        if master:
            index = self.cluster.master_index()
            if index is not None and index not in active.used:
                active.used.add(index)
                return index, True
        candidates = [i for i in active.event.order if i not in active.used and i not in self.cluster.killed]
        index = candidates[0] if candidates else active.event.order[0]
        active.used.add(index)
        return index, False

    def _label(self, index: int, master: bool) -> str:
        return f"node {index} ({self.cluster.ids[index]}{', master' if master else ''})"

    def _kill(self, active: _Active, master: bool = False) -> None:
        index, master = self._victim(active, master)
        if index in self.cluster.killed:
            return
        self.cluster.kill(index)
        active.window.actions.append(f"SIGKILL {self._label(index, master)}")

    def _pause(self, active: _Active, master: bool = False) -> None:
        index, master = self._victim(active, master)
        if index in self.cluster.killed or index in self.cluster.paused:
            return
        self.cluster.pause(index)
        active.window.actions.append(f"SIGSTOP {self._label(index, master)}")

    def _isolate(self, active: _Active, master: bool = False) -> None:
        index, master = self._victim(active, master)
        self._cut(active, isolate_cuts(self.cluster.ids[index], self.cluster.ids),
                  f"isolate {self._label(index, master)}")

    def _split(self, active: _Active) -> None:
        order = active.event.order
        minority = [self.cluster.ids[i] for i in order[:self.cluster.size // 2]]
        active.used.update(order[:self.cluster.size // 2])
        self._cut(active, split_cuts(minority, self.cluster.ids), f"split off minority {minority}")

    def _bridge(self, active: _Active) -> None:
        ids = [self.cluster.ids[i] for i in active.event.order]
        bridge, rest = ids[0], ids[1:]
        half_a, half_b = rest[:len(rest) // 2], rest[len(rest) // 2:]
        self._cut(active, bridge_cuts(bridge, half_a, half_b), f"bridge {half_a} <-{bridge}-> {half_b}")

    def _cut(self, active: _Active, cuts: set[frozenset], action: str) -> None:
        active.cuts |= cuts
        lists = block_lists(active.cuts, self.cluster.ids)
        for index in self.cluster.reachable():
            self.cluster.block(index, lists[self.cluster.ids[index]])
        active.window.actions.append(action)

    STARTS: dict[str, Callable[[Nemesis, _Active], None]] = {
        "kill": lambda self, active: self._kill(active),
        "kill-master": lambda self, active: self._kill(active, master=True),
        "pause": lambda self, active: self._pause(active),
        "pause-master": lambda self, active: self._pause(active, master=True),
        "isolate": lambda self, active: self._isolate(active),
        "isolate-master": lambda self, active: self._isolate(active, master=True),
        "split": lambda self, active: self._split(active),
        "bridge": lambda self, active: self._bridge(active),
    }
