#!/usr/bin/env python3
"""SIGKILL a node with a data dir at random moments under write load; count lost writes.

Each cycle starts (or restarts) the node(s) on the same data dir(s), runs concurrent
writers that record every acknowledged write, SIGKILLs a node at a random moment, restarts
it, and checks that every write acknowledged so far is present with its value. With
``--fsync always`` (acks=1 on one node) or with ``acks=majority`` on 3 nodes, the expected
number of missing writes is 0; with ``--fsync never`` or ``batch`` a single node may lose
the last writes before the kill (an OS crash would lose them; a process kill usually not).

    python3 scripts/crash_test.py --cycles 100 --fsync always
    python3 scripts/crash_test.py --cycles 30 --nodes 3 --acks majority

Exits 1 if any acknowledged write is missing. Loopback only; every process is stopped.
"""

from __future__ import annotations

import argparse
import http.client
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.tools.local_cluster import FAST_TIMINGS, LocalCluster, http_call, wait_for  # noqa: E402


class Writers:
    """``threads`` clients writing unique keys; ``acked`` maps key → value once acknowledged."""

    def __init__(self, urls, threads: int, acks: str, prefix: str) -> None:
        self.urls = urls
        self.acks = acks
        self.prefix = prefix
        self.acked: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)

    def _run(self, number: int) -> None:
        i = 0
        conn = None
        while not self.stop.is_set():
            url = self.urls()[number % len(self.urls())]
            host, port = url.split("//")[1].split(":")
            key, value = f"{self.prefix}-{number}-{i}", f"v{i}"
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=2)
                conn.request("PUT", f"/kv/{key}?acks={self.acks}&timeout=2", body=value.encode())
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    with self.lock:
                        self.acked[key] = value
                i += 1
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.02)


def read_all(url: str) -> dict[str, str]:
    """Every key on the node at ``url``, through the paged listing (a few requests per
    thousand keys, instead of one GET per acknowledged write)."""
    items: dict[str, str] = {}
    after = None
    while True:
        query = "limit=1000" + (f"&after={urllib.parse.quote(after, safe='')}" if after else "")
        code, page = http_call(url, "GET", f"/kv?{query}", timeout=10)
        if code != 200:
            raise RuntimeError(f"listing failed: {code} {page}")
        items.update((item["key"], item["value"]) for item in page["items"])
        after = page["next"]
        if after is None:
            return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=1, choices=(1, 3))
    parser.add_argument("--fsync", choices=("always", "batch", "never"), default="always")
    parser.add_argument("--acks", choices=("1", "majority", "all"), default=None,
                        help="default: 1 with one node, majority with three")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-run", type=float, default=0.6, help="longest write period before a kill (s)")
    args = parser.parse_args()
    acks = args.acks or ("1" if args.nodes == 1 else "majority")
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="dkvs-crash-"))
    cluster = LocalCluster(*FAST_TIMINGS, "--fsync", args.fsync, log_level="error")
    acked: dict[str, str] = {}
    missing_total = 0
    started = time.monotonic()
    try:
        names = [f"n{i}" for i in range(args.nodes)]
        nodes = [cluster.start("--data-dir", str(root / names[0]))]
        for name in names[1:]:
            nodes.append(cluster.start("--data-dir", str(root / name), "--join", nodes[0].url))
        ports = [n.port for n in nodes]
        for cycle in range(1, args.cycles + 1):
            writers = Writers(lambda: [n.url for n in nodes], args.writers, acks, f"c{cycle}")
            writers.start()
            time.sleep(rng.uniform(0.05, args.max_run))
            victim = rng.randrange(len(nodes))
            nodes[victim].kill()
            writers.finish()
            acked.update(writers.acked)
            cluster.nodes.remove(nodes[victim])
            nodes[victim] = cluster.start("--data-dir", str(root / names[victim]), port=ports[victim])
            if not wait_for(cluster.master, 15):
                print(f"cycle {cycle}: no master after restart")
                return 1
            master = cluster.master()
            stored = read_all(master.url)
            missing = [k for k, v in acked.items() if stored.get(k) != v]
            missing_total += len(missing)
            print(f"cycle {cycle:3}: killed {names[victim]}, {len(writers.acked):5} acknowledged this cycle, "
                  f"{len(acked):6} in all, missing {len(missing)}", flush=True)
            if missing:
                print("  missing e.g.", missing[:5])
        print(f"{args.cycles} SIGKILL-and-restart cycles, {args.nodes} node(s), --fsync {args.fsync}, "
              f"acks={acks}: {len(acked)} acknowledged writes, {missing_total} missing "
              f"({time.monotonic() - started:.1f} s)")
        return 1 if missing_total else 0
    finally:
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
