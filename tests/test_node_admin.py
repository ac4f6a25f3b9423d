"""NodeAdmin (the operator commands' connection) against a scripted HTTP server on 127.0.0.1:0:
a 503 (no master known: nothing applied) is asked again within the budget, a 409 is not,
and a change whose connection breaks after it was sent is never sent twice."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from dkvs.client.admin import NodeAdmin
from dkvs.client.errors import Unavailable
from dkvs.errors import Conflict, NoMaster


class Scripted(http.server.ThreadingHTTPServer):
    """Answers each request with the next (status, body) of ``script``; ``None`` drops the
    connection without answering."""

    def __init__(self, script):
        self.script, self.seen = list(script), []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        self.server.seen.append((self.command, self.path))
        step = self.server.script.pop(0)
        if step is None:
            self.close_connection = True
            return
        status, body = step
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 503:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_DELETE = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(script):
        server = Scripted(script)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


NO_MASTER = (503, {"error": "no_master", "message": "no master is known"})


def test_a_503_is_asked_again_then_the_answer_returned(serve):
    server, url = serve([NO_MASTER, NO_MASTER, (200, {"removed": "n3"})])
    with NodeAdmin([url], timeout=5, retry_seconds=5) as admin:
        assert admin.call("DELETE", "/members/n3") == {"removed": "n3"}
    assert server.seen == [("DELETE", "/members/n3")] * 3


def test_503_past_the_budget_and_other_errors_are_raised_at_once(serve):
    server, url = serve([NO_MASTER] * 50)
    with NodeAdmin([url], timeout=5, retry_seconds=0.3) as admin, pytest.raises(NoMaster):
        admin.call("DELETE", "/members/n3")
    assert 1 < len(server.seen) < 50
    server, url = serve([(409, {"error": "conflict", "message": "member 'n3' is alive"})])
    with NodeAdmin([url], timeout=5) as admin, pytest.raises(Conflict, match="alive"):
        admin.call("DELETE", "/members/n3")
    assert len(server.seen) == 1


def test_a_change_cut_off_after_it_was_sent_is_not_sent_again(serve):
    server, url = serve([None, (200, {"removed": "n3"})])
    with NodeAdmin([url], timeout=5) as admin, pytest.raises(Unavailable, match="may or may not"):
        admin.call("DELETE", "/members/n3")
    assert len(server.seen) == 1
    server, url = serve([None, (200, {"members": []})])  # a read is asked again
    with NodeAdmin([url], timeout=5) as admin:
        assert admin.call("GET", "/members") == {"members": []}
