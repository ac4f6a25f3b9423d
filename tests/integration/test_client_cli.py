"""The command-line client against a real node on port 0 (issue 14): `dkvs put k v && dkvs
get k` prints v; exit 1 for a missing key or a failed condition, 2 with one line for usage
and connection errors."""

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def node_url(shared_cluster):
    return ",".join(n.url for n in shared_cluster)


def dkvs(*args, stdin: bytes = b"", env_url: str | None = None):
    env = {**os.environ}
    env.pop("DKVS_URL", None)
    if env_url is not None:
        env["DKVS_URL"] = env_url
    done = subprocess.run([sys.executable, "-m", "dkvs", *args], input=stdin, capture_output=True,
                          timeout=30, env=env)
    return done.returncode, done.stdout, done.stderr


def test_put_then_get_prints_the_value_and_a_missing_key_exits_1(node_url):
    code, out, err = dkvs("put", "cli/k", "v", "--url", node_url)
    assert code == 0, err
    code, out, err = dkvs("get", "cli/k", env_url=node_url)
    assert (code, out) == (0, b"v\n"), err
    code, out, err = dkvs("get", "cli/missing", "--url", node_url)
    assert code == 1 and out == b"" and len(err.splitlines()) == 1


def test_values_from_stdin_binary_and_json_output(node_url):
    data = bytes(range(256))
    assert dkvs("put", "cli/bin", "--url", node_url, stdin=data)[0] == 0
    code, out, _ = dkvs("get", "cli/bin", "--url", node_url)
    assert (code, out) == (0, data)
    code, out, _ = dkvs("get", "cli/bin", "--json", "--url", node_url)
    assert code == 0 and "value_base64" in json.loads(out)
    code, out, _ = dkvs("put", "cli/j", "--json", "--url", node_url, stdin="naïve\n".encode())
    seq = json.loads(out)["seq"]
    assert dkvs("get", "cli/j", "--url", node_url)[1] == "naïve\n\n".encode()
    code, _, err = dkvs("del", "cli/j", "--if-seq", str(seq + 100), "--url", node_url)
    assert code == 1 and len(err.splitlines()) == 1
    assert dkvs("del", "cli/j", "--if-seq", str(seq), "--url", node_url)[0] == 0


def test_ls_del_prefix_txn_and_status(node_url):
    for i in range(3):
        dkvs("put", f"cli/ls/{i}", str(i), "--url", node_url)
    code, out, _ = dkvs("ls", "cli/ls/", "--url", node_url)
    assert out.decode().splitlines() == [f"cli/ls/{i}\t{i}" for i in range(3)]
    txn = {"compare": [{"key": "cli/ls/0", "value": "0"}], "success": [{"op": "put", "key": "cli/ls/0",
                                                                          "value": "zero"}]}
    code, out, _ = dkvs("txn", json.dumps(txn), "--json", "--url", node_url)
    assert code == 0 and json.loads(out)["succeeded"] is True
    assert dkvs("txn", "--url", node_url, stdin=json.dumps(txn).encode())[0] == 1  # compare fails now
    code, out, _ = dkvs("del", "--prefix", "cli/ls/", "--json", "--url", node_url)
    assert code == 0 and json.loads(out) == {"deleted": 3}
    code, out, _ = dkvs("status", "--url", node_url)
    assert code == 0 and "master=" in out.decode()


@pytest.mark.parametrize("args", [("get",), ("put",), ("del", "k", "--prefix", "p"), ("del", "--prefix", ""),
                                  ("get", "k", "--bogus"), ("txn", "not json"), ("lease",), ("lease", "grant", "x"),
                                  ("watch",)])
def test_usage_errors_exit_2_with_one_line(node_url, args):
    code, out, err = dkvs(*args, "--url", node_url)
    assert code == 2 and len(err.strip().splitlines()) == 1 and b"Traceback" not in err, err


def test_an_unreachable_node_exits_2_with_one_line():
    code, _, err = dkvs("get", "k", "--url", "http://127.0.0.1:9", "--timeout", "0.5")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_starting_a_node_still_takes_flags():
    code, _, err = dkvs("--port", "nope")
    assert code == 2 and b"--port" in err


def test_watch_prints_each_change_and_stops_after_count(node_url):
    start = json.loads(dkvs("put", "cli/w/0", "x", "--json", "--url", node_url)[1])["seq"]
    watcher = subprocess.Popen([sys.executable, "-m", "dkvs", "watch", "--prefix", "cli/w/", "--after-seq",
                                str(start), "--count", "3", "--url", node_url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        dkvs("put", "cli/w/1", "a", "--url", node_url)
        dkvs("put", "cli/w/2", "b", "--url", node_url)
        dkvs("del", "cli/w/1", "--url", node_url)
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    lines = out.decode().splitlines()
    assert watcher.returncode == 0, err
    assert [line.split()[:2] for line in lines] == [["PUT", "cli/w/1"], ["PUT", "cli/w/2"], ["DELETE", "cli/w/1"]]


def test_lease_commands_and_put_with_ttl(node_url):
    code, out, err = dkvs("lease", "grant", "30", "--json", "--url", node_url)
    assert code == 0, err
    lease = json.loads(out)["id"]
    assert dkvs("put", "cli/l", "v", "--lease", str(lease), "--url", node_url)[0] == 0
    code, out, _ = dkvs("lease", "info", str(lease), "--json", "--url", node_url)
    assert code == 0 and json.loads(out)["keys"] == ["cli/l"]
    assert dkvs("lease", "keepalive", str(lease), "--url", node_url)[0] == 0
    code, out, _ = dkvs("lease", "revoke", str(lease), "--url", node_url)
    assert code == 0 and "deleted=1" in out.decode()
    assert dkvs("get", "cli/l", "--url", node_url)[0] == 1
    assert dkvs("lease", "keepalive", str(lease), "--url", node_url)[0] == 1
    assert dkvs("put", "cli/t", "v", "--ttl", "30", "--url", node_url)[0] == 0
