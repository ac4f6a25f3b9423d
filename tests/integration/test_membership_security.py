"""A membership outsiders cannot touch (issue 11), on live clusters.

Issue 11 took a cluster down for good with three requests: joins of unreachable URLs left
6 members with 3 alive (no majority ever again), and ``leave`` removed live members,
the master included. Now a join is accepted only when the joiner answers at its URL with
its id, a node may leave only for itself, and removing a live member needs ``force`` (and
an admin token when client auth is on).
"""

from __future__ import annotations

import json

import pytest

from dkvs.tools.local_cluster import http_call
from dkvs.tools.members import main as members_tool
from dkvs.transport.auth import Signer

from .procs import ProcessGroup, put, wait_until

SECRET = "membership-secret-0123456789"


def call(url, method, path, body=None, headers=None):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    return http_call(url, method, path, data, timeout=10.0, headers=headers)


def call_once_a_master_is_known(url, method, path, body=None, headers=None):
    """As a client does: a 503 ``no_master`` (an election, on a loaded machine) is retried."""
    answers = []

    def attempt():
        answers.append(call(url, method, path, body, headers))
        return not (answers[-1][0] == 503 and answers[-1][1].get("error") == "no_master")
    wait_until(attempt, what="a master to relay to")
    return answers[-1]


def members(url, headers=None) -> dict:
    code, body = call(url, "GET", "/status", headers=headers)
    assert code == 200, body
    return {m["id"]: m for m in body["members"]}


def master_of(nodes, headers=None):
    def find():
        for node in nodes:
            code, body = call(node.url, "GET", "/status", headers=headers)
            if code == 200 and body.get("role") == "master":
                return node
        return None
    return wait_until(find, 60, what="a master")


@pytest.fixture(scope="module")
def open_cluster():
    """No secret, no auth file, on loopback: the defaults."""
    group = ProcessGroup()
    try:
        yield group.cluster(3)
    finally:
        group.close()


def test_three_joins_of_unreachable_urls_add_nothing_and_writes_keep_working(open_cluster):
    nodes = open_cluster
    before = members(nodes[0].url)
    for number, node in enumerate(nodes):
        code, body = call(node.url, "POST", "/internal/join", {"id": f"ghost{number}", "url": f"http://127.0.0.1:{number + 1}"})
        assert code == 403, body
        assert "could not be reached" in body["message"], body
    assert members(nodes[0].url).keys() == before.keys()
    master = master_of(nodes)
    code, body = put(master.url, "after-ghosts", "ok", acks="majority")
    assert code == 200, body


def test_a_join_answered_by_another_node_is_refused(open_cluster):
    nodes = open_cluster
    code, body = call(nodes[0].url, "POST", "/internal/join", {"id": "impostor", "url": nodes[1].url})
    assert code == 403 and "answers as" in body["message"], body
    assert "impostor" not in members(nodes[0].url)


def test_leave_for_another_live_node_is_refused(open_cluster):
    nodes = open_cluster
    master = master_of(nodes)
    for victim in nodes:  # every member, the master included, sent to every node
        for entry in nodes:
            code, body = call(entry.url, "POST", "/internal/leave", {"id": victim.id})
            assert code == 403, body
    assert len(members(master.url)) == 3


def test_removing_a_live_member_needs_force(open_cluster):
    nodes = open_cluster
    master = master_of(nodes)
    slave = next(n for n in nodes if n is not master)
    code, body = call(master.url, "POST", f"/internal/remove?id={slave.id}", b"")
    assert code == 409 and "force=true" in body["message"], body
    code, body = call(slave.url, "POST", f"/internal/remove?id={master.id}", b"")  # relayed to the master
    assert code == 409, body
    assert len(members(master.url)) == 3


