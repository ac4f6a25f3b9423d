#!/usr/bin/env python3
"""dkvs side by side with etcd on this machine, and what a majority write costs the master.

The same load processes (keep-alive HTTP, N closed-loop clients) run against a 3-node dkvs
with ``--fsync always``, a 3-node dkvs in memory and a 3-member etcd (Debian's
``etcd-server``, unpacked into a scratch directory when not installed; skipped with the
reason when that fails), interleaved, medians of 3. Method and figures: docs/benchmarks.md
("Side by side with etcd").

    python3 scripts/bench_peers.py                 # the table in the docs (~10 minutes)
    python3 scripts/bench_peers.py --cost          # master µs per majority write, single-node ratios
    python3 scripts/bench_peers.py --quick         # smoke test, about a minute
    python3 scripts/bench_peers.py --etcd none     # dkvs only
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.tools.bench.peers_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
