"""The chaos runner works end to end, and its judgement of outcomes is right.

One smoke run starts a real 3-node cluster through ``scripts/chaos.py`` with six fault
events half a second apart: it proves the tool runs, heals, converges and checks, not that
dkvs survives a long run (``docs/chaos.md`` has that). Everything else is pure: how an HTTP
outcome becomes ``ok``/``fail``/``info``, what the recorder writes, the fault plan and cut
sets, and the lost-write and unavailability arithmetic.
"""

from __future__ import annotations

import itertools
import json
import random
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dkvs.api.forward import Forwarder
from dkvs.api.response import error_reply
from dkvs.api.service import NotMaster
from dkvs.check.history import pair_operations
from dkvs.errors import AcksTimeout, BadRequest, KeyNotFound, NoMaster
from dkvs.tools.chaos.analysis import count_outcomes, lost_writes, unavailability
from dkvs.tools.chaos.clients import ChaosClient, Workload
from dkvs.tools.chaos.faults import (FAULT_KINDS, block_lists, bridge_cuts, isolate_cuts, plan_faults,
                                     split_cuts)
from dkvs.tools.chaos.history import Answer, Classified, HistoryRecorder, OpRecord, classify
from dkvs.tools.chaos.interrupts import critical, deliver
from dkvs.tools.chaos.nemesis import FaultWindow
from dkvs.tools.chaos.verdict import check_linearizability

CHAOS = Path(__file__).resolve().parents[1] / "scripts" / "chaos.py"
SMOKE_TIMEOUT_SECONDS = 600  # ~10 s of run; a liveness limit: start-up on a busy box can take minutes


# --- end to end ---------------------------------------------------------------------

def test_smoke_run_with_six_faults_loses_nothing_and_converges(tmp_path):
    history = tmp_path / "history.jsonl"
    done = subprocess.run([sys.executable, str(CHAOS), "--nodes", "3", "--faults", "6", "--interval", "0.5",
                           "--clients", "3", "--seed", "1", "--json", "--history", str(history),
                           "--time-limit", "540"],
                          capture_output=True, text=True, timeout=SMOKE_TIMEOUT_SECONDS)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    doc = json.loads(done.stdout)
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["lost_majority_writes"] == 0
    assert doc["convergence"]["converged"] is True
    assert doc["checker"]["verdict"] in ("linearizable", "unavailable")
    assert doc["faults"]["injected"] == 6
    assert doc["operations"]["total"]["ok"] > 0
    assert len(doc["final_values"]) == 10
    assert {"longest_gap_s", "by_fault", "events"} <= set(doc["unavailability"])
    assert {"acknowledged", "unobserved", "lost", "rolled_back"} <= set(doc["acks1"])
    events = [json.loads(line) for line in history.read_text().splitlines()]
    assert all(set(e) - {"found", "seq"} == {"process", "type", "f", "key", "value", "time"} for e in events)
    pair_operations(events)  # the checker accepts the history as well formed


# --- outcome classification ----------------------------------------------------------

def reply(exc) -> Answer:
    """The Answer a client gets for dkvs's own error reply to ``exc``."""
    r = error_reply(exc)
    return Answer(sent=True, status=r.status, body=json.loads(r.body))


NOT_SENT = Answer(sent=False, error="ConnectionRefusedError")
NO_ANSWER = Answer(sent=True, status=None, error="TimeoutError")
OK_PUT = Answer(sent=True, status=200, body={"key": "k", "seq": 4, "epoch": 1, "replicas": 2})
UNFORWARDED_503 = reply(NotMaster(None))
REFUSED_FORWARD_503 = reply(NoMaster("this node is not the master and the request was already forwarded "
                                     "once; the cluster is changing masters, retry shortly"))
TIMEOUT_504 = reply(AcksTimeout("the write got seq 9 but acks=majority was not reached", seq=9))


def forwarded_503() -> Answer:
    """The real 503 of a slave whose forward to the master failed (nothing listens on the port)."""
    # A port of our own, bound but not listening: connecting to it is refused, and no other
    # program can be listening there meanwhile (a fixed port such as 9 might be in use).
    with socket.socket() as unused, pytest.raises(NoMaster) as caught:
        unused.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d" % unused.getsockname()[1]
        Forwarder(connect_timeout_seconds=1).forward(url, "PUT", "/kv/k", b"v", {}, 1.0)
    return reply(caught.value)


