"""The OpenAPI document matches the route table, and CORS is granted only where it should be."""

from __future__ import annotations

import json
import re

import pytest
from api_clients import ApiClient

from dkvs.api.routes import TABLE

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def document(api) -> dict:
    answer = api.request("GET", "/openapi.json")
    assert answer.status == 200
    return answer.json()


def test_document_has_the_openapi_3_structure(document):
    assert re.fullmatch(r"3\.0\.\d+", document["openapi"])
    assert document["info"]["title"] and document["info"]["version"]
    assert document["paths"]
    operation_ids = []
    for path, operations in document["paths"].items():
        assert path.startswith("/")
        assert operations and set(operations) <= HTTP_METHODS
        for operation in operations.values():
            assert operation["responses"] and all(re.fullmatch(r"[1-5]\d\d", s)
                                                  for s in operation["responses"])
            for response in operation["responses"].values():
                assert response["description"]
            for param in operation.get("parameters", []):
                assert param["in"] in {"path", "query"} and "schema" in param
                if param["in"] == "path":
                    assert param["required"] is True and "{%s}" % param["name"] in path
            operation_ids.append(operation["operationId"])
    assert len(operation_ids) == len(set(operation_ids))
    refs = re.findall(r'"#/components/schemas/(\w+)"', json.dumps(document))
    assert refs and set(refs) <= set(document["components"]["schemas"])


def test_every_public_route_is_documented_and_no_internal_one(document):
    for route in TABLE.routes:  # the default table: without the nkvd routes (no --nkvd)
        documented = route.method.lower() in document["paths"].get(route.pattern, {})
        assert documented == (route.public and route.documented), route
    assert not any(path.startswith(("/internal", "/nkvd")) for path in document["paths"])


def test_every_documented_operation_is_dispatchable(document, api):
    for path, operations in document["paths"].items():
        for method in operations:
            answer = api.request(method.upper(), path.replace("{key}", "probe"), b"v")
            assert answer.status < 500, (method, path, answer)
            if answer.status == 404:
                assert answer.json()["error"] != "not_found", (method, path)
            assert answer.status != 405, (method, path)


def test_parameters_carry_the_node_limits(document):
    listing = document["paths"]["/kv"]["get"]["parameters"]
    limit = next(p for p in listing if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 1000 and limit["schema"]["default"] == 100


def test_preflight_grants_methods_and_headers(api):
    answer = api.request("OPTIONS", "/kv/a", headers={
        "Origin": "https://app.test", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type, x-custom"})
    assert answer.status == 204 and answer.body == b""
    assert "content-length" not in answer.headers
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["access-control-allow-methods"] == "DELETE, GET, PUT"
    assert answer.headers["access-control-allow-headers"] == "content-type, x-custom"
    assert int(answer.headers["access-control-max-age"]) > 0


def test_public_answers_carry_allow_origin_when_asked(api):
    with_origin = api.request("GET", "/health", headers={"Origin": "https://app.test"})
    assert with_origin.headers["access-control-allow-origin"] == "*"
    assert "retry-after" in with_origin.headers["access-control-expose-headers"].lower()
    error = api.request("GET", "/kv/absent", headers={"Origin": "https://app.test"})
    assert error.headers["access-control-allow-origin"] == "*"
    without = api.request("GET", "/health")
    assert "access-control-allow-origin" not in without.headers


def test_internal_routes_never_get_cors(api):
    answer = api.request("GET", "/internal/x", headers={"Origin": "https://app.test"})
    assert answer.status == 200 and "access-control-allow-origin" not in answer.headers
    assert api.request("OPTIONS", "/internal/x",
                       headers={"Origin": "https://app.test"}).status == 405


def test_listed_origins_are_echoed_and_others_refused(start_server):
    api = ApiClient(start_server(cors_origins=("https://ops.test",)).url)
    allowed = api.request("GET", "/health", headers={"Origin": "https://ops.test"})
    assert allowed.headers["access-control-allow-origin"] == "https://ops.test"
    assert allowed.headers["vary"] == "Origin"
    other = api.request("GET", "/health", headers={"Origin": "https://evil.test"})
    assert "access-control-allow-origin" not in other.headers
    preflight = api.request("OPTIONS", "/kv", headers={"Origin": "https://evil.test"})
    assert "access-control-allow-origin" not in preflight.headers


def test_empty_origin_list_turns_cors_off(start_server):
    api = ApiClient(start_server(cors_origins=()).url)
    answer = api.request("GET", "/health", headers={"Origin": "https://app.test"})
    assert "access-control-allow-origin" not in answer.headers
