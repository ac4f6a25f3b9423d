"""Client tokens on the HTTP front end: 401 without a known token, 403 beyond its role or
prefixes, filtered listings and watches, open /health and dashboard files, SIGHUP reload.

The decision comes from the route table (each route's ``role`` and ``scope``); these tests
drive a real server around a fake service, so each refusal is also shown to change nothing.
"""

from __future__ import annotations

import json

import pytest

from api_clients import ApiClient, key_path
from fake_service import FakeService

from dkvs.api.auth import Authenticator, parse_auth_file
from dkvs.api.routes import ROUTES, route_table

AUTH = {"tokens": [
    {"token": "reader-token", "role": "read"},
    {"token": "writer-token", "role": "write"},
    {"token": "admin-token", "role": "admin"},
    {"token": "app-writer", "role": "write", "prefixes": ["app/"]},
    {"token": "app-reader", "role": "read", "prefixes": ["app/", "shared/"]},
]}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


class WatchingFake(FakeService):
    """A fake that also answers prefix watches (with every key under the prefix)."""

    def watch_prefix(self, prefix, after_seq, wait, limit):
        page = self.items(prefix, None, limit)
        return {"changes": page["items"], "index": self._seq, "reset": False}


@pytest.fixture
def secured(start_server, tmp_path):
    """A server with auth on (tokens from a file) around a fake holding a few keys."""
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(AUTH))
    fake = WatchingFake()
    for key in ("app/a", "app/b", "other/x", "shared/s"):
        fake.put(key, "v-" + key, acks="1", timeout=1.0)
    server = start_server(fake)
    server.route_table = route_table(nkvd=True)
    server.auth = Authenticator(str(path))
    return server, fake, ApiClient(server.url), path


def test_every_route_declares_a_known_role():
    for route in ROUTES:
        assert route.role in (None, "peer", "read", "write", "admin"), route


@pytest.mark.parametrize("headers", [{}, bearer("nope"), {"Authorization": "Basic cmVhZGVyLXRva2Vu"},
                                     {"Authorization": "Bearer "}])
@pytest.mark.parametrize("method,path", [("GET", "/kv/app/a"), ("PUT", "/kv/app/a"), ("DELETE", "/kv/app/a"),
                                         ("GET", "/kv"), ("GET", "/status"), ("GET", "/metrics"),
                                         ("GET", "/nkvd/getAll"), ("POST", "/internal/remove?id=x")])
def test_missing_or_unknown_token_is_401_and_changes_nothing(secured, headers, method, path):
    server, fake, api, _ = secured
    before = fake.snapshot()
    answer = api.request(method, path, b"new" if method == "PUT" else None, headers)
    assert answer.status == 401, answer
    error = answer.json()
    assert error["error"] == "unauthorized" and error["message"]
    assert "reader-token" not in error["message"]
    assert fake.snapshot() == before
    assert not [c for c in fake.calls if c[0] != "put"]


def test_health_dashboard_openapi_and_preflight_stay_open(secured):
    _, _, api, _ = secured
    assert api.request("GET", "/health").status == 200
    assert api.request("GET", "/").status == 200
    assert api.request("GET", "/openapi.json").status == 200
    assert api.request("OPTIONS", "/kv/a", headers={"Origin": "http://x"}).status in (200, 204)


def test_read_token_reads_but_cannot_write(secured):
    _, fake, api, _ = secured
    assert api.request("GET", key_path("other/x"), headers=bearer("reader-token")).json()["value"] == "v-other/x"
    assert api.request("GET", "/status", headers=bearer("reader-token")).status == 200
    assert api.request("GET", "/metrics", headers=bearer("reader-token")).status == 200
    before = fake.snapshot()
    for method in ("PUT", "DELETE"):
        answer = api.request(method, key_path("app/a"), b"x" if method == "PUT" else None, bearer("reader-token"))
        assert answer.status == 403 and answer.json()["error"] == "forbidden", answer
    assert fake.snapshot() == before


def test_write_token_writes_and_deletes(secured):
    _, fake, api, _ = secured
    assert api.request("PUT", key_path("k"), b"v", bearer("writer-token")).status == 200
    assert api.request("DELETE", key_path("k"), None, bearer("writer-token")).status == 200
    assert api.request("GET", key_path("app/a"), headers=bearer("writer-token")).status == 200


def test_prefix_token_cannot_touch_other_keys(secured):
    _, fake, api, _ = secured
    assert api.request("PUT", key_path("app/new"), b"v", bearer("app-writer")).status == 200
    before = fake.snapshot()
    for method, key in (("PUT", "other/x"), ("DELETE", "other/x"), ("GET", "other/x"), ("PUT", "ap")):
        answer = api.request(method, key_path(key), b"v" if method == "PUT" else None, bearer("app-writer"))
        assert answer.status == 403, (method, key, answer)
    assert fake.snapshot() == before
    assert api.request("GET", key_path("shared/s"), headers=bearer("app-reader")).status == 200


