"""Replication streams on a live 3-node cluster with a cluster secret (issue 15).

What this proves: the master replicates to each slave over one authenticated stream
(frames with a MAC each), writes acknowledged by every node arrive everywhere, and a slave
killed and restarted with its data dir is reconnected by the master and catches up.
"""

from __future__ import annotations

import pytest

from dkvs.tools.local_cluster import FAST_TIMINGS, LocalCluster, wait_for
from dkvs.tools.tls_certs import https_call, make_ca, openssl_available

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


def test_streams_run_over_tls_between_tls_nodes(tmp_path):
    # What this proves: on nodes serving HTTPS (client certificates required) the master's
    # streams are TLS connections verified with the node's CA, and they carry the writes.
    if not openssl_available():
        pytest.skip("the openssl binary is not installed (needed for the test CA)")
    ca = make_ca(tmp_path / "tls")

    def tls_args(name):
        cert, key = ca.node(name)
        return ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca.cert)]

    context = ca.context()
    context.load_cert_chain(*ca.node("client"))
    with LocalCluster(*FAST_TIMINGS, "--tls-client-auth", "required") as cluster:
        first = cluster.start(*tls_args("n1"), "--log-level", "debug")
        others = [cluster.start("--join", first.url, *tls_args(f"n{i}")) for i in (2, 3)]

        def all_written() -> bool:
            try:
                return https_call(first.url, "PUT", "/kv/tls-key?acks=all", b"v", context=context)[0] == 200
            except OSError:
                return False
        assert wait_for(all_written, 60.0), "a write with acks=all never succeeded on the TLS cluster"
        assert https_call(others[1].url, "GET", "/kv/tls-key", context=context)[1]["value"] == "v"
        opened = [line for line in first.stderr_lines if "replication stream to" in line]
        assert {o.id for o in others} <= {line.split("replication stream to ")[1].split()[0] for line in opened}