@pytest.mark.parametrize("answer, expected", [
    (OK_PUT, "ok"),
    (NOT_SENT, "fail"),
    (reply(BadRequest("bad acks")), "fail"),
    (UNFORWARDED_503, "fail"),
    (REFUSED_FORWARD_503, "fail"),
    (NO_ANSWER, "info"),
    (TIMEOUT_504, "info"),
    (Answer(sent=True, status=500, body={"error": "internal"}), "info"),
    (Answer(sent=True, status=503, body={"error": "no_master", "message": "something new"}), "info"),
    (Answer(sent=True, status=404, body={"error": "key_not_found"}), "info"),
], ids=["200", "refused-connection", "400", "503-not-forwarded", "503-refused-forward", "no-answer",
        "504", "500", "503-unknown-message", "404-on-put"])
def test_put_outcomes_are_fail_only_when_certainly_without_effect(answer, expected):
    assert classify("put", answer).type == expected


def test_a_503_from_a_failed_forward_may_have_reached_the_master_so_it_is_info():
    assert classify("put", forwarded_503()).type == "info"
    assert classify("delete", forwarded_503()).type == "info"


def test_deletes_record_whether_the_key_was_found():
    assert classify("delete", OK_PUT) == Classified("ok", None, True)
    absent = classify("delete", reply(KeyNotFound("key 'k' does not exist", key="k")))
    assert (absent.type, absent.found) == ("ok", False)
    assert classify("delete", Answer(sent=True, status=404, body={"error": "not_found"})).type == "info"
    assert classify("delete", TIMEOUT_504).type == "info"


@pytest.mark.parametrize("answer", [NOT_SENT, NO_ANSWER, UNFORWARDED_503, TIMEOUT_504,
                                    Answer(sent=True, status=500, body={})])
def test_a_get_without_a_value_is_fail_because_reads_have_no_effect(answer):
    assert classify("get", answer).type == "fail"


def test_a_get_carries_the_value_read_and_null_for_absent():
    found = classify("get", Answer(sent=True, status=200, body={"key": "k", "value": "v1", "seq": 3}))
    assert (found.type, found.value) == ("ok", "v1")
    absent = classify("get", reply(KeyNotFound("key 'k' does not exist", key="k")))
    assert (absent.type, absent.value) == ("ok", None)


# --- the recorder, through a client with canned answers ---------------------------------

