"""dkvs's HTTP benchmark: load from separate processes, a bare http.server baseline, lag probe.

``python3 scripts/bench.py --help`` is the command (``scripts/bench_peers.py`` for etcd side by side); ``docs/benchmarks.md`` the method and
the figures. The modules, bottom-up:

* :mod:`.report` — percentiles (nearest rank), summaries, medians of runs, tables (pure);
* :mod:`.load_spec` — what is sent: :class:`LoadSpec`, the dkvs and etcd requests;
* :mod:`.wire_load` — the selector client engine: one thread and non-blocking sockets per
  load process (the ``http.client`` engine stays for comparison);
* :mod:`.load` — a load worker process: closed-loop clients on keep-alive connections,
  either engine;
* :mod:`.lag` — the replication-lag probe process (steady writes on the master, tight
  polling on a slave);
* :mod:`.baseline` — the bare ``http.server`` key-value server, the stack's ceiling;
* :mod:`.targets` — the system under test: a running cluster, a started one, the baseline;
* :mod:`.runner` — one measured run: start processes, one shared time window, collect;
* :mod:`.compare` — ``--compare``: scenarios side by side and the target ratios;
* :mod:`.cli` — argument parsing and printing;
* :mod:`.profile_node` — a node with every thread profiled by CPU time (for hot spots);
* :mod:`.etcd` — etcd as a peer: find or unpack Debian's binary, a local 3-member cluster;
* :mod:`.peers` — cases side by side: dkvs vs etcd, and the master's CPU per majority write;
* :mod:`.peers_cli` — the ``scripts/bench_peers.py`` command line;
* :mod:`.harness` — a bulk loader, a paced writer and a free port for the stand-alone scripts.
"""

from .report import percentile

__all__ = ["percentile"]
