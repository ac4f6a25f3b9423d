"""Request metrics and the Prometheus text rendering of ``GET /metrics`` (docs/metrics.md).

The HTTP layer counts requests by route pattern, method and status and keeps a latency
histogram per route and method (a PUT and a GET on ``/kv/{key}`` cost very different
things, so they are never mixed); the node adds its own gauges, counters and histograms
through ``service.metrics()``, a list of ``(name, type, help, [(labels dict, value), ...])``
where a histogram's value is a :class:`Histogram`. :func:`process_metrics` adds the
standard ``process_*`` families from ``/proc`` and :mod:`resource` (stdlib only).

One lock per histogram; an observation is a bisect and three additions.
"""

from __future__ import annotations

import bisect
import os
import resource
import threading
import time

__all__ = ["RequestMetrics", "Histogram", "LATENCY_BUCKETS_SECONDS", "FSYNC_BUCKETS_SECONDS",
           "process_metrics", "format_value"]

LATENCY_BUCKETS_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FSYNC_BUCKETS_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                         1.0, 2.5)


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value) -> str:
    """A sample value as Prometheus text: integers as they are, floats in plain decimal
    notation (no exponent, so simple parsers read them too)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


class Histogram:
    """A cumulative-bucket histogram (Prometheus semantics: ``le`` bounds, plus sum and count)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_SECONDS) -> None:
        self.buckets = tuple(buckets)
        self._counts = [0] * (len(self.buckets) + 1)  # the last one is above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, value)] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[int], float, int]:
        """(cumulative counts per bound, sum, count)."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for count in counts[:-1]:
            running += count
            cumulative.append(running)
        return cumulative, total, running + counts[-1]

    def render(self, name: str, labels: dict) -> list[str]:
        cumulative, total, count = self.snapshot()
        lines = [f"{name}_bucket{_labels({**labels, 'le': format_value(bound)})} {n}"
                 for bound, n in zip(self.buckets, cumulative)]
        lines.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {count}")
        lines.append(f"{name}_sum{_labels(labels)} {format_value(total)}")
        lines.append(f"{name}_count{_labels(labels)} {count}")
        return lines


class RequestMetrics:
    """What the HTTP handler records: one :meth:`observe` per answered request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}  # (route, method) -> latency

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (route, method, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._histograms.get((route, method))
            if hist is None:
                hist = self._histograms[(route, method)] = Histogram(LATENCY_BUCKETS_SECONDS)
        hist.observe(seconds)

    def render(self, node_metrics) -> str:
        lines = ["# HELP dkvs_http_requests_total HTTP requests answered, by route, method and status.",
                 "# TYPE dkvs_http_requests_total counter"]
        with self._lock:
            requests = dict(self._requests)
            histograms = dict(self._histograms)
        for (route, method, status), count in sorted(requests.items()):
            lines.append(f"dkvs_http_requests_total{_labels({'route': route, 'method': method, 'status': status})}"
                         f" {count}")
        lines += ["# HELP dkvs_http_request_duration_seconds Time to answer a request, by route and method.",
                  "# TYPE dkvs_http_request_duration_seconds histogram"]
        for (route, method), hist in sorted(histograms.items()):
            lines += hist.render("dkvs_http_request_duration_seconds", {"route": route, "method": method})
        for name, kind, help_text, samples in [*node_metrics, *process_metrics()]:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                if isinstance(value, Histogram):
                    lines += value.render(name, labels)
                else:
                    lines.append(f"{name}{_labels(labels)} {format_value(value)}")
        return "\n".join(lines) + "\n"


# --- process metrics (the standard names of the Prometheus client libraries) ---------------

_IMPORTED_AT = time.time()


def _start_time() -> float:
    """When this process started (seconds since the epoch): from /proc, else import time."""
    try:
        with open("/proc/self/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 (starttime) counted from field 3
        with open("/proc/stat", "rb") as file:
            boot = next(int(line.split()[1]) for line in file if line.startswith(b"btime "))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


_START_TIME = _start_time()


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def process_metrics() -> list:
    """``process_*`` families; one that this platform cannot tell is left out."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    families = [
        ("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.",
         [({}, usage.ru_utime + usage.ru_stime)]),
        ("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.",
         [({}, round(_START_TIME, 2))]),
    ]
    rss = _resident_bytes()
    if rss is not None:
        families.append(("process_resident_memory_bytes", "gauge", "Resident memory size, in bytes.",
                         [({}, rss)]))
    fds = _open_fds()
    if fds is not None:
        families.append(("process_open_fds", "gauge", "Open file descriptors.", [({}, fds)]))
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            families.append(("process_max_fds", "gauge", "Limit on open file descriptors.", [({}, soft)]))
    except (OSError, ValueError):
        pass
    return families
