"""The HTTP front end of issue 14 against the fake service: binary bodies and answers,
conditional and prefix deletes, transactions checked before the service sees them."""

import base64
import json


from dkvs.core.values import from_bytes

ALL_BYTES = bytes(range(256))


def call(api, method, path, body=None, headers=None):
    answer = api.request(method, path, body, headers)
    return answer.status, answer.json()


def test_octet_stream_put_stores_bytes_and_accept_returns_them(api, fake):
    status, body = call(api, "PUT", "/kv/b", ALL_BYTES, {"Content-Type": "application/octet-stream"})
    assert status == 200, body
    assert fake.snapshot()[0]["b"][0] == from_bytes(ALL_BYTES)
    answer = api.request("GET", "/kv/b", headers={"Accept": "application/octet-stream"})
    assert answer.status == 200 and answer.body == ALL_BYTES
    assert answer.headers["content-type"] == "application/octet-stream"
    status, doc = call(api, "GET", "/kv/b")
    assert base64.b64decode(doc["value_base64"]) == ALL_BYTES and "value" not in doc
    status, page = call(api, "GET", "/kv?prefix=b")
    assert "value_base64" in page["items"][0]


def test_text_put_must_still_be_utf8(api, fake):
    status, body = call(api, "PUT", "/kv/t", b"\xff")
    assert status == 400 and body["parameter"] == "value"
    assert fake.snapshot()[0] == {}


def test_prefix_delete_needs_a_prefix_or_all(api, fake):
    call(api, "PUT", "/kv/a1", b"1")
    assert call(api, "DELETE", "/kv")[0] == 400
    assert call(api, "DELETE", "/kv?prefix=a&all=1")[0] == 400
    status, body = call(api, "DELETE", "/kv?prefix=a")
    assert status == 200 and body["deleted"] == 1


def test_txn_body_is_checked_before_the_service_and_runs(api, fake):
    status, body = call(api, "POST", "/txn", json.dumps({"success": [{"op": "put", "key": "k"}]}).encode())
    assert status == 400 and body["parameter"] == "success[0].value"
    assert not [c for c in fake.calls if c[0] == "txn"]
    doc = {"compare": [{"key": "k", "exists": False}], "success": [{"op": "put", "key": "k", "value": "v"}]}
    status, body = call(api, "POST", "/txn?acks=majority", json.dumps(doc).encode())
    assert status == 200 and body["succeeded"] is True
    assert fake.calls[-1][2] == "majority"
    assert call(api, "POST", "/txn?ack=1", b"{}")[0] == 400


def test_openapi_documents_the_new_routes(api):
    status, doc = call(api, "GET", "/openapi.json")
    assert "post" in doc["paths"]["/txn"] and "delete" in doc["paths"]["/kv"]
    assert {p["name"] for p in doc["paths"]["/kv/{key}"]["delete"]["parameters"]} >= {"if_seq"}
