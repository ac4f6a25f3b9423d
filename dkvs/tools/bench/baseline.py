"""The baseline: a bare ``http.server`` key-value handler, the ceiling of dkvs's HTTP stack.

dkvs serves HTTP with ``http.server``'s ``ThreadingHTTPServer`` (one thread per
connection). This server is the same stack doing the least possible work per request, so
``dkvs / baseline`` says how much of the stack's capacity dkvs keeps, on this machine, in
this run. To keep the comparison fair it is tuned exactly as ``dkvs.api.server`` is:

* ``protocol_version = "HTTP/1.1"`` (keep-alive) and a 64 KiB read buffer;
* listen backlog ``request_queue_size = 1024``, ``TCP_NODELAY`` on accepted sockets, no
  reverse-DNS lookup when binding;
* every answer (status line, ``Content-Type``, ``Content-Length``, ``Server``, ``Date``,
  JSON body) rendered in memory and sent with **one** write.

``GET /kv/{key}`` is one dict lookup (200 ``{"key","value","seq"}`` or 404);
``PUT /kv/{key}`` stores the body in the dict (200 ``{"key","seq","epoch","replicas"}``);
query strings (``?acks=``) are ignored; ``GET /health`` answers ok.

Run it in its own process: ``python -m dkvs.tools.bench.baseline --port 0`` prints
``baseline listening on http://HOST:PORT`` and serves until SIGTERM / Ctrl-C.
:class:`BaselineProcess` does that from Python and stops it on close.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["BaselineServer", "BaselineHandler", "BaselineProcess", "main"]

START_TIMEOUT_SECONDS = 15.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_date_cache = [0, ""]


def _date_line() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[1] = f"Date: {formatdate(now, usegmt=True)}\r\n"
        _date_cache[0] = now
    return _date_cache[1]


class BaselineHandler(BaseHTTPRequestHandler):
    """GET/PUT one key of ``server.store``; every answer is one write."""

    protocol_version = "HTTP/1.1"
    rbufsize = 64 * 1024

    def _answer(self, status: int, phrase: str, doc: dict) -> None:
        body = _encode(doc).encode("utf-8")
        head = (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nServer: dkvs-baseline\r\n{_date_line()}\r\n")
        self.wfile.write(head.encode("latin-1") + body)

    def _key(self) -> str | None:
        path = self.path.partition("?")[0]
        return urllib.parse.unquote(path[4:]) if path.startswith("/kv/") else None

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/health":
            self._answer(200, "OK", {"status": "ok"})
            return
        key = self._key()
        item = self.server.store.get(key) if key is not None else None
        if item is None:
            self._answer(404, "Not Found", {"error": "not_found", "message": "no such key"})
        else:
            self._answer(200, "OK", {"key": key, "value": item[0], "seq": item[1]})

    def do_PUT(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        value = self.rfile.read(length).decode("utf-8")
        key = self._key()
        if key is None:
            self._answer(404, "Not Found", {"error": "not_found", "message": "no such route"})
            return
        seq = next(self.server.seq)  # itertools.count: atomic under the GIL
        self.server.store[key] = (value, seq)
        self._answer(200, "OK", {"key": key, "seq": seq, "epoch": 1, "replicas": 1})

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


class BaselineServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with dkvs's tuning (see the module docstring)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store: dict[str, tuple[str, int]] = {}
        self.seq = itertools.count(1)
        super().__init__((host, port), BaselineHandler)
        self.url = f"http://{self.server_address[0]}:{self.server_address[1]}"

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no getfqdn() reverse lookup
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bare http.server key-value baseline")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = BaselineServer(args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"baseline listening on {server.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


class BaselineProcess:
    """The baseline server as a child process; ``url`` once started; killed on close."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dkvs.tools.bench.baseline", "--host", host, "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_SECONDS)
        words = line[0].split() if line else []
        if not words or not words[-1].startswith("http://"):
            self.close()
            raise RuntimeError("the baseline server did not start")
        self.url = words[-1]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> BaselineProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