class CannedConnections:
    """Stands in for NodeConnections: answers from a list, remembers the requests."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []

    def request(self, url, method, target, body=None):
        self.requests.append((method, target, body))
        return self.answers.pop(0)

    def close(self):
        pass


def client_with(answers, clients=3, number=1):
    clock = itertools.count(1000, 10)
    recorder = HistoryRecorder(clock=lambda: next(clock))
    client = ChaosClient(number, clients, Workload(), recorder, lambda: ["http://x"], seed=1,
                         stop=threading.Event())
    client.connections = CannedConnections(answers)
    return client, recorder


def test_an_info_outcome_moves_the_client_to_a_new_process():
    client, recorder = client_with([NO_ANSWER, OK_PUT, OK_PUT])
    client.perform("http://x", "put", "k1", "majority")
    client.perform("http://x", "put", "k1", "majority")
    client.perform("http://x", "put", "k2", "majority")
    processes = [(e["process"], e["type"]) for e in recorder.events()]
    assert processes == [(1, "invoke"), (1, "info"), (4, "invoke"), (4, "ok"), (4, "invoke"), (4, "ok")]


def test_an_acknowledged_acks1_put_is_recorded_as_info_but_counted_as_ok():
    client, recorder = client_with([OK_PUT])
    record = client.perform("http://x", "put", "k1", "1")
    assert [e["type"] for e in recorder.events()] == ["invoke", "info"]
    assert (record.outcome, record.recorded, record.acks) == ("ok", "info", "1")
    assert client.process == 4
    assert client.connections.requests[0][1].startswith("/kv/k1?acks=1&timeout=")


def test_history_events_have_exactly_the_checker_fields_and_pair_up():
    client, recorder = client_with([OK_PUT, Answer(sent=True, status=200, body={"value": "c1-1"}),
                                    reply(KeyNotFound("gone", key="k1")), UNFORWARDED_503])
    client.perform("http://x", "put", "k1", "majority")
    client.perform("http://x", "get", "k1", None)
    client.perform("http://x", "delete", "k1", "majority")
    client.perform("http://x", "put", "k1", "majority")
    events = recorder.events()
    assert events[0] == {"process": 1, "type": "invoke", "f": "put", "key": "k1", "value": "c1-1", "time": 1000}
    assert events[3] == {"process": 1, "type": "ok", "f": "get", "key": "k1", "value": "c1-1", "time": 1030}
    assert events[5] == {"process": 1, "type": "ok", "f": "delete", "key": "k1", "value": None, "found": False,
                         "time": 1050}
    assert events[7]["type"] == "fail" and events[6]["value"] == "c1-2"
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    by_key = pair_operations(events)
    assert [op.f for op in by_key["k1"]] == ["put", "get", "delete"]


# --- the fault plan and partitions -----------------------------------------------------

def test_the_fault_plan_is_a_function_of_the_seed():
    first = plan_faults(random.Random(7), 50, 2.0, 5)
    assert first == plan_faults(random.Random(7), 50, 2.0, 5)
    assert first != plan_faults(random.Random(8), 50, 2.0, 5)
    assert all(0.8 <= e.hold_s <= 1.6 and sorted(e.order) == list(range(5)) for e in first)
    assert {kind for e in first for kind in e.kinds} <= set(FAULT_KINDS)
    assert any(len(e.kinds) == 2 for e in first)


def test_the_plan_keeps_to_the_kinds_asked_for():
    plan = plan_faults(random.Random(1), 30, 1.0, 3, kinds=("kill", "split"))
    assert {e.name for e in plan} <= {"kill", "split"}
    with pytest.raises(ValueError):
        plan_faults(random.Random(1), 3, 1.0, 3, kinds=("flood",))


def test_partition_cuts_become_symmetric_block_lists():
    nodes = ["a", "b", "c", "d", "e"]
    assert block_lists(isolate_cuts("a", nodes), nodes) == {"a": ["b", "c", "d", "e"], "b": ["a"], "c": ["a"],
                                                            "d": ["a"], "e": ["a"]}
    split = block_lists(split_cuts(["a", "b"], nodes), nodes)
    assert split["a"] == split["b"] == ["c", "d", "e"] and split["e"] == ["a", "b"]
    bridge = block_lists(bridge_cuts("c", ["a", "b"], ["d", "e"]), nodes)
    assert bridge["c"] == [] and bridge["a"] == ["d", "e"] and bridge["d"] == ["a", "b"]


# --- analysis ------------------------------------------------------------------------------

def op(f, key, value, outcome, invoke, complete, acks="majority", found=None, process=0, seq=None):
    recorded = "info" if acks == "1" and outcome == "ok" else outcome
    return OpRecord(process, f, key, value, acks if f != "get" else None, invoke, complete, outcome, recorded, found,
                    seq=seq)


def test_a_majority_write_missing_at_the_end_with_no_later_write_is_lost():
    ops = [op("put", "k", "v1", "ok", 0, 10), op("put", "k", "v2", "ok", 20, 30)]
    assert lost_writes(ops, {"k": "v2"}, set(), [])["lost_majority"] == []
    lost = lost_writes(ops, {"k": "v1"}, set(), [])["lost_majority"]
    assert [entry["value"] for entry in lost] == ["v2"]


def test_a_write_that_another_may_have_overwritten_is_not_called_lost():
    concurrent = [op("put", "k", "v1", "ok", 0, 50), op("put", "k", "v2", "ok", 20, 30)]
    assert lost_writes(concurrent, {"k": "v1"}, set(), [])["lost_majority"] == []
    crashed = [op("put", "k", "v1", "ok", 20, 30), op("put", "k", "v0", "info", 0, 5)]
    assert lost_writes(crashed, {"k": "v0"}, set(), [])["lost_majority"] == []
    failed = [op("put", "k", "v1", "ok", 20, 30), op("put", "k", "v0", "fail", 40, 45)]
    assert len(lost_writes(failed, {"k": "v0"}, set(), [])["lost_majority"]) == 1


def test_a_write_whose_seq_is_newer_than_the_keys_last_write_is_not_in_the_final_log():
    ops = [op("put", "k", "v1", "ok", 0, 50, seq=7), op("put", "k", "v2", "info", 20, 30),
           op("put", "j", "w1", "ok", 0, 10, acks="1", seq=10), op("put", "j", "w2", "ok", 5, 30, acks="1", seq=9)]
    final, seqs = {"k": "v2", "j": "w2"}, {"k": 5, "j": 9}
    result = lost_writes(ops, final, {"w2"}, [], seqs)
    assert [(e["value"], e["not_in_final_log"]) for e in result["lost_majority"]] == [("v1", True)]
    assert result["acks1"]["lost"] == 1 and result["acks1"]["unobserved"] == 1
    assert lost_writes(ops, final, {"w2"}, [], {"k": 9, "j": 9})["lost_majority"] == []  # v1 may be overwritten
    same_seq_other_value = lost_writes([op("put", "k", "v1", "ok", 0, 5, seq=5)], {"k": "v9"}, set(), [], {"k": 5})
    assert len(same_seq_other_value["lost_majority"]) == 1


def test_a_majority_write_in_a_rollback_file_is_lost_and_acks1_ones_are_only_counted():
    ops = [op("put", "k", "v1", "ok", 0, 10), op("put", "j", "w1", "ok", 0, 10, acks="1"),
           op("put", "j", "w2", "ok", 20, 30, acks="1")]
    rollback = [{"op": "put", "key": "k", "value": "v1"}, {"op": "put", "key": "j", "value": "w2"}]
    result = lost_writes(ops, {"k": "v1", "j": "w1"}, {"w1"}, rollback)
    assert [entry["value"] for entry in result["lost_majority"]] == ["v1"]
    assert result["acks1"] == {"acknowledged": 2, "unobserved": 1, "lost": 1, "rolled_back": 1,
                               "lost_examples": result["acks1"]["lost_examples"]}


def test_outcomes_are_counted_per_operation_class():
    counts = count_outcomes([op("put", "k", "v", "ok", 0, 1), op("put", "k", "w", "ok", 0, 1, acks="1"),
                             op("get", "k", "v", "fail", 0, 1)])
    assert counts["put acks=majority"]["ok"] == 1 and counts["put acks=1"]["ok"] == 1
    assert counts["get"]["fail"] == 1 and counts["total"] == {"ok": 2, "fail": 1, "info": 0}


def test_unavailability_is_the_longest_stretch_without_a_success():
    ms = 1_000_000  # ns
    ops = [op("get", "k", None, "ok", (t - 1) * ms, t * ms) for t in (1_000, 2_000, 9_000, 10_000)]
    ops.append(op("get", "k", None, "fail", 3_000 * ms, 8_000 * ms))
    windows = [FaultWindow(1, "kill", 2_500 * ms, 4_000 * ms), FaultWindow(2, "pause", 9_500 * ms, 9_800 * ms)]
    result = unavailability(ops, windows, 0, 11_000 * ms)
    assert (result["longest_gap_s"], result["longest_gap_at_s"]) == (7.0, 2.0)
    assert [e["longest_gap_s"] for e in result["events"]] == [6.5, 1.0]
    assert set(result["by_fault"]) == {"kill", "pause"}


# --- interrupts ------------------------------------------------------------------------------

def test_an_interrupt_inside_a_critical_section_waits_for_its_end():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with critical():
            deliver(KeyboardInterrupt)  # what the SIGINT handler does
            steps.append("node recorded")
            with critical():
                steps.append("nested")
            steps.append("still running")
    assert steps == ["node recorded", "nested", "still running"]
    with pytest.raises(KeyboardInterrupt):
        deliver(KeyboardInterrupt)  # outside: at once
    with critical():
        pass  # nothing left pending


# --- the checker, through verdict ----------------------------------------------------------

def test_a_delete_that_missed_a_committed_put_is_reported_not_linearizable():
    # The shape chaos found with --seed 31 (docs/chaos.md): put ok, then delete 404, then a
    # consistent read of the put's value; the 404 saw a write that never committed.
    events = [
        {"process": 1, "type": "invoke", "f": "put", "key": "k4", "value": "c1-485", "time": 0},
        {"process": 1, "type": "ok", "f": "put", "key": "k4", "value": "c1-485", "time": 10},
        {"process": 1, "type": "invoke", "f": "delete", "key": "k4", "value": None, "time": 20},
        {"process": 1, "type": "ok", "f": "delete", "key": "k4", "value": None, "found": False, "time": 30},
        {"process": 2, "type": "invoke", "f": "delete", "key": "k4", "value": None, "time": 15},
        {"process": 2, "type": "info", "f": "delete", "key": "k4", "value": None, "time": 40},
        {"process": 3, "type": "invoke", "f": "get", "key": "k4", "value": None, "time": 50},
        {"process": 3, "type": "ok", "f": "get", "key": "k4", "value": "c1-485", "time": 60},
    ]
    events.sort(key=lambda e: e["time"])
    verdict = check_linearizability(events, None, budget=10_000)
    assert verdict["verdict"] == "not linearizable" and verdict["key"] == "k4"
    assert check_linearizability(events[:-2], None, budget=10_000)["verdict"] == "linearizable"
