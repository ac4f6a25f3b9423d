"""Cases measured side by side: dkvs against etcd, and what a replicated write costs the master.

``scripts/bench_peers.py`` is the command (issue 15). A *case* is one load (workload,
clients, acks, consistent reads) against one *system*:

==============  =============================================================
``dkvs-fsync``  3 dkvs nodes, each with a data dir and ``--fsync always``
``dkvs-mem``    3 dkvs nodes in memory
``dkvs-lease``  ``dkvs-fsync`` with ``--lease-reads`` (consistent GET rows only)
``dkvs-single`` 1 dkvs node in memory
``baseline``    the bare ``http.server`` of :mod:`.baseline` (the stack's ceiling)
``etcd``        3 etcd members (:mod:`.etcd`), which always fsync their WAL
==============  =============================================================

Every case runs through :func:`.runner.run_once` — the same load processes, keep-alive
connections and measurement window for every system; only the requests differ
(:mod:`.load`, ``protocol``). Systems start once, on first use, and stay up for the whole
run; with ``repeat`` K the list of cases runs K times round-robin, so the systems compared
in one row run back to back each time and a slow drift of a shared machine hits all of
them alike; each figure is the median of the K runs. Writes go to the dkvs master and to
the etcd leader; reads too (a slave or follower answering would be a different workload).
If etcd cannot be found, installed or started, its cases are skipped and the reason kept.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass

from . import report
from .baseline import BaselineProcess
from .etcd import EtcdCluster, EtcdUnavailable, etcd_version, find_etcd
from .load import LoadSpec
from .runner import run_once
from .targets import StartedCluster, Target, baseline_target, settle

__all__ = ["Case", "SYSTEMS", "WORKLOADS", "peer_cases", "cost_cases", "run_cases", "PEER_GOALS", "COST_GOALS",
           "peer_rows", "peer_table", "peer_markdown", "cost_rows", "cost_table", "cost_markdown"]

SYSTEMS = ("dkvs-fsync", "dkvs-mem", "dkvs-lease", "dkvs-single", "baseline", "etcd")
WORKLOADS = ("put", "get", "cget")

# Issue 15's bars for dkvs / etcd, per workload: (system over etcd, goal)
PEER_GOALS = {"put": (("dkvs-fsync", 1.0), ("dkvs-mem", 1.5)),
              "get": (("dkvs-fsync", 2.0),),
              "cget": (("dkvs-fsync", 1.0), ("dkvs-lease", 1.0))}
PEER_ROWS = {"put": "PUT, majority", "get": "GET (etcd serializable)",
             "cget": "consistent GET (etcd linearizable)"}
# (label, numerator case id, denominator case id or None for an absolute figure, goal, op)
COST_GOALS = (
    ("master µs CPU per majority write, 16 conns", "cost-maj-16", None, 110.0, "<="),
    ("master µs CPU per majority write, 64 conns", "cost-maj-64", None, 110.0, "<="),
    ("3-node majority PUT / 1-node PUT, 16 conns", "cost-maj-16", "cost-single-put-16", 0.6, ">="),
    ("1-node GET / baseline GET, 16 conns", "cost-single-get-16", "cost-base-get-16", 0.85, ">="),
    ("1-node PUT / baseline PUT, 16 conns", "cost-single-put-16", "cost-base-put-16", 0.85, ">="),
)


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # "put", "get" or "cget" (consistent get)
    system: str
    clients: int
    acks: str = "majority"

    @property
    def workload(self) -> str:
        return "put" if self.kind == "put" else "get"


def peer_cases(put_clients, get_clients, systems, workloads=WORKLOADS) -> list[Case]:
    """The dkvs-vs-etcd cases, each row's systems next to each other. Consistent GETs run
    twice on dkvs: with the read index (``dkvs-fsync``) and with ``--lease-reads``."""
    cases = []
    for clients in put_clients:
        cases += [Case(f"put-{clients}-{s}", "put", s, clients) for s in ("dkvs-fsync", "dkvs-mem", "etcd")]
    for kind in ("get", "cget"):
        dkvs = ("dkvs-fsync", "dkvs-lease") if kind == "cget" else ("dkvs-fsync",)
        for clients in get_clients:
            cases += [Case(f"{kind}-{clients}-{s}", kind, s, clients) for s in (*dkvs, "etcd")]
    return [c for c in cases if c.system in systems and c.kind in workloads]


def cost_cases(clients: int = 16, many: int = 64) -> list[Case]:
    """Master CPU per majority write and the single-node / baseline ratios (in memory)."""
    return [Case("cost-single-put-16", "put", "dkvs-single", clients, "1"),
            Case("cost-maj-16", "put", "dkvs-mem", clients),
            Case("cost-maj-64", "put", "dkvs-mem", many),
            Case("cost-base-put-16", "put", "baseline", clients, "1"),
            Case("cost-single-get-16", "get", "dkvs-single", clients),
            Case("cost-base-get-16", "get", "baseline", clients)]


class _Systems:
    """Starts each system once, on first use; stops all of them when the stack closes."""

    def __init__(self, stack: contextlib.ExitStack, o, progress) -> None:
        self.stack, self.o, self.progress = stack, o, progress
        self.targets: dict[str, Target] = {}
        self.skipped: dict[str, str] = {}
        self.etcd_version: str | None = None

    def target(self, system: str) -> Target | None:
        if system in self.skipped:
            return None
        if system not in self.targets:
            self.progress(f"starting {system} ...")
            try:
                self.targets[system] = self._start(system)
            except EtcdUnavailable as exc:
                self.skipped[system] = str(exc)
                self.progress(f"bench_peers: skipping etcd: {exc}")
                return None
        return self.targets[system]

    def _start(self, system: str) -> Target:
        o = self.o
        if system == "baseline":
            server = self.stack.enter_context(BaselineProcess())
            return baseline_target(server.url, server.proc.pid)
        if system == "etcd":
            binary = find_etcd(o.etcd, progress=self.progress) if o.etcd != "none" else None
            if binary is None:
                raise EtcdUnavailable("etcd left out (--etcd none)")
            self.etcd_version = etcd_version(binary)
            cluster = self.stack.enter_context(EtcdCluster(binary, 3, o.data_dir_root))
            urls, pids = cluster.leader_first()
            return Target("etcd", urls[0], (urls[0],), None, 3, tuple(pids))
        size = 1 if system == "dkvs-single" else 3
        on_disk = system in ("dkvs-fsync", "dkvs-lease")
        extra = ("--lease-reads",) if system == "dkvs-lease" else ()
        cluster = self.stack.enter_context(StartedCluster(
            size, data_dir_root=(o.data_dir_root or _tmp()) if on_disk else None,
            fsync="always" if on_disk else None, node_args=tuple(o.node_arg) + extra))
        return cluster.target("master")


def _tmp() -> str:
    return tempfile.gettempdir()


def _spec(case: Case, target: Target, o, populate: bool) -> LoadSpec:
    return LoadSpec(workload=case.workload, keys=o.keys, value_size=o.value_size, acks=case.acks,
                    read_ratio=1.0, write_url=target.write_url, read_urls=target.read_urls,
                    concurrency=case.clients, processes=max(1, min(case.clients, o.processes)),
                    populate=populate, seed=o.seed, protocol="etcd" if target.name == "etcd" else "dkvs",
                    consistent=case.kind == "cget", client_engine=o.client_engine)


def run_cases(cases: list[Case], o, progress) -> dict:
    """Run ``cases`` ``o.repeat`` times round-robin; medians per case, every run, skips."""
    runs: list[dict] = []
    populated: set = set()
    with contextlib.ExitStack() as stack:
        systems = _Systems(stack, o, progress)
        for repeat in range(o.repeat):
            run: dict = {}
            for case in cases:
                target = systems.target(case.system)
                if target is None:
                    continue
                progress(f"[{repeat + 1}/{o.repeat}] {case.id} ...")
                populate = case.workload == "get" and case.system not in populated
                if populate:
                    populated.add(case.system)
                run[case.id] = run_once(target, _spec(case, target, o, populate), None, o.warmup, o.duration)
                settle()
            runs.append(run)
        skipped, etcd_version = dict(systems.skipped), systems.etcd_version
    medians = {case.id: report.median_summary([r[case.id] for r in runs if case.id in r])
               for case in cases if any(case.id in r for r in runs)}
    return {"medians": medians, "runs": runs, "skipped": skipped, "etcd_version": etcd_version}


# --- tables -----------------------------------------------------------------------------

def _ops(medians: dict, case_id: str):
    return (medians.get(case_id) or {}).get("throughput")


def _master_us(medians: dict, case_id: str):
    return ((medians.get(case_id) or {}).get("cpu") or {}).get("master_us_per_op")


def _ratio(a, b):
    return round(a / b, 3) if a and b else None


def peer_rows(cases: list[Case], medians: dict) -> list[dict]:
    """One row per (workload, clients): every system's ops/s, dkvs / etcd and the goal."""
    rows = []
    for kind in ("put", "get", "cget"):
        for clients in sorted({c.clients for c in cases if c.kind == kind}):
            ids = {c.system: c.id for c in cases if c.kind == kind and c.clients == clients}
            etcd = _ops(medians, ids.get("etcd", ""))
            row = {"workload": PEER_ROWS[kind], "kind": kind, "clients": clients,
                   "ops": {s: _ops(medians, i) for s, i in ids.items()},
                   "master_us_per_op": {s: _master_us(medians, i) for s, i in ids.items()},
                   "p99_ms": {s: ((medians.get(i) or {}).get("latency_ms") or {}).get("p99") for s, i in ids.items()},
                   "errors": sum((medians.get(i) or {}).get("error_count") or 0 for i in ids.values()),
                   "ratios": []}
            for system, goal in PEER_GOALS[kind]:
                value = _ratio(_ops(medians, ids.get(system, "")), etcd)
                row["ratios"].append({"system": system, "value": value, "goal": goal,
                                      "met": None if value is None else value >= goal})
            rows.append(row)
    return rows


