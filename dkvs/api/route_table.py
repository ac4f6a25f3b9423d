"""The route table's machinery: a :class:`Route` (one operation and what it needs) and
:class:`RouteTable`, which compiles a tuple of routes for lookup and checks it.

The table's *content* — every route of a node — is :mod:`.routes`; this module knows
nothing of any particular route, only how routes are matched, how 405 answers learn the
allowed methods, and that every public path answers a CORS preflight.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .auth import ADMIN, OPEN
from .params import Param
from .response import Reply

__all__ = ["Route", "RouteTable"]


@dataclass(frozen=True)
class Route:
    """One operation: ``method`` on ``pattern``, served by ``handler``.

    ``responses`` maps status → (description, schema name in the OpenAPI components or
    None); ``body`` is (media type, description) for routes that take a request body.
    ``public`` routes are documented and get CORS; internal ones are neither.
    ``strict_query``: unknown or repeated query parameters are a 400 (see the module
    docstring); ``feature``: the route exists only where that feature is enabled.
    ``role`` and ``scope``: what a client token needs (see the module docstring); the
    default is the strictest, so a route added without thought is admin-only.
    """

    method: str
    pattern: str
    handler: Callable[[object, dict], Reply]
    summary: str
    params: tuple[Param, ...] = ()
    responses: Mapping[int, tuple[str, str | None]] = field(default_factory=dict)
    body: tuple[str, str] | None = None
    public: bool = True
    documented: bool = True  # in /openapi.json (the dashboard's pages are not API)
    strict_query: bool = True
    feature: str | None = None
    role: str | None = ADMIN
    scope: str | None = None

    @functools.cached_property
    def query_names(self) -> tuple[str, ...]:
        """The query parameters this route accepts, in table order."""
        return tuple(p.name for p in self.params if p.location == "query")

    def absent_args(self, limits) -> dict | None:
        """The parsed value of every query parameter when the query is empty (their
        defaults under ``limits``), or None when some parser refuses an absent value.

        Cached per ``limits`` object (Limits are frozen): a request without a query — most
        of them — then parses only its path parameter. Parsers are pure functions of the
        raw text and the limits (:mod:`dkvs.api.params`), so the cache changes no answer."""
        cached = self.__dict__.get("_absent")
        if cached is not None and cached[0] is limits:
            return cached[1]
        try:
            args = {p.name: p.parse(None, limits) for p in self.params if p.location == "query"}
        except Exception:  # noqa: BLE001 - a parser that needs its parameter: no shortcut
            args = None
        self.__dict__["_absent"] = (limits, args)  # frozen: not through __setattr__
        return args


class _PathEntry:
    """The routes of one path pattern, by method, and what 405 and preflight need."""

    __slots__ = ("methods", "allow", "public", "capture")

    def __init__(self, public: bool, capture: str | None) -> None:
        self.methods: dict[str, Route] = {}
        self.allow = ""
        self.public = public
        self.capture = capture  # name of the trailing {param}, or None for exact paths


class RouteTable:
    """``ROUTES`` compiled for lookup: exact paths in a dict, captured tails by prefix.

    Only routes without a feature, or whose feature is in ``features``, are kept;
    ``routes`` holds them (what ``/openapi.json`` documents).
    """

    def __init__(self, routes: tuple[Route, ...], features: frozenset[str] = frozenset()) -> None:
        routes = tuple(r for r in routes if r.feature is None or r.feature in features)
        self.routes = routes
        self.exact: dict[str, _PathEntry] = {}
        self.prefixes: list[tuple[str, _PathEntry]] = []
        entries: dict[str, _PathEntry] = {}
        for route in routes:
            entry = entries.get(route.pattern)
            if entry is None:
                entry = entries[route.pattern] = self._add_pattern(route)
            _require(entry.public == route.public, f"{route.pattern}: public and internal mixed")
            _require(route.method not in entry.methods, f"{route.method} {route.pattern} twice")
            _require([p.name for p in route.params if p.location == "path"]
                     == ([entry.capture] if entry.capture else []),
                     f"{route.pattern}: path parameters do not match the pattern")
            entry.methods[route.method] = route
        for pattern, entry in entries.items():
            if entry.public:
                allow = ", ".join(sorted(entry.methods))
                # A browser sends the preflight to the request's own URL, query included.
                entry.methods["OPTIONS"] = Route(
                    "OPTIONS", pattern, _preflight_for(allow), "CORS preflight", (), strict_query=False,
                    role=OPEN)
            entry.allow = ", ".join(sorted(entry.methods))
        # Longest prefix first, so a more specific captured route wins.
        self.prefixes.sort(key=lambda item: -len(item[0]))

    def _add_pattern(self, route: Route) -> _PathEntry:
        pattern = route.pattern
        if "{" not in pattern:
            entry = self.exact[pattern] = _PathEntry(route.public, None)
            return entry
        prefix, _, tail = pattern.partition("{")
        _require(tail.endswith("}") and "{" not in tail and "/" not in tail,
                 f"{pattern}: only one trailing {{name}} is supported")
        entry = _PathEntry(route.public, tail[:-1])
        self.prefixes.append((prefix, entry))
        return entry

    def lookup(self, path: str) -> tuple[_PathEntry, str | None] | None:
        """The entry serving ``path`` and the captured text, or None."""
        entry = self.exact.get(path)
        if entry is not None:
            return entry, None
        for prefix, entry in self.prefixes:
            if path.startswith(prefix):
                return entry, path[len(prefix):]
        return None


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(f"bad route table: {problem}")


def _preflight_for(allow: str) -> Callable[[object, dict], Reply]:
    def preflight(ex, args: dict) -> Reply:
        return ex.server.cors.preflight(ex.headers.get("Access-Control-Request-Headers"), allow)
    preflight.__name__ = "preflight"
    return preflight
