"""Client tokens and signed internal traffic on a live 3-node cluster (secret + auth file).

Requests without a token read and change nothing, a read token cannot write, a prefix
token cannot touch other keys, writes sent to a slave are forwarded with the client's
token, ``dkvs.Client(token=)`` works, and captured signed internal requests cannot be
replayed to the same or another node. SIGHUP re-reads the file; a bad file at start-up is
one line and exit 2.
"""

from __future__ import annotations

import json
import signal
import urllib.parse

import pytest

import dkvs
from dkvs.errors import Forbidden, Unauthorized
from dkvs.tools.local_cluster import http_call
from dkvs.transport.auth import Signer

from .procs import ProcessGroup, wait_until
from .test_startup_errors import refused_with

SECRET = "integration-secret-0123456789"
TOKENS = {"tokens": [
    {"token": "r-token", "role": "read"},
    {"token": "w-token", "role": "write"},
    {"token": "a-token", "role": "admin"},
    {"token": "app-token", "role": "write", "prefixes": ["app/"]},
]}


def bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def call(url: str, method: str, path: str, body: bytes | None = None, token: str | None = None,
         headers: dict | None = None) -> tuple[int, dict]:
    return http_call(url, method, path, body, timeout=10.0, headers={**bearer(token), **(headers or {})})


def kv(key: str) -> str:
    return "/kv/" + urllib.parse.quote(key, safe="")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    secret, auth = root / "secret", root / "auth.json"
    secret.write_text(SECRET + "\n")
    auth.write_text(json.dumps(TOKENS))
    secret.chmod(0o600)
    auth.chmod(0o600)
    return str(secret), str(auth)


@pytest.fixture(scope="module")
def cluster(files):
    secret, auth = files
    group = ProcessGroup()
    try:
        nodes = group.cluster(3, "--cluster-secret-file", secret, "--auth-file", auth)
        wait_until(lambda: all(call(n.url, "GET", "/status", token="r-token")[1].get("master") for n in nodes),
                   20, what="every node to know the master")
        yield nodes
    finally:
        group.close()


def master_and_slave(nodes):
    statuses = {n.url: call(n.url, "GET", "/status", token="r-token")[1] for n in nodes}
    master = next(n for n in nodes if statuses[n.url]["role"] == "master")
    slave = next(n for n in nodes if n is not master)
    return master, slave


def all_keys(url: str) -> list[str]:
    code, body = call(url, "GET", "/kv?limit=1000", token="a-token")
    assert code == 200, body
    return [item["key"] for item in body["items"]]


def test_without_a_token_nothing_is_read_or_changed(cluster):
    for node in cluster:
        assert call(node.url, "PUT", kv("anon"), b"x")[0] == 401
        assert call(node.url, "DELETE", kv("anon"))[0] == 401
        assert call(node.url, "GET", kv("anon"))[0] == 401
        assert call(node.url, "GET", "/kv")[0] == 401
        assert call(node.url, "GET", "/status")[0] == 401
        assert call(node.url, "GET", "/metrics")[0] == 401
        assert call(node.url, "GET", "/health")[0] == 200
    assert "anon" not in all_keys(cluster[0].url)


def test_a_slave_forwards_writes_with_the_clients_token(cluster):
    master, slave = master_and_slave(cluster)
    code, body = call(slave.url, "PUT", kv("fwd"), b"1", token="w-token")
    assert code == 200, body
    assert call(master.url, "GET", kv("fwd"), token="r-token")[1]["value"] == "1"
    assert call(slave.url, "PUT", kv("fwd"), b"2", token="r-token")[0] == 403
    assert call(slave.url, "PUT", kv("fwd"), b"2", token="bogus")[0] == 401
    assert call(master.url, "GET", kv("fwd"), token="r-token")[1]["value"] == "1"


def test_a_prefix_token_cannot_touch_other_keys(cluster):
    master, slave = master_and_slave(cluster)
    assert call(slave.url, "PUT", kv("app/one"), b"v", token="app-token")[0] == 200
    assert call(master.url, "PUT", kv("secret/one"), b"v", token="w-token")[0] == 200
    for node in (master, slave):
        assert call(node.url, "PUT", kv("secret/one"), b"mine", token="app-token")[0] == 403
        assert call(node.url, "GET", kv("secret/one"), token="app-token")[0] == 403
        code, body = call(node.url, "GET", "/kv", token="app-token")
        assert code == 200 and all(item["key"].startswith("app/") for item in body["items"]), body
    assert call(master.url, "GET", kv("secret/one"), token="r-token")[1]["value"] == "v"


