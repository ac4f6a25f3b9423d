"""Start-up mistakes, as an operator makes them: one line on stderr, exit status 2, no traceback.

Issue 12 listed what used to happen: tracebacks for ``--port 99999``, ``DKVS_PORT=abc`` and
``--data-dir /etc/hostname``, a lock message at the bottom of a 20-line traceback, an
"Address already in use" that did not say which, ``--join`` waiting 30 s in silence,
``DKVS_DEFAULT_ACKS=2`` killing the node at its first write. Each case here runs
``python -m dkvs`` as a subprocess (bounded by a timeout; nodes on 127.0.0.1, port 0) and
checks the one line. Issue 11's secure defaults are checked on live nodes too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dkvs.tools.local_cluster import http_call

from .procs import status, wait_until

ROOT = str(Path(__file__).resolve().parents[2])
BOUND_SECONDS = 60  # a hang fails the test instead of blocking the suite


def run_dkvs(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DKVS_")}
    full_env.update(env or {}, PYTHONPATH=ROOT, DKVS_EXIT_WITH_PARENT="1")
    return subprocess.run([sys.executable, "-m", "dkvs", "--log-level", "warning", *args],
                          capture_output=True, text=True, env=full_env, timeout=BOUND_SECONDS)


def refused_with(*args: str, env: dict | None = None) -> str:
    """Run a node that must refuse to start; return its one error line."""
    done = run_dkvs(*args, env=env)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == "", done.stderr
    lines = done.stderr.splitlines()
    errors = [line for line in lines if line.startswith("dkvs: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], done.stderr
    return errors[0]


# The values of issue 12's list are walked in test_operator_mistakes.py; these are the rest.
@pytest.mark.parametrize("args, env, expected", [
    (["--port", "0", "--election-timeout", "0"], {}, "--election-timeout '0'"),
    (["--port", "0", "--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
])
def test_bad_values_are_one_line(args, env, expected):
    assert expected in refused_with(*args, env=env)


def test_a_data_dir_that_is_a_file_or_under_one(tmp_path):
    afile = tmp_path / "hostname"
    afile.write_text("x")
    assert "is a file, not a directory" in refused_with("--port", "0", "--data-dir", str(afile))
    assert "cannot create --data-dir" in refused_with("--port", "0", "--data-dir", str(afile / "sub"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_a_data_dir_that_is_not_writable(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert "is not writable" in refused_with("--port", "0", "--data-dir", str(locked))
    finally:
        locked.chmod(0o700)


def test_join_to_a_node_that_never_answers_is_bounded_too():
    with socket.socket() as silent:  # accepts (kernel backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        line = refused_with("--port", "0", "--join", f"http://127.0.0.1:{port}", "--join-timeout", "0.5")
    assert f"http://127.0.0.1:{port} (no answer in time)" in line


def test_join_takes_several_urls_and_urls_without_scheme(procs):
    first = procs.start()
    live = first.url.removeprefix("http://")
    with socket.socket() as probe:  # bound but not listening, held: connections are refused
        probe.bind(("127.0.0.1", 0))
        second = procs.start("--join", f"127.0.0.1:{probe.getsockname()[1]},{live}")
    assert second.url is not None
    wait_until(lambda: len(status(first.url)["members"]) == 2, 60, what="the second member")


def test_join_tries_every_address_of_a_host_name(procs):
    # "localhost" often resolves to ::1 and 127.0.0.1; the node listens on 127.0.0.1 only.
    first = procs.start()
    second = procs.start("--join", f"localhost:{first.port}")
    assert second.url is not None
    wait_until(lambda: len(status(first.url)["members"]) == 2, 60, what="the second member")


def test_a_refused_join_is_one_line(procs):
    first = procs.start("--cluster-secret", "right")
    line = refused_with("--port", "0", "--join", first.url, "--cluster-secret", "wrong")
    assert f"the cluster at {first.url} refused this node: 401" in line


def test_beyond_loopback_without_a_secret_is_refused_before_anything_is_opened(tmp_path):
    data = tmp_path / "data"
    line = refused_with("--host", "0.0.0.0", "--port", "0", "--data-dir", str(data))
    assert "refusing to listen on '0.0.0.0' (beyond loopback) without a cluster secret" in line
    assert not data.exists()
    assert "without a cluster secret" in refused_with(env={"DKVS_HOST": "::", "DKVS_PORT": "0"})


def test_secret_file_problems_are_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "--cluster-secret-file" in refused_with("--port", "0", "--cluster-secret-file", str(empty))
    assert "cannot read" in refused_with("--port", "0", env={"DKVS_CLUSTER_SECRET_FILE": str(tmp_path / "no")})


def test_a_secret_file_signs_the_cluster_and_stays_out_of_ps(procs, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("file-secret-42\n")
    secret.chmod(0o600)
    nodes = procs.cluster(2, "--cluster-secret-file", str(secret))
    assert http_call(nodes[1].url, "PUT", "/kv/k?acks=all", b"v")[0] == 200
    assert http_call(nodes[0].url, "POST", "/internal/raft", b"{}")[0] == 401
    for node in nodes:
        assert b"file-secret-42" not in Path(f"/proc/{node.proc.pid}/cmdline").read_bytes()


def test_cors_is_off_by_default_and_opt_in(procs):
    plain, member = procs.cluster(2)
    preflight = {"Origin": "https://evil.test", "Access-Control-Request-Method": "PUT"}
    assert _allow_origin(plain.url, preflight) is None
    # The dashboard served by one member polls the others: the cluster's own origins pass.
    assert _allow_origin(plain.url, dict(preflight, Origin=member.url)) == member.url
    opted = procs.start("--cors-origins", "https://ops.test")
    assert _allow_origin(opted.url, dict(preflight, Origin="https://ops.test")) == "https://ops.test"
    assert _allow_origin(opted.url, preflight) is None


def _allow_origin(url: str, headers: dict) -> str | None:
    import http.client
    import urllib.parse
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("OPTIONS", "/kv/k", headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 204
        return response.getheader("Access-Control-Allow-Origin")
    finally:
        conn.close()


def test_nkvd_routes_answer_404_unless_enabled(procs):
    plain = procs.start()
    assert http_call(plain.url, "GET", "/nkvd/set?k=a&v=1")[0] == 404
    assert http_call(plain.url, "GET", "/kv/nkvd:a")[0] == 404  # and nothing was written
    enabled = procs.start("--nkvd")
    assert http_call(enabled.url, "GET", "/nkvd/set?k=a&v=1") == (200, {"success": True})


def test_strict_parameters_on_a_live_node(procs):
    node = procs.start()
    code, body = http_call(node.url, "PUT", "/kv/k?ack=majority", b"v")
    assert code == 400 and body["message"] == "unknown query parameter 'ack'; accepted: acks, timeout, if_seq, lease, ttl"
    code, body = http_call(node.url, "GET", "/kv/k?consistant=true")
    assert code == 400 and body["parameter"] == "consistant"
    assert http_call(node.url, "GET", "/kv/k")[0] == 404
