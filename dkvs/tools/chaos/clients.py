"""The chaos clients: threads doing random operations on a small key space.

Each :class:`ChaosClient` is one thread; in the history it is a *process* (Jepsen's
word), with at most one operation outstanding. After an ``info`` outcome the process is
considered crashed (its operation may still take effect at any later time), so the thread
carries on as a new process: ``process + clients``, which keeps ``process % clients`` equal
to the thread's number.

Every operation goes to a random live node (a slave forwards writes and consistent reads
to the master) over keep-alive connections held per node (:class:`NodeConnections`), with
a short socket timeout. A connection is opened *before* the request is written, so a
refused connection is known to have sent nothing (``fail``); an idle connection that the
node closed (it was killed) is noticed before reuse, so it does not turn into a doubtful
``info``.
"""

from __future__ import annotations

import http.client
import json
import random
import select
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from .dataops import DataOpsMixin, lease_key_name
from .history import Answer, HistoryRecorder, OpRecord, classify, describe

__all__ = ["NodeConnections", "Workload", "ChaosClient", "http_request", "key_name"]


def key_name(index: int) -> str:
    return f"k{index}"


@dataclass(frozen=True)
class Workload:
    """The operation mix. Shares are probabilities; the rest of the operations are gets.

    ``acks1_share`` is the fraction of puts sent with ``acks=1`` (the others use
    ``acks=majority``, as do deletes). ``timeout_s`` is both the client socket timeout and
    the ``timeout`` query parameter of writes. ``think_s`` is a pause between operations;
    ``backoff_s`` a pause after an operation that did not succeed (a node answering 503 at
    once during an election would otherwise be asked hundreds of times a second).
    ``cas_share``, ``txn_share`` and ``lease_share`` are the data operations of
    :mod:`.dataops` (0 by default: the register workload); leases use ``lease_keys`` keys
    of their own and ``lease_ttl_s``.
    """

    keys: int = 10
    put_share: float = 0.45
    delete_share: float = 0.05
    acks1_share: float = 0.2
    timeout_s: float = 1.0
    think_s: float = 0.0
    backoff_s: float = 0.05
    cas_share: float = 0.0
    txn_share: float = 0.0
    lease_share: float = 0.0
    lease_keys: int = 4
    lease_ttl_s: float = 1.0

    def next_operation(self, rng: random.Random) -> tuple[str, str, str | None]:
        """(f, key, acks) of the next operation; acks is None for a get. ``f`` is also one
        of :mod:`.dataops`' ``cas``, ``cas-delete``, ``txn``, ``lease``."""
        key = key_name(rng.randrange(self.keys))
        draw = rng.random()
        extra = self.cas_share + self.txn_share + self.lease_share
        if extra:  # without data operations the draws stay as they always were (same seeds)
            if draw < self.lease_share:
                return "lease", lease_key_name(rng.randrange(self.lease_keys)), "majority"
            if draw < self.lease_share + self.txn_share:
                return "txn", key, "majority"
            if draw < extra:
                return ("cas-delete" if rng.random() < 0.2 else "cas"), key, "majority"
            draw = (draw - extra) / (1 - extra) if extra < 1 else 1.0
        if draw < self.delete_share:
            return "delete", key, "majority"
        if draw < self.delete_share + self.put_share:
            return "put", key, "1" if rng.random() < self.acks1_share else "majority"
        return "get", key, None


