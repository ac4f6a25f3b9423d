"""``--compare``: several scenarios side by side in one run, and the ratios dkvs aims for.

Each scenario names a *system* (``single``: a 1-node dkvs, ``cluster3``: a 3-node dkvs,
``baseline``: the bare ``http.server`` of :mod:`.baseline`) and a load. Systems are started
once, when first needed, kept for the whole run and stopped at the end; with ``--repeat K``
the scenarios run round-robin K times (so slow drift of the machine hits every scenario
alike) and each figure is the median over the K runs.

The targets (from the project brief) are ratios, so they hold on any machine:

==========================================  =======
single-node GET / baseline GET              ≥ 0.8
single-node PUT / baseline PUT              ≥ 0.7
3-node PUT acks=1 / single-node PUT          ≥ 0.6
3-node PUT acks=majority / single-node PUT   ≥ 0.4
replication lag p99 at ~1000 writes/s        ≤ 5 ms
==========================================  =======
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass

from . import report
from .baseline import BaselineProcess
from .lag import LagSpec
from .load import LoadSpec
from .runner import run_once
from .targets import StartedCluster, Target, baseline_target, settle

__all__ = ["Scenario", "SCENARIOS", "DEFAULT_SCENARIOS", "RATIOS", "run_compare", "compare_table"]


@dataclass(frozen=True)
class Scenario:
    id: str
    name: str
    system: str  # "single", "cluster3" or "baseline"
    workload: str | None  # None: no load, the lag probe alone
    acks: str = "1"
    read_from: str = "master"
    lag: bool = False


SCENARIOS = {s.id: s for s in (
    Scenario("single-get", "single-node GET", "single", "get"),
    Scenario("baseline-get", "baseline GET", "baseline", "get"),
    Scenario("single-put", "single-node PUT acks=1", "single", "put"),
    Scenario("baseline-put", "baseline PUT", "baseline", "put"),
    Scenario("3node-put", "3-node PUT acks=1", "cluster3", "put"),
    Scenario("3node-put-majority", "3-node PUT acks=majority", "cluster3", "put", "majority"),
    Scenario("3node-lag", "3-node lag probe alone", "cluster3", None, lag=True),
    # not in the default list; ask for them with --scenarios
    Scenario("3node-put-all", "3-node PUT acks=all", "cluster3", "put", "all"),
    Scenario("3node-get-all", "3-node GET from all nodes", "cluster3", "get", read_from="all"),
    Scenario("3node-put-lag", "3-node PUT acks=1 + lag probe", "cluster3", "put", lag=True),
    Scenario("single-mixed", "single-node mixed", "single", "mixed"),
    Scenario("baseline-mixed", "baseline mixed", "baseline", "mixed"),
)}
DEFAULT_SCENARIOS = ("single-get", "baseline-get", "single-put", "baseline-put", "3node-put",
                     "3node-put-majority", "3node-lag")

# (label, numerator scenario, denominator scenario or None for an absolute lag, target, op)
RATIOS = (
    ("single GET / baseline GET", "single-get", "baseline-get", 0.8, ">="),
    ("single PUT / baseline PUT", "single-put", "baseline-put", 0.7, ">="),
    ("3-node PUT acks=1 / single PUT", "3node-put", "single-put", 0.6, ">="),
    ("3-node PUT majority / single PUT", "3node-put-majority", "single-put", 0.4, ">="),
    ("replication lag p99 (ms)", "3node-lag", None, 5.0, "<="),
)


class _Systems:
    """Starts each system once, on first use; closes all of them on exit."""

    def __init__(self, stack: contextlib.ExitStack, options) -> None:
        self.stack, self.options = stack, options
        self.started: dict[str, object] = {}

    def target(self, scenario: Scenario) -> Target:
        system = self.started.get(scenario.system)
        if system is None:
            o = self.options
            if scenario.system == "baseline":
                system = self.stack.enter_context(BaselineProcess())
            else:
                size = 1 if scenario.system == "single" else 3
                system = self.stack.enter_context(StartedCluster(
                    size, data_dir_root=o.data_dir_root, fsync=o.fsync, node_args=tuple(o.node_arg)))
            self.started[scenario.system] = system
        if scenario.system == "baseline":
            return baseline_target(system.url, system.proc.pid)
        return system.target(scenario.read_from)


def run_compare(options, progress) -> dict:
    """Run ``options.scenarios`` ``options.repeat`` times; the medians, all runs, the ratios."""
    ids = list(options.scenarios)
    runs: list[dict[str, dict]] = []
    populated: set = set()
    with contextlib.ExitStack() as stack:
        systems = _Systems(stack, options)
        for repeat in range(options.repeat):
            run: dict[str, dict] = {}
            for scenario_id in ids:
                scenario = SCENARIOS[scenario_id]
                progress(f"[{repeat + 1}/{options.repeat}] {scenario.name} ...")
                target = systems.target(scenario)
                run[scenario_id] = _measure(scenario, target, options, populated)
                settle()
            runs.append(run)
    medians = {sid: report.median_summary([run[sid] for run in runs]) for sid in ids}
    scenarios = [dict(id=sid, name=SCENARIOS[sid].name, system=SCENARIOS[sid].system,
                      workload=SCENARIOS[sid].workload, acks=SCENARIOS[sid].acks, **medians[sid])
                 for sid in ids]
    return {"scenarios": scenarios, "ratios": _ratios(medians, options.lag_rate), "runs": runs}


def _measure(scenario: Scenario, target: Target, options, populated: set) -> dict:
    spec = None
    if scenario.workload is not None:
        populate = scenario.workload != "put" and scenario.system not in populated
        if scenario.workload != "put":
            populated.add(scenario.system)
        spec = LoadSpec(workload=scenario.workload, keys=options.keys, value_size=options.value_size,
                        acks=scenario.acks, read_ratio=options.read_ratio,
                        write_url=target.write_url, read_urls=target.read_urls,
                        concurrency=options.concurrency, processes=options.processes,
                        populate=populate, seed=options.seed, client_engine=options.client_engine)
    lag = None
    if scenario.lag and target.slave_url and options.lag_rate > 0:
        lag = LagSpec(target.write_url, target.slave_url, options.lag_rate, uuid.uuid4().hex[:8])
    return run_once(target, spec, lag, options.warmup, options.duration)


def _ratios(medians: dict[str, dict], lag_rate: float) -> list[dict]:
    """The target figures. A throughput ratio also comes as ``cpu_ratio``: the inverse ratio
    of the master's CPU time per request (the whole server for one node or the baseline),
    which still compares the two systems when the load generator or another program, not
    the server, limits the throughput."""
    out = []
    for label, top, bottom, goal, op in RATIOS:
        if top not in medians or (bottom is not None and bottom not in medians):
            continue
        detail, cpu_ratio = f"{top} / {bottom}", None
        if bottom is None:
            lag = medians[top].get("lag") or {}
            value = lag.get("p99_ms")
            detail = f"{top}: {lag.get('achieved_rate') or 0:,.0f} of {lag_rate:,.0f} writes/s"
        else:
            value = _ratio(medians[top].get("throughput"), medians[bottom].get("throughput"))
            cpu_ratio = _ratio(_cpu_per_op(medians[bottom]), _cpu_per_op(medians[top]))
        met = None if value is None else (value >= goal if op == ">=" else value <= goal)
        out.append({"name": label, "value": value, "target": goal, "op": op, "met": met,
                    "cpu_ratio": cpu_ratio, "detail": detail})
    return out


def _ratio(a, b) -> float | None:
    return round(a / b, 3) if a and b else None


def _cpu_per_op(summary: dict):
    return (summary.get("cpu") or {}).get("master_us_per_op")


def compare_table(result: dict) -> str:
    rows = []
    for s in result["scenarios"]:
        lat = s.get("latency_ms") or {}
        lag = s.get("lag")
        lag_text = "-" if not lag else (f"{report.fmt_ms(lag['p50_ms'])} / {report.fmt_ms(lag['p99_ms'])}"
                                         f" @ {report.fmt_number(lag['achieved_rate'])}/s")
        cpu = s.get("cpu") or {}
        rows.append([s["name"], report.fmt_number(s.get("throughput")), report.fmt_ms(lat.get("p50")),
                     report.fmt_ms(lat.get("p90")), report.fmt_ms(lat.get("p99")),
                     report.fmt_ms(lat.get("max")), f"{s.get('error_count', 0):g}",
                     report.fmt_number(cpu.get("master_us_per_op")),
                     report.fmt_number(cpu.get("server_us_per_op")),
                     report.fmt_number(cpu.get("load_us_per_op")), lag_text])
    table = report.format_table(["scenario", "ops/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
                                 "errors", "master µs/op", "all nodes µs/op", "load µs/op",
                                 "lag p50 / p99 ms @ rate"], rows)
    ratio_rows = [[r["name"], "-" if r["value"] is None else f"{r['value']:.2f}",
                   f"{'≥' if r['op'] == '>=' else '≤'} {r['target']:g}",
                   {True: "yes", False: "NO", None: "-"}[r["met"]],
                   "-" if r["cpu_ratio"] is None else f"{r['cpu_ratio']:.2f}", r["detail"]]
                  for r in result["ratios"]]
    if ratio_rows:
        table += "\n\n" + report.format_table(
            ["target", "measured", "goal", "met", "by master CPU/op", "from"], ratio_rows, left=(0, 5))
    return table
