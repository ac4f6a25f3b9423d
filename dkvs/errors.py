"""The error vocabulary shared by the HTTP API, the runtime and the client.

Every failure a user can see maps to one class here, with the HTTP status and the
machine-readable ``code`` that ends up in ``{"error": code, "message": ...}``. Keeping
the mapping in one table means the server and the client cannot disagree about it.
"""

from __future__ import annotations

__all__ = [
    "DkvsError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "LeaseNotFound",
    "KeyNotFound",
    "MethodNotAllowed",
    "Conflict",
    "PayloadTooLarge",
    "NoMaster",
    "AcksTimeout",
    "InsufficientStorage",
    "InternalError",
]


class DkvsError(Exception):
    """Base of every dkvs error; carries the HTTP status and the JSON error code."""

    status = 500
    code = "internal"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict:
        """The JSON body of the error answer: ``error``, ``message`` and any details."""
        body = {"error": self.code, "message": self.message}
        body.update(self.details)
        return body


class BadRequest(DkvsError):
    status = 400
    code = "bad_request"


class Unauthorized(DkvsError):
    status = 401
    code = "unauthorized"


class Forbidden(DkvsError):
    """Authenticated, but the token's role or key prefixes do not allow the operation."""

    status = 403
    code = "forbidden"


class NotFound(DkvsError):
    """A route or resource that does not exist."""

    status = 404
    code = "not_found"


class LeaseNotFound(NotFound):
    """No such lease (never granted, expired or revoked)."""

    code = "lease_not_found"


class KeyNotFound(NotFound):
    status = 404
    code = "key_not_found"


class MethodNotAllowed(DkvsError):
    status = 405
    code = "method_not_allowed"


class Conflict(DkvsError):
    """A conditional write whose condition did not hold, or a duplicate node id."""

    status = 409
    code = "conflict"


class PayloadTooLarge(DkvsError):
    status = 413
    code = "payload_too_large"


class NoMaster(DkvsError):
    """No master is known right now (election in progress); retry after a short wait."""

    status = 503
    code = "no_master"

    def __init__(self, message: str = "no master is known; retry shortly", retry_after: float = 1.0,
                 **details: object) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class AcksTimeout(DkvsError):
    """The write was logged (it has a seq) but the asked durability was not reached in time.

    Like a timed-out Redis ``WAIT``: the write may still be applied later.
    """

    status = 504
    code = "acks_timeout"


class InsufficientStorage(DkvsError):
    """The node cannot persist (disk full, read-only or vanished data dir): the write was
    not acknowledged. Reads are still served, and the node writes again by itself once
    the disk accepts writes (RFC 4918's 507)."""

    status = 507
    code = "insufficient_storage"


class InternalError(DkvsError):
    status = 500
    code = "internal"