class NodeConnections:
    """One keep-alive connection per node URL, for one thread. Never retries a request."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._conns: dict[str, http.client.HTTPConnection] = {}

    def request(self, url: str, method: str, target: str, body: bytes | None = None) -> Answer:
        conn = self._conns.pop(url, None)
        if conn is not None and _closed_by_peer(conn):
            conn.close()
            conn = None
        if conn is None:
            parts = urllib.parse.urlsplit(url)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout_s)
            try:
                conn.connect()
            except OSError as exc:
                conn.close()
                return Answer(sent=False, error=type(exc).__name__)
        try:
            conn.request(method, target, body=body)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return Answer(sent=True, status=None, error=type(exc).__name__)
        if response.will_close:
            conn.close()
        else:
            self._conns[url] = conn
        return Answer(sent=True, status=response.status, body=_json_object(data))

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable has hit EOF (or holds junk): unusable."""
    if conn.sock is None:
        return True
    try:
        readable, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _json_object(data: bytes) -> dict:
    try:
        doc = json.loads(data or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


class ChaosClient(DataOpsMixin):
    """One client thread. ``live_urls`` returns the nodes the nemesis has not killed."""

    def __init__(self, number: int, clients: int, workload: Workload, recorder: HistoryRecorder,
                 live_urls: Callable[[], list[str]], seed: int, stop: threading.Event) -> None:
        self.number = number
        self.clients = clients
        self.process = number
        self.workload = workload
        self.recorder = recorder
        self.live_urls = live_urls
        self.rng = random.Random(f"chaos-client-{seed}-{number}")
        self.stop = stop
        self.written = 0
        self.seen: dict[str, int] = {}  # key -> the last seq this client saw (for if_seq)
        self.lease: int | None = None
        self.lease_stats = dict.fromkeys(("granted", "renewed", "abandoned", "expired_on_keepalive",
                                          "expired_on_put"), 0)
        self.connections = NodeConnections(workload.timeout_s)
        self.thread = threading.Thread(target=self._run, name=f"chaos-client-{number}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                urls = self.live_urls()
                if not urls:
                    self.stop.wait(0.05)
                    continue
                f, key, acks = self.workload.next_operation(self.rng)
                url = self.rng.choice(urls)
                if f in ("get", "put", "delete"):
                    record = self.perform(url, f, key, acks)
                else:
                    record = self.perform_data(url, f, key)
                failed = record is not None and record.outcome != "ok"
                pause = self.workload.think_s + (self.workload.backoff_s if failed else 0.0)
                if pause:
                    self.stop.wait(pause)
        finally:
            self.connections.close()

    def perform(self, url: str, f: str, key: str, acks: str | None) -> OpRecord:
        """Run one operation against ``url``, record it, and return its record."""
        value = None
        if f == "put":
            self.written += 1
            value = f"c{self.number}-{self.written}"
        process = self.process
        invoke_ns = self.recorder.invoke(process, f, key, value)
        answer = self.connections.request(url, *http_request(f, key, value, acks, self.workload.timeout_s))
        outcome = classify(f, answer)
        recorded = outcome.type
        if f == "put" and acks == "1" and recorded == "ok":
            recorded = "info"  # acknowledged, but not promised to survive a failover
        shown = outcome.value if f == "get" else value
        seq = answer.body.get("seq") if answer.status == 200 else None
        seq = seq if isinstance(seq, int) else None
        complete_ns = self.recorder.complete(process, recorded, f, key, shown, outcome.found,
                                             seq=seq if recorded == "ok" else None)
        if recorded == "ok" and seq is not None:
            self.seen[key] = 0 if f == "delete" else seq
        elif f == "get" and recorded == "ok" and outcome.value is None:
            self.seen[key] = 0
        seq = None if f == "get" else seq  # the report's seq is a write's log position
        record = OpRecord(process, f, key, shown, acks, invoke_ns, complete_ns, outcome.type, recorded,
                          outcome.found, answer.status, url, describe(answer), seq if isinstance(seq, int) else None)
        self.recorder.add_operation(record)
        if recorded == "info":
            self.process += self.clients
        return record


def http_request(f: str, key: str, value: str | None, acks: str | None,
                  timeout_s: float) -> tuple[str, str, bytes | None]:
    path = "/kv/" + urllib.parse.quote(key, safe="")
    if f == "get":
        return "GET", path + "?consistent=true", None
    query = f"?acks={acks}&timeout={timeout_s:g}"
    if f == "put":
        return "PUT", path + query, value.encode("utf-8")
    return "DELETE", path + query, None
