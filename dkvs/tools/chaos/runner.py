"""One chaos run, start to finish: the only module here that sequences processes and time.

1. Start the cluster (data dirs in a fresh temp dir) and the client threads.
2. Run the nemesis plan, stopping early if the time limit would be passed.
3. Heal everything, let the clients run ``recovery_s`` more, stop them.
4. Wait for convergence; read every key's final value with a consistent read on the
   master (recorded in the history, so the checker sees it as the last operation). With
   leases in the mix, wait (bounded) until every leased key has expired, since nobody
   renews a lease any more.
5. Analyse: counts, lost writes, rollback files, unavailability, the checker's verdict,
   and for ``--workload lock`` the fencing tokens (:mod:`.lockcheck`).

The workload is ``register`` (put/get/delete, :mod:`.clients`), ``data`` (the same plus
compare-and-set, transactions and leases, :mod:`.dataops`) or ``lock``
(:mod:`.lockload`).

Whatever happens (an error, Ctrl-C, the caller's time limit), every node process is
killed and the temp dir removed before :func:`run_chaos` returns or raises.
"""

from __future__ import annotations

import datetime
import json
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .analysis import count_outcomes, failure_reasons, lost_writes, unavailability
from .clients import ChaosClient, NodeConnections, Workload, http_request, key_name
from .cluster import ChaosCluster
from .dataops import lease_key_name
from .faults import FAULT_KINDS, plan_faults
from .history import HistoryRecorder, classify
from .interrupts import critical
from .lockcheck import check_lock
from .lockload import RESOURCE_KEY, LockClient
from .nemesis import Nemesis
from .verdict import check_linearizability

__all__ = ["ChaosConfig", "run_chaos", "EXIT_OK", "EXIT_FAILED", "EXIT_INCONCLUSIVE", "WORKLOADS",
           "DATA_SHARES"]

EXIT_OK = 0
EXIT_FAILED = 1  # a lost acks=majority write, a non-linearizable history, or no convergence
EXIT_INCONCLUSIVE = 3  # checker budget exhausted, time limit hit, or the run could not finish
CHECKER_BUDGET_STATES = 1_000_000
FINAL_READ_RETRY_SECONDS = 0.1
WORKLOADS = ("register", "data", "lock")
DATA_SHARES = {"cas_share": 0.15, "txn_share": 0.1, "lease_share": 0.1}  # --workload data's defaults


@dataclass(frozen=True)
class ChaosConfig:
    """Everything a run depends on; ``seed`` fixes the fault plan and the clients' choices."""

    nodes: int = 3
    clients: int = 5
    keys: int = 10
    faults: int = 100
    interval_s: float = 2.0
    seed: int = 1
    fsync: str = "always"
    time_limit_s: float = 900.0
    kinds: tuple[str, ...] = FAULT_KINDS
    put_share: float = 0.45
    delete_share: float = 0.05
    acks1_share: float = 0.2
    op_timeout_s: float = 1.0
    think_s: float = 0.0
    backoff_s: float = 0.05
    recovery_s: float = 2.0
    converge_timeout_s: float = 30.0
    checker_budget: int = CHECKER_BUDGET_STATES
    history_path: str | None = None
    logs_dir: str | None = None
    workload_name: str = "register"
    cas_share: float = 0.0
    txn_share: float = 0.0
    lease_share: float = 0.0
    lease_keys: int = 4
    lease_ttl_s: float = 1.0
    lock_ttl_s: float = 1.0
    lock_pause_share: float = 0.2

    def workload(self) -> Workload:
        return Workload(self.keys, self.put_share, self.delete_share, self.acks1_share,
                        self.op_timeout_s, self.think_s, self.backoff_s, self.cas_share, self.txn_share,
                        self.lease_share, self.lease_keys, self.lease_ttl_s)

    def final_keys(self) -> list[str]:
        """The keys read at the end (and recorded in the history)."""
        if self.workload_name == "lock":
            return [RESOURCE_KEY]
        return [key_name(n) for n in range(self.keys)]

    def reserve_s(self) -> float:
        """Time kept back from the fault phase for healing, convergence and checking."""
        return self.recovery_s + min(self.converge_timeout_s + 30.0, self.time_limit_s / 4)


