#!/usr/bin/env python3
"""Watch a dkvs cluster lose its master and carry on.

Starts 3 nodes as real processes on 127.0.0.1, writes with ``acks=majority`` from a
client thread, SIGKILLs the master, shows the election (who won, in which epoch, how
long it took), keeps writing through the new master, restarts the killed node with
``--join`` and shows it come back as a slave, then checks that every acknowledged write
is on every node. Exits 1 if any acknowledged write is missing. Runs in about 10 s,
and stops every process it started.

    python3 scripts/failover_demo.py                 # 50 ms heartbeats, 0.5 s election timeout
    python3 scripts/failover_demo.py --timings default   # the CLI defaults (0.1 s / 1.0 s)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dkvs.tools.local_cluster import FAST_TIMINGS, LocalCluster, http_call, node_status, wait_for  # noqa: E402

TIMINGS = {"fast": list(FAST_TIMINGS), "default": []}


def call(url: str, method: str, path: str, body: bytes | None = None, timeout: float = 1.0):
    return http_call(url, method, path, body, timeout=timeout)


def status(url: str) -> dict | None:
    return node_status(url, timeout=3.0)


class Writer(threading.Thread):
    """Writes k0, k1, ... with acks=majority, trying the nodes in turn on failure."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.acked: dict[str, str] = {}
        self.ok_times: list[float] = []  # when each acknowledged write completed
        self.ok_starts: list[float] = []  # ... and when it was sent
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        i, target = 0, 0
        while not self.stop.is_set():
            key, value = f"k{i}", f"v{i}"
            url = self.urls[target % len(self.urls)]
            sent = time.monotonic()
            try:
                code, _ = call(url, "PUT", f"/kv/{key}?acks=majority&timeout=1", value.encode())
            except OSError:
                code = 0
            if code == 200:
                self.acked[key] = value
                self.ok_times.append(time.monotonic())
                self.ok_starts.append(sent)
                i += 1
            else:
                self.failures += 1
                target += 1
                time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timings", choices=TIMINGS, default="fast")
    args = parser.parse_args()
    extra = TIMINGS[args.timings]
    cluster = LocalCluster(*extra, log_level="error")
    names = {}
    try:
        nodes = cluster.start_cluster(3)
        for name, node in zip("abc", nodes):
            names[node.id] = name
        urls = [n.url for n in nodes]
        print(f"cluster: {', '.join(f'{names[n.id]}={n.id}@{n.url}' for n in nodes)}")
        first = status(urls[0])
        master = next(n for n in nodes if n.id == first["master"]["id"])
        print(f"master: {names[master.id]} ({master.id}), epoch {first['epoch']}")

        writer = Writer([u for u in urls if u != master.url] + [master.url])
        writer.start()
        time.sleep(1.5)
        before = len(writer.acked)
        print(f"writing with acks=majority: {before} acknowledged so far; SIGKILL the master {names[master.id]}")
        master.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        master.proc.wait()
        survivors = [n for n in nodes if n is not master]

        def new_master():
            for node in survivors:
                s = status(node.url)
                if s and s["role"] == "master":
                    return node, s
            return None

        found = wait_for(new_master, 60)
        if not found:
            print("no new master within 10 s")
            return 1
        winner, s = found
        elected_after = time.monotonic() - killed_at
        # The first write *sent* after the kill (one sent before may still be acknowledged
        # after it: the old master answered just before dying).
        first_write = wait_for(lambda: next((end for start, end in zip(writer.ok_starts, writer.ok_times)
                                             if start > killed_at), None), 10)
        write_after = (first_write - killed_at) if first_write else float("nan")
        print(f"elected: {names[winner.id]} ({winner.id}) in epoch {s['epoch']}, {elected_after:.3f} s after the kill; "
              f"first acknowledged write {write_after:.3f} s after the kill")
        time.sleep(1.0)

        print(f"restarting {names[master.id]} on port {master.port} with --join {winner.url}")
        restarted = cluster.start("--join", winner.url, port=master.port)
        names[restarted.id] = names[master.id]
        nodes[nodes.index(master)] = restarted
        back = wait_for(lambda: (status(restarted.url) or {}).get("role") == "slave", 60)
        print(f"{names[restarted.id]} is back as {'a slave' if back else 'NOT a slave'} (new id {restarted.id})")
        time.sleep(1.0)
        writer.stop.set()
        writer.join(5)

        def converged():
            seqs = {(status(n.url) or {}).get("last_seq") for n in nodes}
            return len(seqs) == 1 and None not in seqs
        wait_for(converged, 60)
        missing = 0
        for node in nodes:
            for key, value in writer.acked.items():
                code, body = call(node.url, "GET", f"/kv/{key}")
                if code != 200 or body.get("value") != value:
                    missing += 1
        gaps = [b - a for a, b in zip(writer.ok_times, writer.ok_times[1:])]
        window = max(gaps) if gaps else float("nan")
        print(f"acknowledged writes: {len(writer.acked)} ({writer.failures} attempts failed or timed out "
              f"and were not acknowledged)")
        print(f"checked on {len(nodes)} nodes: {missing} acknowledged writes missing")
        print(f"unavailability window (longest gap between acknowledged writes): {window:.3f} s")
        for node in nodes:
            s = status(node.url)
            print(f"  {names[node.id]} {node.id}: {s['role']:6} epoch {s['epoch']} last_seq {s['last_seq']}")
        if missing or not back:
            print("FAILED")
            return 1
        print("OK: no acknowledged write lost")
        return 0
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
