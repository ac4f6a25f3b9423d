"""Conditional and prefix deletes, binary values and transactions on a real 3-node cluster
(issue 14): decided at apply time on every replica, and every byte value round-trips."""

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from .procs import get, put, request, status, wait_until

ALL_BYTES = bytes(range(256))


@pytest.fixture(scope="module")
def nodes(shared_cluster):
    return shared_cluster


def _master_and_slave(nodes):
    master_url = status(nodes[0].url)["master"]["url"]
    slave = next(n.url for n in nodes if n.url != master_url)
    return master_url, slave


def _raw(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read()


def _converged(nodes):
    wait_until(lambda: len({status(n.url)["last_seq"] for n in nodes}) == 1, 5.0, what="equal last_seq")


def test_conditional_delete_is_409_with_the_current_seq_then_deletes_at_that_seq(nodes):
    master, slave = _master_and_slave(nodes)
    seq = put(slave, "cd/k", "v")[1]["seq"]
    code, body = request("DELETE", f"{slave}/kv/cd%2Fk?if_seq={seq + 1000}")
    assert code == 409 and body["seq"] == seq, body
    assert get(master, "cd/k")[0] == 200
    code, body = request("DELETE", f"{slave}/kv/cd%2Fk?if_seq={seq}")
    assert code == 200, body
    assert request("DELETE", f"{master}/kv/cd%2Fk?if_seq={seq}")[0] == 404
    assert request("DELETE", f"{master}/kv/cd%2Fk?if_seq=x")[0] == 400


def test_prefix_delete_is_one_write_with_its_count_on_every_node_and_watches_see_each_key(nodes):
    master, slave = _master_and_slave(nodes)
    for i in range(5):
        put(master, f"pd/{i}", str(i))
    put(master, "pdx", "kept")
    index = status(master)["last_seq"]  # the puts are applied there (the slave may still be behind)
    code, body = request("DELETE", f"{slave}/kv?prefix=pd/&acks=all")
    assert code == 200 and body["deleted"] == 5 and body["prefix"] == "pd/", body
    _converged(nodes)
    for node in nodes:
        listing = request("GET", f"{node.url}/kv?prefix=pd")[1]["items"]
        assert [item["key"] for item in listing] == ["pdx"]
    code, watched = request("GET", f"{slave}/kv?prefix=pd/&wait=1&after_seq={index}")
    assert code == 200 and [(c["key"], c["value"]) for c in watched["changes"]] == \
        [(f"pd/{i}", None) for i in range(5)]
    assert len({c["seq"] for c in watched["changes"]}) == 1  # one log entry
    assert request("DELETE", f"{master}/kv?prefix=nothing/")[1]["deleted"] == 0


@pytest.mark.parametrize("query, parameter", [("", "prefix"), ("?prefix=", "prefix"),
                                              ("?prefix=a&all=true", "all"), ("?all=maybe", "all"),
                                              ("?prefx=a", "prefx")])
def test_bad_prefix_deletes_are_400_and_delete_nothing(nodes, query, parameter):
    master, _ = _master_and_slave(nodes)
    put(master, "bad/keep", "v")
    code, body = request("DELETE", f"{master}/kv{query}")
    assert code == 400 and body["parameter"] == parameter, body
    assert get(master, "bad/keep")[0] == 200


def test_all_256_byte_values_round_trip_through_binary_put_and_get_on_master_and_slave(nodes):
    master, slave = _master_and_slave(nodes)
    for i, writer in enumerate((master, slave)):
        key = f"bin/{i}"
        code, _, body = _raw("PUT", f"{writer}/kv/{urllib.parse.quote(key, safe='')}", ALL_BYTES,
                             {"Content-Type": "application/octet-stream"})
        assert code == 200, body
        seq = json.loads(body)["seq"]
        _converged(nodes)
        for reader in (master, slave):
            code, ctype, raw = _raw("GET", f"{reader}/kv/{urllib.parse.quote(key, safe='')}", None,
                                    {"Accept": "application/octet-stream"})
            assert (code, ctype, raw) == (200, "application/octet-stream", ALL_BYTES)
            code, doc = get(reader, key)
            assert "value" not in doc and base64.b64decode(doc["value_base64"]) == ALL_BYTES
            assert doc["seq"] == seq
            code, ctype, raw = _raw("GET", f"{reader}/kv/{urllib.parse.quote(key, safe='')}?consistent=true",
                                    None, {"Accept": "application/octet-stream"})
            assert raw == ALL_BYTES
    items = request("GET", f"{slave}/kv?prefix=bin/")[1]["items"]
    assert [base64.b64decode(item["value_base64"]) for item in items] == [ALL_BYTES, ALL_BYTES]
    code, _, body = _raw("PUT", f"{master}/kv/bin%2Ftext", "plain ✓".encode(),
                         {"Content-Type": "application/octet-stream"})
    _converged(nodes)
    assert get(slave, "bin/text")[1]["value"] == "plain ✓"  # UTF-8 bytes answer as text
    code, body = request("PUT", f"{master}/kv/bin%2Fbad", b"\xff")
    assert code == 400 and body["parameter"] == "value"  # text/plain must be UTF-8


def _txn(url, doc, query=""):
    return request("POST", f"{url}/txn{query}", json.dumps(doc).encode())


def test_txn_compare_on_seq_runs_one_branch_on_every_node(nodes):
    master, slave = _master_and_slave(nodes)
    seq = put(master, "tx/n", "1")[1]["seq"]
    code, body = _txn(slave, {"compare": [{"key": "tx/n", "seq": seq}],
                              "success": [{"op": "put", "key": "tx/n", "value": "2"},
                                          {"op": "put", "key": "tx/b", "value_base64": "AP8="},
                                          {"op": "get", "key": "tx/b"}],
                              "failure": [{"op": "get", "key": "tx/n"}]}, "?acks=majority")
    assert code == 200 and body["succeeded"] is True, body
    assert body["results"][2]["value_base64"] == "AP8=" and body["results"][0]["seq"] == body["seq"]
    code, again = _txn(master, {"compare": [{"key": "tx/n", "seq": seq}],
                                "success": [{"op": "delete_prefix", "prefix": "tx/"}],
                                "failure": [{"op": "get", "key": "tx/n"}]})
    assert code == 200 and again["succeeded"] is False
    assert again["results"] == [{"op": "get", "key": "tx/n", "found": True, "seq": body["seq"], "value": "2"}]
    _converged(nodes)
    for node in nodes:
        assert get(node.url, "tx/n")[1]["value"] == "2"


@pytest.mark.parametrize("body, status_code, parameter", [
    (b"not json", 400, "body"),
    (b'{"compare": [], "extra": 1}', 400, "txn.extra"),
    (b'{"success": [{"op": "put", "key": "k", "value": 5}]}', 400, "success[0].value"),
    (b'{"success": [{"op": "get", "key": "k"}], "compare": [{"key": "k", "exists": "yes"}]}', 400,
     "compare[0].exists"),
])
def test_bad_transactions_are_4xx_naming_the_problem(nodes, body, status_code, parameter):
    master, _ = _master_and_slave(nodes)
    before = status(master)["last_seq"]
    code, answer = request("POST", f"{master}/txn", body)
    assert code == status_code and answer["parameter"] == parameter, answer
    assert status(master)["last_seq"] == before
