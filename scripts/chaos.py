#!/usr/bin/env python3
"""Chaos test: a real dkvs cluster, concurrent clients, kills, pauses and partitions.

Starts ``--nodes`` local nodes (data dirs in a temp dir, ``--fsync always``, fault
injection on), runs ``--clients`` threads doing random puts (acks=majority, a share with
acks=1), consistent gets and deletes on ``--keys`` keys while a seeded nemesis injects
``--faults`` events, then heals, waits for convergence, reads every key on the master and
checks the recorded history for linearizability. Method and a real run: docs/chaos.md.

    python3 scripts/chaos.py --nodes 3 --faults 100 --interval 2
    python3 scripts/chaos.py --nodes 5 --faults 30 --seed 7 --history /tmp/h.jsonl
    python3 scripts/chaos.py --nodes 3 --faults 6 --interval 0.5 --clients 3 --json   # CI
    python3 scripts/chaos.py --workload data --faults 30 --interval 1   # + CAS, txns, leases
    python3 scripts/chaos.py --workload lock --faults 30 --interval 1   # the lock recipe, fenced

Exit status: 0 pass; 1 a lost acks=majority write, a non-linearizable history, no
convergence, a leased key that never expired or a fencing violation (--workload lock);
2 bad arguments; 3 inconclusive. Loopback only; every process is stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.tools.chaos.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
