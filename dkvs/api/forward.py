"""Forwarding a request to the master, over a small pool of persistent connections.

Any node accepts writes (DESIGN.md §5): when the service raises ``NotMaster(url)``, the
front end replays the request to ``url`` and relays the master's answer (status,
``Content-Type``, ``Retry-After``, ``X-Dkvs-Seq``, body) verbatim. A redirect would be simpler but plain
``urllib`` does not follow a 307 for PUT.

Rules kept here:

* The forwarded request carries ``X-Dkvs-Forwarded: 1``. A node that receives a forwarded
  request and is not the master either answers 503 instead of forwarding again, so two
  nodes that each think the other leads cannot bounce a request forever (the front end
  applies that rule; this module only sets the header).
* Connections are kept per target (scheme, host, port) and reused; at most
  ``max_idle_per_target`` idle ones are kept, the rest closed. The pool is thread safe:
  a connection is used by one thread at a time.
* A pooled connection may have been closed by the master while idle. If sending on a
  *reused* connection fails before any answer arrives, it is replaced and the request sent
  once more; a fresh connection's failure is not retried.
* Refused connections, timeouts and broken answers become ``NoMaster`` (503 with
  ``Retry-After``): the client should retry once the cluster settles.

Two ways to forward. :meth:`Forwarder.forward` blocks the calling thread for the answer
(``http.client``, one request per pooled connection at a time). :meth:`Forwarder.forward_async`
returns at once and calls back with the answer: requests are pipelined over at most
``max_pipelines_per_target`` persistent connections, each read by one thread
(:mod:`dkvs.api.pipeline`), so a slave keeps hundreds of client writes in flight to its master
without a thread per write. HTTPS targets use the blocking path inside ``forward_async``.

Plain writes (:func:`batchable`: ``PUT``/``DELETE /kv/{key}``, small values, no lease)
are not sent one request each once a node sets :attr:`Forwarder.sign_batch`: they are
gathered into signed ``POST /internal/forward`` batches (:mod:`dkvs.api.forward_batcher`),
which the master proposes together, so it spends one HTTP request on many writes.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from ..errors import NoMaster
from ..transport.tls import peer_context
from .forward_batch import BATCH_METHODS, BatchWrite
from .forward_batcher import WriteBatcher
from .pipeline import Pending, PipelinedConnection, request_bytes
from .response import JSON_TYPE, Reply

__all__ = ["Forwarder", "batchable", "FORWARDED_HEADER", "CONNECT_TIMEOUT_SECONDS", "RETRY_AFTER_SECONDS",
           "MAX_PIPELINES_PER_TARGET", "PIPELINE_IDLE_CLOSE_SECONDS"]

FORWARDED_HEADER = "X-Dkvs-Forwarded"
CONNECT_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 1.0
MAX_IDLE_PER_TARGET = 8
# Pipelined connections per master. A dkvs node serves one connection's requests one at a
# time on one worker (32 client workers by default): a few connections give the master
# writes from many clients at once without taking all its workers.
MAX_PIPELINES_PER_TARGET = 8
# Close an idle pipelined connection this long before the server's idle timeout (60 s)
# could close it under a request being written.
PIPELINE_IDLE_CLOSE_SECONDS = 15.0
STOP_JOIN_SECONDS = 2.0
MAX_BATCHERS = 4  # (master, durability class) pairs batched at once; others go singly
MAX_BATCHED_BODY_BYTES = 64 * 1024  # bigger values go as single requests
_BATCHED_QUERY = frozenset({"acks", "timeout", "if_seq"})

# Request headers worth passing on; X-Dkvs-* (e.g. a cluster secret) are passed too.
_PASSED_HEADERS = ("Content-Type", "Accept", "Authorization")
# Answer headers relayed back: when to retry, and the seq a write got (read-your-writes).
_RELAYED_HEADERS = ("Retry-After", "X-Dkvs-Seq")
_CONNECTION_CLASSES = {"http": http.client.HTTPConnection, "https": http.client.HTTPSConnection}
# Failures that mean "the idle connection was already dead": safe to retry once.
_STALE_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                 ConnectionAbortedError)


class Forwarder:
    """Sends requests to other nodes and returns their answers as :class:`Reply`."""

    def __init__(self, *, max_idle_per_target: int = MAX_IDLE_PER_TARGET,
                 connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
                 max_pipelines_per_target: int = MAX_PIPELINES_PER_TARGET,
                 pipeline_idle_close_seconds: float = PIPELINE_IDLE_CLOSE_SECONDS) -> None:
        self.max_idle_per_target = max_idle_per_target
        self.connect_timeout_seconds = connect_timeout_seconds
        self.max_pipelines_per_target = max(1, max_pipelines_per_target)
        self.pipeline_idle_close_seconds = pipeline_idle_close_seconds
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._pipes: dict[tuple, list[PipelinedConnection]] = {}
        self._pipe_numbers = iter(range(1 << 62))
        self._turn = 0
        self._bases: dict[str, tuple[tuple, str]] = {}  # base URL → parsed, for forward_async
        self._lock = threading.Lock()
        self._closed = False
        # Batched forwarding (dkvs.api.forward_batcher): on once a node sets this to
        # ``sign(base_url, target, body) -> headers or None`` (dkvs.runtime.forward_writes).
        self.sign_batch: Callable[[str, str, bytes], dict | None] | None = None
        self._batchers: dict[tuple, WriteBatcher] = {}

    def forward_async(self, base_url: str, method: str, target: str, body: bytes | None,
                      headers: Mapping[str, str], timeout_seconds: float,
                      done: Callable[[Reply | None, NoMaster | None], None]) -> None:
        """Like :meth:`forward`, but returns at once; ``done(reply, None)`` or
        ``done(None, NoMaster)`` is called exactly once, on this thread or a reader thread
        (so ``done`` must be quick: hand the answer on, do not write to a slow client)."""
        parsed = self._bases.get(base_url)
        if parsed is None:
            try:
                parsed = _parse_base(base_url)
            except NoMaster as exc:
                done(None, exc)
                return
            if len(self._bases) < 64:  # master URLs: a handful over a node's life
                self._bases[base_url] = parsed
        place, prefix = parsed
        if place[0] != "http":  # TLS: see the module docstring of dkvs.api.pipeline
            try:
                reply = self.forward(base_url, method, target, body, headers, timeout_seconds)
            except NoMaster as exc:
                done(None, exc)
                return
            done(reply, None)
            return

        def finished(reply: Reply | None, reason: str) -> None:
            if reply is not None:
                done(reply, None)
            else:
                done(None, NoMaster(f"the master at {base_url} did not answer ({reason}); "
                                    "retry shortly", retry_after=RETRY_AFTER_SECONDS))

        def single() -> None:
            data = request_bytes(method, prefix + target, place, body, _outgoing_headers(headers))
            self._send_pipelined(place, Pending(data, method == "HEAD", time.monotonic() + timeout_seconds,
                                                finished))

        if self.sign_batch is not None:
            write = batchable(method, target, body, headers)
            if write is not None:
                batcher = self._batcher(place, prefix, base_url, write.target)
                if batcher is not None:
                    batcher.submit(write, time.monotonic() + timeout_seconds, done, single)
                    return
        single()

    def _batcher(self, place: tuple, prefix: str, base_url: str, target: str) -> WriteBatcher | None:
        """The batcher for this master and this write's durability class (its query
        without ``if_seq``), made on first use; None past :data:`MAX_BATCHERS`."""
        query = target.partition("?")[2]
        group = "&".join(part for part in query.split("&") if not part.startswith("if_seq=")) if query else ""
        key = (place, prefix, base_url, group)
        batcher = self._batchers.get(key)
        if batcher is not None:
            return batcher
        with self._lock:
            if self._closed:
                return None
            batcher = self._batchers.get(key)
            if batcher is None and len(self._batchers) >= MAX_BATCHERS:
                # Batchers of an earlier master (a failover) are dropped once idle.
                for old_key, old in list(self._batchers.items()):
                    if old.base_url != base_url and old.idle:
                        del self._batchers[old_key]
                        old.close()
            if batcher is None and len(self._batchers) < MAX_BATCHERS:
                batcher = self._batchers[key] = WriteBatcher(
                    place, prefix, base_url, sign=self.sign_batch,
                    connect_timeout_seconds=self.connect_timeout_seconds,
                    idle_close_seconds=self.pipeline_idle_close_seconds,
                    name=f"dkvs-http-batch-{next(self._pipe_numbers)}")
            return batcher

    def _send_pipelined(self, place: tuple, pending: Pending) -> None:
        for _ in range(2):  # a pooled connection found closing: one more try, on a fresh one
            conn = self._pick_pipe(place)
            if conn is None:
                break
            if conn.send(pending):
                return
        pending.done(None, "the connection was refused" if not self._closed else "the node is stopping")

    def _pick_pipe(self, place: tuple) -> PipelinedConnection | None:
        """The next live connection to ``place`` in turn; a new one while the one picked is
        busy and there are fewer than ``max_pipelines_per_target``."""
        with self._lock:
            if self._closed:
                return None
            pipes = self._pipes.get(place)
            if pipes is None:
                pipes = self._pipes[place] = []
            best = None
            if pipes:  # round robin: cheaper than a search, as even under steady load
                self._turn += 1
                best = pipes[self._turn % len(pipes)]
                if best.dead:
                    pipes[:] = [pipe for pipe in pipes if not pipe.dead]
                    best = None
            if best is None or (best.inflight and len(pipes) < self.max_pipelines_per_target):
                best = PipelinedConnection(
                    place[1], place[2], connect_timeout_seconds=self.connect_timeout_seconds,
                    idle_close_seconds=self.pipeline_idle_close_seconds,
                    resend=lambda pending: self._send_pipelined(place, pending),
                    name=f"dkvs-http-forward-{next(self._pipe_numbers)}")
                pipes.append(best)
            return best

    def forward(self, base_url: str, method: str, target: str, body: bytes | None,
                headers: Mapping[str, str], timeout_seconds: float) -> Reply:
        """Send ``method target`` to the node at ``base_url``; its answer, relayed.

        ``target`` is the original path and query, sent as is (still percent-encoded);
        ``headers`` the incoming request's headers, of which the relevant ones pass.
        Raises NoMaster when the node cannot be reached or answers garbage.
        """
        place, prefix = _parse_base(base_url)
        out_headers = _outgoing_headers(headers)
        path = prefix + target
        conn, reused = self._acquire(place)
        try:
            try:
                answer = self._exchange(conn, method, path, body, out_headers, timeout_seconds)
            except _STALE_ERRORS:
                conn.close()
                if not reused:
                    raise
                conn, reused = self._new_connection(place), False
                answer = self._exchange(conn, method, path, body, out_headers, timeout_seconds)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise NoMaster(f"the master at {base_url} did not answer ({type(exc).__name__}); "
                           "retry shortly", retry_after=RETRY_AFTER_SECONDS) from None
        reply, keep = answer
        if keep:
            self._release(place, conn)
        else:
            conn.close()
        return reply

    def close(self) -> None:
        """Close every idle connection and every pipelined one (their requests in flight
        get ``NoMaster``); later blocking forwards still work, on new connections, later
        ``forward_async`` calls answer ``NoMaster`` at once."""
        with self._lock:
            pools, self._idle = self._idle, {}
            pipes, self._pipes = self._pipes, {}
            batchers, self._batchers = list(self._batchers.values()), {}
            self._closed = True
        for pool in pools.values():
            for conn in pool:
                conn.close()
        deadline = time.monotonic() + STOP_JOIN_SECONDS
        for group in pipes.values():
            for pipe in group:
                pipe.close()
        for batcher in batchers:
            batcher.close()
        for group in pipes.values():
            for pipe in group:
                pipe.join(max(0.0, deadline - time.monotonic()))
        for batcher in batchers:
            batcher.join(max(0.0, deadline - time.monotonic()))

    # --- connections ----------------------------------------------------------------

    def _acquire(self, place: tuple) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            pool = self._idle.get(place)
            if pool:
                return pool.pop(), True
        return self._new_connection(place), False

    def _new_connection(self, place: tuple) -> http.client.HTTPConnection:
        scheme, host, port = place
        if scheme == "https":  # verified with the node's peer context (dkvs.transport.tls)
            return http.client.HTTPSConnection(host, port, timeout=self.connect_timeout_seconds,
                                               context=peer_context())
        return _CONNECTION_CLASSES[scheme](host, port, timeout=self.connect_timeout_seconds)

    def _release(self, place: tuple, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            pool = self._idle.setdefault(place, [])
            if len(pool) < self.max_idle_per_target:
                pool.append(conn)
                return
        conn.close()

    @staticmethod
    def _exchange(conn, method, path, body, headers, timeout_seconds) -> tuple[Reply, bool]:
        if conn.sock is None:
            conn.connect()  # with the connect timeout
        conn.sock.settimeout(timeout_seconds)
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        relayed = ()
        for name in _RELAYED_HEADERS:
            value = response.getheader(name)
            if value is not None and _clean(value):
                relayed += ((name, value.strip()),)
        content_type = response.getheader("Content-Type") or JSON_TYPE
        if not _clean(content_type):
            content_type = JSON_TYPE
        return Reply(response.status, data, content_type.strip(), relayed), not response.will_close


def _parse_base(base_url: str) -> tuple[tuple, str]:
    """``http://h:p/prefix`` → ((scheme, host, port), "/prefix"); NoMaster if unusable."""
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in _CONNECTION_CLASSES or not parts.hostname:
        raise NoMaster(f"the master's address {base_url[:100]!r} is not an http URL",
                       retry_after=RETRY_AFTER_SECONDS)
    default_port = 443 if parts.scheme == "https" else 80
    return (parts.scheme, parts.hostname, port or default_port), parts.path.rstrip("/")


