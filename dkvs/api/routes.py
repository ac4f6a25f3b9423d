"""The route table: every HTTP route of a node, in one place, and the dispatcher that reads it.

:data:`ROUTES` lists (method, path pattern, handler, summary, parameters, responses). The
request handler dispatches on it and :mod:`dkvs.api.openapi` turns it into the document
served at ``/openapi.json``, so the docs cannot drift from what is served.

Patterns are either exact (``/status``) or a prefix ending in one ``{name}`` that captures
the whole rest of the path, slashes included (``/kv/{key}``: ``/kv/a/b`` names the key
``a/b``, as does ``/kv/a%2Fb``). Lookup is one dict hit for exact paths and a short scan of
prefixes. A known path with a method it lacks answers 405 with ``Allow``; public paths also
answer ``OPTIONS`` (CORS preflight), which the table compiler adds, so it is not listed.

Query parameters are strict: a route accepts exactly the query parameters its ``params``
list, each at most once; anything else is a 400 naming the parameter and the accepted
ones, before the handler runs (a typo such as ``?ack=majority`` must not silently weaken a
write). Two kinds of route opt out with ``strict_query=False``: the nkvd routes, which keep
nkvd's own rules (unknown parameters ignored, the last of a repeated one wins), and
``/internal/``, whose parameters belong to the node-to-node protocol.

Routes with a ``feature`` (``"nkvd"``) exist only in tables compiled with that feature
(:func:`route_table`); a server without it answers 404 for them, as for any unknown path.
The server's table is its ``route_table`` attribute (the default table when unset).

Authorization is decided here and nowhere else (:func:`authenticate`, then
:func:`authorize` once the parameters are parsed): every route declares
the ``role`` a client token needs (``read``, ``write``, ``admin``; ``OPEN`` for none,
``PEER`` for node-to-node routes, which the cluster signature protects instead) and its
``scope``: ``"key"`` (the ``key`` parameter must be covered by the token's prefixes),
``"listing"`` (the answer is filtered to covered keys), ``"namespace:<prefix>"`` (the token
must cover every key under ``<prefix>``), or None (no key involved). The server's
:class:`~dkvs.api.auth.Authenticator` is its ``auth`` attribute (auth off when unset).

A handler is ``handler(exchange, args) -> Reply``: ``args`` holds the parsed parameters,
``exchange`` is the request handler, of which routes use only ``service``, ``server``
(``cors``, ``internal_max_body_bytes``), ``command``, ``headers``, ``query`` (parsed query
dict) and ``read_body(limit, required=)``. Handlers raise :class:`~dkvs.errors.DkvsError`
for 4xx/5xx answers; :class:`~dkvs.api.service.NotMaster` is left to the caller, which
forwards the request.
"""

from __future__ import annotations

from .. import __version__
from ..errors import BadRequest, Forbidden, MethodNotAllowed, NotFound, Unauthorized
from .admin_routes import ADMIN_ROUTE_SPECS
from .forward_route import post_forward_batch
from .internal_limits import internal_body_cap
from .auth import ADMIN, OPEN, PEER, READ, WRITE, Authenticator, Grant
from .openapi import openapi_document
from .kv import (binary_reply, delete_keys, get_lease, item_json, keepalive_lease, post_lease, revoke_lease,
                 rows_json, txn_body_limit, txn_from_body, txn_keys, value_from_body, wants_binary)
from .params import (ACKS, AFTER, AFTER_SEQ, ALL, CONSISTENT, DELETE_PREFIX, IF_SEQ, INTERNAL_PATH, KEY, LEASE,
                     LEASE_PATH, LIMIT, PREFIX, TIMEOUT, TTL, WAIT, Param, _parse_seq, _parse_wait, check_query,
                     parse_query_pairs)
from .response import Reply, error_reply, json_reply, written_reply
from .route_table import Route, RouteTable
from .nkvd import KEY_NAMESPACE, NKVD_HANDLERS, NKVD_PREFIX
from .static import STATIC_NAME, serve_index, serve_static
from .stream import is_upgrade

