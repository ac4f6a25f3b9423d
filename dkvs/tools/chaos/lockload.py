"""The lock workload (``--workload lock``): clients take turns holding one ``dkvs.client.Lock``.

Each :class:`LockClient` thread loops: acquire the lock ``chaos/lock`` (a lease of
``lock_ttl_s``, renewed by the recipe while held), then write the protected resource one
to three times, then release. Now and then (``pause_share``) the holder stalls for three
ttls before a write, as a process in a long GC pause or swapped out would: the
recipe's renewals stall too (:class:`FreezableClient` holds its keepalives), so the lease
expires meanwhile, another client takes the lock, and the stale holder, which still
believes it holds the lock, must be refused by the resource.

The protected resource is the key ``chaos/fenced``, holding ``"TOKEN:client:n"``. A fenced
write reads it (a consistent read), refuses if it holds a higher token than ours, and
otherwise writes with ``if_seq`` = the seq it read; a 409 means someone wrote in between,
so it reads again. Reads and compare-and-sets on the resource go into the history, so the
linearizability checker judges them too; :mod:`.lockcheck` judges the tokens. The lock key
itself is driven by the recipe through ``dkvs.Client`` and is not in the history.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
import time
import urllib.parse
from collections.abc import Callable

from ...client import Client, Lock
from ...errors import DkvsError
from .clients import NodeConnections
from .history import HistoryRecorder, OpRecord, classify, classify_conditional, describe
from .lockcheck import FencedWrite, Holder, token_of

__all__ = ["LOCK_NAME", "RESOURCE_KEY", "FreezableClient", "LockClient"]

LOCK_NAME = "chaos/lock"
RESOURCE_KEY = "chaos/fenced"
WRITE_ATTEMPTS = 4  # reads + compare-and-sets per fenced write before giving up (contention)
PAUSE_TTLS = 3.0  # a simulated holder pause, in lock ttls: long enough for the next holder to write


class FreezableClient(Client):
    """A ``dkvs.Client`` whose keepalives wait while the process is "frozen": the whole
    holder stalls, its lease renewals included, as in a real pause."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.thawed = threading.Event()
        self.thawed.set()

    def keepalive(self, lease_id: int) -> float:
        self.thawed.wait()
        return super().keepalive(lease_id)


