"""Leases and TTL on a real 3-node cluster (issue 14): expiry is the master's decision,
written to the log as a revoke, so a key put with ttl=1 disappears from every node; a
lease kept alive keeps its keys; a revoke deletes them at once; watches see expiries."""

import time

import pytest

from .procs import get, put, request, status, wait_until


@pytest.fixture(scope="module")
def nodes(shared_cluster):
    return shared_cluster


def _master_and_slave(nodes):
    # On a loaded machine the shared cluster (0.5 s election timeout) may be between masters.
    master = wait_until(lambda: status(nodes[0].url)["master"], 60, what="a master")
    return master["url"], next(n.url for n in nodes if n.url != master["url"])


def _through_elections(call):
    """``call()`` until it is not a 503: what a client does while an election runs (a new
    master restarts every lease with its full ttl, so a late keepalive loses nothing)."""
    answers = []
    wait_until(lambda: answers.append(call()) or answers[-1][0] != 503, 60, what="an answer that is not 503")
    return answers[-1]


def test_a_key_put_with_ttl_disappears_from_every_node_and_watches_see_it(nodes):
    master, slave = _master_and_slave(nodes)
    index = status(slave)["last_seq"]
    written = time.monotonic()  # the lease starts after this (when the master applies its grant)
    code, body = put(slave, "ttl/k", "v", ttl="1")
    assert code == 200 and body["lease"] > 0 and body["ttl"] == 1, body
    for node in nodes:
        wait_until(lambda: get(node.url, "ttl/k")[0] == 200, 5.0, what="the key on every node")
    for node in nodes:
        wait_until(lambda: get(node.url, "ttl/k")[0] == 404, 10.0, what="the key expired on every node")
    assert time.monotonic() - written >= 1.0  # never before its ttl
    code, watched = request("GET", f"{slave}/kv?prefix=ttl/&wait=1&after_seq={index}")
    assert [(c["key"], c["value"]) for c in watched["changes"]][-1] == ("ttl/k", None)
    assert request("GET", f"{master}/lease/{body['lease']}")[0] == 404


def test_a_lease_kept_alive_keeps_its_keys_and_revoke_deletes_them_at_once(nodes):
    master, slave = _master_and_slave(nodes)
    code, lease = request("POST", f"{slave}/lease?ttl=1", b"")
    assert code == 200 and lease["ttl"] == 1, lease
    for i in range(3):
        assert put(slave, f"kept/{i}", str(i), lease=str(lease["id"]))[0] == 200
    started = time.monotonic()
    while time.monotonic() - started < 2.5:  # 2.5 ttls, renewed every 0.25 s
        code, renewed = _through_elections(lambda: request("POST", f"{slave}/lease/{lease['id']}/keepalive", b""))
        assert code == 200 and renewed["ttl"] == 1, renewed
        time.sleep(0.25)
    assert all(get(n.url, "kept/0")[0] == 200 for n in nodes)
    code, info = request("GET", f"{slave}/lease/{lease['id']}")
    assert code == 200 and info["keys"] == ["kept/0", "kept/1", "kept/2"] and 0 < info["remaining"] <= 1, info
    put(master, "kept/1", "no lease now")  # a plain write detaches the key from the lease
    code, revoked = request("DELETE", f"{slave}/lease/{lease['id']}?acks=all")
    assert code == 200 and revoked["deleted"] == 2, revoked
    for node in nodes:
        assert get(node.url, "kept/0")[0] == 404 and get(node.url, "kept/1")[0] == 200
    assert request("DELETE", f"{master}/lease/{lease['id']}")[0] == 404
    assert request("POST", f"{master}/lease/{lease['id']}/keepalive", b"")[0] == 404


@pytest.mark.parametrize("method, target, status_code", [
    ("PUT", "/kv/x?lease=12345", 404), ("POST", "/lease", 400), ("POST", "/lease?ttl=0", 400),
    ("POST", "/lease?ttl=99999999", 400), ("GET", "/lease/abc", 400), ("POST", "/lease/5", 404),
    ("POST", "/lease/5/renew", 404), ("PUT", "/kv/x?lease=1&ttl=1", 400)])
def test_bad_lease_requests_are_4xx_and_write_nothing(nodes, method, target, status_code):
    master, _ = _master_and_slave(nodes)
    code, body = request(method, master + target, b"v" if method in ("PUT", "POST") else None)
    assert code == status_code and "message" in body, body
    if method == "PUT":
        assert get(master, "x")[0] == 404
