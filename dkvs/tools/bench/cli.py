"""The ``scripts/bench.py`` command line: parse, run one benchmark or ``--compare``, print.

Progress goes to stderr; the result to stdout (a table, or one JSON document with
``--json``). Exit status: 0 when the run completed, 1 when ``--smoke`` saw any error (or
no throughput), 2 when the benchmark could not run. SIGTERM is turned into a clean exit so
every process started is stopped (the ``finally`` blocks of the runner and the systems).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import uuid

from . import report
from .baseline import BaselineProcess
from .compare import DEFAULT_SCENARIOS, SCENARIOS, compare_table, run_compare
from .lag import LagSpec
from .load import CLIENT_ENGINES, WORKLOADS, LoadSpec
from .runner import run_once
from .targets import READ_FROM, BenchError, StartedCluster, Target, baseline_target, resolve, settle

__all__ = ["main", "build_parser", "smoke_problems"]

# (normal, --compare, --smoke) defaults of the options whose default depends on the mode
MODE_DEFAULTS = {
    "duration": (10.0, 5.0, 1.0),
    "warmup": (2.0, 1.0, 0.3),
    "keys": (10_000, 1_000, 100),
    "concurrency": (8, 8, 4),
    "lag_rate": (1000.0, 1000.0, 200.0),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench.py", description="Benchmark dkvs over HTTP from separate load processes, "
        "optionally against a bare http.server baseline in the same run.")
    add = p.add_argument
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", help="any node of a running dkvs cluster (writes go to its master)")
    where.add_argument("--start", type=int, metavar="N",
                       help="start a local N-node cluster for the run (default: 1 node)")
    add("--workload", choices=WORKLOADS, default="mixed")
    add("--read-ratio", type=float, default=0.9, help="share of GETs in the mixed workload")
    add("--keys", type=int, help="key space k0..k{N-1}, pre-populated for get/mixed (default 10000)")
    add("--value-size", type=int, default=100, metavar="BYTES")
    add("--concurrency", type=int, help="client connections in total, each one request in flight (default 8)")
    add("--processes", type=int, help="load processes the clients are spread over (default min(C, cores))")
    add("--duration", type=float, metavar="S", help="measured seconds (default 10; 5 with --compare)")
    add("--warmup", type=float, metavar="S", help="unmeasured seconds before (default 2; 1 with --compare)")
    add("--acks", choices=("1", "majority", "all"), default="1", help="durability asked of writes")
    add("--read-from", choices=READ_FROM, default="master", help="which nodes the GETs go to")
    add("--data-dir-root", metavar="DIR", help="with --start/--compare: nodes keep data under DIR")
    add("--fsync", choices=("always", "batch", "never"), help="with --data-dir-root: the nodes' --fsync")
    add("--node-arg", action="append", default=[], metavar="ARG",
        help="extra flag for every started node, e.g. --node-arg=--default-acks=1 (repeatable)")
    add("--lag-rate", type=float, metavar="W/S",
        help="target writes/s of the replication-lag probe on clusters; 0 = no probe (default 1000)")
    add("--baseline", action="store_true", help="also run the load against a bare http.server baseline")
    add("--compare", action="store_true", help="run the scenarios side by side and print the ratios")
    add("--scenarios", default=",".join(DEFAULT_SCENARIOS),
        help="with --compare: comma-separated ids among " + ", ".join(SCENARIOS))
    add("--repeat", type=int, default=1, metavar="K", help="run K times; report medians and every run")
    add("--seed", type=int, default=1)
    add("--client-engine", choices=CLIENT_ENGINES, default=CLIENT_ENGINES[0],
        help="load client: one selector loop per load process (default), or the first engine, "
             "a thread and an http.client connection per client (costlier; for comparison)")
    add("--json", action="store_true", help="print one JSON document instead of tables")
    add("--smoke", action="store_true",
        help="CI: 1-second runs, tiny key space; exit 1 on any error")
    return p


def _finish_options(parser: argparse.ArgumentParser, o: argparse.Namespace) -> argparse.Namespace:
    """Fill in the mode-dependent defaults and check the combination (exit 2 if wrong)."""
    mode = 2 if o.smoke else 1 if o.compare else 0
    for name, defaults in MODE_DEFAULTS.items():
        if getattr(o, name) is None:
            setattr(o, name, defaults[mode])
    if o.processes is None:
        o.processes = max(1, min(o.concurrency, os.cpu_count() or 1))
    o.processes = min(o.processes, o.concurrency)
    if o.url is None and o.start is None:
        o.start = 1
    o.scenarios = [s.strip() for s in o.scenarios.split(",") if s.strip()]
    unknown = [s for s in o.scenarios if s not in SCENARIOS]
    checks = [
        (o.keys >= 1 and o.concurrency >= 1 and o.processes >= 1, "keys, concurrency, processes must be ≥ 1"),
        (o.duration > 0 and o.warmup >= 0, "--duration must be > 0 and --warmup ≥ 0"),
        (0.0 <= o.read_ratio <= 1.0, "--read-ratio must be between 0 and 1"),
        (o.value_size >= 0 and o.lag_rate >= 0 and o.repeat >= 1, "bad --value-size, --lag-rate or --repeat"),
        (not unknown, f"unknown scenario(s): {', '.join(unknown)}"),
        (not (o.compare and o.url), "--compare starts its own systems: drop --url"),
        (o.start is None or o.start >= 1, "--start needs N ≥ 1"),
    ]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    return o


def _spec(o, target: Target, workload: str, populate: bool) -> LoadSpec:
    return LoadSpec(workload=workload, keys=o.keys, value_size=o.value_size, acks=o.acks,
                    read_ratio=o.read_ratio, write_url=target.write_url, read_urls=target.read_urls,
                    concurrency=o.concurrency, processes=o.processes, populate=populate, seed=o.seed,
                    client_engine=o.client_engine)


def run_single(o, progress) -> dict:
    """One workload against dkvs (and the baseline), ``--repeat`` times; medians and runs."""
    runs = []
    with contextlib.ExitStack() as stack:
        if o.url:
            target = resolve(o.url, o.read_from)
            origin = "running"
        else:
            progress(f"starting a {o.start}-node dkvs cluster ...")
            cluster = stack.enter_context(StartedCluster(
                o.start, data_dir_root=o.data_dir_root, fsync=o.fsync, node_args=tuple(o.node_arg)))
            target, origin = cluster.target(o.read_from), "started"
        base = None
        if o.baseline:
            server = stack.enter_context(BaselineProcess())
            base = baseline_target(server.url, server.proc.pid)
        for repeat in range(o.repeat):
            populate = o.workload != "put" and repeat == 0
            lag = None
            if target.slave_url and o.lag_rate > 0:
                lag = LagSpec(target.write_url, target.slave_url, o.lag_rate, uuid.uuid4().hex[:8])
            progress(f"[{repeat + 1}/{o.repeat}] dkvs {o.workload} ...")
            run = {"dkvs": run_once(target, _spec(o, target, o.workload, populate), lag, o.warmup, o.duration)}
            if base is not None:
                settle()
                progress(f"[{repeat + 1}/{o.repeat}] baseline {o.workload} ...")
                run["baseline"] = run_once(base, _spec(o, base, o.workload, populate), None,
                                           o.warmup, o.duration)
            runs.append(run)
            settle()
    result = {"target": {"origin": origin, "nodes": target.nodes, "write_url": target.write_url,
                         "read_urls": list(target.read_urls), "lag_slave_url": target.slave_url},
              "dkvs": report.median_summary([run["dkvs"] for run in runs]),
              "baseline": report.median_summary([run["baseline"] for run in runs]) if base else None,
              "ratios": None, "runs": runs}
    if base:
        result["ratios"] = _single_ratios(result["dkvs"], result["baseline"])
    return result


def _single_ratios(dkvs: dict, base: dict) -> dict:
    def ratio(a, b):
        return round(a / b, 3) if a and b else None

    lat, base_lat = dkvs.get("latency_ms") or {}, base.get("latency_ms") or {}
    return {"throughput": ratio(dkvs.get("throughput"), base.get("throughput")),
            "latency_p50": ratio(lat.get("p50"), base_lat.get("p50")),
            "latency_p99": ratio(lat.get("p99"), base_lat.get("p99")),
            "cpu": ratio((base.get("cpu") or {}).get("server_us_per_op"),
                         (dkvs.get("cpu") or {}).get("server_us_per_op"))}


def single_table(o, result: dict) -> str:
    rows = []
    for name in ("dkvs", "baseline"):
        s = result.get(name)
        if s:
            lat = s.get("latency_ms") or {}
            errors = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "0"
            cpu = s.get("cpu") or {}
            rows.append([name, report.fmt_number(s["throughput"]), report.fmt_ms(lat.get("p50")),
                         report.fmt_ms(lat.get("p90")), report.fmt_ms(lat.get("p99")),
                         report.fmt_ms(lat.get("max")), report.fmt_number(cpu.get("server_us_per_op")),
                         report.fmt_number(cpu.get("load_us_per_op")), errors])
    lines = [report.format_table(["system", "ops/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
                                  "server µs/op", "load µs/op", "errors"], rows)]
    if result["ratios"]:
        r = result["ratios"]
        lines.append(f"dkvs / baseline: throughput {_x(r['throughput'])}, "
                     f"latency p50 {_x(r['latency_p50'])}, p99 {_x(r['latency_p99'])}, "
                     f"server CPU efficiency {_x(r['cpu'])} (baseline µs/op ÷ dkvs µs/op)")
    lag = result["dkvs"].get("lag")
    if lag:
        lines.append(f"replication lag (probe: {report.fmt_number(lag['achieved_rate'])} of "
                     f"{report.fmt_number(lag['target_rate'])} writes/s target, {lag['samples']:g} samples): "
                     f"p50 {report.fmt_ms(lag['p50_ms'])} ms, p90 {report.fmt_ms(lag['p90_ms'])} ms, "
                     f"p99 {report.fmt_ms(lag['p99_ms'])} ms, max {report.fmt_ms(lag['max_ms'])} ms, "
                     f"unseen {lag['unseen']:g}, errors {lag['error_count']:g}")
    return "\n".join(lines)


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def smoke_problems(runs: list[dict[str, dict]]) -> list[str]:
    """Every sign that a run did not work: errors anywhere, a load with no throughput, a lag
    probe that saw nothing. ``runs`` is a list of ``{system or scenario: summary}``."""
    problems = []
    for i, run in enumerate(runs, 1):
        for name, s in run.items():
            where = f"run {i} {name}"
            if s.get("throughput") is not None and not s["throughput"] > 0:
                problems.append(f"{where}: no throughput")
            for field in ("error_count", "warmup_errors"):
                if s.get(field):
                    problems.append(f"{where}: {field} = {s[field]} {s.get('errors')}")
            if s.get("populate_errors"):
                problems.append(f"{where}: populate errors {s['populate_errors']}")
            lag = s.get("lag")
            if lag and (lag["error_count"] or lag["unseen"] or not lag["samples"]):
                problems.append(f"{where}: lag probe errors {lag['errors']}, unseen {lag['unseen']}, "
                                f"samples {lag['samples']}")
    return problems


def describe(o) -> dict:
    return {k: getattr(o, k) for k in (
        "workload", "read_ratio", "keys", "value_size", "concurrency", "processes", "duration",
        "warmup", "acks", "read_from", "lag_rate", "repeat", "start", "url", "baseline",
        "data_dir_root", "fsync", "node_arg", "seed", "smoke", "client_engine")}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    o = _finish_options(parser, parser.parse_args(argv))

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def on_sigterm(*_):
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_sigterm)
    doc = {"mode": "compare" if o.compare else "single", "machine": report.machine_info(),
           "config": describe(o)}
    try:
        doc.update(run_compare(o, progress) if o.compare else run_single(o, progress))
    except (BenchError, RuntimeError, OSError) as exc:  # RuntimeError: a node did not start
        print(f"bench.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench.py: interrupted", file=sys.stderr)
        return 130
    problems = smoke_problems(doc["runs"]) if o.smoke else []
    doc["ok"] = not problems
    if o.json:
        print(json.dumps(doc, indent=2))
    else:
        m = doc["machine"]
        print(f"# {m['date_utc']}  {m['nproc']} cores  {m['cpu_model']}  Python {m['python']}  "
              f"before the run: load {m['loadavg_before']}, CPU idle {m['cpu_idle_before']}")
        print(f"# {o.concurrency} connections over {o.processes} load processes ({o.client_engine} engine), "
              f"{o.warmup:g} s warm-up + {o.duration:g} s, {o.keys} keys, {o.value_size}-byte values"
              + ("" if o.compare else f", workload {o.workload}, acks={o.acks}, reads from {o.read_from}"))
        print(compare_table(doc) if o.compare else single_table(o, doc))
    for problem in problems:
        print(f"bench.py: smoke: {problem}", file=sys.stderr)
    return 1 if problems else 0
