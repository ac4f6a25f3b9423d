"""The benchmark runs end to end, and its arithmetic is right.

The two smoke runs start real processes (a dkvs node, the baseline server, the load
workers) through ``scripts/bench.py --smoke``: one second of load each, so they prove that
the tool runs, prints figures and sees no errors, not how fast anything is. The rest is
pure: percentiles, medians of runs, the split of clients over processes.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dkvs.tools.bench.baseline import BaselineServer
from dkvs.tools.bench.cli import smoke_problems
from dkvs.tools.bench.load import LoadSpec
from dkvs.tools.bench.report import format_table, latency_summary, median_summary, percentile

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
SMOKE_TIMEOUT_SECONDS = 600  # one second of load; a liveness limit: start-up on a busy box can take minutes
SUMMARY_KEYS = {"ops", "duration_s", "throughput", "latency_ms", "errors", "error_count",
                "warmup_errors", "lag", "cpu"}
LATENCY_KEYS = {"p50", "p90", "p99", "max", "mean"}


def run_bench(*args: str) -> dict:
    done = subprocess.run([sys.executable, str(BENCH), "--smoke", "--json", *args],
                          capture_output=True, text=True, timeout=SMOKE_TIMEOUT_SECONDS)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return json.loads(done.stdout)


def assert_figures(summary: dict) -> None:
    assert SUMMARY_KEYS <= set(summary)
    assert summary["throughput"] > 0
    assert summary["ops"] > 0
    assert set(summary["latency_ms"]) == LATENCY_KEYS
    lat = summary["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert summary["error_count"] == 0 and summary["errors"] == {}


# --- end to end ---------------------------------------------------------------------

def test_smoke_single_node_mixed_workload_runs_without_errors():
    doc = run_bench("--start", "1", "--workload", "mixed")
    assert doc["ok"] is True and doc["mode"] == "single"
    assert_figures(doc["dkvs"])
    assert doc["baseline"] is None and doc["ratios"] is None
    assert len(doc["runs"]) == 1
    assert {"nproc", "cpu_model", "python", "date_utc"} <= set(doc["machine"])
    assert doc["config"]["workload"] == "mixed"


def test_smoke_baseline_runs_the_same_load_and_reports_ratios():
    doc = run_bench("--baseline")
    assert doc["ok"] is True
    assert_figures(doc["dkvs"])
    assert_figures(doc["baseline"])
    assert doc["ratios"]["throughput"] > 0
    assert set(doc["ratios"]) == {"throughput", "latency_p50", "latency_p99", "cpu"}


# --- percentiles and medians --------------------------------------------------------

def test_percentile_is_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 90) == 90
    assert percentile(values, 99) == 99
    assert percentile(values, 99.5) == 100
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1


def test_percentile_returns_observed_values_never_interpolated():
    values = [0.001, 0.002, 0.010, 0.500]
    assert percentile(values, 50) == 0.002
    assert percentile(values, 51) == 0.010
    assert percentile(values, 99) == 0.500
    assert percentile([7.0], 1) == percentile([7.0], 99) == 7.0


def test_percentile_rejects_empty_input_and_bad_p():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        percentile([1.0], -1)


def test_latency_summary_is_in_milliseconds_and_sorts_its_input():
    summary = latency_summary([0.003, 0.001, 0.002, 0.004])
    assert summary == {"p50": 2.0, "p90": 4.0, "p99": 4.0, "max": 4.0, "mean": 2.5}
    assert latency_summary([]) is None


def test_median_summary_takes_the_median_of_each_figure():
    runs = [
        {"throughput": 100.0, "latency_ms": {"p50": 1.0}, "errors": {"503": 2}, "lag": None},
        {"throughput": 300.0, "latency_ms": {"p50": 3.0}, "errors": {}, "lag": {"p99_ms": 4.0}},
        {"throughput": 200.0, "latency_ms": {"p50": 9.0}, "errors": {}, "lag": {"p99_ms": 2.0}},
    ]
    median = median_summary(runs)
    assert median["throughput"] == 200.0
    assert median["latency_ms"] == {"p50": 3.0}
    assert median["errors"] == {"503": 0}  # absent in two runs counts as 0 there
    assert median["lag"] == {"p99_ms": 3.0}  # the median of the runs that have a figure


def test_clients_are_spread_evenly_over_processes():
    spec = LoadSpec(workload="get", keys=10, value_size=1, acks="1", read_ratio=1.0,
                    write_url="http://127.0.0.1:1", read_urls=("http://127.0.0.1:1",),
                    concurrency=7, processes=3, populate=False)
    shares = [spec.clients_of(i) for i in range(3)]
    assert [len(r) for r in shares] == [3, 2, 2]
    assert sorted(i for r in shares for i in r) == list(range(7))


def test_format_table_aligns_columns():
    text = format_table(["name", "ops/s"], [["a", "1"], ["longer", "1,000"]])
    lines = text.splitlines()
    assert lines[0] == "name    ops/s"
    assert lines[2] == "a           1"
    assert lines[3] == "longer  1,000"


def test_smoke_check_flags_errors_empty_runs_and_a_blind_lag_probe():
    clean = {"throughput": 10.0, "error_count": 0, "warmup_errors": 0, "errors": {},
             "populate_errors": {}, "lag": {"error_count": 0, "unseen": 0, "samples": 5, "errors": {}}}
    assert smoke_problems([{"dkvs": clean, "probe only": dict(clean, throughput=None)}]) == []
    bad = [
        dict(clean, error_count=2, errors={"503": 2}),
        dict(clean, throughput=0.0),
        dict(clean, warmup_errors=1),
        dict(clean, populate_errors={"ConnectionRefusedError": 1}),
        dict(clean, lag={"error_count": 0, "unseen": 0, "samples": 0, "errors": {}}),
    ]
    for summary in bad:
        assert len(smoke_problems([{"dkvs": summary}])) == 1, summary


# --- the baseline server ------------------------------------------------------------

def test_baseline_server_stores_and_answers_on_one_keep_alive_connection():
    server = BaselineServer("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=60)
    try:
        conn.request("GET", "/kv/k%201")
        missing = conn.getresponse()
        assert missing.status == 404 and json.loads(missing.read())["error"] == "not_found"
        conn.request("PUT", "/kv/k%201?acks=majority", body="vé".encode())
        put = conn.getresponse()
        assert put.status == 200 and json.loads(put.read())["key"] == "k 1"
        conn.request("GET", "/kv/k%201")
        got = conn.getresponse()
        assert got.status == 200 and not got.will_close
        assert json.loads(got.read())["value"] == "vé"
    finally:
        conn.close()
        server.shutdown()
        server.server_close()
        thread.join(60)
