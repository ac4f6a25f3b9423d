"""A node that is not the master forwards to the one that is, and never in a loop."""

from __future__ import annotations

import socket

import pytest
from api_clients import ApiClient
from fake_service import FakeService

from dkvs.api.forward import Forwarder
from dkvs.errors import NoMaster


@pytest.fixture
def pair(start_server):
    """(slave server, slave fake, master server, master fake); the slave points at the master."""
    slave_fake, master_fake = FakeService(node_id="slave"), FakeService(node_id="master")
    slave, master = start_server(slave_fake), start_server(master_fake)
    slave_fake.raise_not_master = master.url
    return slave, slave_fake, master, master_fake


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nobody listens once closed


def test_put_to_a_slave_lands_in_the_master_and_its_answer_is_relayed(pair):
    slave, slave_fake, master, master_fake = pair
    answer = ApiClient(slave.url).request("PUT", "/kv/cl%C3%A9?acks=majority&timeout=2",
                                          "vé".encode())
    assert answer.status == 200 and answer.json()["key"] == "clé"
    assert master_fake.snapshot()[0] == {"clé": ("vé", 1)}
    assert slave_fake.snapshot() == ({}, 0)
    assert master_fake.calls == [("put", "clé", "vé", "majority", 2.0)]


def test_master_errors_are_relayed_verbatim(pair):
    slave, _, master, master_fake = pair
    master_fake.raise_no_master = True
    answer = ApiClient(slave.url).request("DELETE", "/kv/x")
    assert answer.status == 503 and answer.json()["error"] == "no_master"
    assert answer.headers["retry-after"] == "3"
    master_fake.raise_no_master = False
    answer = ApiClient(slave.url).request("DELETE", "/kv/x")
    assert answer.status == 404 and answer.json()["error"] == "key_not_found"


def test_forwarded_internal_request_keeps_body_query_and_dkvs_headers(pair):
    slave, _, master, master_fake = pair
    answer = ApiClient(slave.url).request("POST", "/internal/join?as=n3", b"payload",
                                          {"X-Dkvs-Secret": "s3", "Origin": "http://x.test"})
    echo = answer.json()
    assert (echo["node"], echo["path"], echo["query"], echo["body"], echo["secret"]) == (
        "master", "join", {"as": "n3"}, "payload", "s3")


def test_two_nodes_pointing_at_each_other_answer_503_instead_of_looping(pair):
    slave, slave_fake, master, master_fake = pair
    master_fake.raise_not_master = slave.url
    answer = ApiClient(slave.url).request("PUT", "/kv/pingpong", b"v")
    assert answer.status == 503 and answer.json()["error"] == "no_master"
    assert int(answer.headers["retry-after"]) >= 1
    assert slave_fake.snapshot() == master_fake.snapshot() == ({}, 0)


def test_unreachable_master_is_503_with_retry_after(start_server, fake):
    fake.raise_not_master = _dead_url()
    answer = ApiClient(start_server(fake).url).request("PUT", "/kv/a", b"v")
    assert answer.status == 503 and answer.json()["error"] == "no_master"
    assert answer.headers["retry-after"] == "1"


def test_unknown_master_is_503_without_forwarding(api, fake):
    fake.raise_not_master = None
    answer = api.request("PUT", "/kv/a", b"v")
    assert answer.status == 503 and answer.json()["error"] == "no_master"
    assert answer.headers["retry-after"] == "1"


def test_stale_pooled_connection_is_replaced_once(start_server):
    forwarder = Forwarder()
    try:
        first = start_server()
        port = first.server_port
        assert forwarder.forward(first.url, "GET", "/health", None, {}, 5).status == 200
        first.stop()  # the pooled connection to it is now dead
        second = start_server(port=port)
        assert second.server_port == port
        assert forwarder.forward(second.url, "GET", "/health", None, {}, 5).status == 200
    finally:
        forwarder.close()


def test_forwarder_turns_network_failures_into_no_master():
    forwarder = Forwarder(connect_timeout_seconds=1)
    for url in (_dead_url(), "ftp://example.invalid", "not a url"):
        with pytest.raises(NoMaster):
            forwarder.forward(url, "GET", "/health", None, {}, 1)
