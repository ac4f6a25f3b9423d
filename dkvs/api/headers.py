"""A lean HTTP/1.1 request head parser: request line and header fields, no ``email``.

``http.server`` parses header fields with the ``email`` package (a general MIME parser);
on this stack that was about a third of the server's CPU per request. Requests to dkvs
need far less: split each field line at the first colon (RFC 9112 §5), fold names to
lower case for lookups, reject obsolete line folding and oversized heads. The result
behaves like the parts of ``http.client.HTTPMessage`` the server uses: ``get`` (first
value, case-insensitive), ``get_all``, ``items``, ``in``.

Two ways in, one set of rules (:meth:`Headers.add_line`): :func:`read_headers` reads field
lines one at a time from a file, :func:`parse_fields` takes the lines of a head that is
already whole in memory (the common case: the server's selector buffers the head before a
worker starts), which saves a ``readline`` and a decode per line.
"""

from __future__ import annotations

__all__ = ["Headers", "read_headers", "parse_fields", "parse_request_line", "HeadError", "MAX_HEADER_LINE_BYTES", "MAX_HEADERS"]

MAX_HEADER_LINE_BYTES = 65536
MAX_HEADERS = 100


class HeadError(ValueError):
    """A malformed or oversized request head; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Headers:
    """Header fields in arrival order, with case-insensitive lookups.

    ``by_name`` maps each lower-case name to its first value (for lookups with a name
    already in lower case); ``get_all`` scans the fields only when a name came twice.
    """

    __slots__ = ("_fields", "by_name", "_repeated")

    def __init__(self) -> None:
        self._fields: list[tuple[str, str]] = []
        self.by_name: dict[str, str] = {}
        self._repeated = False  # some name (case-insensitively) came more than once

    def add(self, name: str, value: str) -> None:
        self._fields.append((name, value))
        key = name.lower()
        if key in self.by_name:
            self._repeated = True
        else:
            self.by_name[key] = value

    @property
    def repeated(self) -> bool:
        """Whether some name (case-insensitively) came more than once."""
        return self._repeated

    def add_line(self, text: str) -> None:
        """One field line (its line end may still be on it): RFC 9112 §5 rules, or HeadError."""
        if text[:1] in (" ", "\t"):
            raise HeadError(400, "obsolete line folding in the header is not accepted")
        name, sep, value = text.partition(":")
        if not sep or not name or name != name.strip():
            raise HeadError(400, f"malformed header line {text[:40]!r}")
        self.add(name, value.strip())

    def get(self, name: str, default=None):
        return self.by_name.get(name.lower(), default)

    def __getitem__(self, name: str):
        return self.by_name.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.by_name

    def get_all(self, name: str, failobj=None):
        key = name.lower()
        if not self._repeated:
            value = self.by_name.get(key)
            return failobj if value is None else [value]
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


def parse_request_line(requestline: str) -> tuple[str, str, str]:
    """``(command, path, version)`` of a request line without its line end (RFC 9112 §3);
    HeadError 400 when malformed, 505 for HTTP/2 and later. A path starting with ``//``
    is reduced to one slash (as ``http.server`` does)."""
    words = requestline.split()
    if len(words) != 3:
        raise HeadError(400, f"bad request line {requestline[:60]!r}")
    command, path, version = words
    if version != "HTTP/1.1" and version != "HTTP/1.0":
        major = version[5:].split(".", 1)[0] if version.startswith("HTTP/") else ""
        if not (major.isdigit() and len(version) <= 16):
            raise HeadError(400, f"bad request version {version[:20]!r}")
        if int(major) >= 2:
            raise HeadError(505, f"{version} is not supported")
    return command, "/" + path.lstrip("/") if path.startswith("//") else path, version


def read_headers(rfile) -> Headers:
    """Read header field lines up to the blank line that ends the head."""
    headers = Headers()
    add_line = headers.add_line
    readline = rfile.readline
    for _ in range(MAX_HEADERS + 1):
        line = readline(MAX_HEADER_LINE_BYTES + 1)
        if len(line) > MAX_HEADER_LINE_BYTES:
            raise HeadError(431, "a header line is too long")
        if line in (b"\r\n", b"\n", b""):
            return headers
        add_line(line.decode("iso-8859-1"))
    raise HeadError(431, f"more than {MAX_HEADERS} header lines")


def parse_fields(lines: list[str], start: int = 1) -> Headers:
    """The fields of a whole head held in memory: ``lines`` is the head's text split at
    ``"\\n"`` (so without line ends, but a CR may end a line), fields from ``lines[start]``
    to the blank line. The same checks in the same order as :func:`read_headers`."""
    headers = Headers()
    add_line = headers.add_line
    for line in lines[start:start + MAX_HEADERS + 1]:
        if len(line) >= MAX_HEADER_LINE_BYTES:  # with its LF it would be over the limit
            raise HeadError(431, "a header line is too long")
        if line == "\r" or not line:
            return headers
        add_line(line)
    raise HeadError(431, f"more than {MAX_HEADERS} header lines")
