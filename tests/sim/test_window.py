"""The random fault schedules again, with a replication window of 4 batches per peer.

What this proves: a pipelining core (up to 4 batches in flight per slave, each advancing
the optimistic ``next_seq``; :mod:`dkvs.core.progress`) under a driver that lets 4
replication requests per peer be on the wire (:mod:`dkvs.driver.inflight`, cumulative
answers) keeps every invariant and the convergence and linearizability checks of
:mod:`tests.sim.test_random_seeds`, under the same drops, duplicates, reordering,
partitions, crashes and restarts. ``DKVS_SIM_WINDOW_SEEDS`` sets how many seeds (default 300).
"""

from __future__ import annotations

import functools
import os

import pytest

from dkvs.core.config import CoreConfig
from dkvs.driver import inflight

from . import test_random_seeds
from .test_random_seeds import run_seed

WINDOW = 4
SEEDS = int(os.environ.get("DKVS_SIM_WINDOW_SEEDS", "300"))
CHUNK = 100


@pytest.fixture
def window_of_four(monkeypatch):
    monkeypatch.setattr(inflight, "DEFAULT_WINDOW", WINDOW)
    monkeypatch.setattr(test_random_seeds, "CoreConfig", functools.partial(CoreConfig, max_inflight_batches=WINDOW))


@pytest.mark.parametrize("start", range(0, SEEDS, CHUNK))
def test_random_fault_schedules_with_a_window(window_of_four, start):
    for seed in range(start, min(start + CHUNK, SEEDS)):
        cluster, _ = run_seed(seed)
        for sim in cluster.nodes.values():
            if sim.alive:
                assert sim.driver.inflight.window == WINDOW
                assert sim.node.config.max_inflight_batches == WINDOW