def peer_table(rows: list[dict]) -> str:
    def ops(row, s):
        return report.fmt_number(row["ops"].get(s))

    def ratios(row):
        parts = []
        for r in row["ratios"]:
            value = "-" if r["value"] is None else f"{r['value']:.3f}"
            met = {True: "yes", False: "NO", None: "-"}[r["met"]]
            parts.append(f"{r['system'].removeprefix('dkvs-')} {value} (≥{r['goal']:g} {met})")
        return "  ".join(parts)

    body = [[row["workload"], str(row["clients"]), ops(row, "dkvs-fsync"), ops(row, "dkvs-mem"),
             ops(row, "dkvs-lease"), ops(row, "etcd"), ratios(row),
             " / ".join(report.fmt_number(row["master_us_per_op"].get(s))
                        for s in ("dkvs-fsync", "dkvs-mem", "etcd")),
             " / ".join(report.fmt_ms(row["p99_ms"].get(s)) for s in ("dkvs-fsync", "dkvs-mem", "etcd")),
             f"{row['errors']:g}"] for row in rows]
    return report.format_table(
        ["workload", "clients", "dkvs fsync ops/s", "dkvs mem ops/s", "dkvs lease ops/s", "etcd ops/s",
         "dkvs / etcd (goal met)", "master µs/op fsync/mem/etcd", "p99 ms fsync/mem/etcd", "errors"],
        body, left=(0, 5))


