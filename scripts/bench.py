#!/usr/bin/env python3
"""Benchmark dkvs over HTTP: throughput, latency percentiles, errors, replication lag.

Load comes from separate processes over persistent connections; ``--baseline`` runs the same
load against a bare ``http.server`` in the same run; ``--compare`` runs the standard
scenarios side by side with the target ratios. Method and figures: docs/benchmarks.md.

    python3 scripts/bench.py --start 1 --workload get --baseline     # one node vs the ceiling
    python3 scripts/bench.py --start 3 --workload put --acks majority
    python3 scripts/bench.py --url http://127.0.0.1:7070 --read-from all
    python3 scripts/bench.py --compare                                # the table in the docs
    python3 scripts/bench.py --smoke --start 1 --workload mixed --json  # CI
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.tools.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