def test_a_clean_shutdown_still_leaves_and_a_dead_member_is_removed_by_the_operator():
    group = ProcessGroup()
    try:
        nodes = group.cluster(4)
        master = master_of(nodes)
        others = [n for n in nodes if n is not master]
        assert others[0].terminate() == 0  # SIGTERM: the node asks to leave, the master confirms
        wait_until(lambda: others[0].id not in members(master.url), 60, what="the leave")
        others[1].kill()
        wait_until(lambda: members(master.url)[others[1].id]["alive"] is False, 60, what="the death")
        code, body = call(others[2].url, "POST", f"/internal/remove?id={others[1].id}", b"")
        assert code == 200, body
        assert sorted(members(master.url)) == sorted([master.id, others[2].id])
        assert put(master.url, "k", "v", acks="majority")[0] == 200
    finally:
        group.close()


def test_with_a_secret_a_node_can_only_leave_for_itself_and_signatures_bind_the_query(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    group = ProcessGroup()
    try:
        nodes = group.cluster(3, "--cluster-secret-file", str(secret))
        master = master_of(nodes)
        a, b = [n for n in nodes if n is not master]
        signer = Signer(SECRET, node_id=a.id)
        body = json.dumps({"id": b.id}).encode()
        code, answer = call(master.url, "POST", "/internal/leave", body,
                            headers=signer.headers("POST", "/internal/leave", body, to=master.id))
        assert code == 403 and "only leave for itself" in answer["message"], answer
        # A signed remove with its ?id= swapped is refused before anything is done.
        headers = signer.headers("POST", f"/internal/remove?id={a.id}", b"", to=master.id)
        code, answer = call(master.url, "POST", f"/internal/remove?id={b.id}&force=true", b"", headers=headers)
        assert code == 401, answer
        assert len(members(master.url)) == 3
        # Joins of unreachable URLs are refused with a secret too.
        join = json.dumps({"id": "ghost", "url": "http://127.0.0.1:1"}).encode()
        code, answer = call(master.url, "POST", "/internal/join", join,
                            headers=signer.headers("POST", "/internal/join", join))
        assert code == 403, answer
        assert len(members(master.url)) == 3
        # The repair command: a dead member is removed by an operator holding the secret.
        b.kill()
        wait_until(lambda: members(master.url)[b.id]["alive"] is False, 60, what="the death")
        assert members_tool(["remove", a.url, b.id]) == 1  # unsigned: refused
        assert members_tool(["remove", a.url, a.id, "--cluster-secret-file", str(secret)]) == 1  # alive
        assert members_tool(["remove", a.url, b.id, "--cluster-secret-file", str(secret)]) == 0
        assert sorted(members(master.url)) == sorted([master.id, a.id])
    finally:
        group.close()


def test_with_auth_removing_a_member_needs_an_admin_token(tmp_path, monkeypatch):
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"tokens": [{"token": "admin-t", "role": "admin"},
                                           {"token": "write-t", "role": "write"}]}))
    admin, writer = {"Authorization": "Bearer admin-t"}, {"Authorization": "Bearer write-t"}
    group = ProcessGroup()
    try:
        nodes = group.cluster(3, "--auth-file", str(auth))
        master = master_of(nodes, admin)
        slave = next(n for n in nodes if n is not master)
        path = f"/internal/remove?id={slave.id}&force=true"
        assert call(master.url, "POST", path, b"")[0] == 401
        assert call(master.url, "POST", path, b"", headers=writer)[0] == 403
        assert len(members(master.url, admin)) == 3
        other = next(n for n in nodes if n is not master and n is not slave)
        code, body = call_once_a_master_is_known(other.url, "POST", path, b"", headers=admin)  # relayed
        assert code == 200, body
        assert slave.id not in members(master.url, admin)
        assert members_tool(["remove", master.url, other.id, "--force"]) == 1  # no token
        monkeypatch.setenv("DKVS_TOKEN", "admin-t")
        assert members_tool(["remove", master.url, other.id]) == 1  # alive, no --force
        assert members_tool(["remove", master.url, other.id, "--force"]) == 0
        assert list(members(master.url, admin)) == [master.id]
    finally:
        group.close()
