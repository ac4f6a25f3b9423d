"""The load worker: one process driving several persistent HTTP connections.

A benchmark run starts ``processes`` of these (see :mod:`dkvs.tools.bench.runner`); the
``concurrency`` clients are spread over them, one thread per client, each with its own
keep-alive :class:`http.client.HTTPConnection` (two when it reads from another node than
the master it writes to). A client is closed-loop: it sends its next request as soon as the
previous answer is read, so ``concurrency`` is also the number of requests in flight.

Protocol with the parent, over a result queue and a control pipe:

1. the worker opens its connections and, if asked, pre-populates its share of the key
   space (keys ``k0 .. k{N-1}``, each written once), then puts ``("ready", index, errors)``;
2. it waits for ``("go", measure_start, measure_end)`` (``time.monotonic()`` instants; on
   Linux that clock is system-wide, so every process agrees on the window), and its
   clients run from that moment: before ``measure_start`` is the warm-up;
3. an answer that *completes* inside ``[measure_start, measure_end)`` is counted, with its
   latency if it is a 200 and under its status otherwise; a client stops at the first
   answer past ``measure_end``; the worker puts ``("done", index, payload)``.

Any failure puts ``("error", index, text)``. A closed pipe (the parent is gone) ends the
worker, and every connection is closed on the way out.

The same clients speak to two systems (``LoadSpec.protocol``), so a peer comparison
differs only in the requests on the wire: ``dkvs`` (``GET /kv/k7``, ``PUT /kv/k7?acks=``,
``?consistent=true`` reads) and ``etcd`` (its v3 JSON gateway: ``POST /v3/kv/put`` and
``POST /v3/kv/range`` with base64 keys and values; ``serializable`` unless consistent).
Every request is rendered once per process before the clock starts.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import random
import threading
import time
import traceback
import urllib.parse
from array import array
from collections import Counter
from dataclasses import dataclass

try:
    import resource
except ImportError:  # not on Unix: no CPU figures
    resource = None

__all__ = ["LoadSpec", "Connection", "worker_main", "await_go", "key_path", "populate_request",
           "PROTOCOLS", "REQUEST_TIMEOUT_SECONDS", "ERROR_PAUSE_SECONDS"]

REQUEST_TIMEOUT_SECONDS = 10.0
ERROR_PAUSE_SECONDS = 0.01  # after a failed connection: no busy loop on a dead node
WAIT_FOR_GO_SECONDS = 300.0  # a worker never waits longer than this for its start signal
WORKLOADS = ("get", "put", "mixed")
PROTOCOLS = ("dkvs", "etcd")


@dataclass(frozen=True)
class LoadSpec:
    """What to send, where, and with how many clients (picklable: it crosses processes)."""

    workload: str  # "get", "put" or "mixed"
    keys: int
    value_size: int
    acks: str
    read_ratio: float  # share of GETs in "mixed"
    write_url: str
    read_urls: tuple[str, ...]
    concurrency: int
    processes: int
    populate: bool
    seed: int = 1
    protocol: str = "dkvs"  # "dkvs" or "etcd" (its v3 JSON gateway)
    consistent: bool = False  # linearizable reads (dkvs ?consistent=true; etcd not serializable)

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload must be one of {WORKLOADS}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}")
        if self.keys < 1 or self.concurrency < 1 or not 1 <= self.processes <= self.concurrency:
            raise ValueError("need keys ≥ 1 and 1 ≤ processes ≤ concurrency")
        if not self.read_urls:
            raise ValueError("no URL to read from")

    def clients_of(self, process_index: int) -> range:
        """Global indexes of the clients run by process ``process_index``."""
        share, extra = divmod(self.concurrency, self.processes)
        start = process_index * share + min(process_index, extra)
        return range(start, start + share + (process_index < extra))


def key_path(index: int) -> str:
    return f"/kv/k{index}"


class Connection:
    """One keep-alive connection; :meth:`call` returns the status, or the error's name.

    After a failure the connection is closed, and ``http.client`` opens a new one on the
    next request (counted in ``reconnects``).
    """

    def __init__(self, url: str, timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url = url
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.reconnects = 0

    def call(self, method: str, path: str, body: bytes | None = None) -> int | str:
        conn = self.conn
        try:
            conn.request(method, path, body)
            response = conn.getresponse()
            response.read()
            if response.will_close:
                conn.close()
                self.reconnects += 1
            return response.status
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self.reconnects += 1
            return type(exc).__name__

    def close(self) -> None:
        self.conn.close()


class _Client:
    """One closed-loop client: its connections, its random stream and what it measured."""

    def __init__(self, spec: LoadSpec, index: int, connections: dict[str, Connection]) -> None:
        self.spec = spec
        self.index = index
        read_url = spec.read_urls[index % len(spec.read_urls)]
        for url in (spec.write_url, read_url):
            if url not in connections:
                connections[url] = Connection(url)
        self.writer, self.reader = connections[spec.write_url], connections[read_url]
        self.latencies = array("d")
        self.errors: Counter = Counter()
        self.warmup_errors = 0
        self.populate_errors: Counter = Counter()

    def populate(self) -> None:
        spec = self.spec
        for key in range(self.index, spec.keys, spec.concurrency):
            status = self.writer.call(*populate_request(spec, key))
            if status != 200:
                self.populate_errors[str(status)] += 1

    def run(self, measure_start: float, measure_end: float) -> None:
        spec = self.spec
        rng = random.Random(spec.seed * 1_000_003 + self.index)
        gets, puts = _requests(spec)
        read_share = {"get": 1.0, "put": 0.0}.get(spec.workload, spec.read_ratio)
        reader, writer, latencies = self.reader, self.writer, self.latencies
        randrange, chance, now = rng.randrange, rng.random, time.monotonic
        keys = spec.keys
        while True:
            key = randrange(keys)
            if read_share >= 1.0 or (read_share > 0.0 and chance() < read_share):
                started = now()
                status = reader.call(*gets[key])
            else:
                started = now()
                status = writer.call(*puts[key])
            finished = now()
            if finished >= measure_end:
                break
            if finished < measure_start:
                if status != 200:
                    self.warmup_errors += 1
            elif status == 200:
                latencies.append(finished - started)
            else:
                self.errors[str(status)] += 1
            if status.__class__ is str:  # the connection failed
                time.sleep(ERROR_PAUSE_SECONDS)


Request = tuple  # (method, target, body or None): the arguments of Connection.call


def _etcd_body(key: int, value: bytes | None = None, serializable: bool = False) -> bytes:
    doc = {"key": base64.b64encode(key_path(key)[4:].encode()).decode()}
    if value is not None:
        doc["value"] = base64.b64encode(value).decode()
    if serializable:
        doc["serializable"] = True
    return json.dumps(doc).encode()


def populate_request(spec: LoadSpec, key: int) -> Request:
    """The write that pre-populates ``key`` (acks=1 on dkvs: only its existence matters)."""
    value = b"p" * spec.value_size
    if spec.protocol == "etcd":
        return ("POST", "/v3/kv/put", _etcd_body(key, value))
    return ("PUT", f"{key_path(key)}?acks=1", value)


@functools.lru_cache(maxsize=4)
def _requests(spec: LoadSpec) -> tuple[list[Request], list[Request]]:
    """The read and the write request of every key, built once per process."""
    value, keys = b"v" * spec.value_size, range(spec.keys)
    if spec.protocol == "etcd":
        return ([("POST", "/v3/kv/range", _etcd_body(k, serializable=not spec.consistent)) for k in keys],
                [("POST", "/v3/kv/put", _etcd_body(k, value)) for k in keys])
    query = "?consistent=true" if spec.consistent else ""
    return ([("GET", key_path(k) + query, None) for k in keys],
            [("PUT", f"{key_path(k)}?acks={spec.acks}", value) for k in keys])


def _run_threads(clients: list[_Client], method: str, *args, meanwhile=None) -> None:
    """Run ``client.<method>(*args)`` on one thread per client; ``meanwhile()`` on this one."""
    threads = [threading.Thread(target=getattr(client, method), args=args, daemon=True,
                                name=f"bench-client-{client.index}") for client in clients]
    for thread in threads:
        thread.start()
    if meanwhile is not None:
        meanwhile()
    for thread in threads:
        thread.join()


def _cpu_window(measure_start: float, measure_end: float, out: list[float]) -> None:
    """Append this process's CPU time (all threads) at ``measure_start`` and ``measure_end``."""
    if resource is None:
        return
    for instant in (measure_start, measure_end):
        time.sleep(max(0.0, instant - time.monotonic()))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out.append(usage.ru_utime + usage.ru_stime)


