"""Pieces the stand-alone benchmark scripts share: a bulk loader, a paced writer, a free port.

``scripts/snapshot_stall_bench.py``, ``learner_join_bench.py`` and ``backup_bench.py`` each
load a node with many keys from several processes and watch the latency of a steady trickle
of writes meanwhile; they take those two tools from here rather than each keeping a copy.
"""

from __future__ import annotations

import http.client
import multiprocessing
import socket
import threading
import time
import urllib.parse

__all__ = ["bulk_load", "PacedWriter", "free_port"]


def _load_range(url: str, first: int, count: int, value_bytes: int) -> int:
    """One loader process: ``count`` acks=1 PUTs on one keep-alive connection; the failures."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    value = (b"%08d" % first) * (value_bytes // 8 + 1)
    errors = 0
    for i in range(first, first + count):
        conn.request("PUT", f"/kv/key-{i:010d}?acks=1", body=value[:value_bytes])
        response = conn.getresponse()
        response.read()
        errors += response.status != 200
    conn.close()
    return errors


def bulk_load(url: str, keys: int, value_bytes: int, loaders: int) -> float:
    """Write ``keys`` keys (``key-<n>``) from ``loaders`` processes; seconds it took.

    Exits the script when any write failed: a benchmark on a half-loaded store measures
    nothing."""
    per = keys // loaders
    started = time.monotonic()
    with multiprocessing.Pool(loaders) as pool:
        errors = sum(pool.starmap(_load_range, [(url, i * per, per, value_bytes) for i in range(loaders)]))
    if errors:
        raise SystemExit(f"{errors} load writes failed")
    return time.monotonic() - started


class PacedWriter(threading.Thread):
    """``rate`` PUTs a second on one connection; records (sent_at, latency) and errors.

    ``acks`` (e.g. "1") goes into the query when given; None leaves the node's default.
    Stop it with ``writer.stop.set()`` then ``join()``."""

    def __init__(self, url: str, rate: float = 200.0, acks: str | None = None, timeout: float = 60.0) -> None:
        super().__init__(daemon=True)
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.interval = 1.0 / rate
        self.query = f"?acks={acks}" if acks is not None else ""
        self.samples: list[tuple[float, float]] = []
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        due = time.monotonic()
        i = 0
        while not self.stop.is_set():
            due += self.interval
            sent = time.monotonic()
            self.conn.request("PUT", f"/kv/paced{i % 100}{self.query}", body=b"p" * 100)
            response = self.conn.getresponse()
            response.read()
            self.errors += response.status != 200
            self.samples.append((sent, time.monotonic() - sent))
            i += 1
            self.stop.wait(max(0.0, due - time.monotonic()))

    @property
    def latencies(self) -> list[float]:
        return [latency for _, latency in list(self.samples)]

    def between(self, start: float, end: float) -> list[float]:
        """Latencies of the writes sent in [start, end), sorted."""
        return sorted(lat for sent, lat in list(self.samples) if start <= sent < end)


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for a node whose URL must be known in advance)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
