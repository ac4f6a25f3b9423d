"""Figures from raw measurements, medians over repeated runs, and the printed tables.

Everything here is pure (no sockets, no processes): the load workers and the lag probe hand
in raw latencies and counters, this module turns them into the summary dicts that both the
``--json`` output and the human tables are built from.

Percentiles use the *nearest-rank* definition: ``p`` is the smallest observed value with at
least ``p`` % of the observations at or below it. So every reported percentile is a latency
that some request really had (no interpolation between two requests), p0 is the minimum and
p100 the maximum.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Sequence

__all__ = ["percentile", "latency_summary", "run_summary", "lag_summary", "median_summary",
           "cpu_idle_share", "machine_info", "format_table", "fmt_number", "fmt_ms"]

LATENCY_PERCENTILES = (50, 90, 99)
IDLE_SAMPLE_SECONDS = 0.5


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank ``p``-th percentile (0 ≤ p ≤ 100) of an ascending, non-empty sequence.

    Raises ValueError on an empty sequence or ``p`` out of range; the caller sorts once and
    asks for several percentiles.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not between 0 and 100")
    rank = math.ceil(p / 100 * len(sorted_values))
    return float(sorted_values[max(rank, 1) - 1])


def latency_summary(latencies_seconds: Iterable[float]) -> dict | None:
    """``{"p50","p90","p99","max","mean"}`` in milliseconds, or ``None`` for no samples."""
    values = sorted(latencies_seconds)
    if not values:
        return None
    out = {f"p{p}": round(percentile(values, p) * 1000, 3) for p in LATENCY_PERCENTILES}
    out["max"] = round(values[-1] * 1000, 3)
    out["mean"] = round(statistics.fmean(values) * 1000, 3)
    return out


def run_summary(latencies_seconds: Iterable[float], duration_seconds: float,
                errors: dict[str, int], warmup_errors: int) -> dict:
    """The figures of one measured load run (latencies of the requests answered 200)."""
    latencies = list(latencies_seconds)
    ops = len(latencies)
    return {
        "ops": ops,
        "duration_s": round(duration_seconds, 3),
        "throughput": round(ops / duration_seconds, 1) if duration_seconds > 0 else 0.0,
        "latency_ms": latency_summary(latencies),
        "errors": dict(sorted(errors.items())),
        "error_count": sum(errors.values()),
        "warmup_errors": warmup_errors,
    }


def lag_summary(lags_seconds: Iterable[float], writes: int, write_seconds: float,
                target_rate: float, unseen: int, errors: dict[str, int]) -> dict:
    """The replication-lag probe's figures: lag percentiles and the write rate it achieved."""
    values = sorted(lags_seconds)
    out = {
        "target_rate": target_rate,
        "achieved_rate": round(writes / write_seconds, 1) if write_seconds > 0 else 0.0,
        "writes": writes,
        "samples": len(values),
        "unseen": unseen,
        "errors": dict(sorted(errors.items())),
        "error_count": sum(errors.values()),
        "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None,
    }
    if values:
        for p in LATENCY_PERCENTILES:
            out[f"p{p}_ms"] = round(percentile(values, p) * 1000, 3)
        out["max_ms"] = round(values[-1] * 1000, 3)
    return out


def median_summary(runs: Sequence[dict], missing_is_zero: bool = False) -> dict:
    """The median of every numeric figure over ``runs`` (dicts of the same shape).

    Nested dicts are merged key by key. In an ``errors`` dict a code seen in some runs only
    counts as 0 in the others; elsewhere a figure that is ``None`` or absent in some runs
    takes the median of the others. Non-numeric values are taken from the first run.
    """
    if not runs:
        raise ValueError("median of no runs")
    keys: list = []
    for run in runs:
        keys += [key for key in run if key not in keys]
    out = {}
    for key in keys:
        values = [run.get(key) for run in runs]
        if missing_is_zero:
            values = [0 if v is None else v for v in values]
        present = [v for v in values if v is not None]
        if not present:
            out[key] = None
        elif all(isinstance(v, dict) for v in present):
            out[key] = median_summary(present, missing_is_zero=(key == "errors"))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            median = statistics.median(present)
            out[key] = round(median, 3) if isinstance(median, float) else median
        else:
            out[key] = present[0]
    return out


def cpu_idle_share(seconds: float) -> float | None:
    """Share of all CPUs idle over the next ``seconds`` (Linux ``/proc/stat``), else None.

    Read before a run: a machine that is already busy makes every figure lower and noisier.
    """
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round((idle1 - idle0) / (total1 - total0), 3) if total1 > total0 else None


def machine_info() -> dict:
    """What the figures were measured on: cores, CPU model, Python, OS, date (UTC), and how
    busy the machine was before the run (load average, idle share: other work on the
    machine makes every figure lower and noisier)."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    idle = cpu_idle_share(IDLE_SAMPLE_SECONDS)
    return {
        "nproc": usable,
        "loadavg_before": load,
        "cpu_idle_before": idle,
        "cpu_model": model,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
    }


# --- human output ---------------------------------------------------------------------

def fmt_number(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def fmt_ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                 left: Sequence[int] = (0,)) -> str:
    """A plain aligned table: the columns in ``left`` left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        parts = [str(cell).ljust(width) if i in left else str(cell).rjust(width)
                 for i, (cell, width) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
