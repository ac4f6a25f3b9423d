"""Writes through a slave from many concurrent keep-alive clients (issue 15, deliverable 5).

The slave forwards every write to the master without a thread per write (pipelined
connections, answers parked on the change feed); this proves that with 200 connections at
once every write succeeds and each client then reads its own write from the same slave.
How fast is a benchmark's figure (scripts/many_clients_bench.py), not this test's.
"""

import http.client
import json
import threading
import urllib.parse

from .procs import LIVENESS_SECONDS, REQUEST_TIMEOUT_SECONDS, status, wait_until

CLIENTS = 200
WRITES_PER_CLIENT = 3


def test_two_hundred_clients_write_through_a_slave_and_read_their_writes_there(procs):
    nodes = procs.cluster(3)
    slave = wait_until(lambda: next((n for n in nodes if status(n.url)["role"] == "slave"), None),
                       what="a slave")
    host, port = urllib.parse.urlsplit(slave.url).hostname, urllib.parse.urlsplit(slave.url).port
    start = threading.Barrier(CLIENTS, timeout=LIVENESS_SECONDS)
    failures: list = []

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_SECONDS)
        try:
            conn.connect()
            start.wait()
            for j in range(WRITES_PER_CLIENT):
                value = f"v{i}.{j}"
                conn.request("PUT", f"/kv/c{i}", body=value.encode())
                answer = conn.getresponse()
                body = answer.read()
                if answer.status != 200:
                    failures.append((i, j, "put", answer.status, body[:200]))
                    return
                conn.request("GET", f"/kv/c{i}")
                answer = conn.getresponse()
                read = json.loads(answer.read())
                if answer.status != 200 or read.get("value") != value:
                    failures.append((i, j, "read-your-writes", answer.status, read))
                    return
        except Exception as exc:  # noqa: BLE001 - reported below, with the client's number
            failures.append((i, "error", repr(exc)))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIVENESS_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    assert failures == [], failures[:5]
    assert status(slave.url)["role"] == "slave"  # the writes really went through a slave
