"""A lean HTTP/1.1 request head parser: request line and header fields, no ``email``.

``http.server`` parses header fields with the ``email`` package (a general MIME parser);
on this stack that was about a third of the server's CPU per request. Requests to dkvs
need far less: split each field line at the first colon (RFC 9112 §5), fold names to
lower case for lookups, reject obsolete line folding and oversized heads. The result
behaves like the parts of ``http.client.HTTPMessage`` the server uses: ``get`` (first
value, case-insensitive), ``get_all``, ``items``, ``in``.
"""

from __future__ import annotations

__all__ = ["Headers", "read_headers", "HeadError", "MAX_HEADER_LINE_BYTES", "MAX_HEADERS"]

MAX_HEADER_LINE_BYTES = 65536
MAX_HEADERS = 100


class HeadError(ValueError):
    """A malformed or oversized request head; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Headers:
    """Header fields in arrival order, with case-insensitive lookups."""

    __slots__ = ("_fields", "_first")

    def __init__(self) -> None:
        self._fields: list[tuple[str, str]] = []
        self._first: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        self._fields.append((name, value))
        self._first.setdefault(name.lower(), value)

    def get(self, name: str, default=None):
        return self._first.get(name.lower(), default)

    def __getitem__(self, name: str):
        return self._first.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def get_all(self, name: str, failobj=None):
        key = name.lower()
        values = [v for n, v in self._fields if n.lower() == key]
        return values or failobj

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def keys(self) -> list[str]:
        return [n for n, _ in self._fields]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._fields)

    def __str__(self) -> str:
        return "".join(f"{n}: {v}\r\n" for n, v in self._fields) + "\r\n"


def read_headers(rfile) -> Headers:
    """Read header field lines up to the blank line that ends the head."""
    headers = Headers()
    add = headers.add
    readline = rfile.readline
    for _ in range(MAX_HEADERS + 1):
        line = readline(MAX_HEADER_LINE_BYTES + 1)
        if len(line) > MAX_HEADER_LINE_BYTES:
            raise HeadError(431, "a header line is too long")
        if line in (b"\r\n", b"\n", b""):
            return headers
        if line[:1] in (b" ", b"\t"):
            raise HeadError(400, "obsolete line folding in the header is not accepted")
        text = line.decode("iso-8859-1")
        name, sep, value = text.partition(":")
        if not sep or not name or name != name.strip():
            raise HeadError(400, f"malformed header line {text[:40]!r}")
        add(name, value.strip())
    raise HeadError(431, f"more than {MAX_HEADERS} header lines")
