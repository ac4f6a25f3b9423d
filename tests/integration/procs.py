"""Helpers for integration tests: real nodes (via :mod:`dkvs.tools.local_cluster`) and urllib calls.

Every wait here is a liveness limit, never a claim about speed: the suite must pass on a
machine whose cores are all busy, where a request that takes 5 ms when idle can take
seconds. :data:`LIVENESS_SECONDS` is the bound to use when waiting for something that must
happen; a test that fails on it says what did not happen.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from dkvs.tools.local_cluster import FAST_TIMINGS, LocalCluster, LocalNode, wait_for

__all__ = ["ProcessGroup", "LocalNode", "request", "put", "get", "status", "wait_until", "LIVENESS_SECONDS",
           "REQUEST_TIMEOUT_SECONDS"]

LIVENESS_SECONDS = 60.0  # how long to wait for something that must happen
REQUEST_TIMEOUT_SECONDS = 30.0  # socket timeout of one request to a node that is up


class ProcessGroup(LocalCluster):
    """A LocalCluster with the fast test timings; ``start_cluster`` as ``cluster``."""

    def __init__(self) -> None:
        super().__init__(*FAST_TIMINGS)

    def cluster(self, size: int, *args: str) -> list[LocalNode]:
        return self.start_cluster(size, *args)


def request(method: str, url: str, body: bytes | None = None,
            timeout: float = REQUEST_TIMEOUT_SECONDS) -> tuple[int, dict]:
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


def wait_until(predicate, timeout: float = LIVENESS_SECONDS, interval: float = 0.02, what: str = "condition"):
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
