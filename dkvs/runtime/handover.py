"""Leadership transfer as the threaded node runs it: ask the driver, wait, answer.

The decisions (which slave, when it is up to date, when to give up) are the core's
(:mod:`dkvs.core.transfer`), where the simulator checks them. This module only waits for
their outcome on behalf of an HTTP request or of a stopping node, and lets a write that
arrives during a handover wait for it instead of failing: the write is proposed again once
the node is master with no transfer running, or handed to the HTTP layer as ``NotMaster``
(forwarded to the new master) once the new master is known.
"""

from __future__ import annotations

import math
import time

from ..api.service import NotMaster
from ..core.node import MASTER
from ..core.transfer import NO_TRANSFER_TARGET, TRANSFER_IN_PROGRESS, TRANSFER_TIMEOUT
from ..errors import BadRequest, Conflict, DkvsError, NoMaster
from .admin import post_internal

__all__ = ["transfer_leader", "transfer_route", "await_handover", "propose_through_handover", "TransferTimeout", "POLL_SECONDS"]

POLL_SECONDS = 0.002  # how often a waiting write looks whether the handover ended
RELAY_MARGIN_SECONDS = 5.0  # a relayed transfer waits this much longer than the transfer
MAX_TIMEOUT_SECONDS = 60.0


class TransferTimeout(DkvsError):
    """The transfer did not finish by its deadline; the master took writes again."""

    status = 504
    code = "transfer_timeout"


def transfer_route(service, to: str | None, raw_timeout, headers) -> tuple[int, dict]:
    """``POST /internal/transfer``: on the master, :func:`transfer_leader`; on a slave,
    relayed to the master (signed by this node, with the caller's ``Authorization``)."""
    try:
        timeout = float(raw_timeout) if raw_timeout is not None else None
    except (TypeError, ValueError):
        timeout = math.nan
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        raise BadRequest(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT_SECONDS:g}]")
    node = service.host.node
    if node.role == MASTER:
        return 200, transfer_leader(service, to, timeout)
    master_url, master_id = service.master_url(), node.master_id
    if master_url is None or master_id == node.id:
        raise NoMaster()
    passed = {"Authorization": headers["Authorization"]} if headers.get("Authorization") else {}
    wait = (timeout or node.config.election_ticks * service.host.tick_seconds) + RELAY_MARGIN_SECONDS
    return post_internal(master_url, "transfer", {"to": to, "timeout": timeout}, service.signer,
                         timeout=wait, to=master_id, headers=passed)


def transfer_leader(service, to: str | None, timeout: float | None) -> dict:
    """Hand leadership from this (master) node to ``to`` (None: the most up-to-date slave).

    Returns ``{"from", "to", "epoch", "master"}`` once a new master is known here (bounded
    by ``timeout``). Raises NotMaster on a slave, Conflict when another transfer runs or
    no slave can take over, TransferTimeout when the target did not take over in time.
    """
    host = service.host
    ticks = None if timeout is None else max(1, round(timeout / host.tick_seconds))
    wait = timeout if timeout is not None else host.node.config.election_ticks * host.tick_seconds
    started = time.monotonic()
    outcome = host.transfer(to, ticks, wait)
    error = outcome.error
    if error == "not_master":
        raise NotMaster(service.master_url())
    if error == TRANSFER_IN_PROGRESS:
        raise Conflict("a leadership transfer is already running; retry when it ended")
    if error == NO_TRANSFER_TARGET:
        who = f"{to!r} is not a slave of this master" if to else "no live slave can take over"
        raise Conflict(f"no leadership transfer: {who}", to=to)
    if error in (TRANSFER_TIMEOUT, "no_answer"):
        raise TransferTimeout(f"{(outcome.result or {}).get('to', to)} did not take over within the transfer's "
                              "deadline; this node is master again and takes writes", to=to)
    if error is not None:
        raise DkvsError(f"leadership transfer failed ({error})")
    result = dict(outcome.result)
    await_handover(host, started + wait + 1.0)
    node = host.node
    result["master"] = ({"id": node.master_id, "url": node.members.get(node.master_id)}
                        if node.master_id is not None else None)
    return result


def await_handover(host, deadline: float) -> None:
    """Wait (bounded by ``deadline``, a monotonic time) until this node is master with no
    transfer running, or follows a known master. Reads two attributes of the node without
    the node lock: a hint only — the next proposal decides under the lock."""
    node = host.node
    while time.monotonic() < deadline:
        if node.role == MASTER and node.transfer_target is None:
            return
        if node.role != MASTER and node.master_id not in (None, node.id):
            return
        time.sleep(POLL_SECONDS)


def propose_through_handover(service, propose, timeout: float):
    """Run ``propose()`` (an Outcome); while it is refused because a transfer runs, wait for
    the handover and try again, until ``timeout``. Raises NotMaster once this node
    follows another master (the HTTP layer forwards the write there)."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = propose()
        if outcome.error != TRANSFER_IN_PROGRESS:
            return outcome
        await_handover(service.host, deadline)
        if service.host.node.role != MASTER:
            raise NotMaster(service.master_url(), retry_after=0.05)  # go there now
        if time.monotonic() >= deadline:
            raise NoMaster("the master is handing leadership over; retry shortly", retry_after=0.05)
