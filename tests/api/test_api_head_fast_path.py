"""The request fast path (issue 15): a head already whole in the buffer is parsed in one
pass, requests without a query take their parameters' cached defaults, answers are encoded
by a one-shot JSON encoder. Each shortcut must answer exactly what the general path does."""

import io
import itertools
import json

import pytest

from api_clients import ApiClient
from fake_service import FakeService

from dkvs.api.headers import MAX_HEADERS, HeadError, parse_fields, read_headers
from dkvs.api.prefetch import head_length
from dkvs.api.response import encode_json
from dkvs.api.routes import TABLE
from dkvs.api.service import Limits

HEADS = [
    b"Host: x\r\nContent-Length: 5\r\n\r\n",
    b"Host: x\nX-A: 1\nx-a: 2\n\n",  # bare LF, a repeated name
    b"Origin:   http://a:1  \r\nX: a\rb\r\n\r\n",  # spaces trimmed, a CR inside a value
    b"\r\n",  # no fields at all
    b"X: 1\r\n folded\r\n\r\n",
    b"no colon here\r\n\r\n",
    b": empty name\r\n\r\n",
    b"Bad Name : x\r\n\r\n",
    b"Good: 1\r\nno colon\r\nX: " + b"a" * 70000 + b"\r\n\r\n",  # the first problem wins
    b"X: " + b"a" * 70000 + b"\r\n\r\n",
    b"X: " + b"a" * 65531 + b"\r\n\r\n",  # 65,536 bytes with its CRLF: just allowed
    b"X: " + b"a" * 65532 + b"\r\n\r\n",  # one byte more: 431
    b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS)) + b"\r\n",
    b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n",
]


def _outcome(parse):
    try:
        headers = parse()
    except HeadError as exc:
        return ("error", exc.status)
    return ("ok", headers.items(), {n.lower(): headers.get(n) for n, _ in headers.items()},
            {n.lower(): headers.get_all(n) for n, _ in headers.items()})


@pytest.mark.parametrize("head", HEADS, ids=range(len(HEADS)))
def test_a_buffered_head_parses_exactly_as_one_read_line_by_line(head):
    lines = ("GET / HTTP/1.1\r\n" + head.decode("iso-8859-1")).split("\n")
    assert _outcome(lambda: parse_fields(lines)) == _outcome(lambda: read_headers(io.BytesIO(head)))


def test_head_length_finds_the_first_blank_line_whatever_the_line_ends():
    def first_blank(data: bytes, pos: int) -> int:
        ends = [i + 2 for i in range(pos, len(data) - 1) if data[i:i + 2] == b"\n\n"]
        ends += [i + 3 for i in range(pos, len(data) - 2) if data[i:i + 3] == b"\n\r\n"]
        return min(ends) - pos if ends else -1

    for size in range(1, 8):
        for parts in itertools.product((b"\r", b"\n", b"a"), repeat=size):
            data = bytearray(b"".join(parts))
            for pos in range(len(data)):
                assert head_length(data, pos) == first_blank(bytes(data), pos), (data, pos)


@pytest.mark.parametrize("doc", [{"key": "k", "seq": 1, "epoch": 2, "replicas": 1},
                                 {"value": "é\u2028\"\\", "n": None, "ok": True, "f": 1.5},
                                 [1, [2, {"a": []}]], "text", 7, None])
def test_the_one_shot_encoder_writes_what_json_dumps_writes(doc):
    assert encode_json(doc) == json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def test_defaults_of_absent_query_parameters_follow_the_node_limits():
    put = TABLE.lookup("/kv/k")[0].methods["PUT"]
    strict = Limits(default_acks="majority", default_timeout_seconds=2.0)
    assert put.absent_args(Limits())["acks"] == "1"
    assert put.absent_args(strict) == {p.name: p.parse(None, strict) for p in put.params if p.location == "query"}
    assert put.absent_args(strict)["acks"] == "majority" and put.absent_args(strict)["timeout"] == 2.0


def test_writes_without_a_query_use_the_node_defaults(start_server):
    service = FakeService(Limits(default_acks="majority", default_timeout_seconds=3.0))
    api = ApiClient(start_server(service).url)
    assert api.request("PUT", "/kv/a", b"1").status == 200
    assert api.request("PUT", "/kv/b?acks=all", b"2").status == 200
    assert service.calls[-2:] == [("put", "a", "1", "majority", 3.0), ("put", "b", "2", "all", 3.0)]


def test_pipelined_and_split_heads_are_both_served(server, raw):
    client = raw(server)
    client.send(b"PUT /kv/p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nv1"
                b"GET /kv/p HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.read_answer().status == 200
    second = client.read_answer()
    assert second.status == 200 and json.loads(second.body)["value"] == "v1"
    client.send(b"GET /kv/p HTTP/1.1\r\nHo")  # the rest of the head comes later
    client.send(b"st: x\r\n\r\n")
    assert client.read_answer().status == 200
    client.send(b"GET /kv/p HTTP/1.1\nHost: x\n\n")  # bare LF line ends
    assert client.read_answer().status == 200
