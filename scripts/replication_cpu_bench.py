#!/usr/bin/env python3
"""Master CPU per acks=majority write, against a single node's CPU per write (issue 15).

Starts a 1-node and a 3-node in-memory cluster once, then for each concurrency runs the
same closed-loop PUT load (separate load processes, keep-alive HTTP) against both,
interleaved, ``--repeat`` times. For every run it reads the master's user+system CPU
from ``/proc/<pid>/stat`` over the measured window (the bench tool's runner does that)
and prints the medians: throughput, the master's µs of CPU per write, and the 3-node /
1-node throughput ratio. The load average is printed before and after, because on a
shared machine every figure depends on it.

    python3 scripts/replication_cpu_bench.py                       # 16 and 64 connections
    python3 scripts/replication_cpu_bench.py --tree /tmp/main-copy --tree .   # before and after

``--tree`` (repeatable) runs the nodes from the dkvs package of that checkout (e.g. a
scratch clone of ``main``): every tree's clusters run in the same repeats, interleaved, so
"before" and "after" see the same moments of load and one method.

``--transport`` measures the replication transport alone, side by side in one run: this
process sends ``--batches`` Append batches (4 entries of 100 bytes, cluster secret on) one
round trip at a time to a receiving node in a child process, over POSTs and over a stream,
and prints the sender's CPU µs per batch (``time.process_time``) for each, interleaved
``--repeat`` times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path


def _loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


class _Cluster:
    """``n`` nodes running the dkvs package of ``tree`` (in memory, 127.0.0.1, port 0)."""

    def __init__(self, tree: Path, n: int) -> None:
        import subprocess
        self.procs: list = []
        self.urls: list[str] = []
        env = dict(os.environ, PYTHONPATH=str(tree), DKVS_EXIT_WITH_PARENT="1")
        try:
            for i in range(n):
                join = ["--join", self.urls[0]] if i else []
                proc = subprocess.Popen([sys.executable, "-m", "dkvs", "--port", "0", "--log-level", "warning", *join],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
                self.procs.append(proc)
                line = proc.stdout.readline().split()  # "dkvs node <id> listening on <url>"
                if not line:
                    raise RuntimeError(f"a node of {tree} did not start")
                self.urls.append(line[-1])
            self._wait_formed(n)
        except BaseException:
            self.close()
            raise

    def _wait_formed(self, n: int) -> None:
        import json
        import time
        import urllib.request
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.urls[0] + "/status", timeout=5) as answer:
                    status = json.loads(answer.read())
                if status.get("role") == "master" and sum(1 for m in status["members"] if m.get("alive")) == n:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the {n}-node cluster did not form")

    def target(self):
        from dkvs.tools.bench.targets import Target
        master = self.urls[0]  # the first node bootstraps the cluster as its master
        return Target("dkvs", master, (master,), None, len(self.procs), tuple(p.pid for p in self.procs))

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", action="append", help="root of a dkvs checkout to measure (repeatable; default: this one)")
    p.add_argument("--concurrency", default="16,64", help="comma-separated connection counts")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--transport", action="store_true", help="measure the transport alone (POST vs stream)")
    p.add_argument("--batches", type=int, default=3000)
    o = p.parse_args(argv)
    try:
        levels = [int(c) for c in o.concurrency.split(",") if c.strip()]
    except ValueError:
        print("--concurrency takes comma-separated integers", file=sys.stderr)
        return 2
    if not levels or min(levels) < 1 or o.repeat < 1 or o.duration <= 0:
        print("--concurrency, --repeat and --duration must be positive", file=sys.stderr)
        return 2
    here = Path(__file__).resolve().parents[1]
    trees = [Path(t).resolve() for t in o.tree] if o.tree else [here]
    for tree in trees:
        if not (tree / "dkvs" / "__init__.py").is_file():
            print(f"--tree {tree}: no dkvs package there", file=sys.stderr)
            return 2
    sys.path.insert(0, str(here))
    if o.transport:
        return transport_only(o.batches, o.repeat)
    from dkvs.tools.bench.load import LoadSpec
    from dkvs.tools.bench.runner import run_once

    print(f"trees: {', '.join(map(str, trees))}; load average before: {_loadavg()}", flush=True)
    clusters = []
    try:
        systems = {}
        for t, tree in enumerate(trees):
            for n, acks in ((1, "1"), (3, "majority")):
                clusters.append(_Cluster(tree, n))
                systems[(t, f"{n}-node acks={acks}")] = (clusters[-1].target(), acks)
        runs: dict = {(clients, key): [] for clients in levels for key in systems}
        for _ in range(o.repeat):  # interleaved: every system sees the same moments of load
            for clients in levels:
                for key, (target, acks) in systems.items():
                    spec = LoadSpec(workload="put", keys=10000, value_size=100, acks=acks, read_ratio=0.0,
                                    write_url=target.write_url, read_urls=target.read_urls,
                                    concurrency=clients, processes=2, populate=False, seed=1)
                    runs[(clients, key)].append(run_once(target, spec, None, o.warmup, o.duration))
    finally:
        for cluster in clusters:
            cluster.close()
    print(f"load average after: {_loadavg()}")
    print(f"{'tree':<30}{'clients':>7}  {'system':<22}{'ops/s':>9}  {'master µs/write':>15}  errors")
    single = {}
    for (clients, (t, name)), summaries in runs.items():
        ops = statistics.median(s["throughput"] for s in summaries)
        cpu = [s["cpu"]["master_us_per_op"] for s in summaries if s["cpu"]["master_us_per_op"]]
        errors = sum(s["error_count"] for s in summaries)
        shown = f"{statistics.median(cpu):.1f}" if cpu else "n/a"
        if name.startswith("1-node"):
            single[(t, clients)] = ops
            ratio = ""
        else:
            ratio = f"   {ops / single[(t, clients)]:.2f}x 1-node" if single.get((t, clients)) else ""
        print(f"{str(trees[t])[-30:]:<30}{clients:>7}  {name:<22}{ops:>9.0f}  {shown:>15}  {errors}{ratio}")
    return 0


SECRET = "replication-cpu-bench"


def _receiver(url_out) -> None:
    """A node stand-in that answers every Append like a slave holding it (child process)."""
    import threading

    from dkvs.api.server import make_server
    from dkvs.api.service import KeyValueService, Limits
    from dkvs.core.messages import AppendReply
    from dkvs.transport import codec
    from dkvs.transport.auth import Signer

    class Receiver(KeyValueService):
        limits = Limits()
        signer = Signer(SECRET, node_id="n2")

        def internal_head(self, method, target, headers, *, token_checked=False):
            return self.signer.verify_head(method, target, headers)

        def internal(self, method, path, query, body, headers):
            m = codec.decode(body)
            return 200, codec.encode_many([AppendReply(m.epoch, "n2", True, m.entries[-1].seq, round=m.round)])

        def put(self, *a, **k):
            raise NotImplementedError

        delete = get = items = status = put

    server = make_server(Receiver(), "127.0.0.1", 0).start()
    url_out.send(server.url)
    threading.Event().wait()


def transport_only(batches: int, repeat: int) -> int:
    import multiprocessing
    import threading
    import time

    from dkvs.core.log import Entry
    from dkvs.core.messages import Append
    from dkvs.transport.auth import Signer
    from dkvs.transport.http import HttpTransport

    here, there = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=_receiver, args=(there,), daemon=True)
    child.start()
    try:
        url = here.recv()
        print(f"load average before: {_loadavg()}", flush=True)
        results: dict[str, list[float]] = {"POST /internal/raft": [], "stream": []}
        for _ in range(repeat):
            for name in results:
                done = threading.Semaphore(0)
                transport = HttpTransport(Signer(SECRET, node_id="n1"), node_id="n1", stream=name == "stream")
                transport.start(lambda peer, send_id, messages: done.release(), lambda peer, send_id: done.release())
                transport.set_peers({"n2": url})
                seq = 0

                def one_batch() -> None:
                    nonlocal seq
                    entries = tuple(Entry(1, seq + i, "put", f"key{seq + i}", "v" * 100) for i in range(1, 5))
                    transport.send("n2", Append(1, "n1", seq, 1, entries, seq, seq), send_id=seq + 1)
                    seq += 4
                    if not done.acquire(timeout=30):
                        raise SystemExit("the receiver did not answer")
                for _ in range(50):  # warm up: connection, stream
                    one_batch()
                started = time.process_time()
                for _ in range(batches):
                    one_batch()
                results[name].append((time.process_time() - started) / batches * 1e6)
                transport.close()
        print(f"load average after: {_loadavg()}")
        for name, values in results.items():
            print(f"{name:<20} sender CPU µs per batch: median {statistics.median(values):.1f} "
                  f"(runs: {', '.join(f'{v:.1f}' for v in values)})")
    finally:
        child.kill()
        child.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
