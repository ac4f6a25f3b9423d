#!/usr/bin/env python3
"""Many concurrent clients writing through a slave, and the same against the master.

Starts a 3-node cluster of real processes on 127.0.0.1 (``dkvs.tools.local_cluster``),
then for each target (a slave, then the master) opens ``--clients`` keep-alive connections
spread over ``--processes`` load processes (by default the master first, then a slave,
each on a fresh cluster). Each process drives its connections with one
selector (no thread per client), every connection doing back-to-back ``PUT``s for
``--duration`` seconds. Prints, per target: answers 200, ``503 no_master`` answers, other
statuses and connection errors, ops/s and latency percentiles, the most threads the target
node had, and whether any node's epoch or ``elections_started`` moved; then the slave/master
throughput ratio. Every process it starts is stopped at the end.

    python3 scripts/many_clients_bench.py                          # 1,000 clients, 20 s each
    python3 scripts/many_clients_bench.py --repeat 3 --duration 10 # medians of 3, interleaved
    python3 scripts/many_clients_bench.py --clients 200 --duration 5 --json

Issue 10's bar: through a slave of a healthy cluster, zero ``503 no_master`` and no election.
Issue 15's bar: through a slave, no errors at ≥ 0.7× the master's rate under the same load.
The summary also gives the master's CPU µs per write, through the slave (forwarded writes,
batched by the slave: ``POST /internal/forward``) and direct; the first answer body of each
kind of error is printed with its run.
With ``--repeat K`` the targets run K times round-robin (master, slave, master, ...) and the
ratio is that of the medians; the load average is printed with every run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import selectors
import statistics
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.tools.bench.runner import process_cpu_seconds  # noqa: E402
from dkvs.tools.local_cluster import LocalCluster, node_status, wait_for  # noqa: E402

SETUP_TIMEOUT_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10.0


# --- the load process ------------------------------------------------------------------


class _Client:
    __slots__ = ("sock", "buf", "sent_at", "n", "name")

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock, self.buf, self.sent_at, self.n, self.name = sock, bytearray(), 0.0, 0, name


def _connect(address) -> socket.socket:
    sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def _parse(buf: bytearray) -> tuple[int, bytes, bool, int] | None:
    """(status, body, close, consumed) of a complete answer at the start of ``buf``."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    at = head.find(b"\ncontent-length:")
    length = int(head[at + 16:head.find(b"\r\n", at + 1) if head.find(b"\r\n", at + 1) > 0 else None]) if at >= 0 else 0
    if len(buf) < end + 4 + length:
        return None
    return int(head[9:12]), bytes(buf[end + 4:end + 4 + length]), b"\nconnection: close" in head, end + 4 + length


