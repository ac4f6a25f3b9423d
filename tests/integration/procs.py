"""Real dkvs nodes as child processes on 127.0.0.1 with port 0, for integration tests.

Every process started through a :class:`ProcessGroup` is killed when the group closes,
so a failing test leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAST_TIMINGS = ["--heartbeat-interval", "0.05", "--election-timeout", "0.5"]
START_TIMEOUT_SECONDS = 15.0


class NodeProcess:
    def __init__(self, args: list[str], env: dict | None = None) -> None:
        full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "dkvs", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=full_env, cwd=str(REPO))
        self.stderr_lines: list[str] = []
        self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_reader.start()
        self.line = self._read_startup_line()
        self.node_id = self.line.split()[2] if self.line else None
        self.url = self.line.split()[-1] if self.line else None

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _read_startup_line(self) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_SECONDS)
        line = result[0].strip() if result else ""
        return line

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.url).port

    def terminate(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


class ProcessGroup:
    def __init__(self) -> None:
        self.nodes: list[NodeProcess] = []

    def start(self, *args: str, fast: bool = True, env: dict | None = None) -> NodeProcess:
        argv = ["--port", "0", "--log-level", "warning", *(FAST_TIMINGS if fast else []), *args]
        node = NodeProcess(argv, env)
        self.nodes.append(node)
        if node.url is None:
            node.kill()
            raise RuntimeError("node did not start: " + "".join(node.stderr_lines[-20:]))
        return node

    def cluster(self, size: int, *args: str) -> list[NodeProcess]:
        first = self.start(*args)
        rest = [self.start("--join", first.url, *args) for _ in range(size - 1)]
        return [first, *rest]

    def close(self) -> None:
        for node in self.nodes:
            try:
                node.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
            node.kill()


# -- tiny urllib client -------------------------------------------------------------------------
def request(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def put(base: str, key: str, value: str, **query) -> tuple[int, dict]:
    qs = ("?" + urllib.parse.urlencode(query)) if query else ""
    return request("PUT", f"{base}/kv/{urllib.parse.quote(key, safe='')}{qs}", value.encode())


def get(base: str, key: str, **query) -> tuple[int, dict]:
    qs = ("?" + urllib.parse.urlencode(query)) if query else ""
    return request("GET", f"{base}/kv/{urllib.parse.quote(key, safe='')}{qs}")


def status(base: str) -> dict:
    return request("GET", f"{base}/status")[1]


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value (bounded; integration tests only)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error})")
