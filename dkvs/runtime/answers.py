"""What a client hears: the HTTP-level answer to a finished write or read barrier.

Pure functions from a completed request (``result``, ``error``, ``rejected``: an
:class:`~dkvs.runtime.host.Outcome` or a :class:`~dkvs.driver.ClientReply`) to the answer
body or the :class:`~dkvs.errors.DkvsError` the HTTP layer turns into a status. They live
apart from the threaded service so that the simulator answers its clients with exactly
the code production uses, and can check what every client was told.
"""

from __future__ import annotations

from ..api.service import NotMaster
from ..core.values import value_fields
from ..errors import (AcksTimeout, Conflict, InsufficientStorage, InternalError, KeyNotFound, LeaseNotFound,
                      NoMaster)

__all__ = ["write_answer", "raise_for", "delete_prefix_answer", "txn_answer",
           "lease_grant_answer", "lease_revoke_answer", "leased_put_answer"]


def _applied(done, what: str) -> dict:
    applied = (done.result or {}).get("applied")
    if applied is None:
        raise InternalError(f"the node lost the outcome of this {what}; it was applied")
    return applied


def write_answer(op: str, key: str, done, acks: str, timeout: float, cond: int | None = None,
                 master_url: str | None = None) -> dict:
    """The 200 body of a write, or the error it must be answered with."""
    raise_for(done, acks, timeout, master_url)
    if done.rejected is not None:
        if op == "delete" and (cond is None or done.rejected == 0):
            raise KeyNotFound(f"key {key!r} does not exist", key=key)
        raise Conflict(f"key {key!r} is at seq {done.rejected}, not {cond}; nothing was written",
                       key=key, seq=done.rejected)
    result = done.result
    return {"key": key, "seq": result["seq"], "epoch": result["epoch"], "replicas": result["replicas"]}


def raise_for(done, acks: str, timeout: float, master_url: str | None = None) -> None:
    """Raise the error a failed request is answered with (nothing when it succeeded)."""
    error = done.error
    if error is None:
        return
    seq = (done.result or {}).get("seq")
    if error == "acks_timeout":
        raise AcksTimeout(f"the write got seq {seq} but acks={acks} was not reached within {timeout:g} s; "
                          "it may still be applied", seq=seq, replicas=done.result.get("replicas"))
    if error == "not_master" and seq is not None:
        raise AcksTimeout(f"this node stopped being master before acks={acks} was reached; the write "
                          f"(seq {seq}) may or may not survive", seq=seq)
    if error in ("not_master", "membership_change_in_progress"):
        raise NotMaster(master_url if error == "not_master" else None)
    if error == "transfer_in_progress":  # leadership is being handed over: back in a moment
        raise NoMaster("this master is handing leadership over; retry in a moment", retry_after=0.05)
    if error == "disk_full":
        raise InsufficientStorage("this node cannot persist writes right now (disk full, read-only or gone); "
                                  "the write was not acknowledged" + (
                                      f": it got seq {seq} and may or may not be applied" if seq is not None
                                      else " and nothing was written") +
                                  "; reads are still served, retry once space is freed")
    if error in ("read_timeout", "no_answer"):
        raise AcksTimeout(f"no majority confirmed this master within {timeout:g} s", seq=seq)
    raise InternalError(f"the node could not complete the request ({error})")


def delete_prefix_answer(prefix: str, done, acks: str, timeout: float, master_url: str | None = None) -> dict:
    """The 200 body of a prefix delete: how many keys the entry deleted when applied."""
    raise_for(done, acks, timeout, master_url)
    result = done.result
    if "applied" not in result:
        raise InternalError("the node lost the outcome of this prefix delete; it was applied")
    return {"prefix": prefix, "deleted": result["applied"]["deleted"], "seq": result["seq"],
            "epoch": result["epoch"], "replicas": result["replicas"]}


def txn_answer(done, acks: str, timeout: float, master_url: str | None = None) -> dict:
    """The 200 body of a transaction: its verdict and results, decided when it was applied.

    Values read by ``get`` ops are ``"value"`` (text) or ``"value_base64"`` (binary).
    """
    raise_for(done, acks, timeout, master_url)
    result = done.result
    if "applied" not in result:
        raise InternalError("the node lost the outcome of this transaction; it was applied")
    applied = result["applied"]
    seq = result["seq"]
    results = []
    for item in applied["results"]:
        if item["op"] == "get":
            item = dict(item)
            value = item.pop("value")
            if item["found"]:
                item.update(value_fields(value))
        elif item["op"] == "put":
            item = {**item, "seq": seq}
        results.append(item)
    return {"succeeded": applied["succeeded"], "seq": seq, "epoch": result["epoch"],
            "replicas": result["replicas"], "results": results}


def lease_grant_answer(done, acks: str, timeout: float, master_url: str | None = None) -> dict:
    raise_for(done, acks, timeout, master_url)
    applied = _applied(done, "lease grant")
    return {"id": applied["id"], "ttl": applied["ttl_ms"] / 1000, "seq": done.result["seq"]}


def lease_revoke_answer(lease_id: int, done, acks: str, timeout: float, master_url: str | None = None) -> dict:
    raise_for(done, acks, timeout, master_url)
    applied = _applied(done, "lease revoke")
    if not applied["found"]:
        raise LeaseNotFound(f"lease {lease_id} does not exist (expired or revoked)", lease=lease_id)
    return {"id": lease_id, "deleted": applied["deleted"], "seq": done.result["seq"],
            "epoch": done.result["epoch"], "replicas": done.result["replicas"]}


def leased_put_answer(key: str, lease: int, cond: int | None, done, acks: str, timeout: float,
                      master_url: str | None = None) -> dict:
    """A put with a lease (a one-op transaction): 404 if the lease is gone, 409 if ``cond`` failed."""
    raise_for(done, acks, timeout, master_url)
    applied = _applied(done, "put")
    result = done.result
    if applied.get("lease_not_found") is not None and applied.get("compared", True):
        raise LeaseNotFound(f"lease {lease} does not exist (expired or revoked); nothing was written",
                            lease=lease)
    if not applied["succeeded"]:
        got = applied["results"][0] if applied["results"] else {"seq": 0}
        raise Conflict(f"key {key!r} is at seq {got['seq']}, not {cond}; nothing was written", key=key,
                       seq=got["seq"])
    return {"key": key, "seq": result["seq"], "epoch": result["epoch"], "replicas": result["replicas"],
            "lease": lease}
