"""Internal routes on the front end: the signature is checked from the head, before the body
is read, and an admin token stands in for it on admin routes only.

Issue 11: a node read a whole unsigned 250 MiB ``/internal`` body before refusing it. Here
the client sends a head announcing a huge body and never sends the body: the 401 must come
back at once (a server that tried to read the body would wait for it).
"""

from __future__ import annotations

import pytest

from api_clients import ApiClient
from fake_service import FakeService

from dkvs.api.auth import Authenticator, Grant
from dkvs.transport.auth import Signer

SECRET = "front-end-secret"


class SignedFake(FakeService):
    """A fake that checks internal heads with a real signer, as the node does."""

    def __init__(self) -> None:
        super().__init__()
        self.signer = Signer(SECRET, node_id="fake")
        self.heads: list[tuple[str, bool]] = []

    def internal_head(self, method, target, headers, *, token_checked=False):
        self.heads.append((target, token_checked))
        if token_checked:
            return None
        return self.signer.verify_head(method, target, headers)


@pytest.fixture
def signed(start_server):
    fake = SignedFake()
    return start_server(fake), fake


def test_an_unsigned_internal_request_is_refused_before_its_body_is_read(signed, raw):
    server, fake = signed
    client = raw(server)
    client.send(b"POST /internal/raft HTTP/1.1\r\nHost: x\r\nContent-Length: 262144000\r\n\r\n")
    answer = client.read_answer()  # would block until the idle timeout if the body were awaited
    assert answer.status == 401
    assert b"unsigned internal request" in answer.body
    assert answer.headers.get("connection") == "close"
    assert ("internal", "POST", "raft") not in fake.calls


def test_a_signed_request_reaches_the_service_once(signed):
    server, fake = signed
    api = ApiClient(server.url)
    sender = Signer(SECRET, node_id="peer")
    headers = sender.headers("POST", "/internal/raft?x=1", b"{}", to="fake")
    assert api.request("POST", "/internal/raft?x=1", b"{}", headers).status == 200
    assert api.request("POST", "/internal/raft?x=1", b"{}", headers).status == 401  # replay
    assert fake.calls.count(("internal", "POST", "raft")) == 1


def test_an_admin_token_replaces_the_signature_on_admin_routes_only(signed):
    server, fake = signed
    server.auth = Authenticator(entries=[(b"adm", Grant("admin"))])
    api = ApiClient(server.url)
    admin = {"Authorization": "Bearer adm"}
    assert api.request("POST", "/internal/remove?id=x", b"", admin).status == 200
    assert api.request("POST", "/internal/raft", b"{}", admin).status == 401  # peers sign
    assert api.request("POST", "/internal/remove?id=x", b"").status == 401
    assert fake.heads[0] == ("/internal/remove?id=x", True)
    assert fake.heads[1] == ("/internal/raft", False)
