"""Chaos testing for dkvs: real nodes, concurrent clients, injected faults, a verdict.

``python3 scripts/chaos.py --help`` is the command; ``docs/chaos.md`` explains the method,
the fault types, how outcomes are classified and how to read the report. The modules,
bottom-up:

* :mod:`.history` — outcome classification (ok / fail / info) and the history recorder (pure
  apart from a lock and the monotonic clock);
* :mod:`.faults` — the seeded fault plan and partition cut sets (pure);
* :mod:`.analysis` — counts, lost writes, unavailability windows (pure);
* :mod:`.lockcheck` — the lock workload's verdict on fencing tokens (pure);
* :mod:`.clients` — client threads on keep-alive connections;
* :mod:`.dataops` — their compare-and-set, transaction and lease operations (``--workload data``);
* :mod:`.lockload` — lock-taking threads writing a fenced key (``--workload lock``);
* :mod:`.cluster` — the node processes: kill, restart, pause, partition, convergence;
* :mod:`.nemesis` — carries out the fault plan on the cluster;
* :mod:`.verdict` — asks :mod:`dkvs.check` whether the history is linearizable;
* :mod:`.interrupts` — Ctrl-C and the time limit wait while a process starts or cleanup runs;
* :mod:`.runner` — one run, start to finish, always cleaning up;
* :mod:`.report` — the text report; :mod:`.cli` — arguments, time limit, exit status.
"""

from .history import Answer, Classified, HistoryRecorder, classify
from .runner import ChaosConfig, run_chaos

__all__ = ["Answer", "ChaosConfig", "Classified", "HistoryRecorder", "classify", "run_chaos"]
