"""The public routes do what DESIGN.md §5 says, against a FakeService, over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from api_clients import ApiClient, key_path
from fake_service import FakeService

from dkvs.api.service import Limits


def _urlopen(request):
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def test_put_then_get_round_trips_non_ascii_key_and_value(server):
    key, value = "clé/ü 1", "naïve ✓ 𤭢"
    url = server.url + key_path(key)
    status, _, body = _urlopen(urllib.request.Request(url, data=value.encode(), method="PUT"))
    assert status == 200
    written = json.loads(body)
    assert written["key"] == key and written["seq"] == 1 and written["epoch"] == 1

    status, headers, body = _urlopen(url)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body.decode("utf-8")) == {"key": key, "value": value, "seq": 1}
    assert "𤭢".encode() in body  # UTF-8 on the wire, not \\u escapes


def test_slash_in_key_may_be_literal_or_percent_encoded(api, fake):
    assert api.request("PUT", "/kv/a/b", b"one").status == 200
    assert api.request("GET", "/kv/a%2Fb").json()["value"] == "one"
    assert api.request("PUT", "/kv/a%2fb", b"two").status == 200
    assert api.request("GET", "/kv/a/b").json()["value"] == "two"
    assert set(fake.snapshot()[0]) == {"a/b"}


def test_raw_utf8_bytes_in_the_path_name_the_same_key(server, raw, api):
    api.request("PUT", key_path("é"), b"accent")
    client = raw(server)
    client.send("GET /kv/é HTTP/1.1\r\nHost: x\r\n\r\n".encode("utf-8"))
    assert client.read_answer().json()["value"] == "accent"


def test_delete_then_get_is_404_json(api):
    api.request("PUT", "/kv/doomed", b"x")
    deleted = api.request("DELETE", "/kv/doomed")
    assert deleted.status == 200 and deleted.json()["key"] == "doomed"
    gone = api.request("GET", "/kv/doomed")
    assert gone.status == 404 and gone.json()["error"] == "key_not_found"
    again = api.request("DELETE", "/kv/doomed")
    assert again.status == 404 and again.json()["error"] == "key_not_found"


def test_listing_pages_with_prefix_after_and_limit(api):
    for key in ["user/1", "user/2", "user/3", "user/4", "user/5", "other"]:
        assert api.request("PUT", key_path(key), key.encode()).status == 200
    seen, after = [], ""
    for _ in range(10):
        page = api.request("GET", f"/kv?prefix=user%2F&limit=2&after={after}").json()
        seen += [item["key"] for item in page["items"]]
        assert all(item["value"] == item["key"] for item in page["items"])
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == ["user/1", "user/2", "user/3", "user/4", "user/5"]


def test_listing_defaults_to_everything_from_the_start(api, fake):
    api.request("PUT", "/kv/k", b"v")
    page = api.request("GET", "/kv").json()
    assert page == {"items": [{"key": "k", "value": "v", "seq": 1}], "next": None}
    assert fake.calls[-1] == ("items", "", None, 100)


def test_write_parameters_reach_the_service_and_default_from_limits(start_server):
    fake = FakeService(Limits(default_acks="majority", default_timeout_seconds=2.5))
    api = ApiClient(start_server(fake).url)
    api.request("PUT", "/kv/a", b"1")
    api.request("PUT", "/kv/a?acks=all&timeout=0.25", b"2")
    api.request("DELETE", "/kv/a?acks=1")
    assert fake.calls == [("put", "a", "1", "majority", 2.5), ("put", "a", "2", "all", 0.25),
                          ("delete", "a", "1", 2.5)]


def test_consistent_flag_reaches_get(api, fake):
    api.request("PUT", "/kv/a", b"1")
    for text, flag in [("true", True), ("1", True), ("false", False), ("0", False), ("TRUE", True)]:
        assert api.request("GET", f"/kv/a?consistent={text}").status == 200
        assert fake.calls[-1] == ("get", "a", flag)


def test_empty_value_is_a_value(api):
    assert api.request("PUT", "/kv/empty", b"").status == 200
    assert api.request("GET", "/kv/empty").json()["value"] == ""


def test_chunked_body_is_accepted(server, raw, fake):
    client = raw(server)
    client.send("PUT /kv/chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "4\r\nnaï\r\n3;ext=1\r\nve!\r\n0\r\nTrailer: t\r\n\r\n".encode())
    assert client.read_answer().status == 200
    assert fake.snapshot()[0]["chunky"][0] == "naïve!"


def test_expect_100_continue_is_answered_when_the_body_is_wanted(server, raw, fake):
    client = raw(server)
    client.send(b"PUT /kv/polite HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\n\r\n")
    assert client.file.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert client.file.readline() == b"\r\n"
    client.send(b"hello")
    assert client.read_answer().status == 200
    assert fake.snapshot()[0]["polite"][0] == "hello"


def test_status_and_health(api):
    assert api.request("GET", "/health").json() == {"status": "ok"}
    status = api.request("GET", "/status").json()
    assert status["role"] == "master" and status["members"][0]["alive"] is True


def test_internal_route_passes_the_raw_request_to_the_service(api):
    answer = api.request("POST", "/internal/raft/append?x=1&x=2&y=", b"\x00\xffbinary",
                         {"X-Dkvs-Secret": "s3"})
    assert answer.status == 200
    echo = answer.json()
    assert echo == {"node": "fake", "method": "POST", "path": "raft/append",
                    "query": {"x": "2", "y": ""}, "body": "\x00\ufffdbinary", "secret": "s3"}
    assert api.request("GET", "/internal/join").json()["method"] == "GET"


def test_acks_timeout_is_504_with_the_seq(api, fake):
    fake.raise_acks_timeout = True
    answer = api.request("PUT", "/kv/slow?acks=all&timeout=0.5", b"v")
    assert answer.status == 504
    error = answer.json()
    assert error["error"] == "acks_timeout" and error["seq"] == 1


def test_no_master_is_503_with_whole_retry_after_seconds(api, fake):
    fake.raise_no_master = True
    answer = api.request("PUT", "/kv/x", b"v")
    assert answer.status == 503 and answer.json()["error"] == "no_master"
    assert answer.headers["retry-after"] == "3"  # 2.5 s rounded up to whole seconds


def test_unexpected_exception_is_500_json_and_the_server_keeps_serving(api, fake, caplog):
    fake.raise_crash = True
    answer = api.request("GET", "/kv/x")
    assert answer.status == 500 and answer.json()["error"] == "internal"
    assert "told to crash" not in answer.body.decode()  # details stay in the log
    assert any(r.exc_info and "told to crash" in str(r.exc_info[1]) for r in caplog.records)
    fake.raise_crash = False
    assert api.request("GET", "/health").status == 200
