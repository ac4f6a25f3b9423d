"""Replication streams on a live 3-node cluster with a cluster secret (issue 15).

What this proves: the master replicates to each slave over one authenticated stream
(frames with a MAC each), writes acknowledged by every node arrive everywhere, and a slave
killed and restarted with its data dir is reconnected by the master and catches up.
"""

from __future__ import annotations

from .procs import get, put, status, wait_until

SECRET = "stream-integration-secret-0123456789"


def stream_opens(node, peer_id: str) -> int:
    return sum(f"replication stream to {peer_id} open (MAC per frame)" in line for line in node.stderr_lines)


def test_writes_replicate_over_streams_and_a_restarted_slave_reconnects(procs, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    common = ("--cluster-secret-file", str(secret))
    dirs = [str(tmp_path / f"n{i}") for i in range(3)]
    master = procs.start("--data-dir", dirs[0], *common, "--log-level", "debug")
    slaves = [procs.start("--join", master.url, "--data-dir", d, *common) for d in dirs[1:]]
    procs.wait_formed([master, *slaves])
    assert status(master.url)["role"] == "master"

    for i in range(20):
        assert put(master.url, f"k{i}", f"v{i}", acks="all")[0] == 200
    for slave in slaves:
        assert get(slave.url, "k19")[1]["value"] == "v19"
        assert stream_opens(master, slave.id) >= 1

    victim, survivor = slaves
    port, opened = victim.port, stream_opens(master, victim.id)
    victim.kill()
    for i in range(20, 30):
        assert put(master.url, f"k{i}", f"v{i}", acks="majority")[0] == 200
    again = procs.start("--data-dir", dirs[1], *common, port=port)
    last = status(master.url)["last_seq"]
    wait_until(lambda: status(again.url).get("last_seq", 0) >= last, what="the restarted slave to catch up")
    assert get(again.url, "k29")[1]["value"] == "v29"
    assert stream_opens(master, victim.id) > opened  # the master opened a new stream to it
    assert put(master.url, "after", "v", acks="all")[0] == 200
