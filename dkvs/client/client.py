"""The :class:`Client`: dkvs operations over HTTP, with master discovery and safe retries."""

from __future__ import annotations

import base64
import json
import random
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from ..errors import AcksTimeout, DkvsError, NoMaster
from .cluster import ClusterView
from .connection import NoAnswer, NodePool, NotSent, normalize_url, tls_context
from .errors import Unavailable, WriteOutcomeUnknown, error_from_answer
from .results import Item, WatchEvent, WriteResult
from .retry import RetryBudget

__all__ = ["Client", "SERVER_WRITE_TIMEOUT_SECONDS"]

# A node waits this long for acks (and for a consistent read's majority round) when the
# request names no timeout; the client waits that long plus its own `timeout` for answers.
SERVER_WRITE_TIMEOUT_SECONDS = 5.0
_ACKS = ("1", "majority", "all")
_READS = ("master", "any")
# Sent with every request that must reach the master: a node that is not the master then
# answers 503 at once instead of forwarding, so a 503 means "not applied, retry elsewhere".
_NO_FORWARD = {"X-Dkvs-Forwarded": "1"}
_JSON = {"Accept": "application/json"}
_TEXT_BODY = {"Content-Type": "text/plain; charset=utf-8"}
_BINARY_BODY = {"Content-Type": "application/octet-stream"}
_JSON_BODY = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class _Call:
    """One operation: where it goes, whether it may be repeated, how long to wait."""

    method: str
    target: str
    body: bytes | None = None
    write: bool = False          # PUT/DELETE: repeat only if certainly not applied
    to_master: bool = False      # writes and consistent reads
    server_wait_seconds: float = 0.0
    key: str | None = None
    content_type: dict = field(default_factory=lambda: _TEXT_BODY)


