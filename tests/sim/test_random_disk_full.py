"""Random fault schedules in which disks fill up, mostly the master's, while batches fly.

A master's batch leaves before its own persist (:mod:`dkvs.runtime.executor`), so a full
disk on the master is the case where an entry is on slaves but not on the master: it may
commit only through other durable copies. These seeds run the whole fault catalogue of
:mod:`tests.sim.test_random_seeds` plus ``disk_full`` (a node's appends fail with
``ENOSPC`` for a while, the master's more often than not; the executor's retry persists
the backlog once the disk is freed), and check the same things: every invariant after
every step, convergence after healing, an ``acks=all`` write, and a linearizable history
of the strict keys. ``DKVS_SIM_DISK_SEEDS`` sets how many seeds (default 150).
"""

from __future__ import annotations

import os

import pytest

from dkvs.core.config import CoreConfig

from .cluster import SimCluster
from .test_random_seeds import FaultDriver, make_plan, run_schedule

SEED_COUNT = int(os.environ.get("DKVS_SIM_DISK_SEEDS", "150"))
SEED_OFFSET = 50_000  # other seeds than the plain schedules run
CHUNK_SEEDS = 50


class DiskFaultDriver(FaultDriver):
    FAULTS = FaultDriver.FAULTS + (("disk_full", 6),)

    def __init__(self, cluster: SimCluster, plan, seed: int) -> None:
        super().__init__(cluster, plan, seed)
        self.full_until: dict[str, int] = {}

    def tick(self) -> None:
        super().tick()
        for nid, until in list(self.full_until.items()):
            if until <= self.c.now:
                self.free(nid)

    def fault_disk_full(self) -> None:
        master = self.c.master()
        live = [n for n in self._live() if n not in self.full_until]
        if not live:
            return
        nid = master.id if master is not None and master.id in live and self.rng.random() < 0.7 \
            else self.rng.choice(live)
        ticks = self.rng.randint(1, 2 * self.plan.election_ticks)
        self.full_until[nid] = self.c.now + ticks
        self.c.nodes[nid].storage.full = True
        self.note(f"disk of {nid} full for {ticks} ticks")

    def free(self, nid: str) -> None:
        self.full_until.pop(nid, None)
        self.c.nodes[nid].storage.full = False
        self.note(f"disk of {nid} freed")

    def free_all(self) -> None:
        for nid in list(self.full_until):
            self.free(nid)


def run_disk_seed(seed: int) -> SimCluster:
    plan = make_plan(seed)
    config = CoreConfig(heartbeat_ticks=2, election_ticks=plan.election_ticks,
                        max_batch_entries=plan.batch_entries)
    return run_schedule(seed, plan, config, DiskFaultDriver, heal=DiskFaultDriver.free_all)[0]


@pytest.mark.parametrize("start", range(SEED_OFFSET, SEED_OFFSET + SEED_COUNT, CHUNK_SEEDS))
def test_random_schedules_with_full_disks(start):
    for seed in range(start, min(start + CHUNK_SEEDS, SEED_OFFSET + SEED_COUNT)):
        run_disk_seed(seed)
