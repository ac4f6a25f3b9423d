"""``scripts/bench_peers.py`` runs end to end, skips etcd with a reason, and its arithmetic is right.

The end-to-end runs start real processes (dkvs nodes, etcd members when a binary is at
hand, the load workers) for one second of load per case: they prove the tool works and
sees no errors, not how fast anything is. etcd is never downloaded here: the etcd run uses
a binary already on ``PATH`` or unpacked by an earlier ``bench_peers.py``, else it skips.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dkvs.tools.bench.etcd import DEFAULT_CACHE_DIR
from dkvs.tools.bench.load import LoadSpec, _requests, populate_request
from dkvs.tools.bench.peers import cost_rows, peer_cases, peer_rows, peer_table

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_peers.py"
TIMEOUT_SECONDS = 600  # a liveness limit: start-up on a busy box can take minutes


def run_peers(*args: str) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", *args],
                          capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return json.loads(done.stdout), done.stderr


def _etcd_at_hand() -> str | None:
    unpacked = DEFAULT_CACHE_DIR / "root" / "usr" / "bin" / "etcd"
    return shutil.which("etcd") or (str(unpacked) if unpacked.exists() else None)


def test_without_etcd_the_dkvs_cases_run_and_the_skip_is_said():
    doc, stderr = run_peers("--etcd", "none", "--systems", "dkvs-fsync,etcd",
                            "--put-clients", "2", "--get-clients", "1")
    assert doc["ok"] is True and doc["mode"] == "peers"
    assert set(doc["medians"]) == {"put-2-dkvs-fsync", "get-1-dkvs-fsync", "cget-1-dkvs-fsync"}
    for summary in doc["medians"].values():
        assert summary["throughput"] > 0 and summary["error_count"] == 0
    assert "etcd" in doc["skipped"] and "etcd skipped" in stderr
    assert [row["ratios"][0]["value"] for row in doc["rows"]] == [None, None, None]
    assert doc["loadavg_after"] is not None and doc["machine"]["loadavg_before"] is not None


@pytest.mark.skipif(_etcd_at_hand() is None, reason="no etcd binary on PATH or unpacked by bench_peers.py")
def test_etcd_cases_run_through_its_json_gateway():
    doc, _ = run_peers("--etcd", _etcd_at_hand(), "--systems", "etcd",
                       "--put-clients", "1", "--get-clients", "1")
    assert doc["ok"] is True and doc["skipped"] == {} and doc["etcd_version"]
    assert set(doc["medians"]) == {"put-1-etcd", "get-1-etcd", "cget-1-etcd"}
    assert all(s["throughput"] > 0 and s["error_count"] == 0 for s in doc["medians"].values())


# --- pure -----------------------------------------------------------------------------------

def _spec(protocol: str, consistent: bool = False) -> LoadSpec:
    return LoadSpec(workload="get", keys=3, value_size=2, acks="majority", read_ratio=1.0,
                    write_url="http://127.0.0.1:1", read_urls=("http://127.0.0.1:1",), concurrency=1,
                    processes=1, populate=True, protocol=protocol, consistent=consistent)


def test_etcd_requests_carry_base64_keys_and_values_and_read_serializable_unless_consistent():
    gets, puts = _requests(_spec("etcd"))
    method, path, body = puts[2]
    doc = json.loads(body)
    assert (method, path) == ("POST", "/v3/kv/put")
    assert base64.b64decode(doc["key"]) == b"k2" and base64.b64decode(doc["value"]) == b"vv"
    assert gets[2][:2] == ("POST", "/v3/kv/range") and json.loads(gets[2][2])["serializable"] is True
    assert "serializable" not in json.loads(_requests(_spec("etcd", consistent=True))[0][0][2])
    assert populate_request(_spec("etcd"), 1)[1] == "/v3/kv/put"


def test_dkvs_requests_ask_for_acks_and_consistent_reads():
    gets, puts = _requests(_spec("dkvs", consistent=True))
    assert gets[1] == ("GET", "/kv/k1?consistent=true", None)
    assert puts[1] == ("PUT", "/kv/k1?acks=majority", b"vv")
    assert _requests(_spec("dkvs"))[0][0] == ("GET", "/kv/k0", None)
    assert populate_request(_spec("dkvs"), 0) == ("PUT", "/kv/k0?acks=1", b"pp")
    with pytest.raises(ValueError):
        LoadSpec(workload="get", keys=1, value_size=1, acks="1", read_ratio=1.0, write_url="u",
                 read_urls=("u",), concurrency=1, processes=1, populate=False, protocol="redis")


def _summary(ops: float, master_us: float = 100.0) -> dict:
    return {"throughput": ops, "error_count": 0, "latency_ms": {"p99": 1.0},
            "cpu": {"master_us_per_op": master_us}}


def test_rows_put_each_system_beside_etcd_with_the_issue_goals():
    cases = peer_cases([16], [1], ("dkvs-fsync", "dkvs-mem", "etcd"))
    medians = {"put-16-dkvs-fsync": _summary(1000), "put-16-dkvs-mem": _summary(3000),
               "put-16-etcd": _summary(2000), "get-1-dkvs-fsync": _summary(5000),
               "get-1-etcd": _summary(2000), "cget-1-dkvs-fsync": _summary(900), "cget-1-etcd": _summary(1000)}
    rows = peer_rows(cases, medians)
    assert [(r["kind"], r["clients"]) for r in rows] == [("put", 16), ("get", 1), ("cget", 1)]
    assert [(x["system"], x["value"], x["goal"], x["met"]) for x in rows[0]["ratios"]] == [
        ("dkvs-fsync", 0.5, 1.0, False), ("dkvs-mem", 1.5, 1.5, True)]
    assert rows[1]["ratios"][0]["value"] == 2.5 and rows[1]["ratios"][0]["met"] is True
    assert rows[2]["ratios"][0]["met"] is False
    table = peer_table(rows)
    assert "fsync 0.500 (≥1 NO)" in table and "mem 1.500 (≥1.5 yes)" in table


def test_cost_rows_compare_master_cpu_and_single_node_ratios():
    medians = {"cost-single-put-16": _summary(1000, 80), "cost-maj-16": _summary(700, 120),
               "cost-maj-64": _summary(900, 100), "cost-base-put-16": _summary(1100),
               "cost-single-get-16": _summary(2000), "cost-base-get-16": _summary(2000)}
    rows = {r["name"]: r for r in cost_rows(medians)}
    assert rows["master µs CPU per majority write, 16 conns"]["met"] is False
    assert rows["master µs CPU per majority write, 64 conns"]["met"] is True
    assert rows["3-node majority PUT / 1-node PUT, 16 conns"]["value"] == 0.7
    assert rows["1-node PUT / baseline PUT, 16 conns"]["value"] == 0.909
    assert rows["1-node GET / baseline GET, 16 conns"]["met"] is True