__all__ = ["Route", "RouteTable", "ROUTES", "TABLE", "INTERNAL_PREFIX", "NKVD_FEATURE", "dispatch",
           "route_table", "authenticate", "authorize", "authorize_txn", "SCOPE_KEY", "SCOPE_LISTING",
           "SCOPE_PREFIX"]

INTERNAL_PREFIX = "/internal/"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_HEALTH_BODY = b'{"status":"ok"}'
NKVD_FEATURE = "nkvd"
SCOPE_KEY = "key"
SCOPE_LISTING = "listing"
SCOPE_PREFIX = "prefix"
_NAMESPACE = "namespace:"
_AUTH_OFF = Authenticator()


# --- handlers -------------------------------------------------------------------------

def put_key(ex, args: dict) -> Reply:
    extra = {name: args[name] for name in ("if_seq", "lease", "ttl") if args[name] is not None}
    if "lease" in extra and "ttl" in extra:
        raise BadRequest("give either lease or ttl, not both", parameter="ttl")
    body = ex.read_body(ex.service.limits.max_value_bytes, required=True, name="value")
    value = value_from_body(ex.headers, body)
    return written_reply(ex.service.put(args["key"], value, acks=args["acks"], timeout=args["timeout"],
                                        **extra))


def get_key(ex, args: dict) -> Reply:
    if args["wait"] is not None:
        return json_reply(item_json(ex.service.watch_key(args["key"], args["after_seq"], args["wait"])))
    answer = ex.service.get(args["key"], consistent=args["consistent"])
    if wants_binary(ex.headers):
        return binary_reply(answer)
    return json_reply(item_json(answer))


def delete_key(ex, args: dict) -> Reply:
    extra = {} if args["if_seq"] is None else {"if_seq": args["if_seq"]}
    return written_reply(ex.service.delete(args["key"], acks=args["acks"], timeout=args["timeout"], **extra))


def post_txn(ex, args: dict) -> Reply:
    limits = ex.service.limits
    txn = txn_from_body(ex.read_body(txn_body_limit(limits), required=True, name="body"), limits)
    authorize_txn(getattr(ex, "grant", None), txn)
    return written_reply(ex.service.txn(txn, acks=args["acks"], timeout=args["timeout"]))


def list_keys(ex, args: dict) -> Reply:
    grant = getattr(ex, "grant", None)
    if args["wait"] is not None:
        answer = ex.service.watch_prefix(args["prefix"], args["after_seq"], args["wait"], args["limit"])
        return json_reply(rows_json(_visible(grant, args["prefix"], answer, "changes"), "changes"))
    answer = ex.service.items(args["prefix"], args["after"], args["limit"])
    return json_reply(rows_json(_visible(grant, args["prefix"], answer, "items"), "items"))


def _visible(grant: Grant | None, prefix: str, answer: dict, field_name: str) -> dict:
    """A listing or watch answer with only the keys the token covers (paging unchanged)."""
    if grant is None or grant.covers_prefix(prefix):
        return answer
    return {**answer, field_name: [row for row in answer[field_name] if grant.visible(row["key"])]}


def get_metrics(ex, args: dict) -> Reply:
    return Reply(200, ex.server.metrics.render(ex.service.metrics()).encode("utf-8"), METRICS_TYPE)


def get_events(ex, args: dict) -> Reply:
    return json_reply(ex.service.events(args["after"], args["wait"]))


def get_status(ex, args: dict) -> Reply:
    return json_reply(ex.service.status())


def get_health(ex, args: dict) -> Reply:
    return Reply(200, _HEALTH_BODY)


def get_openapi(ex, args: dict) -> Reply:
    return Reply(200, openapi_document(_table_of(ex).routes, ex.service.limits, __version__))


def internal(ex, args: dict) -> Reply:
    """Node-to-node and admin routes: the signature is checked from the head, *before* the
    body is read (an admin token, when auth is on, stands in for it on admin routes)."""
    path = args["path"] if "path" in args else ex.route_pattern[len(INTERNAL_PREFIX):]
    problem = ex.service.internal_head(ex.command, ex.path, ex.headers,
                                       token_checked=getattr(ex, "grant", None) is not None)
    if problem is not None:
        return error_reply(Unauthorized(f"internal request refused: {problem}"))
    if path == "raft" and is_upgrade(ex.headers) and hasattr(ex.server, "streams"):
        return ex.server.streams.accept(ex)  # a replication stream (dkvs.api.stream)
    # Each route's own cap (dkvs.api.internal_limits), under the server's bound: a join
    # cannot make the node buffer what only a replication batch or a snapshot may need.
    cap = internal_body_cap(ex.command, path, ex.query, ex.service.limits, ex.server.internal_max_body_bytes)
    body = ex.read_body(cap, required=False)
    status, data = ex.service.internal(ex.command, path, ex.query, body, ex.headers)
    return Reply(status, data)


