"""Fixtures for the HTTP front end: real servers on 127.0.0.1:0 around a FakeService.

Every server a test starts is stopped at teardown, and teardown then checks that no
connection or accept thread of ours is left running: a leak fails the test that caused it.
Clients: ``api`` (http.client, one connection per call, always closed) and ``raw`` (plain
sockets for the malformed requests no HTTP library will send), closed at teardown too.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers below live next to this file

from api_clients import ApiClient, RawClient, assert_server_still_serves  # noqa: E402
from fake_service import FakeService  # noqa: E402

from dkvs.api.server import make_server  # noqa: E402


def _our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dkvs-http") and t.is_alive()]


@pytest.fixture
def start_server():
    """``start_server(service=None, **make_server_kwargs)`` → a started server, stopped later."""
    servers = []

    def start(service: FakeService | None = None, port: int = 0, **kwargs):
        service = service if service is not None else FakeService()
        server = make_server(service, "127.0.0.1", port, **kwargs)
        servers.append(server)
        service.url = server.url
        return server.start()

    yield start
    for server in servers:
        server.stop()
    assert not _our_threads(), f"threads left behind: {_our_threads()}"


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def server(start_server, fake):
    return start_server(fake)


@pytest.fixture
def api(server) -> ApiClient:
    return ApiClient(server.url)


@pytest.fixture
def raw():
    """``raw(server)`` → a RawClient connected to it, closed at teardown."""
    clients = []

    def connect(server) -> RawClient:
        client = RawClient(server.url)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def refused(api, fake):
    """``refused(method, path, status, code, body=None, headers=None)``.

    Asserts the request is answered with ``status`` and JSON error ``code``, that the
    service's state did not change, and that a good write and read succeed afterwards.
    Returns the error document for further checks.
    """

    def check(method, path, status, code, body=None, headers=None) -> dict:
        before = fake.snapshot()
        answer = api.request(method, path, body, headers)
        assert answer.status == status, answer
        error = answer.json()
        assert error["error"] == code, error
        assert isinstance(error["message"], str) and error["message"]
        assert fake.snapshot() == before
        assert_server_still_serves(api)
        return error

    return check