def test_the_python_client_sends_its_token(cluster):
    urls = [n.url for n in cluster]
    with dkvs.Client(urls, token="w-token") as client:
        client.put("client/k", "v")
        assert client.get("client/k") == "v"
    with dkvs.Client(urls, token="r-token", retry_seconds=1) as client:
        assert client.get("client/k") == "v"
        with pytest.raises(Forbidden):
            client.put("client/k", "w")
    with dkvs.Client(urls, retry_seconds=1) as client:
        with pytest.raises(Unauthorized):
            client.get("client/k")


def test_unsigned_and_replayed_internal_requests_are_refused(cluster):
    target, other = cluster[0], cluster[1]
    assert call(target.url, "GET", "/internal/identity")[0] == 401
    assert call(target.url, "POST", "/internal/raft", b"{}")[0] == 401
    signer = Signer(SECRET, node_id=other.id)
    captured = signer.headers("GET", "/internal/identity", b"", to=target.id)
    code, body = call(target.url, "GET", "/internal/identity", headers=captured)
    assert code == 200 and body["id"] == target.id
    code, body = call(target.url, "GET", "/internal/identity", headers=captured)
    assert code == 401 and "replayed" in body["message"], body
    fresh = signer.headers("GET", "/internal/identity", b"", to=target.id)
    code, body = call(other.url, "GET", "/internal/identity", headers=fresh)
    assert code == 401 and "another node" in body["message"], body
    assert len(call(target.url, "GET", "/status", token="r-token")[1]["members"]) == 3


def test_an_outsider_cannot_change_the_membership(cluster):
    target = cluster[0]
    code, _ = call(target.url, "POST", "/internal/join", json.dumps({"id": "evil", "url": "http://127.0.0.1:1"}).encode())
    assert code == 401
    code, _ = call(target.url, "POST", "/internal/leave", json.dumps({"id": cluster[1].id}).encode())
    assert code == 401
    assert call(target.url, "POST", f"/internal/remove?id={cluster[1].id}&force=true", b"", token="w-token")[0] == 403
    assert call(target.url, "POST", f"/internal/remove?id={cluster[1].id}&force=true", b"")[0] == 401
    assert len(call(target.url, "GET", "/status", token="r-token")[1]["members"]) == 3


def test_sighup_reloads_the_auth_file_and_a_bad_one_keeps_the_old_tokens(tmp_path):
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"tokens": [{"token": "old", "role": "read"}]}))
    group = ProcessGroup()
    try:
        node = group.start("--auth-file", str(auth))
        assert call(node.url, "GET", "/status", token="old")[0] == 200
        auth.write_text(json.dumps({"tokens": [{"token": "fresh-token-123", "role": "read"}]}))
        node.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: call(node.url, "GET", "/status", token="fresh-token-123")[0] == 200, 60, what="the new token")
        assert call(node.url, "GET", "/status", token="old")[0] == 401
        auth.write_text("{broken")
        node.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: any("previous tokens stay in force" in line for line in node.stderr_lines), 10,
                   what="the reload error line")
        assert call(node.url, "GET", "/status", token="fresh-token-123")[0] == 200
        assert node.alive()
        assert not any("fresh-token-123" in line or "old" in line.split() for line in node.stderr_lines)
    finally:
        group.close()


@pytest.mark.parametrize("content,expected", [
    (None, "cannot read --auth-file"),
    ("{nope", "is not JSON"),
    ('{"tokens": [{"token": "t", "role": "superuser"}]}', "role must be one of read, write, admin"),
])
def test_a_bad_auth_file_at_start_up_is_one_line_and_exit_2(tmp_path, content, expected):
    path = tmp_path / "auth.json"
    if content is not None:
        path.write_text(content)
    line = refused_with("--port", "0", "--auth-file", str(path))
    assert expected in line, line
    line = refused_with("--port", "0", env={"DKVS_AUTH_FILE": str(path)})
    assert expected in line, line
