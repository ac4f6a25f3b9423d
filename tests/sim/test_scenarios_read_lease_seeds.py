"""Randomized fault schedules with lease reads on: no stale consistent read, ever.

The schedules of :mod:`tests.sim.test_random_seeds` (partitions, isolated masters, cuts,
drops, delays, crashes, restarts, joins, removals, pauses), run with
``CoreConfig(lease_reads=True)`` and election timeouts long enough for leases to matter.
For every seed: the check :func:`~tests.sim.test_scenarios_read_lease.no_newer_master_during_a_lease`
holds after every step, the invariants hold, the cluster converges, and the history of
the strict keys — consistent reads answered from leases included — is linearizable.

Within the clock assumption the lease is built on (docs/protocol.md, "Reads: the lease"),
as the runtime keeps it:

* clock skew within the drift allowance (``skew`` ≤ 0.04: two clocks differ by < 10%);
* a pause stops the node's clock and loses the time, as a stall longer than the host
  catches up does; when it ends the host reports it (``NodeDriver.clock_jumped``), and no
  client request is handled during it (the node's thread is stalled, requests wait).

Knobs: ``DKVS_LEASE_SEEDS`` (default 100), ``DKVS_LEASE_SEED_START`` (default 0).
"""

from __future__ import annotations

import os
import random
from dataclasses import replace

import pytest

from dkvs.core.config import CoreConfig

from .cluster import SimCluster
from .test_random_seeds import FaultDriver, make_plan, run_schedule
from .test_scenarios_read_lease import no_newer_master_during_a_lease

SEED_COUNT = int(os.environ.get("DKVS_LEASE_SEEDS", "100"))
SEED_START = int(os.environ.get("DKVS_LEASE_SEED_START", "0"))
CHUNK_SEEDS = 25


class LeaseFaultDriver(FaultDriver):
    """The same faults; pauses end with a reported clock jump, and requests for a paused
    node wait (are not sent) as they would in a stalled process."""

    def client_request(self) -> None:
        if any(self.c.net.paused(m.id) for m in self.c.masters()):
            return
        super().client_request()

    def resume(self, nid: str) -> None:
        was_paused = nid in self.pauses
        super().resume(nid)
        sim = self.c.nodes[nid]
        if was_paused and sim.alive:
            self.c._input(sim, sim.driver.clock_jumped)
            self.note(f"clock jump reported by {nid}")


def run_lease_seed(seed: int) -> SimCluster:
    plan = make_plan(seed)
    rng = random.Random(f"lease-plan-{seed}")
    plan = replace(plan, election_ticks=rng.choice((20, 30, 40)), skew=rng.choice((0.0, 0.02, 0.04)))
    config = CoreConfig(heartbeat_ticks=2, election_ticks=plan.election_ticks,
                        max_batch_entries=plan.batch_entries, lease_reads=True)
    return run_schedule(seed, plan, config, LeaseFaultDriver, final_write=False,
                        setup=lambda cluster: cluster.extra_checks.append(no_newer_master_during_a_lease))[0]


@pytest.mark.parametrize("start", range(SEED_START, SEED_START + SEED_COUNT, CHUNK_SEEDS))
def test_lease_reads_under_random_faults_are_never_stale(start):
    for seed in range(start, min(start + CHUNK_SEEDS, SEED_START + SEED_COUNT)):
        run_lease_seed(seed)


def test_leases_do_serve_reads_in_these_schedules():
    # The schedules must exercise the lease, not only fall back to the read index.
    served = 0
    for seed in range(SEED_START, SEED_START + 10):
        cluster = run_lease_seed(seed)
        served += sum(1 for op in cluster.ops.values() if op.kind == "read" and op.ok
                      and op.completed == op.invoked)
    assert served > 0
