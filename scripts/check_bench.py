"""Benchmark the linearizability checker on a generated history.

    python scripts/check_bench.py                  # 100,000 operations, should say linearizable
    python scripts/check_bench.py --stale          # the same with one stale read: must be caught

The history comes from a simulated store that is linearizable by construction: one
register per key, applied in the order of each operation's linearization point, a random
instant inside its [invoke, complete] interval. Concurrent clients (processes) pick keys
and operations at random. Some operations fail (never applied) and some end as info: the
client gives up, and the write is applied later, possibly long after, or never at all.
Everything is seeded, and only the standard library is used, so runs are repeatable.

``--stale`` rewrites one completed get to return a value that was certainly overwritten
before the get began: put p of value v completed, then another write w was invoked and
completed, then the get was invoked. No legal order can return v, and the checker must
say so (exit 1).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

__all__ = ["SimulatedOp", "inject_stale_read", "simulate_history", "to_events", "write_history"]

LATENCY_NS = 2_000_000  # up to 2 ms from invoke to the linearization point, and again to the answer
THINK_NS = 500_000  # up to 0.5 ms between one answer and the client's next invoke
LATE_APPLY_NS = 50 * LATENCY_NS  # how late an info write may still take effect
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # so `-m dkvs.check` imports


@dataclass(slots=True)
class SimulatedOp:
    """One operation as the simulator recorded it; ``outcome`` is ok, fail or info."""

    process: int
    f: str
    key: str
    value: str | None  # written by a put, read by a get
    invoke_time: int
    complete_time: int
    outcome: str
    found: bool | None = None


def simulate_history(operations: int, keys: int, processes: int, seed: int,
                     info_rate: float = 0.01, fail_rate: float = 0.01) -> list[SimulatedOp]:
    """Run ``processes`` clients against a correct register store until ``operations``
    operations have been invoked; return them in invocation order."""
    rng = random.Random(seed)
    store: dict[str, str] = {}
    key_names = [f"k{index}" for index in range(keys)]
    recorded: list[SimulatedOp] = []
    queue: list[tuple[int, int, str, SimulatedOp | int]] = []
    sequence = 0

    def schedule(at: int, action: str, subject: SimulatedOp | int) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(queue, (at, sequence, action, subject))

    for process in range(processes):
        schedule(rng.randint(0, THINK_NS), "invoke", process)
    while queue:
        now, _, action, subject = heapq.heappop(queue)
        if action == "invoke":
            if len(recorded) >= operations:
                continue
            op = _invent_operation(rng, subject, key_names, now, len(recorded))
            recorded.append(op)
            roll = rng.random()
            if roll < fail_rate:
                op.outcome, op.complete_time = "fail", now + rng.randint(1, 2 * LATENCY_NS)
                schedule(op.complete_time, "next", op.process)
            elif roll < fail_rate + info_rate:
                op.outcome, op.complete_time = "info", now + rng.randint(1, 2 * LATENCY_NS)
                if op.f != "get" and rng.random() < 0.5:
                    schedule(now + rng.randint(1, LATE_APPLY_NS), "apply", op)
                schedule(op.complete_time, "next", op.process)
            else:
                op.outcome = "ok"
                schedule(now + rng.randint(1, LATENCY_NS), "apply", op)
        elif action == "apply":
            _apply(store, subject)
            if subject.outcome == "ok":
                subject.complete_time = now + rng.randint(1, LATENCY_NS)
                schedule(subject.complete_time, "next", subject.process)
        else:  # "next": the client got its answer, thinks, and invokes again
            schedule(now + rng.randint(1, THINK_NS), "invoke", subject)
    return recorded


def _invent_operation(rng: random.Random, process: int, key_names: list[str], now: int,
                      number: int) -> SimulatedOp:
    f = rng.choices(("put", "get", "delete"), weights=(45, 45, 10))[0]
    value = f"v{number}" if f == "put" else None
    return SimulatedOp(process, f, rng.choice(key_names), value, now, -1, "pending")


def _apply(store: dict[str, str], op: SimulatedOp) -> None:
    """The linearization point: the one instant the operation takes effect."""
    if op.f == "put":
        store[op.key] = op.value
    elif op.f == "get":
        op.value = store.get(op.key)
    else:
        op.found = store.pop(op.key, None) is not None


def inject_stale_read(ops: list[SimulatedOp], seed: int) -> SimulatedOp:
    """Make one ok get return a value overwritten before it began; return that get."""
    rng = random.Random(seed)
    gets = [op for op in ops if op.f == "get" and op.outcome == "ok"]
    rng.shuffle(gets)
    writes_by_key: dict[str, list[SimulatedOp]] = {}
    for op in ops:
        if op.f != "get" and op.outcome == "ok":
            writes_by_key.setdefault(op.key, []).append(op)
    for get in gets:
        writes = writes_by_key.get(get.key, [])
        overwrites = [w for w in writes if w.complete_time < get.invoke_time]
        for overwrite in overwrites:
            stale = [p for p in writes if p.f == "put" and p.complete_time < overwrite.invoke_time
                     and p.value != get.value]
            if stale:
                get.value = rng.choice(stale).value
                return get
    raise ValueError("no get has a certainly overwritten value to read; generate a longer history")


def to_events(ops: list[SimulatedOp]) -> list[dict]:
    """The JSON-lines events for ``ops``, in time order."""
    events = []
    for op in ops:
        invoke = {"process": op.process, "type": "invoke", "f": op.f, "key": op.key,
                  "value": op.value if op.f == "put" else None, "time": op.invoke_time}
        done = {"process": op.process, "type": op.outcome, "f": op.f, "key": op.key,
                "value": op.value if op.outcome == "ok" else None, "time": op.complete_time}
        if op.f == "delete" and op.outcome == "ok":
            done["found"] = op.found
        events.append(invoke)
        events.append(done)
    events.sort(key=lambda event: event["time"])  # stable: each op's invoke stays before its answer
    return events


def write_history(events: list[dict], path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event, separators=(",", ":")) + "\n")


def _children_cpu_seconds() -> float:
    """CPU time of finished child processes: a fairer figure than wall time on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=100_000, help="operations to invoke (default 100000)")
    parser.add_argument("--keys", type=int, default=300, help="number of keys (default 300)")
    parser.add_argument("--processes", type=int, default=12, help="concurrent clients (default 12)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--info-rate", type=float, default=0.01,
                        help="share of ops ending as info (default 0.01)")
    parser.add_argument("--fail-rate", type=float, default=0.01, help="share of ops failing (default 0.01)")
    parser.add_argument("--stale", action="store_true", help="inject one stale read; expect exit 1")
    parser.add_argument("--keep", action="store_true", help="keep the history file and print its path")
    arguments = parser.parse_args()

    ops = simulate_history(arguments.ops, arguments.keys, arguments.processes, arguments.seed,
                           arguments.info_rate, arguments.fail_rate)
    if arguments.stale:
        get = inject_stale_read(ops, arguments.seed)
        print(f"injected stale read: process {get.process} get {get.key!r} -> {get.value!r} "
              f"at [{get.invoke_time}, {get.complete_time}]")
    handle, path = tempfile.mkstemp(prefix="dkvs-history-", suffix=".jsonl")
    os.close(handle)
    try:
        write_history(to_events(ops), path)
        outcomes = {name: sum(op.outcome == name for op in ops) for name in ("ok", "info", "fail")}
        print(f"history: {len(ops)} operations ({outcomes}), {arguments.keys} keys, "
              f"{arguments.processes} processes, seed {arguments.seed}")
        cpu_before = _children_cpu_seconds()
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "dkvs.check", path], capture_output=True, text=True,
                                   cwd=REPO_ROOT)
        elapsed = time.perf_counter() - started
        cpu = _children_cpu_seconds() - cpu_before
        print(completed.stdout + completed.stderr, end="")
        print(f"checker exit {completed.returncode} after {elapsed:.2f} s wall ({cpu:.2f} s CPU) "
              f"for {len(ops)} operations")
    finally:
        if arguments.keep:
            print(f"history kept at {path}")
        else:
            os.remove(path)
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
