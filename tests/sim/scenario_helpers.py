"""Shared helpers of the scenario tests: timings in ticks, and bounded waits in logical time."""

from __future__ import annotations

from dkvs.core.config import CoreConfig
from dkvs.core.node import MASTER, SLAVE

from .cluster import SimCluster, SimFailure

__all__ = ["T", "HB", "MASTER", "SLAVE", "SimFailure", "wait_for", "wait_done", "wait_master", "node"]

T = CoreConfig().election_ticks  # the election timeout, in ticks
HB = CoreConfig().heartbeat_ticks


def wait_for(c: SimCluster, predicate, ticks: int, what: str) -> int:
    used = c.run_until(predicate, ticks)
    assert used <= ticks, f"{c.where()}: {what} did not happen within {ticks} ticks\n{c.describe()}"
    return used


def wait_done(c: SimCluster, *ops, ticks: int = 4 * T) -> None:
    wait_for(c, lambda: all(op.done for op in ops), ticks, "answers to " + ", ".join(f"#{o.request_id}" for o in ops))


def wait_master(c: SimCluster, among=None, ticks: int = 6 * T) -> str:
    def found():
        m = c.master()
        return m is not None and (among is None or m.id in among) and m.node.commit_seq == m.node.log.last_seq
    wait_for(c, found, ticks, f"a master among {among or 'all'}")
    return c.master().id


def node(c: SimCluster, node_id: str):
    return c.nodes[node_id].node
