"""Cross-origin access for browsers (the Fetch standard's CORS protocol).

The choice: the public API (``/kv``, ``/status``, ``/health``, ``/openapi.json``) may be
called from web pages of the configured origins; ``/internal/`` never gets CORS headers, so
a browser page can never drive node-to-node routes, whatever the configuration.

* ``()`` — what a node gets unless ``--cors-origins`` says otherwise — turns CORS off for
  every page but the cluster's own: no header is added, preflights get no grant. Any page
  on the web is thus kept from reading or rewriting the store through a visitor's browser
  (issue 11: secure by default).
* The cluster's own origins are always allowed when ``member_urls`` is given: the
  dashboard served by one member polls every member's ``/status``, and its origin is a
  member URL. Those pages are dkvs's own; the set follows the membership (refreshed at
  most once per ``MEMBER_REFRESH_SECONDS``, and only when a request carries an ``Origin``
  that is not listed).
* ``cors_origins=("*",)`` lets any page read the public API (``make_server``'s default, for
  tests of this module); credentials mode is not supported.
* A tuple of exact origins (``("https://ops.example",)``) echoes the request's ``Origin``
  when it is listed, with ``Vary: Origin`` so caches keep answers apart.

Preflight (``OPTIONS`` on a public path) answers 204 with the path's methods, the
requested headers (or ``Content-Type``) and a ``Max-Age``; an origin that is not allowed gets
the 204 without ``Access-Control-Allow-Origin``, which the browser treats as a refusal.
``Retry-After`` is exposed so pages can honour 503 back-off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from .response import Reply

__all__ = ["CorsPolicy", "PREFLIGHT_MAX_AGE_SECONDS", "MEMBER_REFRESH_SECONDS"]

PREFLIGHT_MAX_AGE_SECONDS = 600
MEMBER_REFRESH_SECONDS = 1.0
_EXPOSED = "Access-Control-Expose-Headers: Retry-After\r\n"


class CorsPolicy:
    """Which origins may read public answers, and the header lines that say so."""

    def __init__(self, origins: Iterable[str],
                 member_urls: Callable[[], Iterable[str]] | None = None) -> None:
        origins = tuple(origins)
        self.any_origin = "*" in origins
        self.origins = frozenset(origins) - {"*"}
        self._wildcard_lines = f"Access-Control-Allow-Origin: *\r\n{_EXPOSED}"
        self._member_urls = member_urls
        self._members: frozenset[str] = frozenset()
        self._members_at = -MEMBER_REFRESH_SECONDS
        self._members_lock = threading.Lock()

    def _member_origins(self) -> frozenset[str]:
        """The members' URLs as origins, re-read at most once per MEMBER_REFRESH_SECONDS."""
        if self._member_urls is None:
            return frozenset()
        now = time.monotonic()
        with self._members_lock:
            if now - self._members_at >= MEMBER_REFRESH_SECONDS:
                self._members_at = now
                try:
                    self._members = frozenset(url.rstrip("/") for url in self._member_urls())
                except Exception:  # noqa: BLE001 — a node busy or stopping: keep the last set
                    pass
            return self._members

    def response_lines(self, origin: str | None) -> str:
        """Header lines to add to a public answer for a request with this ``Origin``."""
        if not origin:
            return ""
        if self.any_origin:
            return self._wildcard_lines
        if "\r" in origin or "\n" in origin:
            return ""
        if origin in self.origins or origin in self._member_origins():
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