def _outgoing_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out = {FORWARDED_HEADER: "1"}
    for name in _PASSED_HEADERS:
        value = headers.get(name)
        if value is not None and _clean(value):
            out[name] = value
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith("x-dkvs-") and lowered != "x-dkvs-forwarded" and _clean(value):
            out[name] = value
    return out


def batchable(method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> BatchWrite | None:
    """The write as a batch member, or None when it must go alone: not a plain PUT/DELETE
    of ``/kv/{key}``, a query beyond ``acks``/``timeout``/``if_seq`` (a lease, a ttl), a big
    body, or ``X-Dkvs-*`` headers the batch would not carry."""
    if method not in BATCH_METHODS or not target.startswith("/kv/"):
        return None
    if method == "PUT":
        if body is None or len(body) > MAX_BATCHED_BODY_BYTES:
            return None
    elif body:
        return None
    query = target.partition("?")[2]
    if query and any(part.partition("=")[0] not in _BATCHED_QUERY for part in query.split("&")):
        return None
    for name, value in headers.items():
        if name[:7].lower() == "x-dkvs-" or not _clean(value):
            return None
    return BatchWrite(method, target, headers.get("Content-Type"), headers.get("Authorization"),
                      body if method == "PUT" else None)


def _clean(value: str) -> bool:
    """A header value safe to copy into our answer: no line breaks."""
    return "\r" not in value and "\n" not in value
