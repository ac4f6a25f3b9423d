"""The load worker: one process driving several persistent HTTP connections.

A benchmark run starts ``processes`` of these (see :mod:`dkvs.tools.bench.runner`); the
``concurrency`` clients are spread over them, each with its own keep-alive connection (two
when it reads from another node than the master it writes to). A client is closed-loop: it
sends its next request as soon as the previous answer is read, so ``concurrency`` is also
the number of requests in flight. Two engines drive the clients (``LoadSpec.client_engine``):

* ``"selector"`` (default): one thread runs every client of the process on non-blocking
  sockets (:mod:`.wire_load`), with requests pre-rendered to bytes: the cheapest client,
  so the machine's cores go to the servers measured;
* ``"http.client"``: one thread per client, each with an :class:`http.client.HTTPConnection`
  — the first engine, several times costlier per request, kept so earlier figures can be
  reproduced and compared side by side.

Both count, time and name answers the same way (:class:`_Client`).

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

What is sent (the load's description, the requests of dkvs and etcd) is in
:mod:`.load_spec`; this module re-exports its names.
"""

from __future__ import annotations

import functools
import http.client
import random
import threading
import time
import traceback
import urllib.parse
from array import array
from collections import Counter

from .load_spec import (CLIENT_ENGINES, PROTOCOLS, WORKLOADS, LoadSpec, Request, key_path, populate_request,
                        requests_of as _requests)
from .wire_load import WireConnection, WireLoop, host_header, render_request

try:
    import resource
except ImportError:  # not on Unix: no CPU figures
    resource = None

__all__ = ["LoadSpec", "Connection", "worker_main", "await_go", "key_path", "populate_request", "Request",
           "WORKLOADS", "PROTOCOLS", "CLIENT_ENGINES", "ENGINES", "REQUEST_TIMEOUT_SECONDS",
           "ERROR_PAUSE_SECONDS"]

REQUEST_TIMEOUT_SECONDS = 10.0
ERROR_PAUSE_SECONDS = 0.01  # after a failed connection: no busy loop on a dead node
WAIT_FOR_GO_SECONDS = 300.0  # a worker never waits longer than this for its start signal
class Connection:
    """One keep-alive connection of the ``http.client`` engine; :meth:`call` returns the
    status, or the error's name.

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
    """One closed-loop client, whichever engine drives it: its random stream, its
    measurement window and what it measured (see the module docstring for what counts).
    ``connections`` (url → connection) are this client's own: one request in flight."""

    connection_class: type = Connection

    def __init__(self, spec: LoadSpec, index: int, connections: dict) -> None:
        self.spec = spec
        self.index = index
        self.read_url = spec.read_urls[index % len(spec.read_urls)]
        for url in (spec.write_url, self.read_url):
            if url not in connections:
                connections[url] = self.connection_class(url, REQUEST_TIMEOUT_SECONDS)
        self.writer, self.reader = connections[spec.write_url], connections[self.read_url]
        self.latencies = array("d")
        self.errors: Counter = Counter()
        self.warmup_errors = 0
        self.populate_errors: Counter = Counter()
        self.window = (0.0, 0.0)
        rng = random.Random(spec.seed * 1_000_003 + index)
        self._randrange, self._chance = rng.randrange, rng.random
        self._read_share = {"get": 1.0, "put": 0.0}.get(spec.workload, spec.read_ratio)

    def populate_keys(self) -> range:
        """The keys this client writes before the window (each key by exactly one client)."""
        return range(self.index, self.spec.keys, self.spec.concurrency)

    def choose(self) -> tuple[bool, int]:
        """The next request: (is it a read, which key)."""
        key = self._randrange(self.spec.keys)
        share = self._read_share
        return share >= 1.0 or (share > 0.0 and self._chance() < share), key

    def record(self, status: int | str, started: float, finished: float) -> bool:
        """Count one answer; False once it came past the window (the client stops)."""
        measure_start, measure_end = self.window
        if finished >= measure_end:
            return False
        if finished < measure_start:
            if status != 200:
                self.warmup_errors += 1
        elif status == 200:
            self.latencies.append(finished - started)
        else:
            self.errors[str(status)] += 1
        return True


class _ThreadClient(_Client):
    """The ``http.client`` engine's client: a thread of its own, blocking calls."""

    def populate(self) -> None:
        for key in self.populate_keys():
            status = self.writer.call(*populate_request(self.spec, key))
            if status != 200:
                self.populate_errors[str(status)] += 1

    def run(self, measure_start: float, measure_end: float) -> None:
        self.window = (measure_start, measure_end)
        gets, puts = _requests(self.spec)
        reader, writer, choose, record, now = self.reader, self.writer, self.choose, self.record, time.monotonic
        while True:
            is_read, key = choose()
            started = now()
            status = reader.call(*gets[key]) if is_read else writer.call(*puts[key])
            if not record(status, started, now()):
                break
            if status.__class__ is str:  # the connection failed
                time.sleep(ERROR_PAUSE_SECONDS)


