"""``POST /internal/forward``: the master answers a slave's batch of forwarded writes.

Why a route of its own: a slave under 1,000 clients made the master parse, authenticate,
route and answer one HTTP request per forwarded write, and the master's one core was the
limit (issue 15). Here one request carries many writes (:mod:`dkvs.api.forward_batch`),
and they are proposed together (``service.write_batch``: one burst, group commit).

Every write is answered exactly as if it had been forwarded alone:

1. The batch is refused whole (401) unless signed with the cluster secret when one is set:
   the head is checked before the body is read, the body against its signed digest.
   A malformed batch is a 400/413 and nothing in it runs.
2. Each write goes through the route table (:func:`dkvs.api.routes.dispatch`) with a
   stand-in exchange: the same parameter parsing, limits, client-token role and key
   scope checks (the write's own ``Authorization``), value decoding, and the same
   ``put_key``/``delete_key`` handlers. The service they call is a stand-in that
   *collects* the put or delete instead of running it; a refused write gets its 4xx here.
3. The collected writes are proposed at once (``service.write_batch``, or one by one on a
   service without it) and each answer becomes the reply the handlers would have built
   (``written_reply`` / ``error_reply``). A node that is not the master answers each write
   as a forwarded request is answered there (503 with ``Retry-After``, never a second hop).
   Each write is counted in the node's request metrics under its own route, as if it
   had come alone (the dashboard's writes/s is the master's ``/kv/{key}`` answers).
"""

from __future__ import annotations

import logging
import time

from ..errors import BadRequest, DkvsError, InternalError, NoMaster, PayloadTooLarge, Unauthorized
from .forward_batch import BatchWrite, decode_writes, encode_answers, MAX_BATCH_BODY_BYTES
from .headers import Headers
from .response import Reply, error_reply, written_reply
from .service import NotMaster

__all__ = ["post_forward_batch", "answer_batch", "CollectingService", "Collected"]

log = logging.getLogger("dkvs.http")


def post_forward_batch(ex, args: dict) -> Reply:
    """The route handler (listed in :data:`dkvs.api.routes.ROUTES`, role PEER)."""
    problem = ex.service.internal_head(ex.command, ex.path, ex.headers)
    if problem is not None:
        return error_reply(Unauthorized(f"internal request refused: {problem}"))
    body = ex.read_body(MAX_BATCH_BODY_BYTES, required=True, name="body")
    signer = getattr(ex.service, "signer", None)
    problem = signer.verify_body(ex.headers, body) if signer is not None else None
    if problem is not None:
        return error_reply(Unauthorized(f"internal request refused: {problem}"))
    writes = decode_writes(body)  # 400/413 for the whole batch: nothing has run
    return Reply(200, encode_answers(answer_batch(ex.server, ex.service, writes)))


def answer_batch(server, service, writes: list[BatchWrite]) -> list[Reply]:
    """Each write's reply, in order (see the module docstring); never raises."""
    from .routes import dispatch  # the route table lists this module's handler

    started = time.perf_counter()
    replies: list[Reply | None] = [None] * len(writes)
    collected: list[tuple] = []
    places: list[int] = []
    patterns: list[str] = []
    collector = CollectingService(service)
    for number, write in enumerate(writes):
        path, _, query = write.target.partition("?")
        exchange = _BatchedExchange(server, collector, write)
        try:
            replies[number] = dispatch(exchange, path, query)
        except Collected as found:
            collected.append(found.write)
            places.append(number)
        except DkvsError as exc:
            replies[number] = _error(exc)
        except Exception:  # noqa: BLE001 - one write's bug must not fail its neighbours
            log.exception("unexpected error checking a forwarded %s %r", write.method, write.target[:100])
            replies[number] = error_reply(InternalError("unexpected error in the node; see its log"))
        patterns.append(exchange.route_pattern)  # set by dispatch once the route is known
    if collected:
        for number, answer in zip(places, _run(service, collected)):
            replies[number] = written_reply(answer) if isinstance(answer, dict) else _error(answer)
    metrics = getattr(server, "metrics", None)
    if metrics is not None:  # each write counted as if it came alone (the dashboard's writes/s)
        seconds = time.perf_counter() - started
        for write, pattern, reply in zip(writes, patterns, replies):
            metrics.observe(pattern, write.method, reply.status, seconds)
    return replies


def _run(service, collected: list[tuple]) -> list:
    """Answers of the collected writes: dicts or DkvsErrors, one per write."""
    try:
        batch = getattr(service, "write_batch", None)
        if batch is not None:
            return batch(collected)
    except Exception:  # noqa: BLE001 - outcome unknown: say so, never claim success
        log.exception("unexpected error proposing a forwarded batch")
        return [InternalError("unexpected error in the node; the write may or may not be applied")] \
            * len(collected)
    answers = []
    for op, key, value, acks, timeout, cond in collected:
        try:
            if op == "put":
                answers.append(service.put(key, value, acks=acks, timeout=timeout, if_seq=cond))
            else:
                answers.append(service.delete(key, acks=acks, timeout=timeout, if_seq=cond))
        except DkvsError as exc:
            answers.append(exc)
    return answers


def _error(exc: DkvsError) -> Reply:
    """``error_reply``, with a NotMaster answered as on a forwarded request (no second hop)."""
    if isinstance(exc, NotMaster) and exc.master_url is not None:
        exc = NoMaster("this node is not the master and the request was already forwarded once; "
                       "the cluster is changing masters, retry shortly", retry_after=exc.retry_after)
    return error_reply(exc)


class Collected(Exception):
    """Raised by the collecting service in place of running a write (see the module doc)."""

    def __init__(self, write: tuple) -> None:
        super().__init__("collected")
        self.write = write


class CollectingService:
    """The real service, except that a plain put or delete is collected, not run.

    A leased put (``lease=``/``ttl=``) is refused: a slave never batches one, and run here
    it would overtake the writes collected before it."""

    def __init__(self, service) -> None:
        self._service = service
        self.limits = service.limits

    def put(self, key: str, value: str, *, acks: str, timeout: float, if_seq: int | None = None, **extra):
        if extra:
            raise BadRequest("a leased write (lease=, ttl=) cannot travel in a batch", parameter=next(iter(extra)))
        raise Collected(("put", key, value, acks, timeout, if_seq))

    def delete(self, key: str, *, acks: str, timeout: float, if_seq: int | None = None):
        raise Collected(("delete", key, None, acks, timeout, if_seq))

    def __getattr__(self, name: str):
        return getattr(self._service, name)


class _BatchedExchange:
    """What a route handler may use of a request (see :mod:`dkvs.api.routes`), for one
    write of a batch: its method, headers and body; its parameters are parsed by ``dispatch``."""

    __slots__ = ("server", "service", "command", "path", "headers", "query", "args", "grant",
                 "route_pattern", "body")

    def __init__(self, server, service, write: BatchWrite) -> None:
        self.server, self.service, self.command, self.path = server, service, write.method, write.target
        headers = Headers()
        if write.content_type is not None:
            headers.add("Content-Type", write.content_type)
        if write.authorization is not None:
            headers.add("Authorization", write.authorization)
        self.headers = headers
        self.query, self.args, self.grant, self.route_pattern = {}, {}, None, "unmatched"
        self.body = write.body

    def read_body(self, limit: int, *, required: bool, name: str = "body") -> bytes:
        body = self.body or b""
        if len(body) > limit:
            raise PayloadTooLarge(f"the {name} is {len(body)} bytes; the limit is {limit}", parameter=name)
        return body
