"""Key requests with no thread waiting for them: the node's side of the HTTP fast lane.

The fast lane (:mod:`dkvs.api.fast_lane`) checks a ``PUT``/``DELETE /kv/{key}`` or a
``GET /kv/{key}?consistent=true`` on the thread that holds the connection, and must never
make that thread (often the selector) wait for a commit or a read round. These functions
queue the request with the node (:meth:`~dkvs.runtime.host.NodeHost.propose_async`,
:meth:`~dkvs.runtime.host.NodeHost.read_barrier_async`) and, on the thread that completes
it, turn the outcome into exactly the answer :meth:`NodeService.put` /
:meth:`NodeService.delete` / :meth:`NodeService.get` give: the same
:func:`~dkvs.runtime.answers.write_answer` and :func:`~dkvs.runtime.answers.raise_for`.

Each returns False, having done nothing, unless this node is the master (the lane then
hands the request to a worker, which forwards it). ``on_answer`` later runs once with the
answer dict, the :class:`~dkvs.errors.DkvsError` to answer with, or ``None`` when nothing
was done and the request must take the blocking path (a leadership handover under way,
or this node no longer master: that path waits for the new master, or forwards). It runs
holding the node lock: it must not block.
"""

from __future__ import annotations

from collections.abc import Callable

from ..api.service import NotMaster
from ..core.election import MASTER
from ..core.transfer import TRANSFER_IN_PROGRESS
from ..errors import DkvsError, KeyNotFound
from .answers import raise_for, write_answer

__all__ = ["write_async", "read_async"]


def write_async(service, write: tuple, on_answer: Callable) -> bool:
    """Propose one checked write ``(op, key, value, acks, timeout, cond)``."""
    host = service.host
    if host.node.role != MASTER:
        return False
    op, key, value, acks, timeout, cond = write

    def done(outcome) -> None:
        if outcome.error == TRANSFER_IN_PROGRESS:
            on_answer(None)
            return
        try:
            answer = write_answer(op, key, outcome, acks, timeout, cond,
                                  service.master_url() if outcome.error is not None else None)
        except NotMaster:  # refused before it was proposed
            on_answer(None)
            return
        except DkvsError as exc:
            answer = exc
        on_answer(answer)

    host.propose_async(op, key, value, acks, timeout, cond, done)
    return True


def read_async(service, key: str, on_answer: Callable) -> bool:
    """A linearizable read of ``key``: the read index (or lease), then the committed value."""
    host = service.host
    if host.node.role != MASTER:
        return False
    timeout = service.limits.default_timeout_seconds

    def done(barrier) -> None:
        try:
            if barrier.error is not None:
                raise_for(barrier, "majority", timeout, service.master_url())
            # Everything up to the barrier's read seq is committed; writes applied since
            # may still roll back, so the committed value is the linearizable one.
            with host.state_lock:
                found = host.driver.state.get_committed(key)
            if found is None:
                raise KeyNotFound(f"key {key!r} does not exist", key=key)
            answer = {"key": key, "value": found[0], "seq": found[1]}
        except NotMaster:  # not master any more: the blocking path forwards
            on_answer(None)
            return
        except DkvsError as exc:
            answer = exc
        on_answer(answer)

    host.read_barrier_async(timeout, done)
    return True
