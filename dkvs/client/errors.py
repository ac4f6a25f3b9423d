"""Client-side errors, and the one function that turns an HTTP error answer into an exception.

Server errors reuse :mod:`dkvs.errors`: an answer ``{"error": code, ...}`` becomes the class
whose ``code`` is ``code`` (an unknown code falls back to the class for its HTTP status, then
to :class:`~dkvs.errors.DkvsError`). The extra keys of the body become the exception's
``details``; the useful ones are also attributes (``seq``, ``current_seq``, ``retry_after``).

Three failures exist only on the client side, because no node reported them:

* :class:`WriteOutcomeUnknown` — a write was sent and no answer said what became of it.
* :class:`AcksNotReached` — a 504 to a write: it has a seq but its acks were not reached in
  time. It is both an :class:`~dkvs.errors.AcksTimeout` (what the server said) and a
  :class:`WriteOutcomeUnknown` (what it means for the caller).
* :class:`Unavailable` — no node could be reached; a kind of :class:`~dkvs.errors.NoMaster`
  (the master "cannot be reached", in the server's own words for 503).
* :class:`NoMajority` — a 503 (or every ``/status``) said that no majority of the members is
  reachable: no election can end that, so the client gives up at once instead of retrying
  for its whole budget.
"""

from __future__ import annotations

import math

from .. import errors as _server_errors
from ..errors import AcksTimeout, Conflict, DkvsError, NoMaster

__all__ = ["WriteOutcomeUnknown", "AcksNotReached", "Unavailable", "NoMajority", "error_from_answer"]


class WriteOutcomeUnknown(DkvsError):
    """A PUT or DELETE whose outcome is unknown: it may or may not have been applied.

    Raised instead of retrying when the request was sent in full and the connection then
    broke, timed out, or brought back garbage (the node may have applied it before dying),
    and for a 504 (see :class:`AcksNotReached`). ``seq`` is the seq the master gave the
    write when an answer said so, else ``None``; ``key`` is the key written. Read the key
    (``consistent=True``) to find out, or write again if the write is idempotent for you.
    """

    status = 0  # no HTTP answer says this; the client concluded it
    code = "write_outcome_unknown"

    def __init__(self, message: str, *, key: str | None = None, seq: int | None = None,
                 **details: object) -> None:
        super().__init__(message, key=key, seq=seq, **details)
        self.key = key
        self.seq = seq


class AcksNotReached(AcksTimeout, WriteOutcomeUnknown):
    """504 to a write: it got ``seq`` but its ``acks`` were not reached within ``timeout``.

    Like a timed-out Redis ``WAIT``: it may still be applied, or lost in a failover.
    """


class Unavailable(NoMaster):
    """No node answered within the retry budget (refused, unreachable, timed out)."""

    status = 0
    code = "unavailable"

    def __init__(self, message: str, retry_after: float = 0.0, **details: object) -> None:
        super().__init__(message, retry_after=retry_after, **details)


class NoMajority(NoMaster):
    """No master, and no majority of the members reachable: retrying soon will not help.

    Its ``retry_after`` is infinite, so a retry budget ends at once; ``quorum`` holds the
    node's count (``members``, ``reachable``, ``needed``) when it said so.
    """

    def __init__(self, message: str, retry_after: float = math.inf, **details: object) -> None:
        super().__init__(message, retry_after=math.inf, **details)


def no_majority(body: dict | None) -> bool:
    """Whether a 503 body or a ``/status`` document says that no majority is reachable."""
    quorum = (body or {}).get("quorum")
    return (isinstance(quorum, dict) and quorum.get("ok") is False
            and str(quorum.get("reason", "no majority")).startswith("no majority"))


def _server_classes() -> list[type[DkvsError]]:
    return [getattr(_server_errors, name) for name in _server_errors.__all__]


# A shared code goes to the most specific class (``internal``: InternalError, not the
# DkvsError base); a shared status to the most general one below the base (a 404 with an
# unknown code is a NotFound, not a KeyNotFound).
_BY_CODE: dict[str, type[DkvsError]] = {}
_BY_STATUS: dict[int, type[DkvsError]] = {}
for _cls in _server_classes():
    if _cls.code not in _BY_CODE or issubclass(_cls, _BY_CODE[_cls.code]):
        _BY_CODE[_cls.code] = _cls
    if _cls is not DkvsError and (_cls.status not in _BY_STATUS
                                  or issubclass(_BY_STATUS[_cls.status], _cls)):
        _BY_STATUS[_cls.status] = _cls
del _cls


def error_from_answer(status: int, body: dict | None, retry_after: float | None, *,
                      write: bool = False, where: str = "", key: str | None = None) -> DkvsError:
    """The exception for an HTTP error answer (``status`` ≥ 400, ``body`` its JSON or None).

    ``write`` turns a 504 into :class:`AcksNotReached` (about ``key``). ``where`` (the
    node's URL) is added to the details as ``node``, for the log of whoever catches it.
    """
    body = dict(body or {})
    code = body.pop("error", None)
    message = body.pop("message", None)
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        cls = _BY_STATUS.get(status, DkvsError)
    if cls is NoMaster and no_majority(body):
        cls = NoMajority
    if write and issubclass(cls, AcksTimeout):
        cls = AcksNotReached
    if not isinstance(message, str):
        message = f"HTTP {status} from {where or 'the node'}"
    details = {str(k): v for k, v in body.items()}
    if where:
        details.setdefault("node", where)
    if issubclass(cls, NoMaster):
        exc = cls(message, retry_after=retry_after if retry_after is not None else 1.0, **details)
    elif issubclass(cls, WriteOutcomeUnknown):
        seq = details.pop("seq", None)
        key = details.pop("key", key)
        exc = cls(message, key=key, seq=seq, **details)
    else:
        exc = cls(message, **details)
    # The instance says exactly what the node said, even when the class is a fallback.
    exc.status = status
    if isinstance(code, str):
        exc.code = code
    exc.seq = details.get("seq", getattr(exc, "seq", None))
    if isinstance(exc, Conflict):
        exc.current_seq = details.get("seq")
    return exc