EVENTS_AFTER = Param(
    "after", "query", "Only events with an index above this one (the previous answer's next).",
    _parse_seq("after", 0), lambda limits: {"type": "integer", "minimum": 0, "default": 0})
EVENTS_WAIT = Param(
    "wait", "query", "Long poll: wait up to this many seconds for an event after `after`.",
    _parse_wait, WAIT.schema)

# --- the table ------------------------------------------------------------------------

_NKVD_WRITES = ("/set", "/rm", "/clear")
_E400 = {400: ("Bad input: a parameter, the key or the body (see `error`, `parameter`).", "Error")}
_E413 = {413: ("The key or the value is over the node's limit.", "Error")}
_E503 = {503: ("No master is known (or it is unreachable); retry after Retry-After seconds.",
               "Error")}
_E504 = {504: ("The write has a seq but the asked acks were not reached in time; it may "
               "still be applied.", "Error")}
_E404_KEY = {404: ("No such key.", "Error")}
_WRITE_ERRORS = {**_E400, **_E413, **_E503, **_E504}

ROUTES: tuple[Route, ...] = (
    Route("PUT", "/kv/{key}", put_key, "Write a value (any node; slaves forward to the master)",
          (KEY, ACKS, TIMEOUT, IF_SEQ, LEASE, TTL),
          {200: ("Written.", "Written"), 404: ("lease= names a lease that does not exist.", "Error"), 409: ("if_seq did not match the key's current seq.", "Error"),
           411: ("No Content-Length.", "Error"), **_WRITE_ERRORS},
          body=("text/plain", "The value, UTF-8 text, at most max_value_bytes bytes; with Content-Type "
                "application/octet-stream, any bytes."), role=WRITE, scope=SCOPE_KEY),
    Route("GET", "/kv/{key}", get_key, "Read a value, or watch it (wait=)", (KEY, CONSISTENT, WAIT, AFTER_SEQ),
          {200: ("The value (with wait: a Watched answer, also when absent).", "Item"),
           **_E404_KEY, **_E400, **_E413, **_E503}, role=READ, scope=SCOPE_KEY),
    Route("DELETE", "/kv/{key}", delete_key, "Delete a key (any node; slaves forward); if_seq: only at that seq",
          (KEY, ACKS, TIMEOUT, IF_SEQ),
          {200: ("Deleted.", "Written"), 409: ("if_seq did not match the key's current seq.", "Error"),
           **_E404_KEY, **_WRITE_ERRORS}, role=WRITE, scope=SCOPE_KEY),
    Route("DELETE", "/kv", delete_keys, "Delete every key under a prefix (or all=true: every key) as one write",
          (DELETE_PREFIX, ALL, ACKS, TIMEOUT),
          {200: ("Deleted; `deleted` counts the keys, decided when the write was applied.", "Deleted"),
           **_WRITE_ERRORS}, role=WRITE, scope=SCOPE_PREFIX),
    Route("POST", "/txn", post_txn, "A transaction: compare, then one branch of ops, as one atomic write",
          (ACKS, TIMEOUT),
          {200: ("Applied; `succeeded` says which branch ran (decided when applied).", "TxnResult"),
           411: ("No Content-Length.", "Error"), **_WRITE_ERRORS},
          body=("application/json", "{compare: [...], success: [ops], failure: [ops]} (see docs/http-api.md)."),
          role=WRITE),
    Route("POST", "/lease", post_lease, "Grant a lease of ttl seconds (its keys go when it expires)",
          (TTL, ACKS, TIMEOUT), {200: ("Granted: {id, ttl, seq}.", None), **_WRITE_ERRORS}, role=WRITE),
    Route("POST", "/lease/{id}", keepalive_lease, "Renew a lease: POST /lease/{id}/keepalive (the master's clock)",
          (LEASE_PATH,), {200: ("{id, ttl}.", None), 404: ("No such lease (expired or revoked).", "Error"),
                          **_E400, **_E503}, role=WRITE),
    Route("GET", "/lease/{id}", get_lease, "A lease: ttl, remaining seconds and keys (from the master)",
          (LEASE_PATH,), {200: ("{id, ttl, remaining, keys}.", None), 404: ("No such lease.", "Error"),
                          **_E400, **_E503}, role=READ),
    Route("DELETE", "/lease/{id}", revoke_lease, "Revoke a lease and delete its keys (one write)",
          (LEASE_PATH, ACKS, TIMEOUT), {200: ("{id, deleted, seq}.", None), 404: ("No such lease.", "Error"),
                                        **_WRITE_ERRORS}, role=WRITE),
    Route("GET", "/kv", list_keys, "List keys in order, a page at a time; or watch a prefix (wait=)",
          (PREFIX, AFTER, LIMIT, WAIT, AFTER_SEQ),
          {200: ("A page; pass `next` as `after` to get the following one (with wait: Changes).", "Page"),
           **_E400}, role=READ, scope=SCOPE_LISTING),
    Route("GET", "/metrics", get_metrics, "Prometheus metrics of this node", (),
          {200: ("Prometheus text exposition format 0.0.4.", "text")}, role=READ),
    Route("GET", "/events", get_events, "Recent cluster events seen by this node (long poll with wait=)",
          (EVENTS_AFTER, EVENTS_WAIT),
          {200: ("`{events: [{index, time, node, epoch, kind, level, text, details}], next, dropped, "
                 "started}`; pass `next` as `after`.", None), **_E400}, role=READ),
    Route("GET", "/status", get_status, "This node's view of the cluster", (),
          {200: ("Role, epoch, master, log positions and members.", "Status")}, role=READ),
    Route("GET", "/health", get_health, "Liveness probe", (),
          {200: ("The node serves.", "Health")}, role=OPEN),
    Route("GET", "/openapi.json", get_openapi, "This document", (),
          {200: ("The OpenAPI 3 description of the public API.", None)}, role=OPEN),
    # Operators: backups, members, leadership (dkvs.api.admin_routes); any node answers.
    *(Route(method, pattern, handler, summary, params, responses, role=role, scope=scope)
      for method, pattern, handler, summary, params, responses, role, scope in ADMIN_ROUTE_SPECS),
    Route("GET", "/", serve_index, "The web dashboard", (), {200: ("HTML page.", None)}, documented=False,
          role=OPEN),
    Route("GET", "/static/{name}", serve_static, "Dashboard assets", (STATIC_NAME,),
          {200: ("A static file.", None)}, documented=False, role=OPEN),
    *(Route("GET", NKVD_PREFIX + path, handler, summary, params,
            {200: ("As nkvd answers.", None), 400: ("nkvd error code.", None), 404: ("MISSING_RECORD.", None)},
            strict_query=False, feature=NKVD_FEATURE, role=role, scope=_NAMESPACE + KEY_NAMESPACE)
      for path, handler, summary, params, role in ((*h, WRITE if h[0] in _NKVD_WRITES else READ)
                                                   for h in NKVD_HANDLERS)),
    # A slave's batch of forwarded writes (dkvs.api.forward_route): signed like every internal route.
    Route("POST", INTERNAL_PREFIX + "forward", post_forward_batch, "Forwarded writes, batched (not public)",
          (), public=False, strict_query=False, role=PEER),
    Route("GET", INTERNAL_PREFIX + "{path}", internal, "Node-to-node (not public)",
          (INTERNAL_PATH,), public=False, strict_query=False, role=PEER),
    Route("POST", INTERNAL_PREFIX + "{path}", internal, "Node-to-node (not public)",
          (INTERNAL_PATH,), public=False, strict_query=False, role=PEER),
    # Membership changes by an operator and fault injection: an admin token when auth is on.
    *(Route("POST", INTERNAL_PREFIX + name, internal, summary, (), public=False, strict_query=False,
            role=ADMIN)
      for name, summary in (("remove", "Remove a member (admin)"), ("faults", "Fault injection (admin)"),
                            ("transfer", "Hand leadership over to a slave (admin)"))),
)


