"""Client tokens: who may call a route, and on which keys (``--auth-file``).

The auth file is JSON::

    {"tokens": [{"token": "s3cret", "role": "write", "prefixes": ["app/"]}, ...]}

``role`` is ``read`` (reads, listings, watches, status, metrics), ``write`` (also writes
and deletes) or ``admin`` (also membership: ``/internal/remove``, fault injection). Roles
are ordered: a stronger role may do what a weaker one may. ``prefixes`` (optional) limits
the token to keys starting with one of them; without it the token covers every key.

One place decides (:mod:`dkvs.api.routes`, with :meth:`Authenticator.authorize`), driven
by the route table: every
route declares the role it needs (:data:`OPEN` routes need none, ``/internal/`` peer routes
are authenticated by the cluster signature instead). A request without a token, or with an
unknown one, is a 401; a token whose role or prefixes do not allow the operation is a 403.
Listings and watches are not refused for a scoped token: their answers are filtered to the
keys the token covers (:meth:`Grant.visible`).

Tokens are looked up by comparing the offered token with *every* known token using
:func:`hmac.compare_digest`, so the time taken says nothing about how close a guess was,
and no token is ever logged (a refusal logs the route, never the header). The file is read
at start-up (a bad file is a start-up error) and again on SIGHUP (:meth:`reload`: a bad
file then keeps the tokens in force and logs one line).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import Forbidden, Unauthorized

__all__ = ["Grant", "Authenticator", "AuthFileError", "parse_auth_file", "ROLES", "READ", "WRITE", "ADMIN",
           "OPEN", "PEER", "MAX_AUTH_FILE_BYTES"]

log = logging.getLogger("dkvs.auth")

READ, WRITE, ADMIN = "read", "write", "admin"
ROLES = (READ, WRITE, ADMIN)
OPEN = None      # the route needs no token (/health, the dashboard's static files)
PEER = "peer"    # node-to-node: authenticated by the cluster signature, not by a token
_RANK = {READ: 1, WRITE: 2, ADMIN: 3}
MAX_AUTH_FILE_BYTES = 1024 * 1024
_BEARER = "bearer "


class AuthFileError(Exception):
    """The auth file cannot be used; the message is one sentence for the operator."""


@dataclass(frozen=True)
class Grant:
    """What one token allows: a role, and the key prefixes it covers (None: every key)."""

    role: str
    prefixes: tuple[str, ...] | None = None

    def has_role(self, needed: str) -> bool:
        return _RANK[self.role] >= _RANK[needed]

    def visible(self, key: str) -> bool:
        """Whether the token covers ``key``."""
        return self.prefixes is None or key.startswith(self.prefixes)

    def covers_prefix(self, prefix: str) -> bool:
        """Whether every key starting with ``prefix`` is covered (no filtering needed)."""
        return self.prefixes is None or prefix.startswith(self.prefixes)


def parse_auth_file(data: bytes, source: str = "the auth file") -> list[tuple[bytes, Grant]]:
    """The (token, grant) pairs of an auth file's bytes; AuthFileError says what is wrong."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AuthFileError(f"{source} is not JSON: {exc}") from None
    tokens = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(tokens, list):
        raise AuthFileError(f'{source} must be a JSON object {{"tokens": [...]}}')
    entries: list[tuple[bytes, Grant]] = []
    seen: set[bytes] = set()
    for number, item in enumerate(tokens, 1):
        where = f"{source}: token #{number}"
        if not isinstance(item, dict):
            raise AuthFileError(f"{where} is not an object")
        unknown = sorted(set(item) - {"token", "role", "prefixes"})
        if unknown:
            raise AuthFileError(f"{where} has unknown field(s) {', '.join(unknown)} "
                                "(allowed: token, role, prefixes)")
        token, role, prefixes = item.get("token"), item.get("role"), item.get("prefixes")
        if not isinstance(token, str) or not token or token != token.strip() or not token.isprintable():
            raise AuthFileError(f"{where}: token must be a non-empty string without spaces or control characters")
        if role not in ROLES:
            raise AuthFileError(f"{where}: role must be one of {', '.join(ROLES)}")
        if prefixes is not None:
            if not (isinstance(prefixes, list) and all(isinstance(p, str) for p in prefixes)):
                raise AuthFileError(f"{where}: prefixes must be a list of strings")
            prefixes = tuple(prefixes)
        secret = token.encode("utf-8")
        if secret in seen:
            raise AuthFileError(f"{where} repeats an earlier token")
        seen.add(secret)
        entries.append((secret, Grant(role, prefixes)))
    return entries


def _read_auth_file(path: str) -> list[tuple[bytes, Grant]]:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_AUTH_FILE_BYTES + 1)
    except OSError as exc:
        raise AuthFileError(f"cannot read --auth-file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_AUTH_FILE_BYTES:
        raise AuthFileError(f"--auth-file {path} is over {MAX_AUTH_FILE_BYTES} bytes")
    return parse_auth_file(data, f"--auth-file {path}")


class Authenticator:
    """The node's client authentication: off (no file) or a token table from ``path``.

    Thread safe: requests read the table while SIGHUP replaces it (one reference swap).
    """

    def __init__(self, path: str | None = None, entries: list[tuple[bytes, Grant]] | None = None) -> None:
        self.path = path
        if entries is None and path is not None:
            entries = _read_auth_file(path)
        self._entries = entries
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._entries is not None

    def reload(self) -> bool:
        """Re-read the file (SIGHUP); on error keep the tokens in force and log one line."""
        if self.path is None:
            return False
        try:
            entries = _read_auth_file(self.path)
        except AuthFileError as exc:
            log.error("auth file not reloaded, the previous tokens stay in force: %s", exc)
            return False
        with self._lock:
            self._entries = entries
        log.info("auth file %s reloaded: %d token(s)", self.path, len(entries))
        return True

    def lookup(self, token: str) -> Grant | None:
        """The grant of ``token``, comparing with every known token in constant time."""
        offered = token.encode("utf-8", "surrogateescape")
        found = None
        for secret, grant in self._entries or ():
            if hmac.compare_digest(secret, offered) and found is None:
                found = grant
        return found

    def authenticate(self, headers: Mapping[str, str]) -> Grant:
        """The grant of the request's bearer token; Unauthorized when missing or unknown."""
        header = headers.get("Authorization") or ""
        if not header[:len(_BEARER)].lower() == _BEARER or not header[len(_BEARER):].strip():
            raise Unauthorized("this node requires a token: send 'Authorization: Bearer TOKEN'")
        grant = self.lookup(header[len(_BEARER):].strip())
        if grant is None:
            raise Unauthorized("unknown token")
        return grant

    def authorize(self, headers: Mapping[str, str], needed: str | None) -> Grant | None:
        """The token of a request to a route needing role ``needed``.

        Returns the grant (None when auth is off or the route is open or peer-only);
        raises Unauthorized (401) or Forbidden (403: the role is too weak).
        """
        if self._entries is None or needed is OPEN or needed == PEER:
            return None
        grant = self.authenticate(headers)
        if not grant.has_role(needed):
            raise Forbidden(f"this token has the {grant.role} role; this operation needs {needed}")
        return grant
