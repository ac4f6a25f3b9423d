"""Request metrics and the Prometheus text rendering of ``GET /metrics``.

The HTTP layer counts requests by route pattern, method and status and keeps a latency
histogram per route; the node adds its own gauges and counters (role, epoch, seqs,
replication lag per slave, elections, fsyncs) through ``service.metrics()``, a list of
``(name, type, help, [(labels dict, value), ...])``. One lock guards the counters; an
observation is a few dict updates.
"""

from __future__ import annotations

import bisect
import threading

__all__ = ["RequestMetrics", "LATENCY_BUCKETS_SECONDS"]

LATENCY_BUCKETS_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class RequestMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._histograms: dict[str, list] = {}  # route -> [bucket counts..., sum, count]

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (route, method, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._histograms.get(route)
            if hist is None:
                hist = self._histograms[route] = [0] * (len(LATENCY_BUCKETS_SECONDS) + 2)
            hist[bisect.bisect_left(LATENCY_BUCKETS_SECONDS, seconds)] += 1
            hist[-2] += seconds
            hist[-1] += 1

    def render(self, node_metrics) -> str:
        lines = ["# HELP dkvs_http_requests_total HTTP requests answered, by route, method and status.",
                 "# TYPE dkvs_http_requests_total counter"]
        with self._lock:
            requests = dict(self._requests)
            histograms = {route: list(h) for route, h in self._histograms.items()}
        for (route, method, status), count in sorted(requests.items()):
            lines.append(f"dkvs_http_requests_total{_labels({'route': route, 'method': method, 'status': status})}"
                         f" {count}")
        lines += ["# HELP dkvs_http_request_duration_seconds Time to answer a request, by route.",
                  "# TYPE dkvs_http_request_duration_seconds histogram"]
        for route, hist in sorted(histograms.items()):
            cumulative = 0
            for bound, count in zip(LATENCY_BUCKETS_SECONDS, hist):
                cumulative += count
                lines.append(f"dkvs_http_request_duration_seconds_bucket{_labels({'route': route, 'le': bound})}"
                             f" {cumulative}")
            lines.append(f"dkvs_http_request_duration_seconds_bucket{_labels({'route': route, 'le': '+Inf'})}"
                         f" {hist[-1]}")
            lines.append(f"dkvs_http_request_duration_seconds_sum{_labels({'route': route})} {hist[-2]:.6f}")
            lines.append(f"dkvs_http_request_duration_seconds_count{_labels({'route': route})} {hist[-1]}")
        for name, kind, help_text, samples in node_metrics:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lines.append(f"{name}{_labels(labels)} {value}")
        return "\n".join(lines) + "\n"
