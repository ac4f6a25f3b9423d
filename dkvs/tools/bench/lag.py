"""The replication-lag probe: how long after its acknowledgement a write is visible on a slave.

Runs in its own process, started by the runner next to the load workers and on the same
start signal. Two threads, each with its own keep-alive connection:

* the **writer** PUTs a key no one else uses (``lag-<run token>-<n>``, ``acks=1``) on the
  master at a steady ``rate`` (absolute schedule ``measure_start + n / rate``; when it falls
  behind it does not burst to catch up, it re-anchors, so the achieved rate is reported
  honestly), and hands each acknowledged key with its acknowledgement instant to
* the **poller**, which GETs the oldest acknowledged, not yet seen key on the slave, again
  and again with no pause, until the slave answers 200; the lag of that write is the time
  from its acknowledgement to the arrival of that 200.

So a lag sample is an upper bound that includes one GET round trip on the slave (a few
hundred microseconds on loopback); a write that is already on the slave when polled shows
just that round trip. Writes stop at ``measure_end``; the poller then has
``DRAIN_SECONDS`` to see the last ones, and counts a write it never saw within
``UNSEEN_AFTER_SECONDS`` as *unseen*. The result goes to the parent as
``("done", "lag", payload)``, with the same ready/go protocol as :mod:`.load`.
"""

from __future__ import annotations

import collections
import threading
import time
import traceback
from array import array
from collections import Counter
from dataclasses import dataclass

from .load import ERROR_PAUSE_SECONDS, Connection, await_go

__all__ = ["LagSpec", "probe_main", "DRAIN_SECONDS", "UNSEEN_AFTER_SECONDS"]

DRAIN_SECONDS = 3.0
UNSEEN_AFTER_SECONDS = 3.0
IDLE_WAIT_SECONDS = 0.05  # the poller's wait when no acknowledged write is pending


@dataclass(frozen=True)
class LagSpec:
    """Where and how fast to probe (picklable)."""

    master_url: str
    slave_url: str
    rate: float  # target writes per second
    token: str  # makes this run's keys unique


class _Probe:
    def __init__(self, spec: LagSpec) -> None:
        self.spec = spec
        self.master = Connection(spec.master_url)
        self.slave = Connection(spec.slave_url)
        self.pending: collections.deque = collections.deque()  # (path, ack instant)
        self.ready = threading.Condition()
        self.writing = True
        self.writes = 0
        self.write_seconds = 0.0
        self.lags = array("d")
        self.unseen = 0
        self.errors: Counter = Counter()

    def warm_up(self) -> None:
        """One write and one read, so both connections are open before the window."""
        path = f"/kv/lag-{self.spec.token}-warmup"
        for status in (self.master.call("PUT", path + "?acks=1", b"w"), self.slave.call("GET", path)):
            if status not in (200, 404):
                self.errors["warmup " + str(status)] += 1

    def write(self, measure_start: float, measure_end: float) -> None:
        period = 1.0 / self.spec.rate
        prefix = f"/kv/lag-{self.spec.token}-"
        now, sleep = time.monotonic, time.sleep
        due = measure_start
        n = 0
        try:
            while True:
                current = now()
                if current < due:
                    sleep(due - current)
                if now() >= measure_end:
                    break
                path = f"{prefix}{n}"
                status = self.master.call("PUT", path + "?acks=1", b"x")
                acked = now()
                n += 1
                if status == 200:
                    with self.ready:
                        self.pending.append((path, acked))
                        self.ready.notify()
                else:
                    self.errors["put " + str(status)] += 1
                    if status.__class__ is str:
                        time.sleep(ERROR_PAUSE_SECONDS)
                due += period
                if due < acked - period:  # fell behind: re-anchor instead of bursting
                    due = acked
        finally:
            self.writes = n
            self.write_seconds = max(0.0, min(now(), measure_end) - measure_start)
            with self.ready:
                self.writing = False
                self.ready.notify()

    def poll(self, measure_end: float) -> None:
        now = time.monotonic
        give_up = measure_end + DRAIN_SECONDS
        while True:
            with self.ready:
                while not self.pending and self.writing:
                    self.ready.wait(IDLE_WAIT_SECONDS)
                if not self.pending:
                    return
                path, acked = self.pending[0]
            status = self.slave.call("GET", path)
            seen = now()
            if status == 200:
                self.lags.append(seen - acked)
            elif status == 404 and seen - acked < UNSEEN_AFTER_SECONDS and seen < give_up:
                continue
            else:
                if status != 404:
                    self.errors["get " + str(status)] += 1
                    time.sleep(ERROR_PAUSE_SECONDS)
                self.unseen += 1
            with self.ready:
                self.pending.popleft()

    def run(self, measure_start: float, measure_end: float) -> dict:
        poller = threading.Thread(target=self.poll, args=(measure_end,), daemon=True,
                                  name="bench-lag-poller")
        poller.start()
        self.write(measure_start, measure_end)
        poller.join(DRAIN_SECONDS + UNSEEN_AFTER_SECONDS + 5.0)
        return {"lags": self.lags.tobytes(), "writes": self.writes,
                "write_seconds": self.write_seconds, "unseen": self.unseen + len(self.pending),
                "errors": dict(self.errors), "target_rate": self.spec.rate}

    def close(self) -> None:
        self.master.close()
        self.slave.close()


def probe_main(spec: LagSpec, control, results) -> None:
    """Entry point of the probe process: ready, wait for go, probe, report."""
    probe = _Probe(spec)
    try:
        probe.warm_up()
        results.put(("ready", "lag", {}))
        window = await_go(control)
        if window is None:
            return
        results.put(("done", "lag", probe.run(*window)))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass
    except Exception:
        results.put(("error", "lag", traceback.format_exc()))
    finally:
        probe.close()
