"""The dashboard's static files, served from the package (no build step, no CDN).

Files are read once and kept in memory; only names that exist in ``dkvs/api/static/``
are served (no paths, so nothing outside the folder can be reached).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import NotFound
from .params import Param
from .response import Reply

__all__ = ["STATIC_NAME", "serve_index", "serve_static"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
_cache: dict[str, Reply] = {}

STATIC_NAME = Param("name", "path", "A file of the dashboard.", lambda raw, limits: raw or "",
                    lambda limits: {"type": "string"}, required=True)


def _load(name: str) -> Reply:
    reply = _cache.get(name)
    if reply is None:
        path = STATIC_DIR / name
        if "/" in name or name.startswith(".") or not path.is_file() or path.suffix not in _TYPES:
            raise NotFound(f"no static file {name[:80]!r}")
        reply = Reply(200, path.read_bytes(), _TYPES[path.suffix], (("Cache-Control", "no-cache"),))
        _cache[name] = reply
    return reply


def serve_index(ex, args: dict) -> Reply:
    return _load("index.html")


def serve_static(ex, args: dict) -> Reply:
    return _load(args["name"])
