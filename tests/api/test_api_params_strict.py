"""Strict query parameters: a typo is a 400 that names it, never a silently weaker request.

Issue 12: ``PUT ?ack=majority`` was an ``acks=1`` write, ``GET ?consistant=true`` a plain
possibly stale read, ``?ttl=2`` accepted and ignored. Every public route now accepts exactly
the query parameters its route-table entry lists, each once; nkvd routes keep nkvd's rules.
"""

from __future__ import annotations

import pytest
from api_clients import ApiClient

from dkvs.api.routes import TABLE, route_table


def test_misspelt_acks_is_refused_naming_the_accepted_parameters(refused):
    error = refused("PUT", "/kv/k?ack=majority", 400, "bad_request", b"v")
    assert error["message"] == "unknown query parameter 'ack'; accepted: acks, timeout, if_seq, lease, ttl"
    assert error["parameter"] == "ack"
    assert error["accepted"] == ["acks", "timeout", "if_seq", "lease", "ttl"]


def test_misspelt_consistent_is_refused(refused):
    error = refused("GET", "/kv/k?consistant=true", 400, "bad_request")
    assert error["parameter"] == "consistant"
    assert "consistent" in error["accepted"]


@pytest.mark.parametrize("query", ["ttl=0", "ttl=-1", "ttl=1e9", "ttl=nan", "lease=0", "lease=x",
                                   "lease=5&ttl=2"])
def test_bad_ttl_and_lease_are_refused(refused, query):
    error = refused("PUT", f"/kv/k?{query}", 400, "bad_request", b"v")
    assert error["parameter"] in ("ttl", "lease")


def test_a_repeated_parameter_is_refused(refused):
    error = refused("PUT", "/kv/k?acks=1&acks=all", 400, "bad_request", b"v")
    assert error["parameter"] == "acks" and "more than once" in error["message"]


def test_routes_without_query_parameters_accept_none(refused):
    error = refused("GET", "/status?verbose=1", 400, "bad_request")
    assert error["message"] == "unknown query parameter 'verbose'; accepted: none"
    assert error["accepted"] == []


def test_listed_parameters_still_work(api, fake):
    assert api.request("PUT", "/kv/k?acks=all&timeout=1", b"v").status == 200
    assert api.request("GET", "/kv/k?consistent=false").status == 200
    assert api.request("GET", "/kv?prefix=k&after=a&limit=5").status == 200
    assert api.request("DELETE", "/kv/k?acks=1&timeout=2").status == 200


def test_every_strict_route_of_the_table_refuses_an_unknown_parameter(api):
    checked = 0
    for route in TABLE.routes:
        if not route.strict_query:
            continue
        path = route.pattern.replace("{key}", "probe").replace("{name}", "dashboard.css")
        answer = api.request(route.method, path + "?no_such_parameter=1", b"v")
        assert answer.status == 400, (route.method, route.pattern, answer)
        assert answer.json()["parameter"] == "no_such_parameter"
        assert answer.json()["accepted"] == list(route.query_names)
        checked += 1
    assert checked >= 8


def test_cors_preflight_is_not_refused_for_the_query_of_the_request_it_precedes(api):
    answer = api.request("OPTIONS", "/kv/k?acks=majority&whatever=1",
                         headers={"Origin": "https://app.test", "Access-Control-Request-Method": "PUT"})
    assert answer.status == 204


def test_openapi_marks_strict_operations_with_their_400(api):
    paths = api.request("GET", "/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation["x-strict-query"] is True, (method, path)
            assert "400" in operation["responses"], (method, path)


@pytest.fixture
def nkvd_api(start_server) -> ApiClient:
    server = start_server()
    server.route_table = route_table(nkvd=True)
    return ApiClient(server.url)


def test_nkvd_routes_are_absent_unless_enabled(api, nkvd_api):
    answer = api.request("GET", "/nkvd/healthcheck")
    assert answer.status == 404 and answer.json()["error"] == "not_found"
    assert nkvd_api.request("GET", "/nkvd/healthcheck").json() == {"status": "ok"}


def test_nkvd_routes_keep_nkvds_own_rules_for_unknown_parameters(nkvd_api):
    answer = nkvd_api.request("GET", "/nkvd/healthcheck?anything=1&anything=2")
    assert answer.status == 200 and answer.json() == {"status": "ok"}
    paths = nkvd_api.request("GET", "/openapi.json").json()["paths"]
    assert "x-strict-query" not in paths["/nkvd/set"]["get"]
