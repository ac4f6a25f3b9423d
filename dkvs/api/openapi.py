"""The OpenAPI 3.0 document of the public API, generated from the route table.

Nothing here is written by hand per route: paths, operations, parameters (with the node's
limits as bounds and defaults), request bodies and responses all come from
:data:`dkvs.api.routes.ROUTES` and the :class:`~dkvs.api.params.Param` specs. Only the
response *schemas* are written out below, once, by name. Internal routes are left out.

The document depends only on the routes and the node's limits, both fixed for the life of a
server, so its bytes are built once per (routes, limits) and then served from memory.
"""

from __future__ import annotations

import threading

from .response import encode_json
from .service import Limits

__all__ = ["build_openapi", "openapi_document", "SCHEMAS"]

OPENAPI_VERSION = "3.0.3"

_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}

SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "Machine-readable code, e.g. bad_request."},
            "message": {"type": "string", "description": "A sentence for a human."},
            "parameter": {"type": "string", "description": "The input at fault, for 400/413."},
            "accepted": {"type": "array", "items": _STRING,
                         "description": "For an unknown query parameter: the accepted ones."},
        },
    },
    "Written": {
        "type": "object",
        "required": ["key", "seq"],
        "properties": {
            "key": _STRING,
            "seq": {"type": "integer", "description": "Position of the write in the log."},
            "epoch": {"type": "integer", "description": "Master epoch that ordered it."},
            "replicas": {"description": "How many members hold the write."},
        },
    },
    "Item": {
        "type": "object",
        "required": ["key", "seq"],
        "properties": {"key": _STRING, "value": {**_STRING, "description": "The value when it is UTF-8 text."},
                       "value_base64": {**_STRING, "description": "The value, base64, when it is not UTF-8 text."},
                       "seq": _INTEGER},
    },
    "Deleted": {
        "type": "object",
        "required": ["prefix", "deleted", "seq"],
        "properties": {"prefix": _STRING, "deleted": {"type": "integer", "description": "Keys deleted."},
                       "seq": _INTEGER, "epoch": _INTEGER, "replicas": {}},
    },
    "TxnResult": {
        "type": "object",
        "required": ["succeeded", "seq", "results"],
        "properties": {
            "succeeded": {"type": "boolean", "description": "Whether every comparison held (success ran)."},
            "seq": _INTEGER, "epoch": _INTEGER, "replicas": {},
            "results": {"type": "array", "description": "One per op of the branch that ran.",
                        "items": {"type": "object"}},
        },
    },
    "Page": {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
            "next": {"type": "string", "nullable": True,
                     "description": "Last key of this page when more may follow, else null."},
        },
    },
    "Member": {
        "type": "object",
        "properties": {"id": _STRING, "url": _STRING, "role": _STRING,
                       "last_seq": _INTEGER, "alive": {"type": "boolean"}},
    },
    "Status": {
        "type": "object",
        "required": ["id", "url", "role", "epoch", "master", "last_seq", "commit_seq", "members"],
        "properties": {
            "id": _STRING,
            "url": _STRING,
            "role": {"type": "string", "enum": ["master", "slave", "candidate"]},
            "epoch": _INTEGER,
            "master": {"type": "object", "nullable": True,
                       "properties": {"id": _STRING, "url": _STRING}},
            "last_seq": _INTEGER,
            "commit_seq": _INTEGER,
            "members": {"type": "array", "items": {"$ref": "#/components/schemas/Member"}},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}},
    },
}

_DESCRIPTION = (
    "dkvs, a replicated key-value store: one master orders writes, slaves replicate and "
    "serve reads. Any node accepts writes and forwards them to the master. Every error is "
    'JSON {"error": code, "message": sentence}. Query parameters are strict: an operation '
    "accepts exactly the query parameters listed for it, each at most once; an unknown or "
    "repeated one is a 400 naming it and the accepted ones (x-strict-query: true). "
    "Routes under /internal/ are node-to-node and not part of this API."
)
_E400_QUERY = ("Unknown or repeated query parameter (`parameter` names it, `accepted` lists "
               "the accepted ones).", "Error")


def build_openapi(routes, limits: Limits, version: str) -> dict:
    """The OpenAPI document (a dict) for the public ``routes``."""
    paths: dict[str, dict] = {}
    for route in routes:
        if route.public and route.documented:
            paths.setdefault(route.pattern, {})[route.method.lower()] = _operation(route, limits)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "dkvs", "version": version, "description": _DESCRIPTION},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }


def _operation(route, limits: Limits) -> dict:
    op: dict = {"operationId": route.handler.__name__, "summary": route.summary}
    if route.params:
        op["parameters"] = [
            {"name": p.name, "in": p.location, "required": p.required,
             "description": p.description, "schema": p.schema(limits)}
            for p in route.params
        ]
    if route.body is not None:
        media_type, description = route.body
        content = {media_type: {"schema": {"type": "object" if media_type == "application/json" else "string"}}}
        if media_type == "text/plain":
            content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
        op["requestBody"] = {"required": True, "description": description, "content": content}
    responses = dict(route.responses)
    if route.strict_query:
        op["x-strict-query"] = True
        responses.setdefault(400, _E400_QUERY)
    op["responses"] = {str(status): _response(description, schema)
                       for status, (description, schema) in sorted(responses.items())}
    return op


def _response(description: str, schema: str | None) -> dict:
    if schema == "text":
        return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}
    if schema is None:
        return {"description": description, "content": {"application/json": {}}}
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


_cache: dict[tuple, bytes] = {}
_cache_lock = threading.Lock()


def openapi_document(routes, limits: Limits, version: str) -> bytes:
    """The document as UTF-8 JSON bytes, built once per (routes, limits, version)."""
    key = (id(routes), limits, version)
    data = _cache.get(key)
    if data is None:
        data = encode_json(build_openapi(routes, limits, version)).encode("utf-8")
        with _cache_lock:
            _cache[key] = data
    return data