def cost_rows(medians: dict) -> list[dict]:
    rows = []
    for label, top, bottom, goal, op in COST_GOALS:
        value = _master_us(medians, top) if bottom is None else _ratio(_ops(medians, top), _ops(medians, bottom))
        met = None if value is None else (value <= goal if op == "<=" else value >= goal)
        rows.append({"name": label, "value": value, "goal": goal, "op": op, "met": met})
    return rows


def cost_table(cases: list[Case], medians: dict) -> str:
    runs = [[c.id, c.system, str(c.clients), c.acks if c.kind == "put" else "-",
             report.fmt_number(_ops(medians, c.id)), report.fmt_number(_master_us(medians, c.id)),
             report.fmt_ms(((medians.get(c.id) or {}).get("latency_ms") or {}).get("p99")),
             f"{(medians.get(c.id) or {}).get('error_count') or 0:g}"] for c in cases]
    goals = [[r["name"], "-" if r["value"] is None else f"{r['value']:.2f}",
              f"{'≤' if r['op'] == '<=' else '≥'} {r['goal']:g}",
              {True: "yes", False: "NO", None: "-"}[r["met"]]] for r in cost_rows(medians)]
    return (report.format_table(["case", "system", "conns", "acks", "ops/s", "master µs/op", "p99 ms",
                                 "errors"], runs, left=(0, 1))
            + "\n\n" + report.format_table(["figure", "measured", "goal", "met"], goals))


