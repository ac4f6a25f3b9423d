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

from dkvs.check import check_history
from dkvs.core.config import CoreConfig

from .cluster import SimCluster, SimFailure
from .test_random_seeds import CHECK_BUDGET_STATES, STRICT_KEYS, FaultDriver, checker_history, make_plan

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
    driver = None
    try:
        cluster = SimCluster(plan.nodes, seed, config=config, skew=plan.skew, max_delay=plan.max_delay,
                             notice_rate=plan.notice_rate, wire=plan.wire)
        driver = DiskFaultDriver(cluster, plan, seed)
        for _ in range(plan.fault_ticks):
            driver.tick()
        driver.resume_all()
        driver.free_all()
        cluster.net.set_faults(max_delay=plan.max_delay)
        cluster.settle(keep_down=driver.stopped)
        final = cluster.put("final", "written after healing", acks="all")
        cluster.run_until(lambda: final.done, 10 * config.election_ticks)
        if not final.ok:
            raise SimFailure(f"{cluster.where()}: a converged cluster did not acknowledge an acks=all write: {final}")
        verdict = check_history(checker_history(cluster, STRICT_KEYS), CHECK_BUDGET_STATES)
        if verdict.linearizable is False:
            raise SimFailure(f"{cluster.where()}: not linearizable: {verdict.reason}")
    except Exception as failure:  # noqa: BLE001 - every failure must name its seed
        events = "\n".join(f"    {e}" for e in (driver.events[-40:] if driver else []))
        raise SimFailure(f"seed {seed}: {failure}\n  plan: {plan}\n  last events:\n{events}") from failure
    return cluster


@pytest.mark.parametrize("start", range(SEED_OFFSET, SEED_OFFSET + SEED_COUNT, CHUNK_SEEDS))
def test_random_schedules_with_full_disks(start):
    for seed in range(start, min(start + CHUNK_SEEDS, SEED_OFFSET + SEED_COUNT)):
        run_disk_seed(seed)
