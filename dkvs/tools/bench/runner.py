"""One measured run: start the load processes (and the lag probe), time the window, collect.

The parent never sends a request itself during the window; it only orchestrates:

1. start ``spec.processes`` load workers and, if asked, the lag probe, as *spawned*
   processes (a fresh interpreter each: no state inherited from the parent's threads);
2. wait until every one is ready (connections open, keys pre-populated), then until every
   node read from has caught up with the master;
3. send them all the same window: warm-up from now, measurement from
   ``now + warmup`` to ``now + warmup + duration`` (``time.monotonic()``, system-wide);
4. collect the results and merge them into one summary (:mod:`.report`).

Every phase has a deadline, and the ``finally`` block stops every process it started
(join, then terminate, then kill), also on Ctrl-C or an exception.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from array import array
from collections import Counter

from . import report
from .lag import LagSpec, probe_main
from .load import LoadSpec, worker_main
from .targets import BenchError, Target, wait_caught_up

__all__ = ["run_once", "SETUP_SECONDS", "COLLECT_GRACE_SECONDS"]

SETUP_SECONDS = 120.0  # process start + pre-population
GO_DELAY_SECONDS = 0.05  # lets every process receive "go" before the warm-up begins
COLLECT_GRACE_SECONDS = 30.0  # after the window: slow answers, the probe's drain, pickling
STOP_SECONDS = 3.0


def _collect(results, expected: set, deadline: float, kind: str, procs) -> dict:
    """Messages of ``kind`` from every id in ``expected``, before ``deadline``."""
    got: dict = {}
    while set(got) != expected:
        left = deadline - time.monotonic()
        if left <= 0:
            missing = ", ".join(str(x) for x in sorted(expected - set(got), key=str))
            raise BenchError(f"timed out waiting for {kind} from {missing}")
        try:
            message = results.get(timeout=min(left, 0.5))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise BenchError(f"a benchmark process died (exit code {dead[0].exitcode})") from None
            continue
        what, who, payload = message
        if what == "error":
            raise BenchError(f"benchmark process {who} failed:\n{payload}")
        if what == kind:
            got[who] = payload
    return got


def _stop(procs, patience: float) -> None:
    """Let each process end by itself for up to ``patience`` s; then terminate, then kill."""
    deadline = time.monotonic() + patience
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


def run_once(target: Target, spec: LoadSpec | None, lag: LagSpec | None,
             warmup: float, duration: float) -> dict:
    """Measure ``spec`` (and/or the lag probe) against ``target``; returns the summary.

    The summary is :func:`report.run_summary`'s dict (``None`` figures when ``spec`` is
    ``None``: a probe-only run) plus ``"lag"`` (the probe's figures or ``None``),
    ``"populate_errors"`` and ``"reconnects"``.
    """
    if spec is None and lag is None:
        raise ValueError("nothing to run")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs, pipes = [], []
    done: dict = {}
    try:
        ids: set = set()
        for index in range(spec.processes if spec else 0):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(spec, index, there, results),
                               name=f"bench-load-{index}", daemon=True)
            proc.start()
            procs.append(proc)
            pipes.append(here)
            ids.add(index)
        if lag is not None:
            here, there = ctx.Pipe()
            proc = ctx.Process(target=probe_main, args=(lag, there, results),
                               name="bench-lag", daemon=True)
            proc.start()
            procs.append(proc)
            pipes.append(here)
            ids.add("lag")
        ready = _collect(results, ids, time.monotonic() + SETUP_SECONDS, "ready", procs)
        populate_errors = sum((Counter(v) for v in ready.values()), Counter())
        if spec is not None and spec.populate:
            wait_caught_up(target)
        go = time.monotonic() + GO_DELAY_SECONDS
        measure_start = go + warmup
        measure_end = measure_start + duration
        for pipe in pipes:
            pipe.send(("go", measure_start, measure_end))
        server_cpu = _cpu_over(target.pids, measure_start, measure_end)
        done = _collect(results, ids, measure_end + COLLECT_GRACE_SECONDS, "done", procs)
    finally:
        for pipe in pipes:
            pipe.close()
        _stop(procs, STOP_SECONDS if done else 0.0)  # aborted: no reason to wait
        results.close()
        results.join_thread()
    summary = _summarize(done, ids - {"lag"}, duration, populate_errors)
    _add_cpu(summary, server_cpu, [done[i].get("cpu_seconds") for i in ids - {"lag"}], duration)
    return summary


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``), else ``None``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _cpu_over(pids: tuple[int, ...], start: float, end: float) -> list[float] | None:
    """CPU seconds each server process used between the instants ``start`` and ``end``."""
    if not pids:
        return None
    samples = []
    for instant in (start, end):
        time.sleep(max(0.0, instant - time.monotonic()))
        samples.append([process_cpu_seconds(pid) for pid in pids])
    if any(value is None for sample in samples for value in sample):
        return None
    return [after - before for before, after in zip(*samples)]


def _add_cpu(summary: dict, server_cpu: list[float] | None, load_cpu: list, duration: float) -> None:
    """CPU cost: cores busy and microseconds per answered request, of all the server
    processes, of the master alone (the write path's bottleneck when every node has cores
    of its own), and of the load processes."""
    ops = summary.get("ops")
    load = None if not load_cpu or None in load_cpu else sum(load_cpu)
    server = None if server_cpu is None else sum(server_cpu)
    master = None if server_cpu is None else server_cpu[0]

    def per_op(seconds):
        return round(seconds / ops * 1e6, 1) if seconds is not None and ops else None

    def cores(seconds):
        return None if seconds is None else round(seconds / duration, 3)

    summary["cpu"] = {"server_cores": cores(server), "server_us_per_op": per_op(server),
                      "master_cores": cores(master), "master_us_per_op": per_op(master),
                      "load_cores": cores(load), "load_us_per_op": per_op(load)}


def _summarize(done: dict, load_ids: set, duration: float, populate_errors: Counter) -> dict:
    latencies = array("d")
    errors: Counter = Counter()
    warmup_errors = reconnects = 0
    for index in load_ids:
        payload = done[index]
        chunk = array("d")
        chunk.frombytes(payload["latencies"])
        latencies.extend(chunk)
        errors.update(payload["errors"])
        warmup_errors += payload["warmup_errors"]
        reconnects += payload["reconnects"]
    if load_ids:
        summary = report.run_summary(latencies, duration, dict(errors), warmup_errors)
    else:
        summary = {"ops": None, "duration_s": round(duration, 3), "throughput": None,
                   "latency_ms": None, "errors": {}, "error_count": 0, "warmup_errors": 0}
    summary["populate_errors"] = dict(populate_errors)
    summary["reconnects"] = reconnects
    summary["lag"] = None
    if "lag" in done:
        probe = done["lag"]
        lags = array("d")
        lags.frombytes(probe["lags"])
        summary["lag"] = report.lag_summary(lags, probe["writes"], probe["write_seconds"],
                                            probe["target_rate"], probe["unseen"], probe["errors"])
    return summary