def test_listings_and_watches_show_only_covered_keys(secured):
    _, _, api, _ = secured
    keys = lambda answer, field: [row["key"] for row in answer.json()[field]]  # noqa: E731
    assert keys(api.request("GET", "/kv", headers=bearer("app-reader")), "items") == ["app/a", "app/b", "shared/s"]
    assert keys(api.request("GET", "/kv?prefix=app/", headers=bearer("app-reader")), "items") == ["app/a", "app/b"]
    assert keys(api.request("GET", "/kv?prefix=other/", headers=bearer("app-reader")), "items") == []
    assert keys(api.request("GET", "/kv?wait=1", headers=bearer("app-writer")), "changes") == ["app/a", "app/b"]
    assert len(keys(api.request("GET", "/kv", headers=bearer("reader-token")), "items")) == 4


def test_nkvd_routes_need_a_token_covering_their_namespace(secured):
    _, _, api, _ = secured
    assert api.request("GET", "/nkvd/set?k=a&v=1", headers=bearer("writer-token")).status == 200
    assert api.request("GET", "/nkvd/set?k=a&v=1", headers=bearer("reader-token")).status == 403
    assert api.request("GET", "/nkvd/get?k=a", headers=bearer("reader-token")).status == 200
    assert api.request("GET", "/nkvd/get?k=a", headers=bearer("app-reader")).status == 403
    assert api.request("GET", "/nkvd/clear", headers=bearer("app-writer")).status == 403


def test_admin_routes_need_the_admin_role_peer_routes_no_token(secured):
    _, fake, api, _ = secured
    for token in ("reader-token", "writer-token", "app-writer"):
        assert api.request("POST", "/internal/remove?id=x", b"", bearer(token)).status == 403
    assert ("internal", "POST", "remove") not in fake.calls
    assert api.request("POST", "/internal/remove?id=x", b"", bearer("admin-token")).status == 200
    assert fake.calls[-1] == ("internal", "POST", "remove")
    # Node-to-node routes are protected by the cluster signature, not by tokens.
    assert api.request("POST", "/internal/raft", b"{}").status == 200


def test_admin_token_may_do_everything_a_write_token_may(secured):
    _, _, api, _ = secured
    assert api.request("PUT", key_path("z"), b"v", bearer("admin-token")).status == 200
    assert api.request("GET", "/status", headers=bearer("admin-token")).status == 200


def test_reload_replaces_tokens_and_a_bad_file_keeps_the_old_ones(secured, caplog):
    server, _, api, path = secured
    path.write_text(json.dumps({"tokens": [{"token": "fresh", "role": "read"}]}))
    assert server.auth.reload()
    assert api.request("GET", "/status", headers=bearer("fresh")).status == 200
    assert api.request("GET", "/status", headers=bearer("reader-token")).status == 401
    path.write_text("{not json")
    caplog.clear()
    assert not server.auth.reload()
    assert api.request("GET", "/status", headers=bearer("fresh")).status == 200
    lines = [r for r in caplog.records if r.name == "dkvs.auth"]
    assert len(lines) == 1 and "previous tokens stay in force" in lines[0].getMessage()
    assert "fresh" not in lines[0].getMessage()


def test_tokens_are_never_logged(secured, caplog):
    _, _, api, _ = secured
    caplog.set_level("DEBUG")
    api.request("GET", "/status", headers=bearer("guess-me-token"))
    api.request("PUT", key_path("other/x"), b"v", bearer("app-writer"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "guess-me-token" not in text and "app-writer" not in text


def test_without_an_auth_file_everything_stays_open(server, api):
    assert api.request("PUT", key_path("a"), b"v").status == 200
    assert api.request("GET", "/status").status == 200


@pytest.mark.parametrize("text,problem", [
    ("[]", "must be a JSON object"),
    ('{"tokens": [{"token": "t", "role": "root"}]}', "role must be one of"),
    ('{"tokens": [{"token": "", "role": "read"}]}', "token must be"),
    ('{"tokens": [{"token": "t", "role": "read", "prefixes": "app/"}]}', "prefixes must be a list"),
    ('{"tokens": [{"token": "t", "role": "read", "prefix": ["a"]}]}', "unknown field"),
    ('{"tokens": [{"token": "t", "role": "read"}, {"token": "t", "role": "admin"}]}', "repeats"),
    ("\xff", "not JSON"),
])
def test_bad_auth_files_are_refused_with_a_sentence(text, problem):
    from dkvs.api.auth import AuthFileError
    with pytest.raises(AuthFileError, match=problem) as caught:
        parse_auth_file(text.encode("latin-1"))
    assert "\n" not in str(caught.value)


def test_the_token_is_checked_before_the_parameters(secured):
    _, _, api, _ = secured
    assert api.request("GET", "/kv?bogus=1").status == 401
    assert api.request("PUT", key_path("k") + "?acks=7", b"v", bearer("reader-token")).status == 403
    assert api.request("GET", "/kv?bogus=1", headers=bearer("reader-token")).status == 400
