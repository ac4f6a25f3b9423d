"""ClusterIdentity: adoption from the master only, foreign traffic ignored and logged once."""

import logging

from dkvs.runtime.identity import ClusterIdentity, mismatch_message
from dkvs.storage import MemoryStorage
from dkvs.transport.auth import CLUSTER_HEADER, SENDER_HEADER, Signer


def test_a_data_dir_without_id_adopts_its_masters_and_says_so(caplog):
    storage, signer = MemoryStorage(), Signer(None)
    identity = ClusterIdentity(storage, signer, None, fresh=False)
    assert identity.check_incoming("/internal/join", {CLUSTER_HEADER: "joiner"}) is None
    assert identity.cluster_id is None  # a joiner never imposes its id
    with caplog.at_level(logging.WARNING, "dkvs.identity"):
        assert identity.check_incoming("/internal/raft", {CLUSTER_HEADER: "abc"}) is None
    assert identity.cluster_id == "abc" and storage.load().cluster_id == "abc"
    assert signer.headers("POST", "/internal/raft") == {CLUSTER_HEADER: "abc"}
    assert "adopted cluster abc" in caplog.text


def test_traffic_of_another_cluster_is_refused_and_logged_once(caplog):
    identity = ClusterIdentity(MemoryStorage(), Signer(None), "mine")
    headers = {CLUSTER_HEADER: "theirs", SENDER_HEADER: "n1"}
    with caplog.at_level(logging.WARNING, "dkvs.identity"):
        for _ in range(3):
            assert "another cluster" in identity.check_incoming("/internal/raft", headers)
    assert caplog.text.count("another cluster") == 1
    assert identity.check_incoming("/internal/raft", {CLUSTER_HEADER: "mine"}) is None
    assert identity.check_incoming("/internal/raft", {}) is None  # an older node


def test_a_signed_cluster_header_cannot_be_changed_in_flight():
    a, b = Signer("s", node_id="a"), Signer("s", node_id="b")
    a.cluster_id = "one"
    headers = a.headers("POST", "/internal/raft", b"x", to="b")
    assert b.verify_head("POST", "/internal/raft", dict(headers)) is None
    forged = {**a.headers("POST", "/internal/raft", b"x", to="b"), CLUSTER_HEADER: "two"}
    assert b.verify_head("POST", "/internal/raft", forged) == "bad signature"


def test_the_mismatch_line_names_both_ids_and_the_way_out():
    line = mismatch_message("aaa", "bbb", "http://x")
    assert "aaa" in line and "bbb" in line and "empty --data-dir" in line
