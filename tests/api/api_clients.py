"""HTTP clients for the front-end tests: http.client for good manners, raw sockets for bad.

``ApiClient`` opens one connection per call and always closes it; ``RawClient`` sends exactly
the bytes it is given (malformed framing, half bodies) and reads answers off the socket.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import NamedTuple
from urllib.parse import quote, urlsplit

__all__ = ["Answer", "ApiClient", "RawClient", "key_path", "assert_server_still_serves", "answer_without_date"]


class Answer(NamedTuple):
    status: int
    headers: dict  # lower-case names
    body: bytes

    def json(self):
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body.decode("utf-8"))


def key_path(key: str) -> str:
    """``/kv/{key}`` with the key percent-encoded, '/' included."""
    return "/kv/" + quote(key, safe="")


class ApiClient:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict | None = None) -> Answer:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                          response.read())
        finally:
            conn.close()


class RawClient:
    """A bare socket that sends exactly the given bytes and reads one answer at a time."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_answer(self) -> Answer:
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.file.read(int(headers.get("content-length", 0)))
        return Answer(int(status_line.split()[1]), headers, body)

    def at_eof(self) -> bool:
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def assert_server_still_serves(api: ApiClient) -> None:
    assert api.request("PUT", "/kv/after-the-error", b"fine").status == 200
    answer = api.request("GET", "/kv/after-the-error")
    assert answer.status == 200 and answer.json()["value"] == "fine"


def answer_without_date(url: str, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection; the whole answer as bytes, but its Date line
    (to compare two paths' answers byte for byte)."""
    client = RawClient(url)
    try:
        client.send(request)
        lines, length = [client.file.readline()], 0
        while (line := client.file.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            if not line.lower().startswith(b"date:"):
                lines.append(line)
        return b"".join(lines) + b"\r\n" + client.file.read(length)
    finally:
        client.close()