def load_process(proc_id: int, address, n_clients: int, value: bytes, duration: float, ready, go, results) -> None:
    """Open ``n_clients`` connections, wait for the common start, PUT until the end."""
    stats = Counter()
    examples: dict[str, str] = {}  # the first answer body of each kind of error
    latencies: list[float] = []
    sel = selectors.DefaultSelector()
    clients = []
    try:
        for i in range(n_clients):
            client = _Client(_connect(address), f"p{proc_id}c{i}")
            clients.append(client)
            sel.register(client.sock, selectors.EVENT_READ, client)
    except OSError as exc:
        stats["connect_failed"] += 1
        ready.put((proc_id, repr(exc)))
    else:
        ready.put((proc_id, None))
    start_at = go.get(timeout=SETUP_TIMEOUT_SECONDS)
    end_at = start_at + duration
    time.sleep(max(0.0, start_at - time.monotonic()))

    def send(client: _Client) -> None:
        key = f"{client.name}-{client.n % 100}"
        client.n += 1
        request = (f"PUT /kv/{key} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(value)}\r\n\r\n").encode() + value
        client.sent_at = time.monotonic()
        client.sock.setblocking(True)
        client.sock.settimeout(CONNECT_TIMEOUT_SECONDS)
        client.sock.sendall(request)
        client.sock.setblocking(False)

    def reconnect(client: _Client) -> None:
        sel.unregister(client.sock)
        client.sock.close()
        client.buf.clear()
        if time.monotonic() >= end_at:
            clients.remove(client)
            return
        try:
            client.sock = _connect(address)
        except OSError:
            stats["connect_failed"] += 1
            clients.remove(client)
            return
        sel.register(client.sock, selectors.EVENT_READ, client)
        send(client)

    for client in list(clients):
        try:
            send(client)
        except OSError:
            stats["send_failed"] += 1
            reconnect(client)
    while clients and time.monotonic() < end_at:
        for key, _ in sel.select(max(0.0, min(0.2, end_at - time.monotonic()))):
            client = key.data
            try:
                data = client.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                stats["disconnected"] += 1
                reconnect(client)
                continue
            client.buf += data
            answer = _parse(client.buf)
            if answer is None:
                continue
            status, body, close, consumed = answer
            del client.buf[:consumed]
            now = time.monotonic()
            if now <= end_at:
                if status == 200:
                    stats["ok"] += 1
                    latencies.append(now - client.sent_at)
                elif status == 503 and b"no_master" in body:
                    stats["503_no_master"] += 1
                    examples.setdefault("503_no_master", body[:300].decode("utf-8", "replace"))
                else:
                    stats[f"status_{status}"] += 1
                    examples.setdefault(f"status_{status}", body[:300].decode("utf-8", "replace"))
            if close:
                reconnect(client)
            elif now < end_at:
                try:
                    send(client)
                except OSError:
                    stats["send_failed"] += 1
                    reconnect(client)
    for client in clients:
        client.sock.close()
    latencies.sort()
    sample = latencies[::max(1, len(latencies) // 2000)]  # enough for percentiles, small to pass back
    results.put((proc_id, dict(stats), sample, examples))


# --- the driver ----------------------------------------------------------------------------


def _threads_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _elections(cluster: LocalCluster) -> dict:
    out = {}
    for node in cluster.nodes:
        # Right after a phase the node may still be closing the load's connections (and
        # refuse new ones at its --max-connections): ask again for a while.
        status = wait_for(lambda: node_status(node.url, timeout=5.0), 20) or {}
        out[node.id] = (status.get("epoch"), status.get("elections_started"), status.get("role"))
    return out


def run_phase(cluster: LocalCluster, target, args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    gos = [ctx.Queue() for _ in range(args.processes)]
    parts = urlsplit(target.url)
    address = (parts.hostname, parts.port)
    value = b"v" * args.value_size
    shares = [args.clients // args.processes + (1 if i < args.clients % args.processes else 0)
              for i in range(args.processes)]
    before = _elections(cluster)
    procs = [ctx.Process(target=load_process, args=(i, address, shares[i], value, args.duration, ready, gos[i], results),
                         daemon=True) for i in range(args.processes)]
    max_threads = [0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.25):
            max_threads[0] = max(max_threads[0], _threads_of(target.proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        for proc in procs:
            proc.start()
        problems = [ready.get(timeout=SETUP_TIMEOUT_SECONDS) for _ in procs]
        failed = [p for p in problems if p[1]]
        sampler.start()
        start_at = time.monotonic() + 0.5
        for go in gos:
            go.put(start_at)
        gathered = [results.get(timeout=args.duration + SETUP_TIMEOUT_SECONDS) for _ in procs]
    finally:
        sampling.set()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    after = _elections(cluster)
    stats = Counter()
    latencies: list[float] = []
    examples: dict[str, str] = {}
    for _, part, sample_, seen in gathered:
        stats.update(part)
        latencies.extend(sample_)
        for kind, body in seen.items():
            examples.setdefault(kind, body)
    latencies.sort()

    def pct(q: float) -> float | None:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else None

    moved = {node: (before[node], after.get(node)) for node in before
             if before[node][:2] != (after.get(node) or (None, None))[:2]}
    ok = stats.pop("ok", 0)
    return {"target": target.id, "clients": args.clients, "duration_s": args.duration,
            "ok": ok, "503_no_master": stats.pop("503_no_master", 0),
            "other": dict(stats), "connect_failures_at_setup": len(failed),
            "ops_per_s": round(ok / args.duration, 1), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "error_examples": examples, "max_threads_on_target": max_threads[0], "epoch_or_elections_changed": moved,
            "target_warnings": [line.rstrip()[:300] for line in target.stderr_lines
                                if ("WARNING" in line or "ERROR" in line)
                                and "dkvs.rollback:" not in line][-5:]}  # one line per entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="concurrent keep-alive connections")
    parser.add_argument("--processes", type=int, default=4, help="load processes sharing the clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per target")
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--targets", default="master,slave",
                        help="comma-separated, in order: slave, master (each on a fresh cluster)")
    parser.add_argument("--node-arg", action="append", default=[], help="extra flag for every node")
    parser.add_argument("--repeat", type=int, default=1, help="run the targets K times round-robin; medians")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (0 < args.clients <= 20000 and 0 < args.processes <= 64 and 0 < args.duration <= 600
            and 0 < args.repeat <= 20):
        print("many_clients_bench: --clients 1..20000, --processes 1..64, --duration 0..600, "
              "--repeat 1..20", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.targets.split(",")]
    for name in names:
        if name not in ("slave", "master"):
            print(f"many_clients_bench: unknown target {name!r} (slave or master)", file=sys.stderr)
            return 2
    results = []
    for name in names * args.repeat:
        # A fresh cluster per target: a run that overloads one node must not leave the
        # next one a cluster in the middle of an election.
        with LocalCluster(*args.node_arg, log_level="warning") as cluster:
            cluster.start_cluster(3)
            master = wait_for(cluster.master, 15)
            if master is None:
                print("many_clients_bench: no master elected", file=sys.stderr)
                return 1
            slave = next(n for n in cluster.nodes if n is not master)
            wait_for(lambda: (node_status(slave.url) or {}).get("master"), 15)
            cpu_before = {n.id: (process_cpu_seconds(n.proc.pid) or 0.0) for n in cluster.nodes}
            result = run_phase(cluster, slave if name == "slave" else master, args)
            result["role"] = name
            result["cpu_s_per_node"] = {n.id: round((process_cpu_seconds(n.proc.pid) or 0.0) - cpu_before[n.id], 1)
                                        for n in cluster.nodes}
            # CPU per answered write: steadier than ops/s on a machine shared with other work
            # (includes the idle cost of the phase's set-up and wind-down: an upper bound).
            per_role = Counter()
            for n in cluster.nodes:
                role = "master" if n is master else "slave (target)" if n.id == result["target"] else "slaves"
                per_role[role] += result["cpu_s_per_node"][n.id]
            result["cpu_us_per_ok"] = {role: round(cpu / result["ok"] * 1e6) if result["ok"] else None
                                       for role, cpu in per_role.items()}
            status = wait_for(lambda: node_status(master.url), 20) or {}
            result["same_master_at_end"] = master.alive() and status.get("role") == "master"
            result["loadavg"] = _loadavg()
        results.append(result)
        if not args.json:
            print(f"{name:6} ({result['target']}): ok {result['ok']} ({result['ops_per_s']} ops/s), "
                  f"503 no_master {result['503_no_master']}, other {result['other'] or 0}, "
                  f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
                  f"max threads {result['max_threads_on_target']}, "
                  f"CPU µs per write {result['cpu_us_per_ok']}, "
                  f"epoch/elections changed: {result['epoch_or_elections_changed'] or 'no'}, "
                  f"same master at the end: {result['same_master_at_end']}, "
                  f"load average {result['loadavg']}", flush=True)
            for kind, body in result["error_examples"].items():
                print(f"    first {kind} answer: {body}", flush=True)
            for line in result["target_warnings"]:
                print(f"    target's log: {line}", flush=True)
    medians = {role: statistics.median(r["ops_per_s"] for r in results if r["role"] == role)
               for role in set(names)}
    ratio = None
    if "slave" in medians and "master" in medians and medians["master"]:
        ratio = round(medians["slave"] / medians["master"], 3)
    # The master's CPU per answered write, by target: through a slave it is the cost of a
    # forwarded write (batched: docs/architecture.md), against the master that of a direct one.
    master_cpu = {role: statistics.median(r["cpu_us_per_ok"]["master"] for r in results
                                          if r["role"] == role and r["cpu_us_per_ok"].get("master") is not None)
                  for role in set(names)
                  if any(r["role"] == role and r["cpu_us_per_ok"].get("master") is not None for r in results)}
    summary = {"results": results, "median_ops_per_s": medians, "slave_over_master": ratio,
               "master_cpu_us_per_write": master_cpu, "loadavg": _loadavg()}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        errors = sum(r["503_no_master"] + sum(r["other"].values()) for r in results)
        print(f"medians of {args.repeat}: " + ", ".join(f"{role} {ops:,.0f} ops/s" for role, ops in medians.items())
              + f"; errors {errors}")
        print(f"slave/master ops ratio: {ratio}; loadavg {summary['loadavg']}")
        for role, what in (("slave", "forwarded write (through the slave)"), ("master", "direct write")):
            if summary["master_cpu_us_per_write"].get(role) is not None:
                print(f"master CPU µs per {what}: {summary['master_cpu_us_per_write'][role]} (median)")
    return 0


def _loadavg() -> list[str] | None:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