class Client:
    """A thread-safe client for a dkvs cluster.

    ``Client(urls, timeout=5.0, acks=None, retry_seconds=10.0, reads="master", token=None)``

    ``urls`` are some node URLs (one is enough: the others are learned from ``/status``).
    ``timeout`` bounds connecting and waiting for an answer, on top of what the node itself
    may wait (a write's acks ``timeout``, a watch's ``wait``). ``acks`` is the default
    durability of writes (None: the node's default). ``retry_seconds`` bounds the total time
    one operation spends retrying. ``token``: the bearer token sent with every request
    (``Authorization: Bearer TOKEN``) to nodes started with ``--auth-file``; a missing or
    unknown token raises :class:`~dkvs.errors.Unauthorized` (401), one whose role or key
    prefixes do not allow the operation :class:`~dkvs.errors.Forbidden` (403).

    Routing. Writes and consistent reads go straight to the master, found by asking the
    nodes for ``/status`` and rediscovered whenever it stops answering or a node says it is
    not the master (there is no forwarding hop). Plain reads (``get``, ``items``, ``watch``,
    ``status``) go to the master by default, and to the next node when it cannot be
    reached; ``reads="any"`` spreads them over all nodes in turns instead, which scales
    reads but may show a slave's slightly older state (even right after your own write).

    Retry contract.

    * Reads (``get``, ``get_item``, ``items``, ``status``, ``watch``) are retried on
      connection errors, timeouts, 503 and 504, on another node when there is one.
    * A PUT or DELETE is retried only when it certainly was not applied: the connection
      could not be made or the request could not be sent in full, or a node answered 503
      (writes carry ``X-Dkvs-Forwarded``, so a node that is not the master answers 503 at
      once rather than forwarding; it has applied nothing). The master is rediscovered
      before the next try.
    * A PUT or DELETE whose outcome is unknown is never retried: the connection broke or
      timed out after the request was sent, or the answer was garbage, raises
      :class:`~dkvs.client.WriteOutcomeUnknown` (``seq`` None); a 504 raises
      :class:`~dkvs.client.AcksNotReached`, which is both a ``WriteOutcomeUnknown`` and an
      :class:`~dkvs.errors.AcksTimeout`, with the write's ``seq``. Such a write may or may
      not be applied; read the key with ``consistent=True`` to find out.
    * Retries back off exponentially (25 ms doubling to 1 s, jittered), at least as long as
      a 503's ``Retry-After``, and stop when the next try would start after
      ``retry_seconds``: the last error is raised. :class:`~dkvs.client.Unavailable` (a
      :class:`~dkvs.errors.NoMaster`) means no node could be reached; ``NoMaster`` that
      nodes answered but none was master.
    * Other errors are raised at once, as the :mod:`dkvs.errors` class named by the
      answer's ``error`` code: ``KeyNotFound``, ``BadRequest``, ``PayloadTooLarge``,
      ``Conflict`` (with ``current_seq``), ``Unauthorized``, ...

    With ``https://`` URLs the nodes are verified against ``ca_file`` (the cluster's CA, see
    docs/security.md) or with ``ssl_context`` as given (also for a client certificate).

    Connections are kept alive, a few per node, and shared safely between threads. Call
    :meth:`close` (or use the client as a context manager) to close them.
    """

    def __init__(self, urls: list[str] | str, timeout: float = 5.0, acks: str | int | None = None,
                 retry_seconds: float = 10.0, *, reads: str = "master", token: str | None = None,
                 ca_file: str | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        seeds = [normalize_url(u) for u in ([urls] if isinstance(urls, str) else urls)]
        if not seeds:
            raise ValueError("give at least one node URL")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds; got {timeout!r}")
        if not retry_seconds >= 0:
            raise ValueError(f"retry_seconds must be >= 0; got {retry_seconds!r}")
        if reads not in _READS:
            raise ValueError(f"reads must be one of {_READS}; got {reads!r}")
        self.timeout = float(timeout)
        self.acks = _check_acks(acks)
        # ``https://`` nodes are verified with ssl_context, else the cluster's CA (ca_file).
        self._ssl_context = tls_context(ca_file, ssl_context)
        self.retry_seconds = float(retry_seconds)
        self.reads = reads
        if token is not None and (not isinstance(token, str) or not token.strip() or not token.isprintable()):
            raise ValueError("token must be a non-empty printable string")
        self._auth = {"Authorization": f"Bearer {token.strip()}"} if token is not None else {}
        self._view = ClusterView(seeds)
        self._pools: dict[str, NodePool] = {}
        self._pools_lock = threading.Lock()
        self._random = random.Random()

    # --- reads --------------------------------------------------------------------------

    def get(self, key: str, consistent: bool = False) -> str | bytes:
        """The value of ``key``; raises KeyNotFound. ``consistent`` reads linearizably
        (from the master, after it confirms with a majority that it still leads).
        A value that is not UTF-8 text comes back as ``bytes``."""
        return self.get_item(key, consistent).value

    def get_item(self, key: str, consistent: bool = False) -> Item:
        """``key``'s :class:`Item` (value and seq); raises KeyNotFound."""
        query = {"consistent": "true"} if consistent else {}
        wait = SERVER_WRITE_TIMEOUT_SECONDS if consistent else 0.0
        body = self._perform(_Call("GET", _key_target(key, query), to_master=consistent,
                                   server_wait_seconds=wait, key=key))
        return Item(body["key"], _value(body), body["seq"])

    def items(self, prefix: str = "", page_size: int = 100) -> Iterator[Item]:
        """Every item whose key starts with ``prefix``, in key order, fetched a page at a
        time (``page_size`` keys, 1 to 1000) as the iterator is consumed. Each page is a
        separate read, so writes made meanwhile may or may not show."""
        after = None
        while True:
            query = {"prefix": prefix, "limit": page_size}
            if after is not None:
                query["after"] = after
            page = self._perform(_Call("GET", "/kv?" + urlencode(query)))
            for row in page.get("items", ()):
                yield Item(row["key"], _value(row), row["seq"])
            after = page.get("next")
            if after is None:
                return

    def status(self) -> dict:
        """The ``/status`` document of the master (of another node when the master cannot
        be reached, or when ``reads="any"``)."""
        return self._perform(_Call("GET", "/status"))

    def watch(self, key: str | None = None, prefix: str | None = None, after_seq: int = 0,
              wait: float = 30.0) -> Iterator[WatchEvent]:
        """Yield changes to ``key`` (or to keys starting with ``prefix``; all keys when
        both are None) with seq > ``after_seq``, as they happen, forever.

        Long polls (docs/watch.md) of at most ``wait`` seconds each, carrying the node's
        ``index`` from one poll to the next so no change is missed; polls are retried like
        reads. Stop by breaking out of the loop (or closing the generator). A key watch
        reports the key's state when it changed: several changes between two polls show as
        one event, the latest.
        """
        if key is not None and prefix is not None:
            raise ValueError("watch a key or a prefix, not both")
        if not 0 < wait <= 60:
            raise ValueError(f"wait must be > 0 and <= 60 seconds; got {wait!r}")
        index = int(after_seq)
        while True:
            query = {"wait": f"{wait:g}", "after_seq": index}
            if key is not None:
                target = _key_target(key, query)
            else:
                target = "/kv?" + urlencode({"prefix": prefix or "", **query})
            answer = self._perform(_Call("GET", target, server_wait_seconds=wait, key=key))
            if not isinstance(answer.get("index"), int):
                raise DkvsError("the node answered a watch without an index: it does not "
                                "support watching (docs/watch.md)")
            if key is not None:
                if answer.get("changed"):
                    yield WatchEvent(answer["key"], _value(answer), answer["seq"])
            else:
                reset = bool(answer.get("reset"))
                for change in answer.get("changes", ()):
                    yield WatchEvent(change["key"], _value(change), change["seq"], reset)
            index = max(index, answer["index"]) if not answer.get("reset") else answer["index"]

    # --- writes -------------------------------------------------------------------------

    def put(self, key: str, value: str | bytes, acks: str | int | None = None, timeout: float | None = None,
            if_seq: int | None = None, *, lease: int | None = None, ttl: float | None = None) -> WriteResult:
        """Set ``key`` to ``value``; returns its :class:`WriteResult` once ``acks`` hold it.

        ``value`` is text (``str``) or ``bytes`` (sent as application/octet-stream).
        ``timeout`` is how long the master waits for the acks (node default: 5 s).
        ``if_seq`` makes it a compare-and-set: written only if the key's seq is ``if_seq``
        (0: only if absent), else :class:`~dkvs.errors.Conflict` with ``current_seq``.
        ``lease=ID`` attaches the key to a lease (:meth:`grant_lease`); ``ttl=S`` gives it
        a lease of its own: either way it is deleted when the lease expires.
        See the class docstring for what is retried and what raises WriteOutcomeUnknown.
        """
        query = self._write_query(acks, timeout)
        if if_seq is not None:
            query["if_seq"] = int(if_seq)
        if lease is not None:
            query["lease"] = int(lease)
        if ttl is not None:
            query["ttl"] = f"{float(ttl):g}"
        binary = not isinstance(value, str)
        data = bytes(value) if binary else value.encode("utf-8")
        return self._write(_Call("PUT", _key_target(key, query), data, write=True, to_master=True,
                                 server_wait_seconds=_wait_for(timeout), key=key,
                                 content_type=_BINARY_BODY if binary else _TEXT_BODY))

    def delete(self, key: str, acks: str | int | None = None,
               timeout: float | None = None, if_seq: int | None = None) -> WriteResult:
        """Delete ``key``; raises KeyNotFound if it is absent, Conflict if ``if_seq`` is
        given and the key is at another seq. Retried like :meth:`put`."""
        query = self._write_query(acks, timeout)
        if if_seq is not None:
            query["if_seq"] = int(if_seq)
        return self._write(_Call("DELETE", _key_target(key, query), write=True, to_master=True,
                                 server_wait_seconds=_wait_for(timeout), key=key))

    def delete_prefix(self, prefix: str, acks: str | int | None = None, timeout: float | None = None,
                      *, everything: bool = False) -> int:
        """Delete every key starting with ``prefix`` (non-empty; or every key with
        ``everything=True``) as one atomic write; returns how many keys it deleted."""
        query = self._write_query(acks, timeout)
        query.update({"all": "true"} if everything else {"prefix": prefix})
        body = self._perform(_Call("DELETE", "/kv?" + urlencode(query), write=True, to_master=True,
                                   server_wait_seconds=_wait_for(timeout), key=prefix))
        return body["deleted"]

    def txn(self, compare=(), success=(), failure=(), acks: str | int | None = None,
            timeout: float | None = None) -> dict:
        """Run a transaction (docs/http-api.md) as one atomic write: ``{"succeeded",
        "seq", "results"}``, decided when the master's log applied it. ``bytes`` values in
        ops and comparisons are sent as base64, and binary values read by ``get`` ops come
        back as ``bytes``."""
        doc = {"compare": [_encode_value(c) for c in compare], "success": [_encode_value(o) for o in success],
               "failure": [_encode_value(o) for o in failure]}
        query = self._write_query(acks, timeout)
        target = "/txn" + ("?" + urlencode(query) if query else "")
        body = self._perform(_Call("POST", target, json.dumps(doc).encode(), write=True, to_master=True,
                                   server_wait_seconds=_wait_for(timeout), key="(txn)", content_type=_JSON_BODY))
        for result in body.get("results", ()):
            if "value_base64" in result:
                result["value"] = _value(result)
                del result["value_base64"]
        return body

    # --- leases ---------------------------------------------------------------------------

    def grant_lease(self, ttl: float, acks: str | int | None = None) -> int:
        """A new lease of ``ttl`` seconds; returns its id. Keys put with ``lease=id`` are
        deleted when it expires (no keepalive for ``ttl``) or is revoked."""
        query = {**self._write_query(acks, None), "ttl": f"{float(ttl):g}"}
        return self._perform(_Call("POST", "/lease?" + urlencode(query), b"", write=True, to_master=True,
                                   server_wait_seconds=SERVER_WRITE_TIMEOUT_SECONDS, key="(lease)"))["id"]

    def keepalive(self, lease_id: int) -> float:
        """Renew a lease for its full ttl (returned, seconds); LeaseNotFound (a NotFound) once
        it expired or was revoked. Safe to retry: renewing twice is renewing."""
        return self._perform(_Call("POST", f"/lease/{int(lease_id)}/keepalive", b"", to_master=True))["ttl"]

    def revoke_lease(self, lease_id: int, acks: str | int | None = None) -> int:
        """Revoke a lease now; returns how many keys that deleted."""
        query = self._write_query(acks, None)
        target = f"/lease/{int(lease_id)}" + ("?" + urlencode(query) if query else "")
        return self._perform(_Call("DELETE", target, write=True, to_master=True,
                                   server_wait_seconds=SERVER_WRITE_TIMEOUT_SECONDS, key="(lease)"))["deleted"]

    def lease_info(self, lease_id: int) -> dict:
        """``{"id", "ttl", "remaining", "keys"}`` as the master sees it."""
        return self._perform(_Call("GET", f"/lease/{int(lease_id)}", to_master=True))

    def _write(self, call: _Call) -> WriteResult:
        body = self._perform(call)
        return WriteResult(body.get("key", call.key), body["seq"], body.get("epoch"),
                           body.get("replicas"))

    def _write_query(self, acks, timeout) -> dict:
        query: dict = {}
        acks = _check_acks(acks) if acks is not None else self.acks
        if acks is not None:
            query["acks"] = acks
        if timeout is not None:
            query["timeout"] = f"{float(timeout):g}"
        return query

    # --- life cycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close every idle connection. The client still works afterwards (it reconnects)."""
        with self._pools_lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()
        with self._pools_lock:
            self._pools.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the retry loop -----------------------------------------------------------------

    def _perform(self, call: _Call) -> dict:
        """Run ``call`` under the retry contract; the JSON body of its 2xx answer."""
        budget = RetryBudget(self.retry_seconds, self._random)
        while True:
            url = None
            try:
                url = self._target(call)
                answer = self._pool(url).exchange(
                    call.method, call.target, call.body, self._headers(call),
                    call.server_wait_seconds + self.timeout)
            except NotSent as exc:
                error = self._node_failed(url, call, exc)
            except NoAnswer as exc:
                error = self._node_failed(url, call, exc)
                if call.write:
                    raise WriteOutcomeUnknown(
                        f"{call.method} of {call.key!r} may or may not have been applied: "
                        f"{exc}", key=call.key) from exc.cause
            except NoMaster as exc:  # discovery found none (or reached no node)
                error = exc
            else:
                self._view.mark_ok(url)
                if answer.status < 400:
                    return answer.body
                error = error_from_answer(answer.status, answer.body, answer.retry_after,
                                          write=call.write, where=url, key=call.key)
                if not isinstance(error, (NoMaster, AcksTimeout)) or isinstance(
                        error, WriteOutcomeUnknown):
                    raise error
                if call.to_master:
                    self._view.forget_master(url)
            delay = budget.next_delay(getattr(error, "retry_after", 0.0) or 0.0)
            if delay is None:
                raise error
            time.sleep(delay)

    def _node_failed(self, url: str, call: _Call, exc: NotSent | NoAnswer) -> DkvsError:
        self._view.mark_failed(url)
        self._view.forget_master(url)
        error = Unavailable(f"{call.method} {call.target}: {exc}")
        error.__cause__ = exc.cause
        return error

    def _target(self, call: _Call) -> str:
        if call.to_master:
            return self._view.master() or self._view.discover(self._fetch_status)
        if self.reads == "master" and self._view.master() is None:
            try:
                self._view.discover(self._fetch_status)
            except NoMaster:
                pass  # a plain read is answered by any node
        return self._view.read_order(prefer_master=self.reads == "master")[0]

    def _fetch_status(self, url: str) -> dict:
        """One ``/status`` request, no retry (discovery itself is retried by the caller)."""
        try:
            answer = self._pool(url).exchange("GET", "/status", None, {**_JSON, **self._auth}, self.timeout)
        except (NotSent, NoAnswer) as exc:
            raise Unavailable(str(exc)) from exc.cause
        if answer.status != 200:
            raise error_from_answer(answer.status, answer.body, answer.retry_after, where=url)
        return answer.body

    def _pool(self, url: str) -> NodePool:
        with self._pools_lock:
            pool = self._pools.get(url)
            if pool is None:
                pool = self._pools[url] = NodePool(url, self.timeout, ssl_context=self._ssl_context)
            return pool

    def _headers(self, call: _Call) -> dict[str, str]:
        headers = {**_JSON, **self._auth}
        if call.to_master:
            headers.update(_NO_FORWARD)
        if call.body is not None:
            headers.update(call.content_type)
        return headers


def _key_target(key: str, query: dict) -> str:
    target = "/kv/" + quote(key, safe="")
    return target + ("?" + urlencode(query) if query else "")


def _check_acks(acks: str | int | None) -> str | None:
    if acks is None:
        return None
    text = str(acks)
    if text not in _ACKS:
        raise ValueError(f"acks must be one of 1, 'majority', 'all'; got {acks!r}")
    return text


def _wait_for(timeout: float | None) -> float:
    return float(timeout) if timeout is not None else SERVER_WRITE_TIMEOUT_SECONDS


def _value(doc: dict) -> str | bytes | None:
    """A JSON answer's value: text, or ``bytes`` when the node sent ``value_base64``."""
    encoded = doc.get("value_base64")
    return base64.b64decode(encoded) if encoded is not None else doc.get("value")


def _encode_value(doc: dict) -> dict:
    value = doc.get("value")
    if isinstance(value, (bytes, bytearray)):
        doc = {k: v for k, v in doc.items() if k != "value"}
        doc["value_base64"] = base64.b64encode(value).decode("ascii")
    return doc
