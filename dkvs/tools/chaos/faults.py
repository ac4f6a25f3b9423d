"""The nemesis schedule: which faults, in what order, for how long (pure and seeded).

A run injects ``count`` fault *events*, one per ``interval_s`` slot. Each event starts its
fault(s), holds them for ``hold_s`` (a random 40–80 % of the slot), then heals everything
before the next slot. An event is drawn from the seeded ``random.Random`` alone, so a seed
names a schedule; which node is "the master" is only known when the event starts, so the
plan carries a random *order* of node indices from which victims are taken at run time.

Fault kinds (:data:`FAULT_KINDS`):

==================  =========================================================================
``kill``            SIGKILL a random node; restart it (same port and data dir) at heal time
``kill-master``     the same, on the current master
``pause``           SIGSTOP a random node; SIGCONT at heal time (its peers see silence, not EOF)
``pause-master``    the same, on the master: it wakes up believing it still leads
``isolate``         cut a random node off from every peer
``isolate-master``  cut the master off: the majority elects a new one, the old one must fence
``split``           a random minority (``n // 2`` nodes) from the majority
``bridge``          two halves that only one node hears both of (a non-transitive partition)
``combo``           two of the above (different nodes where possible), the second at mid-hold
==================  =========================================================================

Partitions are sets of *cuts*: unordered node pairs that cannot talk. :func:`block_lists`
turns cuts into the ``{"block": [peer ids]}`` body each node gets from ``POST
/internal/faults``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "COMBO",
    "FAULT_KINDS",
    "PRIMITIVE_KINDS",
    "FaultEvent",
    "block_lists",
    "bridge_cuts",
    "isolate_cuts",
    "plan_faults",
    "split_cuts",
]

PRIMITIVE_KINDS = ("kill", "kill-master", "pause", "pause-master", "isolate", "isolate-master",
                   "split", "bridge")
COMBO = "combo"
FAULT_KINDS = PRIMITIVE_KINDS + (COMBO,)
COMBO_SHARE = 0.15  # of events, when combos are enabled
HOLD_FRACTION = (0.4, 0.8)  # of the slot, drawn per event


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One scheduled event. ``kinds`` has one primitive kind, or two for a combo.

    ``order`` is a random permutation of node indices: a "random node" is the first index of
    it that the event has not used yet; a split's minority is its first ``n // 2``.
    """

    number: int
    kinds: tuple[str, ...]
    hold_s: float
    order: tuple[int, ...]

    @property
    def name(self) -> str:
        return "+".join(self.kinds)


def plan_faults(rng: random.Random, count: int, interval_s: float, node_count: int,
                kinds: Sequence[str] = FAULT_KINDS) -> list[FaultEvent]:
    """``count`` events drawn from ``kinds`` (``combo`` combines two primitive ones)."""
    if node_count < 1:
        raise ValueError("a schedule needs at least one node")
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}")
    primitives = [kind for kind in PRIMITIVE_KINDS if kind in kinds] or list(PRIMITIVE_KINDS)
    combos = COMBO in kinds
    only_combos = set(kinds) == {COMBO}
    events = []
    for number in range(1, count + 1):
        if combos and (only_combos or rng.random() < COMBO_SHARE):
            first = rng.choice(primitives)
            chosen: tuple[str, ...] = (first, rng.choice(primitives))
        else:
            chosen = (rng.choice(primitives),)
        hold = interval_s * rng.uniform(*HOLD_FRACTION)
        order = list(range(node_count))
        rng.shuffle(order)
        events.append(FaultEvent(number, chosen, round(hold, 3), tuple(order)))
    return events


def _pair(a: str, b: str) -> frozenset:
    return frozenset((a, b))


def isolate_cuts(node: str, nodes: Iterable[str]) -> set[frozenset]:
    """Every link of ``node``."""
    return {_pair(node, other) for other in nodes if other != node}


def split_cuts(side: Iterable[str], nodes: Iterable[str]) -> set[frozenset]:
    """Every link between ``side`` and the rest of ``nodes``."""
    inside = set(side)
    return {_pair(a, b) for a in inside for b in nodes if b not in inside}


def bridge_cuts(bridge: str, half_a: Iterable[str], half_b: Iterable[str]) -> set[frozenset]:
    """Every link between the two halves; ``bridge`` (in neither) keeps all its links."""
    half_b = list(half_b)
    return {_pair(a, b) for a in half_a for b in half_b if bridge not in (a, b)}


def block_lists(cuts: Iterable[frozenset], nodes: Iterable[str]) -> dict[str, list[str]]:
    """For each node, the sorted peers it must block (cuts are symmetric)."""
    blocked: dict[str, set[str]] = {node: set() for node in nodes}
    for cut in cuts:
        a, b = tuple(cut)
        blocked.setdefault(a, set()).add(b)
        blocked.setdefault(b, set()).add(a)
    return {node: sorted(peers) for node, peers in blocked.items()}
