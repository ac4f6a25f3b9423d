"""Long-poll watches, read-your-writes through a slave, and /metrics (issue #6)."""

import re
import threading
import urllib.parse
import urllib.request

import pytest

from .procs import LIVENESS_SECONDS, get, put, request


@pytest.fixture
def nodes(shared_cluster):
    return shared_cluster


def test_a_write_through_a_slave_is_readable_on_that_slave_at_once(nodes):
    slave = next(n for n in nodes if request("GET", f"{n.url}/status")[1]["role"] == "slave")
    for i in range(50):
        assert put(slave.url, f"ryw{i}", f"v{i}")[0] == 200
        assert get(slave.url, f"ryw{i}") [1]["value"] == f"v{i}"


def test_watch_on_a_key_returns_when_it_changes(nodes):
    # One long poll with the longest wait allowed: a poll whose wait ran out answers
    # "changed": false, so "changed": true with the value proves the write ended it,
    # whether the poll was parked before the write arrived or came just after it.
    master, watcher = nodes[0].url, nodes[1].url
    index = request("GET", f"{watcher}/kv/w1?wait=0.1")[1]["index"]
    answers = []
    thread = threading.Thread(target=lambda: answers.append(
        request("GET", f"{watcher}/kv/w1?wait=60&after_seq={index}", timeout=60 + LIVENESS_SECONDS)))
    thread.start()
    assert put(master, "w1", "changed")[0] == 200
    thread.join(60 + LIVENESS_SECONDS)
    assert answers, "the watch never answered"
    code, body = answers[0]
    assert code == 200 and body["changed"] is True and body["value"] == "changed"
    assert body["index"] >= body["seq"] > index


def test_watch_times_out_with_changed_false_and_sees_deletes(nodes):
    base = nodes[0].url
    put(base, "w2", "x")
    index = request("GET", f"{base}/kv/w2?wait=0.1")[1]["index"]
    code, body = request("GET", f"{base}/kv/w2?wait=0.2&after_seq={index}")
    assert code == 200 and body["changed"] is False and body["value"] == "x"
    request("DELETE", f"{base}/kv/w2")
    code, body = request("GET", f"{base}/kv/w2?wait=60&after_seq={index}", timeout=60 + LIVENESS_SECONDS)
    assert body["changed"] is True and body["value"] is None and body["seq"] > index


def test_watch_on_a_prefix_lists_changes_in_order_and_pages_with_index(nodes):
    # The changes are there before the polls: a poll with changes to show answers at once,
    # the long wait is only a liveness limit.
    base = nodes[0].url
    index = request("GET", f"{base}/kv?prefix=wp/&wait=0.1")[1]["index"]
    for i in range(5):
        put(base, f"wp/{i}", str(i))
    put(base, "elsewhere", "x")
    code, body = request("GET", f"{base}/kv?prefix=wp/&wait=60&after_seq={index}&limit=3",
                         timeout=60 + LIVENESS_SECONDS)
    assert code == 200 and body["reset"] is False
    assert [c["key"] for c in body["changes"]] == ["wp/0", "wp/1", "wp/2"]
    code, body = request("GET", f"{base}/kv?prefix=wp/&wait=60&after_seq={body['index']}",
                         timeout=60 + LIVENESS_SECONDS)
    assert [c["key"] for c in body["changes"]] == ["wp/3", "wp/4"]


@pytest.mark.parametrize("query", ["wait=0", "wait=61", "wait=x", "wait=1&after_seq=-1", "wait=1&after_seq=a"])
def test_bad_watch_parameters_are_400(nodes, query):
    assert request("GET", f"{nodes[0].url}/kv/k?{query}")[0] == 400


_SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? -?[0-9.e+Inf]+$')


def test_metrics_is_prometheus_text_with_node_and_request_figures(nodes):
    master = next(n for n in nodes if request("GET", f"{n.url}/status")[1]["role"] == "master")
    put(master.url, "m", "1")
    with urllib.request.urlopen(f"{master.url}/metrics") as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            _, _, name, kind = line.split()
            types[name] = kind
        elif line and not line.startswith("#"):
            assert _SAMPLE.match(line), line
    for name in ("dkvs_http_requests_total", "dkvs_http_request_duration_seconds", "dkvs_role", "dkvs_epoch",
                 "dkvs_last_seq", "dkvs_commit_seq", "dkvs_replication_lag_entries", "dkvs_elections_won_total",
                 "dkvs_fsyncs_total"):
        assert name in types, name
    assert 'dkvs_role{role="master"} 1' in text
    assert re.search(r'dkvs_http_requests_total\{route="/kv/\{key\}",method="PUT",status="200"\} [1-9]', text)
    assert len(re.findall(r"^dkvs_replication_lag_entries\{peer=", text, re.M)) == 2