def await_go(control) -> tuple[float, float] | None:
    """Block until the runner sends ``("go", start, end)``; ``None`` if it never does
    (timeout, or any other message): the worker then exits without measuring."""
    if not control.poll(WAIT_FOR_GO_SECONDS):
        return None
    message = control.recv()
    if message[0] != "go":
        return None
    return message[1], message[2]


def worker_main(spec: LoadSpec, process_index: int, control, results) -> None:
    """Entry point of a load process (see the module docstring for the protocol)."""
    connection_sets: list[dict[str, Connection]] = []
    try:
        clients = []
        for index in spec.clients_of(process_index):
            connections: dict[str, Connection] = {}
            connection_sets.append(connections)
            clients.append(_Client(spec, index, connections))
        if spec.populate:
            _run_threads(clients, "populate")
        populate_errors = sum((client.populate_errors for client in clients), Counter())
        _requests(spec)  # built once, before the clients share it
        results.put(("ready", process_index, dict(populate_errors)))
        window = await_go(control)
        if window is None:
            return
        measure_start, measure_end = window
        cpu: list[float] = []
        _run_threads(clients, "run", measure_start, measure_end,
                     meanwhile=lambda: _cpu_window(measure_start, measure_end, cpu))
        latencies = array("d")
        errors: Counter = Counter()
        for client in clients:
            latencies.extend(client.latencies)
            errors.update(client.errors)
        results.put(("done", process_index, {
            "latencies": latencies.tobytes(),
            "errors": dict(errors),
            "warmup_errors": sum(client.warmup_errors for client in clients),
            "reconnects": sum(c.reconnects for conns in connection_sets for c in conns.values()),
            "cpu_seconds": cpu[1] - cpu[0] if len(cpu) == 2 else None,
        }))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass
    except Exception:  # reported to the parent, which fails the run with it
        results.put(("error", process_index, traceback.format_exc()))
    finally:
        for connections in connection_sets:
            for connection in connections.values():
                connection.close()