# --- markdown (the tables of docs/benchmarks.md, pasted as printed) ---------------------

def _met(met) -> str:
    return {True: "met", False: "**not met**", None: "-"}[met]


def peer_markdown(rows: list[dict]) -> str:
    systems = ("dkvs-fsync", "dkvs-mem", "etcd")
    lines = ["| workload | clients | dkvs `--fsync always` ops/s | dkvs in memory ops/s | etcd ops/s "
             "| dkvs fsync / etcd (goal) | dkvs mem / etcd (goal) | master/leader µs CPU per op: "
             "fsync / mem / etcd | p99 ms: fsync / mem / etcd | errors |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    leased = [row for row in rows if row["ops"].get("dkvs-lease") is not None]
    for row in rows:
        ratios = {r["system"]: r for r in row["ratios"]}

        def ratio(system: str) -> str:
            r = ratios.get(system)
            if r is None:
                return ""
            value = "-" if r["value"] is None else f"{r['value']:.3f}"
            return f"{value} (≥ {r['goal']:g}, {_met(r['met'])})"

        ops = " | ".join(report.fmt_number(row["ops"].get(s)) for s in systems)
        cpu = " / ".join(report.fmt_number(row["master_us_per_op"].get(s)) for s in systems)
        p99 = " / ".join(report.fmt_ms(row["p99_ms"].get(s)) for s in systems)
        lines.append(f"| {row['workload']} | {row['clients']} | {ops} | {ratio('dkvs-fsync')} | "
                     f"{ratio('dkvs-mem')} | {cpu} | {p99} | {row['errors']:g} |")
    if leased:  # consistent GETs with --lease-reads: a table of their own
        lines += ["", "| workload | clients | dkvs `--lease-reads` ops/s | etcd ops/s | lease / etcd (goal) "
                  "| p99 ms: lease / etcd |", "|---|---|---|---|---|---|"]
        for row in leased:
            r = next(r for r in row["ratios"] if r["system"] == "dkvs-lease")
            value = "-" if r["value"] is None else f"{r['value']:.3f}"
            lines.append(f"| {row['workload']}, lease | {row['clients']} | "
                         f"{report.fmt_number(row['ops'].get('dkvs-lease'))} | {report.fmt_number(row['ops'].get('etcd'))} "
                         f"| {value} (≥ {r['goal']:g}, {_met(r['met'])}) | "
                         f"{report.fmt_ms(row['p99_ms'].get('dkvs-lease'))} / {report.fmt_ms(row['p99_ms'].get('etcd'))} |")
    return "\n".join(lines)


def cost_markdown(cases: list[Case], medians: dict) -> str:
    lines = ["| figure | measured | goal | met |", "|---|---|---|---|"]
    for r in cost_rows(medians):
        value = "-" if r["value"] is None else f"{r['value']:.3f}"
        lines.append(f"| {r['name']} | {value} | {'≤' if r['op'] == '<=' else '≥'} {r['goal']:g} | {_met(r['met'])} |")
    lines += ["", "| case | system | connections | ops/s | master µs CPU per op | p99 ms | errors |",
              "|---|---|---|---|---|---|---|"]
    for c in cases:
        s = medians.get(c.id) or {}
        lines.append(f"| {c.id} | {c.system} | {c.clients} | {report.fmt_number(s.get('throughput'))} | "
                     f"{report.fmt_number(_master_us(medians, c.id))} | "
                     f"{report.fmt_ms((s.get('latency_ms') or {}).get('p99'))} | {s.get('error_count') or 0:g} |")
    return "\n".join(lines)