@dataclass
class _Run:
    """What a run gathered, for :func:`_report`."""

    windows: list
    planned: int
    heal_problems: list[str]
    run_start: int
    run_end: int
    convergence: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)
    final_seqs: dict = field(default_factory=dict)
    rollback: list = field(default_factory=list)
    checker: dict = field(default_factory=dict)
    leases: dict = field(default_factory=dict)
    lock: dict = field(default_factory=dict)


def run_chaos(config: ChaosConfig, say: Callable[[str], None] = lambda line: None) -> dict:
    """Run one chaos test; returns the report document (see :mod:`.report`)."""
    started = time.monotonic()
    deadline = started + config.time_limit_s
    root = Path(tempfile.mkdtemp(prefix="dkvs-chaos-"))
    cluster = ChaosCluster(config.nodes, root, fsync=config.fsync)
    recorder = HistoryRecorder()
    stop = threading.Event()
    clients: list[ChaosClient] = []
    try:
        say(f"starting {config.nodes} nodes (fsync {config.fsync}) in {root}")
        cluster.start()
        holders: list = []
        clients = _make_clients(config, cluster, recorder, stop, holders)
        clock = {"run_start_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                 "run_start_monotonic_ns": time.monotonic_ns()}
        run = _load_and_faults(config, cluster, clients, stop, deadline, say)
        say("clients stopped; waiting for convergence")
        _settle_and_check(config, cluster, recorder, run, root, deadline, max(c.process for c in clients) + 1, say)
        _judge_workload(config, clients, holders, run)
        doc = _report(config, recorder, run, cluster.restarts)
        doc.update(duration_s=round(time.monotonic() - started, 1), clock=clock, history=config.history_path)
        return doc
    finally:
        with critical():  # a second Ctrl-C or the time limit must not cut the cleanup short
            stop.set()
            for client in clients:
                client.join(config.op_timeout_s * 2)
            cluster.close()
            if config.logs_dir:
                _save_logs(cluster, recorder, Path(config.logs_dir))
            shutil.rmtree(root, ignore_errors=True)


def _make_clients(config: ChaosConfig, cluster: ChaosCluster, recorder: HistoryRecorder,
                  stop: threading.Event, holders: list) -> list:
    if config.workload_name == "lock":
        guard = threading.Lock()
        return [LockClient(n, config.clients, list(cluster.urls), cluster.live_urls, recorder, config.lock_ttl_s,
                           config.lock_pause_share, config.op_timeout_s, config.seed, stop, holders, guard)
                for n in range(config.clients)]
    return [ChaosClient(n, config.clients, config.workload(), recorder, cluster.live_urls, config.seed, stop)
            for n in range(config.clients)]


def _judge_workload(config: ChaosConfig, clients: list, holders: list, run: _Run) -> None:
    """The lock verdict, and the lease counts, once the final reads are in."""
    if config.workload_name == "lock":
        run.lock = check_lock(holders, run.final.get(RESOURCE_KEY), run.run_end,
                              sum(c.failed_acquires for c in clients), RESOURCE_KEY in run.final)
        reasons = Counter()
        for client in clients:
            reasons.update(client.failed_reasons)
        run.lock["failed_acquisition_reasons"] = dict(reasons.most_common())
    elif config.lease_share:
        totals = Counter()
        for client in clients:
            totals.update(client.lease_stats)
        run.leases.update(totals)


def _load_and_faults(config: ChaosConfig, cluster: ChaosCluster, clients: list[ChaosClient],
                     stop: threading.Event, deadline: float, say: Callable[[str], None]) -> _Run:
    """Clients on, the fault plan, heal, recovery time, clients off."""
    plan = plan_faults(random.Random(config.seed), config.faults, config.interval_s, config.nodes, config.kinds)
    run_start = time.monotonic_ns()
    for client in clients:
        client.start()
    say(f"{config.clients} clients running; {len(plan)} fault events, one every {config.interval_s:g} s")
    windows = Nemesis(cluster, say).run(plan, config.interval_s, deadline - config.reserve_s())
    heal_problems = cluster.heal_all()
    time.sleep(config.recovery_s)
    stop.set()
    for client in clients:
        client.join(config.op_timeout_s * 3 + 5)
    return _Run(windows, len(plan), heal_problems, run_start, time.monotonic_ns())


def _settle_and_check(config: ChaosConfig, cluster: ChaosCluster, recorder: HistoryRecorder, run: _Run,
                      root: Path, deadline: float, first_process: int, say: Callable[[str], None]) -> None:
    """Convergence, final reads (into the history), rollback files, the checker's verdict."""
    budget = max(1.0, min(config.converge_timeout_s, deadline - time.monotonic() - 5))
    run.convergence = cluster.wait_converged(budget)
    run.final, run.final_seqs = _final_reads(cluster, recorder, config, first_process, time.monotonic() + budget,
                                             config.final_keys())
    if config.lease_share:
        keys = [lease_key_name(n) for n in range(config.lease_keys)]
        run.leases = _wait_expired(cluster, recorder, config, first_process + len(config.final_keys()), keys,
                                   time.monotonic() + budget + 2 * config.lease_ttl_s)
    run.convergence["final_listing"] = _master_listing(cluster)
    run.rollback = cluster.rollback_entries()
    history_path = config.history_path or str(root / "history.jsonl")
    recorder.write(history_path)
    say(f"checking {len(recorder.events())} history events for linearizability")
    run.checker = check_linearizability(recorder.events(), history_path, config.checker_budget,
                                        max(10.0, deadline - time.monotonic()))


def _wait_expired(cluster: ChaosCluster, recorder: HistoryRecorder, config: ChaosConfig, first_process: int,
                  keys: list[str], deadline: float) -> dict:
    """Nobody renews a lease any more: read the leased keys (recorded) until every one is
    gone, or ``deadline``. Returns when that happened and what was left."""
    started = time.monotonic()
    left = list(keys)
    while left and time.monotonic() < deadline:
        final, _ = _final_reads(cluster, recorder, config, first_process, deadline, left)
        first_process += len(keys)
        left = [key for key in left if key not in final or final[key] is not None]
        if left:
            time.sleep(min(0.2, config.lease_ttl_s / 4))
    return {"all_expired": not left, "seconds": round(time.monotonic() - started, 3), "left": left}


def _final_reads(cluster: ChaosCluster, recorder: HistoryRecorder, config: ChaosConfig,
                 first_process: int, deadline: float, keys: list[str]) -> tuple[dict[str, str | None], dict[str, int]]:
    """A consistent read of every key on the master, recorded in the history: each key's
    final value, and the seq of its last write for the keys that exist."""
    connections = NodeConnections(config.op_timeout_s)
    final: dict[str, str | None] = {}
    seqs: dict[str, int] = {}
    try:
        for number, key in enumerate(keys):
            process = first_process + number
            while time.monotonic() < deadline:
                master = cluster.master_index()
                if master is None:
                    time.sleep(FINAL_READ_RETRY_SECONDS)
                    continue
                recorder.invoke(process, "get", key, None)
                answer = connections.request(cluster.urls[master], *http_request("get", key, None, None, 0))
                outcome = classify("get", answer)
                seq = answer.body.get("seq") if outcome.type == "ok" and outcome.value is not None else None
                seq = seq if isinstance(seq, int) else None
                recorder.complete(process, outcome.type, "get", key, outcome.value, seq=seq)
                if outcome.type == "ok":
                    final[key] = outcome.value
                    if seq is not None:
                        seqs[key] = seq
                    break
                time.sleep(FINAL_READ_RETRY_SECONDS)
    finally:
        connections.close()
    return final, seqs


def _master_listing(cluster: ChaosCluster) -> dict[str, str]:
    master = cluster.master_index()
    items = cluster.listing(master) if master is not None else None
    return {key: value for key, value, _ in items or []}


def _report(config: ChaosConfig, recorder: HistoryRecorder, run: _Run, restarts: int) -> dict:
    ops = recorder.operations()
    final, convergence, windows = run.final, run.convergence, run.windows
    observed = {event["value"] for event in recorder.events()
                if event["type"] == "ok" and event["f"] == "get" and event["value"] is not None}
    observed |= set(convergence["final_listing"].values())
    losses = lost_writes(ops, final, observed, run.rollback, run.final_seqs)
    counts = count_outcomes(ops)
    duration = (run.run_end - run.run_start) / 1e9
    problems, notes, exit_code = _judge(config, run, len(losses["lost_majority"]))
    return {
        "ok": exit_code == EXIT_OK,
        "exit_code": exit_code,
        "problems": problems,
        "notes": notes,
        "config": {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()},
        "client_seconds": round(duration, 1),
        "operations": counts,
        "failure_reasons": failure_reasons(ops),
        "ok_per_second": round(counts.get("total", {}).get("ok", 0) / duration, 1) if duration else 0.0,
        "faults": {"planned": run.planned, "injected": len(windows),
                   "by_kind": dict(Counter("combo" if "+" in w.name else w.name for w in windows)),
                   "restarts": restarts,
                   "heal_problems": [p for w in windows for p in w.problems] + run.heal_problems},
        "lost_majority_writes": len(losses["lost_majority"]),
        "lost_majority_examples": losses["lost_majority"][:10],
        "majority_writes_acknowledged": losses["majority_acknowledged"],
        "acks1": losses["acks1"],
        "rollback": {"entries": len(run.rollback), "files": len({(e["node"], e["file"]) for e in run.rollback})},
        "checker": run.checker,
        "unavailability": unavailability(ops, windows, run.run_start, run.run_end),
        "convergence": {key: value for key, value in convergence.items() if key != "final_listing"},
        "final_values": final,
        "workload": config.workload_name,
        "leases": run.leases,
        "lock": run.lock,
    }


def _judge(config: ChaosConfig, run: _Run, lost_majority: int) -> tuple[list[str], list[str], int]:
    """(problems that fail the run, notes that make it inconclusive, exit status)."""
    missing_final = [key for key in config.final_keys() if key not in run.final]
    verdict = run.checker["verdict"]
    problems = [text for failed, text in (
        (lost_majority, f"{lost_majority} acknowledged acks=majority writes lost"),
        (verdict == "not linearizable", "the history is not linearizable"),
        (not run.convergence["converged"], f"no convergence: {run.convergence['reason']}"),
        (missing_final, f"no final consistent read for keys {missing_final}"),
        (run.leases and not run.leases.get("all_expired", True),
         f"leased keys still present after every lease should have expired: {run.leases.get('left')}"),
        (run.lock.get("violations"), f"lock: {'; '.join(run.lock.get('violations', [])[:3])}"),
    ) if failed]
    notes = [text for noted, text in (
        (verdict == "unknown", "the checker gave no verdict (unknown)"),
        (len(run.windows) < run.planned, f"only {len(run.windows)} of {run.planned} fault events ran (time limit)"),
    ) if noted]
    exit_code = EXIT_FAILED if problems else EXIT_INCONCLUSIVE if verdict == "unknown" else EXIT_OK
    return problems, notes, exit_code


def _save_logs(cluster: ChaosCluster, recorder: HistoryRecorder, where: Path) -> None:
    """Node logs (every incarnation, wall-clock stamped), rollback files, the history, and
    ``operations.jsonl`` (each operation with the node asked, the HTTP status, the reason
    and the seq it got), for a bug report."""
    where.mkdir(parents=True, exist_ok=True)
    for index, lines in cluster.node_logs().items():
        (where / f"node{index}.log").write_text("".join(lines), encoding="utf-8")
        for path in (cluster.data_dir(index) / "rollback").glob("*.jsonl"):
            shutil.copy(path, where / f"node{index}-{path.name}")
    recorder.write(str(where / "history.jsonl"))
    with open(where / "operations.jsonl", "w", encoding="utf-8") as handle:
        for op in recorder.operations():
            handle.write(json.dumps(asdict(op)) + "\n")
