"""What a client hears: the HTTP-level answer to a finished write or read barrier.

Pure functions from a completed request (``result``, ``error``, ``rejected``: an
:class:`~dkvs.runtime.host.Outcome` or a :class:`~dkvs.driver.ClientReply`) to the answer
body or the :class:`~dkvs.errors.DkvsError` the HTTP layer turns into a status. They live
apart from the threaded service so that the simulator answers its clients with exactly
the code production uses, and can check what every client was told.
"""

from __future__ import annotations

from ..api.service import NotMaster
from ..errors import AcksTimeout, Conflict, InsufficientStorage, InternalError, KeyNotFound

__all__ = ["write_answer", "raise_for"]


def write_answer(op: str, key: str, done, acks: str, timeout: float, cond: int | None = None,
                 master_url: str | None = None) -> dict:
    """The 200 body of a write, or the error it must be answered with."""
    raise_for(done, acks, timeout, master_url)
    if done.rejected is not None:
        if op == "delete":
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
    if error == "disk_full":
        raise InsufficientStorage("this node cannot persist writes right now (disk full, read-only or gone); "
                                  "the write was not acknowledged" + (
                                      f": it got seq {seq} and may or may not be applied" if seq is not None
                                      else " and nothing was written") +
                                  "; reads are still served, retry once space is freed")
    if error in ("read_timeout", "no_answer"):
        raise AcksTimeout(f"no majority confirmed this master within {timeout:g} s", seq=seq)
    raise InternalError(f"the node could not complete the request ({error})")
