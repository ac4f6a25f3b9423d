"""Start dkvs nodes as child processes on this machine and talk to them.

Used by the failover demo, the benchmarks, the chaos runner and the integration tests,
so all of them start, stop and query nodes the same way. Nodes bind 127.0.0.1 with
``--port 0`` unless told otherwise; every node started through a :class:`LocalCluster`
is killed when the cluster closes (use it as a context manager).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

__all__ = ["LocalNode", "LocalCluster", "http_call", "node_status", "wait_for", "FAST_TIMINGS"]

FAST_TIMINGS = ("--heartbeat-interval", "0.05", "--election-timeout", "0.5")
START_TIMEOUT_SECONDS = 15.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class LocalNode:
    """One ``python -m dkvs`` child process. ``url``/``id`` come from its startup line."""

    def __init__(self, args: list[str], env: dict | None = None, capture_stderr: bool = True) -> None:
        full_env = dict(os.environ, DKVS_EXIT_WITH_PARENT="1", **(env or {}))
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, full_env.get("PYTHONPATH")) if p)
        self.args = list(args)
        self.proc = subprocess.Popen([sys.executable, "-m", "dkvs", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE if capture_stderr else subprocess.DEVNULL,
                                     text=True, env=full_env)
        self.stderr_lines: list[str] = []
        if capture_stderr:
            threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.line = self._read_startup_line()
        words = self.line.split()
        self.id = words[2] if words else None
        self.url = words[-1] if words else None

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _read_startup_line(self) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_SECONDS)
        return result[0].strip() if result else ""

    @property
    def port(self) -> int | None:
        return urllib.parse.urlsplit(self.url).port if self.url else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM (clean leave) and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.kill()
        self.proc.wait(10)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


class LocalCluster:
    """A set of local nodes sharing timing flags; kills them all on close."""

    def __init__(self, *common_args: str, host: str = "127.0.0.1", log_level: str = "warning") -> None:
        self.common = ["--host", host, "--log-level", log_level, *common_args]
        self.nodes: list[LocalNode] = []

    def start(self, *args: str, port: int = 0, env: dict | None = None, check: bool = True) -> LocalNode:
        node = LocalNode(["--port", str(port), *self.common, *args], env)
        self.nodes.append(node)
        if check and node.url is None:
            node.kill()
            raise RuntimeError("node did not start: " + "".join(node.stderr_lines[-20:]))
        return node

    def start_cluster(self, size: int, *args: str) -> list[LocalNode]:
        first = self.start(*args)
        return [first] + [self.start("--join", first.url, *args) for _ in range(size - 1)]

    def master(self) -> LocalNode | None:
        for node in self.nodes:
            if node.alive():
                s = node_status(node.url)
                if s and s.get("role") == "master":
                    return node
        return None

    def close(self) -> None:
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def http_call(url: str, method: str, path: str, body: bytes | None = None, timeout: float = 2.0,
              headers: dict | None = None) -> tuple[int, dict]:
    """One request on a fresh connection; returns (status, JSON body). Raises OSError."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data or b"{}")
        except ValueError:
            return response.status, {"raw": data.decode(errors="replace")}
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc
    finally:
        conn.close()


def node_status(url: str, timeout: float = 1.0) -> dict | None:
    """``/status`` of the node at ``url``, or ``None`` if it does not answer."""
    try:
        code, body = http_call(url, "GET", "/status", timeout=timeout)
    except OSError:
        return None
    return body if code == 200 else None


def wait_for(predicate, timeout: float, interval: float = 0.01):
    """Poll ``predicate`` until truthy (returned) or ``timeout`` seconds pass (``None``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
