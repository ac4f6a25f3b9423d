"""A minimal Chrome DevTools Protocol client over a stdlib WebSocket (test helper).

Just enough to open a page in headless Chromium and evaluate JavaScript in it while real
time passes: the HTTP upgrade handshake (RFC 6455 §4), masked client text frames and
unmasked server frames (§5), and ``Runtime.evaluate``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

START_TIMEOUT_SECONDS = 60.0


class Browser:
    """Headless Chromium showing ``url``; :meth:`evaluate` runs JS in the page."""

    def __init__(self, chromium: str, url: str, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._ids = 0
        self.sock = None
        try:
            self._connect(self._page_url())
        except BaseException:
            self.close()  # never leave a browser behind
            raise

    def _page_url(self) -> str:
        # A liveness limit: Chromium starting on a busy machine can take long.
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        port = None
        while port is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                port = int(found.group(1))
            elif not line and self.proc.poll() is not None:
                break
        if port is None:
            raise RuntimeError("Chromium did not start its DevTools endpoint")
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as answer:
                pages = [t for t in json.load(answer) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.05)  # polling for the page to appear
        raise RuntimeError(f"Chromium opened no page within {START_TIMEOUT_SECONDS} s")

    def _connect(self, ws_url: str) -> None:
        host_port, path = ws_url[len("ws://"):].split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"WebSocket upgrade refused: {head[:80]!r}")

    def _send(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        if len(data) < 126:
            header = struct.pack("!BB", 0x81, 0x80 | len(data))
        elif len(data) < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, len(data))
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, len(data))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            out += chunk
        return out

    def _recv(self) -> str:
        first, second = self._recv_exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._recv_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._recv_exact(8))
        payload = self._recv_exact(length)
        return payload.decode() if first & 0x0F == 0x1 else ""

    def evaluate(self, expression: str):
        """The JSON-serialisable value of ``expression`` in the page."""
        self._ids += 1
        self._send(json.dumps({"id": self._ids, "method": "Runtime.evaluate",
                               "params": {"expression": expression, "returnByValue": True}}))
        while True:
            text = self._recv()
            if text:
                answer = json.loads(text)
                if answer.get("id") == self._ids:
                    return answer["result"]["result"].get("value")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