TABLE = RouteTable(ROUTES)
_NKVD_TABLE = RouteTable(ROUTES, frozenset({NKVD_FEATURE}))


def route_table(*, nkvd: bool = False) -> RouteTable:
    """The compiled table for a server: the default one, or with the nkvd routes."""
    return _NKVD_TABLE if nkvd else TABLE


def _table_of(ex) -> RouteTable:
    return getattr(ex.server, "route_table", None) or TABLE


def dispatch(ex, path: str, query: str) -> Reply:
    """Find the route for ``ex.command`` on ``path``, parse its parameters, run it.

    Sets ``ex.query`` (the parsed query) and ``ex.args`` (the parsed parameters, which the
    forwarder reads for its time budget) before calling the handler.
    """
    found = _table_of(ex).lookup(path)
    if found is None:
        raise NotFound(f"no route for {ex.command} {path[:80]}")
    entry, captured = found
    route = entry.methods.get(ex.command)
    ex.route_pattern = route.pattern if route is not None else "unmatched"
    if route is None:
        return error_reply(
            MethodNotAllowed(f"{path[:80]} does not accept {ex.command}; use {entry.allow}",
                             allow=entry.allow.split(", ")),
            (("Allow", entry.allow),))
    grant = authenticate(ex, route)  # 401/403 on the role before any parameter is looked at
    limits = ex.service.limits
    absent = None if query else route.absent_args(limits)
    if absent is not None:  # no query: the defaults, and the path parameter if any
        ex.query = {}
        args = dict(absent)
        if entry.capture is not None:
            for param in route.params:
                if param.location == "path":
                    args[param.name] = param.parse(captured, limits)
    else:
        pairs = parse_query_pairs(query)
        if route.strict_query:
            check_query(pairs, route.query_names)
        ex.query = values = dict(pairs)
        args = {}
        for param in route.params:
            raw = captured if param.location == "path" else values.get(param.name)
            args[param.name] = param.parse(raw, limits)
    ex.args = args
    ex.grant = authorize(grant, route, args)
    return route.handler(ex, args)


