"""Cross-origin access for browsers (the Fetch standard's CORS protocol).

The choice: the public API (``/kv``, ``/status``, ``/health``, ``/openapi.json``) may be
called from web pages of the configured origins; ``/internal/`` never gets CORS headers, so
a browser page can never drive node-to-node routes, whatever the configuration.

* ``cors_origins=("*",)`` (the default) lets any page read the public API. dkvs has no
  cookies or user credentials to protect on those routes, so ``*`` leaks nothing a plain
  HTTP client could not already fetch; credentials mode is not supported.
* A tuple of exact origins (``("https://ops.example",)``) echoes the request's ``Origin``
  when it is listed, with ``Vary: Origin`` so caches keep answers apart.
* ``()`` turns CORS off: no header is ever added, preflights get no grant.

Preflight (``OPTIONS`` on a public path) answers 204 with the path's methods, the
requested headers (or ``Content-Type``) and a ``Max-Age``; an origin that is not allowed gets
the 204 without ``Access-Control-Allow-Origin``, which the browser treats as a refusal.
``Retry-After`` is exposed so pages can honour 503 back-off.
"""

from __future__ import annotations

from collections.abc import Iterable

from .response import Reply

__all__ = ["CorsPolicy", "PREFLIGHT_MAX_AGE_SECONDS"]

PREFLIGHT_MAX_AGE_SECONDS = 600
_EXPOSED = "Access-Control-Expose-Headers: Retry-After\r\n"


class CorsPolicy:
    """Which origins may read public answers, and the header lines that say so."""

    def __init__(self, origins: Iterable[str]) -> None:
        origins = tuple(origins)
        self.any_origin = "*" in origins
        self.origins = frozenset(origins) - {"*"}
        self._wildcard_lines = f"Access-Control-Allow-Origin: *\r\n{_EXPOSED}"

    def response_lines(self, origin: str | None) -> str:
        """Header lines to add to a public answer for a request with this ``Origin``."""
        if not origin:
            return ""
        if self.any_origin:
            return self._wildcard_lines
        if origin in self.origins and "\r" not in origin and "\n" not in origin:
            return f"Access-Control-Allow-Origin: {origin}\r\nVary: Origin\r\n{_EXPOSED}"
        return ""

    def preflight(self, requested_headers: str | None, methods: str) -> Reply:
        """The 204 answer to ``OPTIONS``; the allow-origin line comes from :meth:`response_lines`."""
        allowed_headers = (requested_headers or "Content-Type").replace("\r", "").replace("\n", "")
        return Reply(204, b"", headers=(
            ("Access-Control-Allow-Methods", methods),
            ("Access-Control-Allow-Headers", allowed_headers),
            ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_SECONDS)),
        ))
