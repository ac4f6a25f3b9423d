"""The HTTPS front end in-process: keep-alive and large bodies through the selector's TLS
adapter, handshakes bounded by the request timeout, plain HTTP closed (issue 11, TLS)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse

import pytest

from dkvs.transport.tls import server_context
from dkvs.tools.tls_certs import make_ca, openssl_available

pytestmark = pytest.mark.skipif(not openssl_available(), reason="the openssl binary is not installed "
                                "(needed to make the test CA and certificate)")


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp("api-tls"))


@pytest.fixture
def tls_server(start_server, ca):
    cert, key = ca.node("server")
    return start_server(tls_context=server_context(str(cert), str(key)), request_timeout_seconds=0.5)


def address(server):
    parts = urllib.parse.urlsplit(server.url)
    return parts.hostname, parts.port


def test_keep_alive_requests_and_large_bodies_over_one_https_connection(tls_server, ca):
    assert tls_server.url.startswith("https://127.0.0.1:")
    conn = http.client.HTTPSConnection(*address(tls_server), timeout=10, context=ca.context())
    try:
        big = "v" * 600_000
        for i in range(20):
            value = big if i == 7 else f"value{i}"
            conn.request("PUT", f"/kv/k{i}", body=value.encode())
            response = conn.getresponse()
            assert response.status == 200, response.read()
            response.read()
        for i in (3, 7, 19):
            conn.request("GET", f"/kv/k{i}")
            response = conn.getresponse()
            body = json.loads(response.read())
            assert body["value"] == (big if i == 7 else f"value{i}")
    finally:
        conn.close()


def _closed_within(sock, seconds: float) -> bool:
    """True once the server closes ``sock`` (EOF or reset), waiting at most ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


def test_a_silent_connection_is_closed_after_the_request_timeout_with_or_without_a_handshake(tls_server, ca):
    raw = socket.create_connection(address(tls_server), timeout=10)
    shaken = ca.context().wrap_socket(socket.create_connection(address(tls_server), timeout=10),
                                      server_hostname="127.0.0.1")
    try:
        assert _closed_within(raw, 30)  # liveness bound only; the timeout is 0.5 s
        assert _closed_within(shaken, 30)
    finally:
        raw.close()
        shaken.close()


def test_plain_http_is_closed_unanswered_and_https_keeps_working(tls_server, ca):
    plain = http.client.HTTPConnection(*address(tls_server), timeout=10)
    with pytest.raises((OSError, http.client.HTTPException)):
        plain.request("GET", "/health")
        plain.getresponse().read()
    plain.close()
    conn = http.client.HTTPSConnection(*address(tls_server), timeout=10, context=ca.context())
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
    conn.close()


def test_a_client_that_does_not_trust_the_ca_fails_verification(tls_server):
    conn = http.client.HTTPSConnection(*address(tls_server), timeout=10, context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/health")
    conn.close()