class _WireClient(_Client):
    """The selector engine's client: :class:`.wire_load.WireLoop` asks it for requests."""

    connection_class = WireConnection

    def __init__(self, spec: LoadSpec, index: int, connections: dict) -> None:
        super().__init__(spec, index, connections)
        self.pending = iter(())  # keys still to pre-populate
        self.populating = False
        self.done = False
        self.gets: list[bytes] = []
        self.puts: list[bytes] = []

    def start_populate(self) -> None:
        self.pending, self.populating = iter(self.populate_keys()), True

    def start_run(self, measure_start: float, measure_end: float) -> None:
        self.window, self.populating, self.done = (measure_start, measure_end), False, False
        self.gets, self.puts = _wire_requests(self.spec, host_header(self.read_url),
                                              host_header(self.spec.write_url))

    def next_request(self) -> tuple[WireConnection, bytes] | None:
        if self.populating:
            key = next(self.pending, None)
            if key is None:
                return None
            return self.writer, render_request(*populate_request(self.spec, key),
                                               host_header(self.spec.write_url))
        if self.done:
            return None
        is_read, key = self.choose()
        return (self.reader, self.gets[key]) if is_read else (self.writer, self.puts[key])

    def on_answer(self, status: int | str, started: float, finished: float) -> None:
        if self.populating:
            if status != 200:
                self.populate_errors[str(status)] += 1
        elif not self.record(status, started, finished):
            self.done = True


@functools.lru_cache(maxsize=8)
def _wire_requests(spec: LoadSpec, read_host: str, write_host: str) -> tuple[list[bytes], list[bytes]]:
    """:func:`_requests` rendered to the bytes on the wire, once per process and host."""
    gets, puts = _requests(spec)
    return ([render_request(*r, read_host) for r in gets], [render_request(*r, write_host) for r in puts])


class _Engine:
    """The clients of one load process, each with its own connections."""

    client_class: type = _Client

    def __init__(self, spec: LoadSpec, process_index: int) -> None:
        self.spec = spec
        self.connection_sets: list[dict] = [{} for _ in spec.clients_of(process_index)]
        self.clients = [self.client_class(spec, index, connections) for index, connections
                        in zip(spec.clients_of(process_index), self.connection_sets)]

    def reconnects(self) -> int:
        return sum(c.reconnects for conns in self.connection_sets for c in conns.values())


class _ThreadEngine(_Engine):
    """``client_engine="http.client"``: one thread and blocking connections per client
    (the first engine, kept to compare figures side by side)."""

    client_class = _ThreadClient

    def populate(self) -> None:
        self._run_threads("populate")

    def run(self, measure_start: float, measure_end: float, cpu: list[float]) -> None:
        _requests(self.spec)  # built once, before the clients share it
        self._run_threads("run", measure_start, measure_end,
                          meanwhile=lambda: _cpu_window(measure_start, measure_end, cpu))

    def _run_threads(self, method: str, *args, meanwhile=None) -> None:
        """Run ``client.<method>(*args)`` on one thread per client; ``meanwhile()`` on this one."""
        threads = [threading.Thread(target=getattr(client, method), args=args, daemon=True,
                                    name=f"bench-client-{client.index}") for client in self.clients]
        for thread in threads:
            thread.start()
        if meanwhile is not None:
            meanwhile()
        for thread in threads:
            thread.join()

    def close(self) -> None:
        for connections in self.connection_sets:
            for connection in connections.values():
                connection.close()


class _SelectorEngine(_Engine):
    """``client_engine="selector"``: every client of the process on one
    :class:`.wire_load.WireLoop` (this thread); a side thread only samples the CPU time."""

    client_class = _WireClient

    def __init__(self, spec: LoadSpec, process_index: int) -> None:
        super().__init__(spec, process_index)
        self.loop = WireLoop(self.clients, error_pause=ERROR_PAUSE_SECONDS)

    def populate(self) -> None:
        for client in self.clients:
            client.start_populate()
        self.loop.run()

    def run(self, measure_start: float, measure_end: float, cpu: list[float]) -> None:
        for client in self.clients:
            client.start_run(measure_start, measure_end)
        sampler = threading.Thread(target=_cpu_window, args=(measure_start, measure_end, cpu),
                                   daemon=True, name="bench-cpu-sampler")
        sampler.start()
        self.loop.run()
        sampler.join()

    def close(self) -> None:
        self.loop.close()


ENGINES = {"selector": _SelectorEngine, "http.client": _ThreadEngine}


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
    engine = None
    try:
        engine = ENGINES[spec.client_engine](spec, process_index)
        if spec.populate:
            engine.populate()
        populate_errors = sum((client.populate_errors for client in engine.clients), Counter())
        results.put(("ready", process_index, dict(populate_errors)))
        window = await_go(control)
        if window is None:
            return
        measure_start, measure_end = window
        cpu: list[float] = []
        engine.run(measure_start, measure_end, cpu)
        latencies = array("d")
        errors: Counter = Counter()
        for client in engine.clients:
            latencies.extend(client.latencies)
            errors.update(client.errors)
        results.put(("done", process_index, {
            "latencies": latencies.tobytes(),
            "errors": dict(errors),
            "warmup_errors": sum(client.warmup_errors for client in engine.clients),
            "reconnects": engine.reconnects(),
            "cpu_seconds": cpu[1] - cpu[0] if len(cpu) == 2 else None,
        }))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass
    except Exception:  # reported to the parent, which fails the run with it
        results.put(("error", process_index, traceback.format_exc()))
    finally:
        if engine is not None:
            engine.close()
