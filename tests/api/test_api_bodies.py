"""Request bodies: framing errors, lying lengths, stalls and disconnects never change state.

These use raw sockets, because HTTP libraries refuse to send such requests. The stall test
runs its own server with a 0.3 s read timeout, so it waits on the server, not on a sleep.
"""

from __future__ import annotations

from api_clients import ApiClient, assert_server_still_serves
from fake_service import FakeService

from dkvs.api.service import Limits

HEAD = b"PUT /kv/k HTTP/1.1\r\nHost: x\r\n"


def _assert_untouched(fake, server) -> None:
    assert fake.snapshot() == ({}, 0)
    assert_server_still_serves(ApiClient(server.url))


def test_put_without_content_length_is_411_and_the_connection_goes_on(server, raw, fake):
    client = raw(server)
    client.send(HEAD + b"\r\n")
    answer = client.read_answer()
    assert answer.status == 411 and answer.json()["error"] == "length_required"
    client.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # no body was framed: still in sync
    assert client.read_answer().status == 200
    _assert_untouched(fake, server)


def test_content_length_that_is_not_a_number_is_400(server, raw, fake):
    for bad in (b"ten", b"-1", b"1e3", b"+5", b" "):
        client = raw(server)
        client.send(HEAD + b"Content-Length: " + bad + b"\r\n\r\nvalue")
        answer = client.read_answer()
        assert answer.status == 400 and answer.json()["error"] == "bad_request", bad
    _assert_untouched(fake, server)


def test_conflicting_framing_is_400(server, raw, fake):
    client = raw(server)
    client.send(HEAD + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert client.read_answer().status == 400
    client = raw(server)
    client.send(HEAD + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
    assert client.read_answer().status == 400
    _assert_untouched(fake, server)


def test_huge_content_length_is_413_before_any_body_is_read(server, raw, fake):
    client = raw(server)
    client.send(HEAD + b"Content-Length: 1000000000000\r\n\r\n")  # and no body at all
    answer = client.read_answer()
    assert answer.status == 413 and answer.json()["error"] == "payload_too_large"
    assert answer.headers["connection"] == "close"
    _assert_untouched(fake, server)


def test_chunked_body_over_the_limit_is_413(server, raw, fake):
    client = raw(server)
    chunk = b"x" * 65536
    client.send(HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
                + (b"10000\r\n" + chunk + b"\r\n") * 17 + b"0\r\n\r\n")
    assert client.read_answer().status == 413
    _assert_untouched(fake, server)


def test_malformed_chunked_body_is_400(server, raw, fake):
    client = raw(server)
    client.send(HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
    assert client.read_answer().status == 400
    _assert_untouched(fake, server)


def test_short_body_then_half_close_is_400(server, raw, fake):
    client = raw(server)
    client.send(HEAD + b"Content-Length: 100\r\n\r\nonly ten b")
    client.sock.shutdown(1)  # SHUT_WR: the server sees EOF mid-body, we can still read
    answer = client.read_answer()
    assert answer.status == 400 and answer.json()["error"] == "bad_request"
    assert client.at_eof()
    _assert_untouched(fake, server)


def test_client_that_disconnects_mid_body_changes_nothing(server, raw, fake):
    client = raw(server)
    client.send(HEAD + b"Content-Length: 100\r\n\r\nonly ten b")
    client.close()
    _assert_untouched(fake, server)


def test_stalled_body_times_out_with_400(start_server, raw):
    fake = FakeService()
    server = start_server(fake, idle_timeout_seconds=0.3)
    client = raw(server)
    client.send(HEAD + b"Content-Length: 100\r\n\r\nonly ten b")  # then nothing
    answer = client.read_answer()
    assert answer.status == 400 and "timed out" in answer.json()["message"]
    assert client.at_eof()
    _assert_untouched(fake, server)


def test_small_unread_body_is_drained_and_keep_alive_survives(server, raw, fake):
    client = raw(server)
    client.send(b"POST /kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert client.read_answer().status == 405
    client.send(b"GET /kv/k HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.read_answer().json()["error"] == "key_not_found"


def test_refused_upload_with_expect_100_is_never_invited(start_server, raw):
    server = start_server(FakeService(Limits(max_value_bytes=10)))
    client = raw(server)
    client.send(HEAD + b"Content-Length: 11\r\nExpect: 100-continue\r\n\r\n")
    answer = client.read_answer()  # straight to the final answer, no 100 Continue first
    assert answer.status == 413 and answer.headers["connection"] == "close"


def test_malformed_request_line_and_headers_get_json_errors(server, raw):
    client = raw(server)
    client.send(b"GET /health HTTP/9.9\r\n\r\n")
    answer = client.read_answer()
    assert answer.status == 505 and answer.json()["error"] == "http_version_not_supported"
    client = raw(server)
    client.send(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert client.read_answer().json()["error"] == "uri_too_long"
    client = raw(server)
    client.send(b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n")
    assert client.read_answer().json()["error"] == "headers_too_large"
    client = raw(server)
    client.send(b"NONSENSE\r\n\r\n")
    assert client.read_answer().json()["error"] == "bad_request"
