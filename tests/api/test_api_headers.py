"""The lean request-head parser (dkvs.api.headers) and how the handler uses it."""

import io

import pytest

from dkvs.api.headers import MAX_HEADERS, HeadError, read_headers

from api_clients import assert_server_still_serves


def parse(text: bytes):
    return read_headers(io.BytesIO(text))


def test_lookups_are_case_insensitive_and_the_first_value_wins():
    headers = parse(b"Content-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody")
    assert headers.get("content-length") == "5" and headers["CONTENT-LENGTH"] == "5"
    assert headers.get("X-a") == "1" and headers.get_all("x-A") == ["1", "2"]
    assert "x-a" in headers and "missing" not in headers and headers.get("missing", "d") == "d"
    assert headers.items() == [("Content-Length", "5"), ("X-A", "1"), ("x-a", "2")]


def test_values_are_trimmed_and_may_contain_colons():
    assert parse(b"Origin:   http://a:1  \r\n\r\n").get("origin") == "http://a:1"


@pytest.mark.parametrize("head, status", [
    (b"X: 1\r\n folded\r\n\r\n", 400),
    (b"no colon here\r\n\r\n", 400),
    (b": empty name\r\n\r\n", 400),
    (b"Bad Name : x\r\n\r\n", 400),
    (b"X: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n", 431),
])
def test_malformed_or_oversized_heads_are_refused(head, status):
    with pytest.raises(HeadError) as caught:
        parse(head)
    assert caught.value.status == status


@pytest.mark.parametrize("request_line, status", [
    (b"GET /health HTTP/2.0", 505),
    (b"GET /health HTTP/x", 400),
    (b"GET /health", 400),
    (b"GET /health HTTP/1.1 extra", 400),
])
def test_bad_request_lines_get_an_error_and_the_server_keeps_serving(server, api, raw, request_line, status):
    client = raw(server)
    client.send(request_line + b"\r\nHost: x\r\n\r\n")
    assert client.read_answer().status == status
    assert_server_still_serves(api)


def test_http_1_0_closes_unless_keep_alive_is_asked(server, raw):
    client = raw(server)
    client.send(b"GET /health HTTP/1.0\r\n\r\n")
    assert client.read_answer().status == 200 and client.at_eof()
    client = raw(server)
    client.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert client.read_answer().status == 200
    client.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert client.read_answer().status == 200


def test_folded_header_in_a_real_request_is_400(server, api, raw):
    client = raw(server)
    client.send(b"PUT /kv/k HTTP/1.1\r\nContent-Length: 1\r\n folded\r\n\r\nx")
    assert client.read_answer().status == 400
    assert api.request("GET", "/kv/k").status == 404  # nothing was written
