"""Leadership transfer with real processes: the admin route (through a slave too) and
SIGTERM on a master, which hands over before it exits. Timing claims live in
scripts/transfer_bench.py; here only outcomes are checked."""

from __future__ import annotations

import json
import threading

from dkvs import Client
from dkvs.errors import DkvsError
from dkvs.tools.leader import main as leader_tool
from dkvs.tools.local_cluster import http_call

from .procs import put, request, status, wait_until


def _master_of(nodes):
    for n in nodes:
        if n.alive():
            s = status(n.url)
            if s["role"] == "master":
                return n, s
    return None, None


def test_transfer_route_through_a_slave_hands_over_to_the_named_node(procs):
    nodes = procs.cluster(3)
    old, before = wait_until(lambda: _master_of(nodes)[0] and _master_of(nodes), 10, what="a master")
    slaves = [n for n in nodes if n is not old]
    code, answer = request("POST", f"{slaves[0].url}/internal/transfer?to={slaves[1].id}", b"")
    assert code == 200, answer
    assert answer["from"] == old.id and answer["to"] == slaves[1].id
    assert answer["master"]["id"] == slaves[1].id
    after = wait_until(lambda: (s := status(slaves[1].url))["role"] == "master" and s, 10, what="new master")
    assert after["epoch"] == before["epoch"] + 1
    code, answer = put(old.url, "k", "v", acks="majority")  # the old master forwards
    assert code == 200, answer


def test_transfer_route_bad_input_is_a_json_4xx(procs):
    nodes = procs.cluster(3)
    master = wait_until(lambda: _master_of(nodes)[0], 10, what="a master")
    code, answer = request("POST", f"{master.url}/internal/transfer?to=nobody", b"")
    assert code == 409 and answer["error"] == "conflict", answer
    code, answer = request("POST", f"{master.url}/internal/transfer?timeout=soon", b"")
    assert code == 400 and answer["error"] == "bad_request", answer
    assert status(master.url)["role"] == "master"  # nothing happened


def test_sigterm_on_the_master_hands_over_and_exits_0_without_losing_writes(procs):
    # A dkvs.Client writes acks=1 throughout (it retries a 503, which a write held during
    # the handover may get). The old master exits 0, no write fails, and every
    # acknowledged write — acks=1 included — is on the new master: nothing rolled back.
    nodes = procs.cluster(3)
    old = wait_until(lambda: _master_of(nodes)[0], 10, what="a master")
    others = [n for n in nodes if n is not old]
    acked: dict[str, str] = {}
    failed: list = []
    stop = threading.Event()

    def writer():
        with Client([n.url for n in nodes], acks=1, retry_seconds=10) as client:
            i = 0
            while not stop.is_set():
                try:
                    client.put(f"w{i}", str(i))
                    acked[f"w{i}"] = str(i)
                except DkvsError as exc:
                    failed.append(exc)
                i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(acked) >= 20, 10, what="writes before the handover")
        assert old.terminate(timeout=20) == 0
        count = len(acked)
        wait_until(lambda: len(acked) >= count + 20, 15, what="writes after the handover")
    finally:
        stop.set()
        thread.join(15)
    new, _ = wait_until(lambda: _master_of(others)[0] and _master_of(others), 10, what="the new master")
    assert not failed, failed[:3]
    for key, value in acked.items():
        code, answer = request("GET", f"{new.url}/kv/{key}")
        assert code == 200 and answer["value"] == value, (key, code, answer)


def test_leader_tool_needs_the_secret_or_an_admin_token(procs, tmp_path, monkeypatch, capsys):
    secret = tmp_path / "secret"
    secret.write_text("transfer-secret-0123456789\n")
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"tokens": [{"token": "admin-t", "role": "admin"},
                                           {"token": "write-t", "role": "write"}]}))
    nodes = procs.cluster(3, "--cluster-secret-file", str(secret), "--auth-file", str(auth))
    admin = {"Authorization": "Bearer admin-t"}

    def master():
        for n in nodes:
            code, body = http_call(n.url, "GET", "/status", headers=admin)
            if code == 200 and body["role"] == "master":
                return n
        return None
    old = wait_until(master, 10, what="a master")
    slave = next(n for n in nodes if n is not old)
    monkeypatch.setenv("DKVS_TOKEN", "write-t")
    assert leader_tool(["transfer", slave.url]) == 1  # a write token is not enough
    assert "403" in capsys.readouterr().err
    monkeypatch.setenv("DKVS_TOKEN", "admin-t")
    assert leader_tool(["transfer", slave.url, "--to", slave.id]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["from"] == old.id and answer["to"] == slave.id
    assert wait_until(master, 10, what="the new master") is slave
    assert leader_tool(["transfer", slave.url, "--timeout", "nan"]) == 2
