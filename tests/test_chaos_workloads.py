"""The chaos runner's data and lock workloads: what they record, how they are judged.

Two short end-to-end runs (``--workload data`` and ``--workload lock``) prove that the
modes run, heal, converge and check on a real 3-node cluster; each is bounded and stops
every process it started. The rest is pure: outcome classification of conditional writes
and transactions, the events a client records (the checker must accept them), the mix
of operations, and the lock verdict on hand-made holder records (including the stale
write it exists to catch).
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import threading
from pathlib import Path

from dkvs.check import check_history
from dkvs.check.history import pair_events
from dkvs.tools.chaos.clients import ChaosClient, Workload
from dkvs.tools.chaos.dataops import txn_pair
from dkvs.tools.chaos.history import Answer, HistoryRecorder, classify_conditional, classify_txn
from dkvs.tools.chaos.lockcheck import FencedWrite, Holder, check_lock, token_of

CHAOS = Path(__file__).resolve().parents[1] / "scripts" / "chaos.py"
SMOKE_TIMEOUT_SECONDS = 600  # a liveness limit only: start-up on a busy box can take minutes


def run_chaos(tmp_path, *arguments):
    history = tmp_path / "history.jsonl"
    done = subprocess.run([sys.executable, str(CHAOS), "--nodes", "3", "--clients", "3", "--seed", "2", "--json",
                           "--history", str(history), "--time-limit", "540", *arguments],
                          capture_output=True, text=True, timeout=SMOKE_TIMEOUT_SECONDS)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout), [json.loads(line) for line in history.read_text().splitlines()]


# --- end to end ---------------------------------------------------------------------------

def test_data_workload_smoke_run_checks_cas_txns_and_leases(tmp_path):
    doc, events = run_chaos(tmp_path, "--workload", "data", "--faults", "4", "--interval", "0.5",
                            "--lease-ttl", "0.5")
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["checker"]["verdict"] == "linearizable"
    assert doc["leases"]["all_expired"] is True and doc["leases"]["granted"] > 0
    assert {"cas", "txn"} <= set(doc["operations"])
    assert any(e["f"] == "txn" and e["type"] == "ok" for e in events)
    assert any(e.get("if_seq") is not None for e in events)
    # Prove the proof: a copy of an acknowledged CAS, from the same seq, also "succeeding"
    # later is two CAS winners from one version; the checker must refuse the history.
    cas = next(op for op in reversed(pair_events(events)) if op.f == "put" and op.if_seq is not None
               and op.seq is not None and op.conflict is None and not op.is_info)
    end = events[-1]["time"]
    forged = [{"process": 10**6, "type": "invoke", "f": "put", "key": cas.key, "value": "forged",
               "if_seq": cas.if_seq, "time": end + 1},
              {"process": 10**6, "type": "ok", "f": "put", "key": cas.key, "value": "forged",
               "seq": cas.seq + 10**6, "time": end + 2}]
    assert check_history(events + forged).linearizable is False


def test_lock_workload_smoke_run_keeps_fencing_tokens_in_order(tmp_path):
    doc, events = run_chaos(tmp_path, "--workload", "lock", "--faults", "3", "--interval", "1",
                            "--lock-ttl", "0.5", "--lock-pause-share", "0.3")
    assert doc["ok"] is True and doc["problems"] == []
    lock = doc["lock"]
    assert lock["violations"] == [] and lock["acquisitions"] > 0
    assert lock["distinct_tokens"] == lock["acquisitions"]
    assert lock["final_token"] >= lock["highest_token"]
    assert doc["checker"]["verdict"] == "linearizable"
    assert all(e["key"] == "chaos/fenced" for e in events)


# --- classification --------------------------------------------------------------------------

def test_a_409_is_an_ok_that_saw_another_seq_and_a_missing_lease_wrote_nothing():
    conflict = classify_conditional("put", Answer(sent=True, status=409, body={"error": "conflict", "seq": 7}))
    assert (conflict.type, conflict.conflict) == ("ok", 7)
    gone = Answer(sent=True, status=404, body={"error": "lease_not_found", "lease": 3})
    assert classify_conditional("put", gone).type == "fail"
    absent = classify_conditional("delete", Answer(sent=True, status=404, body={"error": "key_not_found"}))
    assert (absent.type, absent.found) == ("ok", False)
    assert classify_conditional("put", Answer(sent=True, status=None, error="TimeoutError")).type == "info"


def test_a_txn_is_ok_only_with_its_results():
    assert classify_txn(Answer(sent=True, status=200, body={"succeeded": True, "results": []})).type == "ok"
    assert classify_txn(Answer(sent=True, status=200, body={})).type == "info"
    assert classify_txn(Answer(sent=False, error="ConnectionRefusedError")).type == "fail"


# --- what the clients record -------------------------------------------------------------------

class CannedConnections:
    def __init__(self, answers):
        self.answers, self.requests = list(answers), []

    def request(self, url, method, target, body=None):
        self.requests.append((method, target, body))
        return self.answers.pop(0)

    def close(self):
        pass


def client_with(answers, workload=Workload()):
    clock = itertools.count(1000, 10)
    recorder = HistoryRecorder(clock=lambda: next(clock))
    client = ChaosClient(1, 3, workload, recorder, lambda: ["http://x"], seed=1, stop=threading.Event())
    client.connections = CannedConnections(answers)
    return client, recorder


def test_cas_uses_the_seq_last_seen_and_records_what_the_checker_needs():
    client, recorder = client_with([
        Answer(sent=True, status=200, body={"key": "k0", "value": "a", "seq": 5}),
        Answer(sent=True, status=200, body={"key": "k0", "seq": 8}),
        Answer(sent=True, status=409, body={"error": "conflict", "seq": 9}),
    ])
    client.perform("http://x", "get", "k0", None)
    client.perform_data("http://x", "cas", "k0")
    client.perform_data("http://x", "cas", "k0")
    targets = [target for _, target, _ in client.connections.requests]
    assert targets[1].startswith("/kv/k0?if_seq=5&") and targets[2].startswith("/kv/k0?if_seq=8&")
    events = recorder.events()
    assert events[3]["seq"] == 8 and events[4]["if_seq"] == 8 and events[5]["conflict"] == 9
    operations = pair_events(events)
    assert [(op.if_seq, op.seq, op.conflict) for op in operations] == [(None, 5, None), (5, 8, None), (8, None, 9)]


def test_a_txn_is_recorded_with_its_body_and_results():
    results = [{"op": "get", "key": "k2", "found": False, "seq": 0},
               {"op": "get", "key": "k3", "found": True, "seq": 4, "value": "v"}]
    client, recorder = client_with([Answer(sent=True, status=200,
                                           body={"succeeded": True, "seq": 6, "results": results})] * 4)
    for _ in range(4):
        client.perform_data("http://x", "txn", "k3")
    events = recorder.events()
    assert all(e["f"] == "txn" and "key" in e for e in events)
    assert {k["key"] for e in events if e["type"] == "invoke" for k in e["txn"]["success"]} == {"k2", "k3"}
    reads = [e for e in events if e["type"] == "invoke" and not e["txn"]["compare"]]
    assert reads, "the seeded client should have issued a read-only txn"
    assert client.seen == {"k3": 4, "k2": 0}


def test_txn_pairs_are_fixed_groups_of_two_keys():
    assert txn_pair(0, 10) == txn_pair(1, 10) == ("k0", "k1")
    assert txn_pair(9, 10) == ("k8", "k9")
    assert txn_pair(4, 5) == ("k4",)


def test_without_data_shares_the_mix_draws_exactly_as_before():
    plain = Workload()
    explicit = Workload(cas_share=0.0, txn_share=0.0, lease_share=0.0)
    a, b = random.Random(3), random.Random(3)
    assert [plain.next_operation(a) for _ in range(200)] == [explicit.next_operation(b) for _ in range(200)]


def test_the_data_mix_has_every_kind():
    workload = Workload(cas_share=0.2, txn_share=0.2, lease_share=0.2)
    rng = random.Random(1)
    kinds = {workload.next_operation(rng)[0] for _ in range(500)}
    assert kinds == {"get", "put", "delete", "cas", "cas-delete", "txn", "lease"}


# --- the lock verdict --------------------------------------------------------------------------

def holder(client, token, start, end, *writes):
    return Holder(client, token, start, start + 1, end, writes=[FencedWrite(*w) for w in writes])


def test_tokens_accepted_in_increasing_order_pass_and_overlaps_are_only_counted():
    holders = [holder(1, 10, 0, 100, ("accepted", 50, 11)),
               holder(2, 20, 60, 200, ("accepted", 150, 21), ("accepted", 160, 22)),
               holder(1, 30, 250, 300, ("accepted", 260, 31)),
               holder(3, 15, 90, 400, ("rejected", 390, None, 30))]  # a paused stale holder, refused
    verdict = check_lock(holders, "30:c1:4", 500)
    assert verdict["violations"] == []
    assert verdict["overlapping_beliefs"] == 3  # holders 2, 3 and the last one began before another ended
    assert (verdict["accepted_writes"], verdict["rejected_stale_writes"]) == (4, 1)


def test_a_stale_token_accepted_after_a_newer_one_is_a_violation():
    holders = [holder(1, 10, 0, 100, ("accepted", 50, 11)),
               holder(2, 20, 60, 200, ("accepted", 150, 21)),
               holder(3, 15, 90, 400, ("accepted", 390, 25))]  # the stale holder got through
    assert any("token 15 was accepted at seq 25" in v for v in check_lock(holders, "15:c3:1", 500)["violations"])


def test_one_token_for_two_acquisitions_is_a_violation():
    holders = [holder(1, 10, 0, 100), holder(2, 10, 50, 150)]
    assert check_lock(holders, None, 200)["violations"] == ["token 10 was given to 2 acquisitions (clients [1, 2])"]


def test_a_resource_that_lost_the_newest_token_is_a_violation():
    holders = [holder(1, 10, 0, 100, ("accepted", 50, 11))]
    assert check_lock(holders, None, 200)["violations"]
    assert check_lock(holders, None, 200, final_known=False)["violations"] == []
    assert token_of("12:c1:3") == 12 and token_of(None) == 0