# --- authorization: the one place, driven by each route's role and scope ----------------

def authenticate(ex, route: Route) -> Grant | None:
    """The request's token checked against the role ``route`` needs.

    Returns its grant (None when auth is off or the route needs no token); raises
    Unauthorized (401: no or unknown token) or Forbidden (403: too weak a role).
    """
    auth = getattr(ex.server, "auth", None) or _AUTH_OFF
    return auth.authorize(ex.headers, route.role)


def authorize(grant: Grant | None, route: Route, args: dict) -> Grant | None:
    """The token's key prefixes checked against the key(s) ``route`` touches with ``args``.

    Runs before the handler, so a refused request changes nothing and its body is never
    read; listings are filtered by the handler instead (scope ``listing``).
    """
    if grant is None or route.scope is None:
        return grant
    if route.scope == SCOPE_KEY and not grant.visible(args["key"]):
        raise Forbidden(f"this token does not cover the key {args['key'][:100]!r}")
    if route.scope == SCOPE_PREFIX and not grant.covers_prefix(args["prefix"]):
        raise Forbidden(f"this token does not cover every key under {args['prefix'][:100]!r}")
    if route.scope.startswith(_NAMESPACE) and not grant.covers_prefix(route.scope[len(_NAMESPACE):]):
        raise Forbidden(f"this token does not cover every key under {route.scope[len(_NAMESPACE):]!r}")
    return grant


def authorize_txn(grant: Grant | None, txn: dict) -> None:
    """A transaction's keys and prefixes checked against the token (its body decides them,
    so this runs in the handler, before anything is proposed)."""
    if grant is None:
        return
    keys, prefixes = txn_keys(txn)
    for key in keys:
        if not grant.visible(key):
            raise Forbidden(f"this token does not cover the key {key[:100]!r}")
    for prefix in prefixes:
        if not grant.covers_prefix(prefix):
            raise Forbidden(f"this token does not cover every key under {prefix[:100]!r}")
