"""The ``scripts/bench_peers.py`` command line: dkvs beside etcd, or the write-cost figures.

Progress goes to stderr, the result to stdout (tables, or one JSON document with
``--json``). Exit status: 0 when the run completed (a skipped etcd included: the reason is
printed), 1 with ``--quick`` when any case saw errors or no throughput, 2 when the
benchmark could not run. SIGTERM and Ctrl-C stop every process started (the ``finally``
blocks of the runner and the systems).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from . import report
from .load import CLIENT_ENGINES
from .peers import (SYSTEMS, WORKLOADS, cost_cases, cost_markdown, cost_rows, cost_table, peer_cases, peer_markdown,
                    peer_rows, peer_table, run_cases)
from .targets import BenchError

__all__ = ["main", "build_parser"]

# (full run, --quick) defaults of the options whose default depends on the mode
MODE_DEFAULTS = {"repeat": (3, 1), "duration": (5.0, 1.0), "warmup": (1.0, 0.3), "keys": (1000, 100),
                 "put_clients": ("1,16,64", "1,4"), "get_clients": ("1,16", "1")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench_peers.py",
        description="dkvs side by side with a 3-member etcd on this machine (issue 15), or with "
                    "--cost the master's CPU per majority write and the single-node ratios.")
    add = p.add_argument
    add("--cost", action="store_true",
        help="instead: master µs of CPU per acks=majority write at 16 and 64 connections, "
             "3-node majority / 1-node PUT, 1-node GET and PUT / bare http.server")
    add("--quick", action="store_true", help="smoke test: 1-second runs, once, small client counts")
    add("--systems", default="dkvs-fsync,dkvs-mem,dkvs-lease,etcd",
        help="peer mode: which of dkvs-fsync, dkvs-mem, dkvs-lease (--lease-reads, consistent GETs "
             "only), etcd to run (default all four)")
    add("--workloads", default=",".join(WORKLOADS),
        help="peer mode: which rows to run, of put, get, cget (consistent GET); default all")
    add("--put-clients", help="PUT client counts (default 1,16,64)")
    add("--get-clients", help="GET and consistent GET client counts (default 1,16)")
    add("--etcd", metavar="PATH",
        help="etcd binary; default: etcd on PATH, else Debian's etcd-server unpacked into a "
             "scratch dir; 'none' leaves etcd out")
    add("--repeat", type=int, metavar="K", help="runs of every case; medians reported (default 3)")
    add("--duration", type=float, metavar="S", help="measured seconds per case (default 5)")
    add("--warmup", type=float, metavar="S", help="unmeasured seconds before (default 1)")
    add("--keys", type=int, help="key space (default 1000)")
    add("--value-size", type=int, default=100, metavar="BYTES")
    add("--processes", type=int, help="load processes per case, at most one per client (default: cores)")
    add("--data-dir-root", metavar="DIR", help="where on-disk nodes and etcd keep data (default: temp dir)")
    add("--node-arg", action="append", default=[], metavar="ARG", help="extra flag for every dkvs node")
    add("--seed", type=int, default=1)
    add("--client-engine", choices=CLIENT_ENGINES, default=CLIENT_ENGINES[0],
        help="load client: one selector loop per load process (default), or the first engine, "
             "a thread and an http.client connection per client (costlier; for comparison)")
    add("--json", action="store_true", help="print one JSON document instead of tables")
    add("--markdown", action="store_true", help="print the tables as markdown (for docs/benchmarks.md)")
    return p


def _clients(text: str, parser) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        parser.error(f"client counts must be integers: {text!r}")
    if not values or min(values) < 1:
        parser.error(f"client counts must be ≥ 1: {text!r}")
    return values


def _finish(parser, o):
    mode = 1 if o.quick else 0
    for name, defaults in MODE_DEFAULTS.items():
        if getattr(o, name) is None:
            setattr(o, name, defaults[mode])
    o.put_clients, o.get_clients = _clients(o.put_clients, parser), _clients(o.get_clients, parser)
    o.systems = [s.strip() for s in o.systems.split(",") if s.strip()]
    o.workloads = [w.strip() for w in o.workloads.split(",") if w.strip()]
    if not o.workloads or any(w not in WORKLOADS for w in o.workloads):
        parser.error(f"--workloads takes some of {', '.join(WORKLOADS)}; got {','.join(o.workloads)!r}")
    if o.processes is None:
        o.processes = os.cpu_count() or 1
    bad = [s for s in o.systems if s not in SYSTEMS]
    if bad:
        parser.error(f"unknown system(s) {', '.join(bad)}; choose among dkvs-fsync, dkvs-mem, dkvs-lease, etcd")
    if not (o.repeat >= 1 and o.duration > 0 and o.warmup >= 0 and o.keys >= 1 and o.value_size >= 0
            and o.processes >= 1):
        parser.error("need --repeat ≥ 1, --duration > 0, --warmup ≥ 0, --keys ≥ 1, --processes ≥ 1")
    return o


def _problems(doc: dict) -> list[str]:
    out = []
    for case_id, s in doc["medians"].items():
        if not (s.get("throughput") or 0) > 0:
            out.append(f"{case_id}: no throughput")
        if s.get("error_count") or s.get("populate_errors"):
            out.append(f"{case_id}: errors {s.get('errors')} populate {s.get('populate_errors')}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    o = _finish(parser, parser.parse_args(argv))

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def on_sigterm(*_):
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_sigterm)
    machine = report.machine_info()
    cases = cost_cases() if o.cost else peer_cases(o.put_clients, o.get_clients, o.systems, o.workloads)
    try:
        doc = run_cases(cases, o, progress)
    except (BenchError, RuntimeError, OSError) as exc:  # RuntimeError: a node did not start
        print(f"bench_peers.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_peers.py: interrupted; every process started was stopped", file=sys.stderr)
        return 130
    doc.update(mode="cost" if o.cost else "peers", machine=machine, loadavg_after=_loadavg(),
               config={k: getattr(o, k) for k in ("repeat", "duration", "warmup", "keys", "value_size",
                                                   "processes", "put_clients", "get_clients", "systems", "workloads",
                                                   "quick", "seed", "client_engine")})
    doc["rows"] = cost_rows(doc["medians"]) if o.cost else peer_rows(cases, doc["medians"])
    problems = _problems(doc) if o.quick else []
    doc["ok"] = not problems
    if o.json:
        print(json.dumps(doc, indent=2))
    else:
        m = doc["machine"]
        print(f"# {m['date_utc']}  {m['nproc']} cores  {m['cpu_model']}  Python {m['python']}  "
              f"load average before {m['loadavg_before']}, after {doc['loadavg_after']}; "
              f"CPU idle before {m['cpu_idle_before']}")
        print(f"# medians of {o.repeat} interleaved runs, {o.warmup:g} s warm-up + {o.duration:g} s each, "
              f"{o.keys} keys, {o.value_size}-byte values, up to {o.processes} load processes "
              f"({o.client_engine} engine)"
              + (f"; etcd {doc['etcd_version']}" if doc.get("etcd_version") else ""))
        if o.markdown:
            print(cost_markdown(cases, doc["medians"]) if o.cost else peer_markdown(doc["rows"]))
        else:
            print(cost_table(cases, doc["medians"]) if o.cost else peer_table(doc["rows"]))
    for system, reason in doc["skipped"].items():
        print(f"bench_peers.py: {system} skipped: {reason}", file=sys.stderr)
    for problem in problems:
        print(f"bench_peers.py: quick: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
