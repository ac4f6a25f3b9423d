"""The random fault schedules again, with a replication window of 4 requests per peer.

What this proves: letting more than one replication request per peer be on the wire
(:mod:`dkvs.driver.inflight`, cumulative answers) keeps every invariant and the
convergence and linearizability checks of :mod:`tests.sim.test_random_seeds`, under the
same drops, duplicates, reordering, partitions, crashes and restarts. ``DKVS_SIM_WINDOW_SEEDS``
sets how many seeds (default 300).
"""

from __future__ import annotations

import os

import pytest

from dkvs.driver import inflight

from .test_random_seeds import run_seed

WINDOW = 4
SEEDS = int(os.environ.get("DKVS_SIM_WINDOW_SEEDS", "300"))
CHUNK = 100


@pytest.fixture
def window_of_four(monkeypatch):
    monkeypatch.setattr(inflight, "DEFAULT_WINDOW", WINDOW)


@pytest.mark.parametrize("start", range(0, SEEDS, CHUNK))
def test_random_fault_schedules_with_a_window(window_of_four, start):
    for seed in range(start, min(start + CHUNK, SEEDS)):
        cluster, _ = run_seed(seed)
        for sim in cluster.nodes.values():
            if sim.alive:
                assert sim.driver.inflight.window == WINDOW