class LockClient:
    """One lock-taking thread. ``holders`` is shared: each acquisition is appended, under
    ``holders_lock``, once its holder released (or the run stopped)."""

    def __init__(self, number: int, clients: int, urls: list[str], live_urls: Callable[[], list[str]],
                 recorder: HistoryRecorder, ttl_s: float, pause_share: float, timeout_s: float, seed: int,
                 stop: threading.Event, holders: list[Holder], holders_lock: threading.Lock) -> None:
        self.number, self.clients, self.process = number, clients, number
        self.urls, self.live_urls, self.recorder = urls, live_urls, recorder
        self.ttl_s, self.pause_share, self.timeout_s = ttl_s, pause_share, timeout_s
        self.rng = random.Random(f"chaos-lock-{seed}-{number}")
        self.stop, self.holders, self.holders_lock = stop, holders, holders_lock
        self.failed_acquires = 0
        self.failed_reasons: Counter = Counter()  # why acquisitions failed, by exception class
        self.written = 0
        self.connections = NodeConnections(timeout_s)
        self.thread = threading.Thread(target=self._run, name=f"chaos-lock-{number}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _run(self) -> None:
        client = FreezableClient(self.urls, timeout=self.timeout_s, acks="majority", retry_seconds=2 * self.ttl_s)
        try:
            while not self.stop.is_set():
                self._one_turn(client)
        finally:
            client.close()
            self.connections.close()

    def _one_turn(self, client: FreezableClient) -> None:
        lock = Lock(client, LOCK_NAME, ttl=self.ttl_s, owner=f"c{self.number}")
        started = time.monotonic_ns()
        try:
            token = lock.acquire(timeout=4 * self.ttl_s)
        except (DkvsError, OSError) as exc:
            self.failed_acquires += 1
            self.failed_reasons[type(exc).__name__] += 1
            self.stop.wait(0.05)
            return
        holder = Holder(self.number, token, started, time.monotonic_ns())
        try:
            for _ in range(self.rng.randint(1, 3)):
                if self.stop.is_set():
                    break
                if self.rng.random() < self.pause_share:
                    holder.paused += 1
                    client.thawed.clear()
                    try:
                        self.stop.wait(PAUSE_TTLS * self.ttl_s)
                    finally:
                        client.thawed.set()
                holder.writes.append(self.fenced_write(token))
                if lock.lost:
                    break
        finally:
            holder.lost = lock.lost
            try:
                lock.release()
            except (DkvsError, OSError):
                pass  # the lease then expires on its own
            holder.released_ns = time.monotonic_ns()
            with self.holders_lock:
                self.holders.append(holder)

    def fenced_write(self, token: int) -> FencedWrite:
        """Write the resource only if it holds no higher token than ``token``."""
        for _ in range(WRITE_ATTEMPTS):
            urls = self.live_urls() or self.urls
            url = self.rng.choice(urls)
            read = self._read(url)
            if read is None:
                continue
            value, seq = read
            if token_of(value) > token:
                return FencedWrite("rejected", time.monotonic_ns(), seen_token=token_of(value))
            record = self._cas(url, token, seq)
            if record.recorded == "ok" and record.seq is not None:
                return FencedWrite("accepted", record.complete_ns, seq=record.seq)
            if record.recorded == "info":
                return FencedWrite("unknown", record.complete_ns)
        return FencedWrite("unknown" if self.stop.is_set() else "gave_up", time.monotonic_ns())

    def _read(self, url: str) -> tuple[str | None, int] | None:
        path = "/kv/" + urllib.parse.quote(RESOURCE_KEY, safe="") + "?consistent=true"
        invoke_ns = self.recorder.invoke(self.process, "get", RESOURCE_KEY, None)
        answer = self.connections.request(url, "GET", path)
        outcome = classify("get", answer)
        seq = answer.body.get("seq") if outcome.type == "ok" and outcome.value is not None else None
        complete_ns = self.recorder.complete(self.process, outcome.type, "get", RESOURCE_KEY, outcome.value,
                                             seq=seq if isinstance(seq, int) else None)
        self.recorder.add_operation(OpRecord(self.process, "get", RESOURCE_KEY, outcome.value, None, invoke_ns,
                                             complete_ns, outcome.type, outcome.type, None, answer.status, url,
                                             describe(answer)))
        if outcome.type != "ok":
            return None
        return outcome.value, seq if isinstance(seq, int) else 0

    def _cas(self, url: str, token: int, if_seq: int) -> OpRecord:
        self.written += 1
        value = f"{token}:c{self.number}:{self.written}"
        path = (f"/kv/{urllib.parse.quote(RESOURCE_KEY, safe='')}?if_seq={if_seq}"
                f"&acks=majority&timeout={self.timeout_s:g}")
        process = self.process
        invoke_ns = self.recorder.invoke(process, "put", RESOURCE_KEY, value, if_seq=if_seq)
        answer = self.connections.request(url, "PUT", path, value.encode("utf-8"))
        outcome = classify_conditional("put", answer)
        seq = answer.body.get("seq") if answer.status == 200 and isinstance(answer.body.get("seq"), int) else None
        complete_ns = self.recorder.complete(process, outcome.type, "put", RESOURCE_KEY, value,
                                             seq=seq if outcome.type == "ok" else None, conflict=outcome.conflict)
        record = OpRecord(process, "cas", RESOURCE_KEY, value, "majority", invoke_ns, complete_ns, outcome.type,
                          outcome.type, None, answer.status, url, describe(answer), seq)
        self.recorder.add_operation(record)
        if outcome.type == "info":
            self.process += self.clients
        return record
