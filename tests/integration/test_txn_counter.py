"""16 clients × 200 increments of one counter through POST /txn compare-on-seq (issue 14's
"done when"): every increment that succeeded was decided at apply time against the same
state on every replica, so the counter ends at exactly 3,200 on every node.

Each increment also writes a marker key in the same transaction: when a client cannot
know whether its request was applied (a connection lost under load: WriteOutcomeUnknown),
a consistent read of the marker tells it, because the two writes are one atomic entry.

The increments are ``acks=majority``: an ``acks=1`` success may be rolled back by a failover
(the documented promise of acks=1), and on a loaded machine an election can happen during
the run, which then ended below 3,200 (seen at 3,136 and 3,182 under load 40)."""

import threading

from dkvs.client import Client, WriteOutcomeUnknown
from dkvs.errors import KeyNotFound

from .procs import get, status, wait_until

CLIENTS = 16
INCREMENTS = 200


def increment(client: Client, key: str, value: int, seq: int, marker: str) -> tuple[int, int]:
    """Add one, retrying on a lost race; returns the (value, seq) the client saw last."""
    while True:
        try:
            answer = client.txn(compare=[{"key": key, "seq": seq}],
                                success=[{"op": "put", "key": key, "value": str(value + 1)},
                                         {"op": "put", "key": marker, "value": "1"}],
                                failure=[{"op": "get", "key": key}], acks="majority")
        except WriteOutcomeUnknown:
            try:
                client.get(marker, consistent=True)
            except KeyNotFound:
                continue  # not applied: the same compare is still right or will fail
            item = client.get_item(key, consistent=True)
            return int(item.value), item.seq
        if answer["succeeded"]:
            return value + 1, answer["seq"]
        current = answer["results"][0]
        value, seq = (int(current["value"]), current["seq"]) if current["found"] else (0, 0)


def test_sixteen_clients_increment_one_counter_to_3200_on_every_node(procs):
    nodes = procs.cluster(3)
    urls = [n.url for n in nodes]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with Client(urls[i % 3:] + urls[:i % 3], timeout=10, retry_seconds=30) as client:
                value, seq = 0, 0
                for n in range(INCREMENTS):
                    value, seq = increment(client, "counter", value, seq, f"done/{i}/{n}")
        except BaseException as exc:  # noqa: BLE001 — reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, [repr(e) for e in errors[:3]]
    assert not any(t.is_alive() for t in threads)
    wait_until(lambda: len({status(u)["last_seq"] for u in urls}) == 1, 10.0, what="equal last_seq")
    for url in urls:
        assert get(url, "counter")[1]["value"] == str(CLIENTS * INCREMENTS)
