"""A live 3-node cluster run with ``--lease-reads`` (consistent reads from a leader lease).

What this proves: the flag reaches the core (``/status`` shows the master's lease),
consistent GETs on the master answer the latest acknowledged write, and after the master
is killed the new master serves consistent reads that include every majority write.
"""

from __future__ import annotations

from .procs import get, put, status, wait_until

LEASE = ("--lease-reads",)


def test_a_cluster_with_lease_reads_answers_consistent_gets(procs):
    nodes = procs.cluster(3, *LEASE)
    master = next(n for n in nodes if status(n.url)["role"] == "master")
    assert put(master.url, "k", "v1", acks="majority")[0] == 200
    wait_until(lambda: status(master.url).get("read_lease") is True, what="the master to hold a read lease")
    for i in range(20):
        assert put(master.url, "k", f"v{i}", acks="majority")[0] == 200
        code, body = get(master.url, "k", consistent="true")
        assert code == 200 and body["value"] == f"v{i}"
    assert all("read_lease" in status(n.url) for n in nodes)

    master.kill()
    others = [n for n in nodes if n is not master]

    def new_master():
        for n in others:
            if status(n.url).get("role") == "master":
                return n
        return None
    successor = wait_until(new_master, what="a new master")
    code, body = get(successor.url, "k", consistent="true")
    assert code == 200 and body["value"] == "v19"
