"""The master's side of a forwarded batch, and the slave's signature for one.

:func:`write_batch` is :meth:`NodeService.write_batch`: the writes of one
``POST /internal/forward`` (already checked and authorized by the route,
:mod:`dkvs.api.forward_route`) are proposed with one drain of the node's queue
(:meth:`NodeHost.propose_many`: one node-lock pass, one burst, group commit) and each is
answered exactly as :meth:`NodeService.put` / :meth:`NodeService.delete` would answer it
alone: the same :func:`~dkvs.runtime.answers.write_answer`, the same handover rule.

:func:`batch_signer` gives the slave's forwarder the headers that sign a batch for the
master it is sent to (:class:`~dkvs.transport.auth.Signer`), or None when the URL is not
the current master's (the forwarder then sends the writes one by one, as before).
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.transfer import TRANSFER_IN_PROGRESS
from ..errors import DkvsError
from .answers import write_answer

__all__ = ["write_batch", "batch_signer"]


def write_batch(service, writes: list[tuple]) -> list:
    """``writes`` are ``(op, key, value, acks, timeout, cond)``; returns, in order, each
    write's answer dict or the :class:`~dkvs.errors.DkvsError` it must be answered with."""
    try:
        service._require_master()
    except DkvsError as exc:
        return [exc] * len(writes)
    outcomes = service.host.propose_many(writes)
    answers: list = []
    for (op, key, value, acks, timeout, cond), outcome in zip(writes, outcomes):
        try:
            if outcome.error == TRANSFER_IN_PROGRESS:  # refused, nothing proposed: as alone
                outcome = service._propose(op, key, value, acks, timeout, cond)
            answers.append(write_answer(op, key, outcome, acks, timeout, cond,
                                        service.master_url() if outcome.error is not None else None))
        except DkvsError as exc:
            answers.append(exc)
    return answers


def batch_signer(service) -> Callable[[str, str, bytes], dict | None]:
    """``sign(master_base_url, target, body)`` → headers for a batch, or None (not the master)."""
    def sign(base_url: str, target: str, body: bytes) -> dict | None:
        host = service.host
        if host is None:
            return None
        node = host.node
        master_id = node.master_id
        if master_id is None or node.members.get(master_id) != base_url:
            return None
        return service.signer.headers("POST", target, body, to=master_id)
    return sign
