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
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

__all__ = ["LocalNode", "LocalCluster", "http_call", "node_status", "wait_for", "FAST_TIMINGS"]

FAST_TIMINGS = ("--heartbeat-interval", "0.05", "--election-timeout", "0.5")
# The waits below are liveness limits, not claims about speed: a node that starts in 0.3 s
# on an idle machine can take tens of seconds on one whose cores are all busy (other test
# runs, a CPU hog). They are long so that only a node that never comes up trips them.
START_TIMEOUT_SECONDS = 60.0
FORMED_TIMEOUT_SECONDS = 60.0
STATUS_TIMEOUT_SECONDS = 3.0
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

    def terminate(self, timeout: float = START_TIMEOUT_SECONDS) -> int:
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
        self.proc.wait(START_TIMEOUT_SECONDS)

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
        """``size`` nodes, the others joining the first; returns once the cluster is formed
        (see :meth:`wait_formed`), so callers never race the joins."""
        first = self.start(*args)
        nodes = [first] + [self.start("--join", first.url, *args) for _ in range(size - 1)]
        self.wait_formed(nodes)
        return nodes

    def wait_formed(self, nodes: list[LocalNode], timeout: float = FORMED_TIMEOUT_SECONDS) -> None:
        """Wait until every node in ``nodes`` follows the same master and lists all of them
        as live members; raise ``RuntimeError`` (saying what was seen) if that never happens.

        A node prints its startup line once the join committed, but on a busy machine the
        master's first heartbeat to it, or the others' view of it, may come later. Nodes
        whose ``/status`` needs a token (``--auth-file``) cannot be watched: then this
        returns at once, as if they were formed."""
        seen: list = []
        locked = []

        def one_status(url: str) -> dict | None:
            try:
                code, body = http_call(url, "GET", "/status", timeout=STATUS_TIMEOUT_SECONDS)
            except OSError:
                return None
            if code in (401, 403):
                locked.append(url)
            return body if code == 200 else None

        def formed() -> bool:
            statuses = [one_status(n.url) for n in nodes]
            if locked:
                return True
            seen[:] = [(s or {}).get("master") for s in statuses]
            if not all(statuses):
                return False
            ids = {n.id for n in nodes}
            masters = {(s.get("master") or {}).get("id") for s in statuses}
            if len(masters) != 1 or None in masters:
                return False
            return all(ids <= {m["id"] for m in s.get("members", ()) if m.get("alive")} for s in statuses)

        if not wait_for(formed, timeout, interval=0.02):
            raise RuntimeError(f"the cluster did not form within {timeout} s; masters seen: {seen}")

    def master(self) -> LocalNode | None:
        for node in self.nodes:
            if node.alive():
                s = node_status(node.url)
                if s and s.get("role") == "master":
                    return node
        return None

    def close(self) -> None:
        """Kill every node started here, even if killing one of them fails."""
        failures = []
        for node in self.nodes:
            try:
                node.kill()
            except Exception as exc:  # keep going: the others must not outlive the cluster
                failures.append(exc)
        if failures:
            raise failures[0]

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def http_call(url: str, method: str, path: str, body: bytes | None = None, timeout: float = 2.0,
              headers: dict | None = None, context: ssl.SSLContext | None = None) -> tuple[int, dict]:
    """One request on a fresh connection (HTTPS for ``https://`` URLs, verified with
    ``context``); returns (status, JSON body). Raises OSError."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
    else:
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


def node_status(url: str, timeout: float = STATUS_TIMEOUT_SECONDS) -> dict | None:
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
