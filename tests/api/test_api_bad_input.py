"""Bad input is a 4xx JSON answer that changes nothing, and the node serves on afterwards.

Each test uses the ``refused`` fixture, which asserts status and error code, compares the
service's state before and after, and then proves a good write and read still work.
"""

from __future__ import annotations


def test_missing_key_on_put_is_400(refused):
    error = refused("PUT", "/kv/", 400, "bad_request", b"v")
    assert error["parameter"] == "key"


def test_missing_key_on_get_is_400(refused):
    refused("GET", "/kv/", 400, "bad_request")


def test_key_over_the_byte_limit_is_413(refused):
    error = refused("PUT", "/kv/" + "k" * 1025, 413, "payload_too_large", b"v")
    assert error["parameter"] == "key"


def test_key_limit_counts_utf8_bytes_not_characters(refused, api):
    refused("PUT", "/kv/" + "%C3%A9" * 513, 413, "payload_too_large", b"v")  # 1026 bytes
    assert api.request("PUT", "/kv/" + "%C3%A9" * 512, b"v").status == 200  # 1024 bytes


def test_key_that_is_not_utf8_after_decoding_is_400(refused):
    refused("GET", "/kv/%FF%FE", 400, "bad_request")


def test_value_over_the_limit_is_413(refused):
    error = refused("PUT", "/kv/big", 413, "payload_too_large", b"x" * (1024 * 1024 + 1))
    assert error["parameter"] == "value"


def test_value_that_is_not_utf8_is_400(refused):
    error = refused("PUT", "/kv/bin", 400, "bad_request", b"\xff\xfe\x00")
    assert error["parameter"] == "value"


def test_negative_limit_is_400(refused):
    assert refused("GET", "/kv?limit=-1", 400, "bad_request")["parameter"] == "limit"


def test_non_numeric_limit_is_400(refused):
    refused("GET", "/kv?limit=abc", 400, "bad_request")


def test_zero_and_too_large_limits_are_400(refused):
    refused("GET", "/kv?limit=0", 400, "bad_request")
    refused("GET", "/kv?limit=1001", 400, "bad_request")


def test_unknown_acks_is_400(refused):
    error = refused("PUT", "/kv/a?acks=banana", 400, "bad_request", b"v")
    assert error["parameter"] == "acks" and "banana" in error["message"]


def test_negative_timeout_is_400(refused):
    refused("PUT", "/kv/a?timeout=-1", 400, "bad_request", b"v")


def test_nan_timeout_is_400(refused):
    refused("PUT", "/kv/a?timeout=nan", 400, "bad_request", b"v")


def test_infinite_zero_and_too_long_timeouts_are_400(refused):
    for value in ("inf", "0", "61", "soon", ""):
        refused("DELETE", f"/kv/a?timeout={value}", 400, "bad_request")


def test_consistent_maybe_is_400(refused):
    refused("GET", "/kv/a?consistent=maybe", 400, "bad_request")


def test_query_that_is_not_utf8_is_400(refused):
    refused("GET", "/kv?prefix=%FF", 400, "bad_request")


def test_unknown_route_is_404_json(refused):
    refused("GET", "/nope", 404, "not_found")
    refused("GET", "/kvx", 404, "not_found")


def test_wrong_method_is_405_with_allow(refused, api):
    refused("POST", "/kv/a", 405, "method_not_allowed", b"v")
    answer = api.request("PATCH", "/health")
    assert answer.status == 405
    assert answer.headers["allow"] == "GET, OPTIONS"
    allow = api.request("POST", "/kv/a").headers["allow"]
    assert allow == "DELETE, GET, OPTIONS, PUT"


def test_internal_routes_have_their_own_methods(refused, api):
    refused("DELETE", "/internal/raft", 405, "method_not_allowed")
    assert api.request("OPTIONS", "/internal/raft").headers["allow"] == "GET, POST"
