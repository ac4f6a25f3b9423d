"""Helpers for integration tests: real nodes (via :mod:`dkvs.tools.local_cluster`) and urllib calls."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from dkvs.tools.local_cluster import FAST_TIMINGS, LocalCluster, LocalNode, wait_for

__all__ = ["ProcessGroup", "LocalNode", "request", "put", "get", "status", "wait_until"]


class ProcessGroup(LocalCluster):
    """A LocalCluster with the fast test timings; ``start_cluster`` as ``cluster``."""

    def __init__(self) -> None:
        super().__init__(*FAST_TIMINGS)

    def cluster(self, size: int, *args: str) -> list[LocalNode]:
        return self.start_cluster(size, *args)


def request(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _query(query: dict) -> str:
    return ("?" + urllib.parse.urlencode(query)) if query else ""


def put(base: str, key: str, value: str, **query) -> tuple[int, dict]:
    return request("PUT", f"{base}/kv/{urllib.parse.quote(key, safe='')}{_query(query)}", value.encode())


def get(base: str, key: str, **query) -> tuple[int, dict]:
    return request("GET", f"{base}/kv/{urllib.parse.quote(key, safe='')}{_query(query)}")


def status(base: str) -> dict:
    return request("GET", f"{base}/status")[1]


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """:func:`wait_for` that treats a node not answering (OSError) as "not yet", and fails
    the test with ``what`` when the time is up."""
    errors: list[OSError] = []

    def attempt():
        try:
            return predicate()
        except OSError as exc:
            errors.append(exc)
            return None

    value = wait_for(attempt, timeout, interval)
    if not value:
        last = errors[-1] if errors else None
        raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last})")
    return value
