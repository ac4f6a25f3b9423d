"""Batched forwarding on a real 3-node cluster (issue 15, deliverable 5).

A slave gathers the writes its clients send while a batch is in flight into one signed
``POST /internal/forward``; the master proposes them together and answers each write's
own result. These tests prove, on 127.0.0.1 with real processes: concurrent forwarded
writes are all acknowledged and readable from the slave right after their answer
(read-your-writes), and the batches really happened; conditional writes fail inside a
batch exactly as alone; a batch sent to a node that is not the master gets each write
answered as a forwarded write is answered there; with a cluster secret an unsigned batch
is refused and applies nothing.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
import urllib.request

from dkvs.api.forward_batch import BatchWrite, encode_writes

from .procs import LIVENESS_SECONDS, REQUEST_TIMEOUT_SECONDS, get, request, status, wait_until

CLIENTS = 30
WRITES_PER_CLIENT = 4


def _roles(nodes):
    slave = wait_until(lambda: next((n for n in nodes if status(n.url)["role"] == "slave"
                                     and status(n.url).get("master")), None), what="a slave that knows its master")
    master = next(n for n in nodes if status(n.url)["role"] == "master")
    return master, slave


def _batches_answered(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics", timeout=REQUEST_TIMEOUT_SECONDS) as answer:
        text = answer.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("dkvs_http_requests_total") and 'route="/internal/forward"' in line
               and 'status="200"' in line)


def _concurrently(n: int, work) -> list:
    failures: list = []
    start = threading.Barrier(n, timeout=LIVENESS_SECONDS)

    def run(i: int) -> None:
        try:
            start.wait()
            work(i, failures)
        except Exception as exc:  # noqa: BLE001 - reported with the client's number
            failures.append((i, repr(exc)))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIVENESS_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    return failures


def _post_batch(url: str, writes: list[BatchWrite]) -> tuple[int, dict]:
    return request("POST", url + "/internal/forward", encode_writes(writes))


def test_concurrent_forwarded_writes_are_batched_acknowledged_and_read_back_from_the_slave(shared_cluster):
    master, slave = _roles(shared_cluster)
    parts = urllib.parse.urlsplit(slave.url)
    before = _batches_answered(master.url)

    def client(i: int, failures: list) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT_SECONDS)
        try:
            for j in range(WRITES_PER_CLIENT):
                value = f"v{i}.{j}"
                conn.request("PUT", f"/kv/batch-{i}?acks=majority", body=value.encode())
                answer = conn.getresponse()
                body = answer.read()
                if answer.status != 200 or answer.getheader("X-Dkvs-Seq") is None:
                    failures.append((i, j, "put", answer.status, body[:200]))
                    return
                conn.request("GET", f"/kv/batch-{i}")
                answer = conn.getresponse()
                read = json.loads(answer.read())
                if answer.status != 200 or read.get("value") != value:
                    failures.append((i, j, "read-your-writes", answer.status, read))
                    return
        finally:
            conn.close()

    failures = _concurrently(CLIENTS, client)
    assert failures == [], failures[:5]
    assert status(slave.url)["role"] == "slave"  # the writes really went through a slave
    wait_until(lambda: _batches_answered(master.url) > before, what="batches counted")  # ... and in batches


def test_conditional_writes_fail_inside_a_batch_as_they_would_alone(shared_cluster):
    master, slave = _roles(shared_cluster)
    outcomes: list = []

    def racer(i: int, failures: list) -> None:
        code, body = request("PUT", f"{slave.url}/kv/only-one?if_seq=0&acks=majority", f"r{i}".encode())
        outcomes.append((code, body))

    assert _concurrently(CLIENTS, racer) == []
    winners = [body for code, body in outcomes if code == 200]
    losers = [body for code, body in outcomes if code != 200]
    assert len(winners) == 1, outcomes[:5]
    assert all(code in (200, 409) for code, _ in outcomes), outcomes[:5]
    assert all(body["error"] == "conflict" and body["seq"] == winners[0]["seq"] for body in losers)
    assert get(slave.url, "only-one")[1]["seq"] == winners[0]["seq"]  # read-your-writes for the winner too
    code, body = request("DELETE", f"{slave.url}/kv/never-there")
    assert (code, body["error"]) == (404, "key_not_found")


def test_a_batch_sent_to_a_node_that_is_not_the_master_answers_each_write_with_503(shared_cluster):
    _, slave = _roles(shared_cluster)
    code, body = _post_batch(slave.url, [BatchWrite("PUT", "/kv/stale-1", None, None, b"1"),
                                         BatchWrite("DELETE", "/kv/stale-2", None, None, None)])
    assert code == 200
    answers = body["r"]
    assert [row[0] for row in answers] == [503, 503]
    assert all(json.loads(row[3])["error"] == "no_master" for row in answers)
    assert all(any(name == "Retry-After" for name, _ in row[2]) for row in answers)
    assert get(slave.url, "stale-1")[0] == 404  # nothing was written, nor forwarded a second time


def test_with_a_cluster_secret_an_unsigned_batch_is_refused_and_applies_nothing(procs):
    nodes = procs.cluster(3, "--cluster-secret", "batch-test-secret")
    master, slave = _roles(nodes)
    code, body = _post_batch(master.url, [BatchWrite("PUT", "/kv/forged", None, None, b"x")])
    assert code in (401, 403) and body["error"] in ("unauthorized", "forbidden")
    assert get(master.url, "forged")[0] == 404
    # The slave's own batches are signed: forwarded writes still succeed, in batches.
    failures = _concurrently(10, lambda i, failures: failures.extend(
        [(i, code)] if (code := request("PUT", f"{slave.url}/kv/signed-{i}", b"v")[0]) != 200 else []))
    assert failures == []
    wait_until(lambda: _batches_answered(master.url) > 0, what="batches counted")
