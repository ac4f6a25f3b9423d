"""nkvd's documented API under /nkvd/, answered exactly as nkvd answers (issue #6).

The routes exist only on nodes started with ``--nkvd`` (issue 11: they change data on GET).
"""

import concurrent.futures
import http.client
import json
import resource
import urllib.parse

import pytest

from .procs import ProcessGroup, request


def nkvd(base: str, route: str, **query) -> tuple[int, object]:
    return request("GET", f"{base}/nkvd/{route}?{urllib.parse.urlencode(query)}" if query else f"{base}/nkvd/{route}")


@pytest.fixture(scope="module")
def shared_cluster():
    """This module's 3-node cluster, with the nkvd routes enabled."""
    group = ProcessGroup()
    try:
        yield group.cluster(3, "--nkvd")
    finally:
        group.close()


@pytest.fixture
def cluster(shared_cluster):
    """The module's 3-node cluster, with nkvd's records cleared before each test."""
    assert nkvd(shared_cluster[0].url, "clear") == (200, {"success": True})
    return shared_cluster


def test_set_get_is_rm_round_trip_with_utf8_key_and_astral_value(cluster):
    master, slave = cluster[0].url, cluster[2].url
    assert nkvd(slave, "set", k="test:set:utf:✓", v="𤭢") == (200, {"success": True})
    assert nkvd(slave, "get", k="test:set:utf:✓") == (200, "𤭢")
    assert nkvd(master, "is", k="test:set:utf:✓") == (200, {"success": True})
    assert nkvd(master, "rm", k="test:set:utf:✓") == (200, {"success": True})
    assert nkvd(master, "get", k="test:set:utf:✓") == (404, {"error": "MISSING_RECORD"})
    assert nkvd(master, "is", k="test:set:utf:✓") == (404, {"error": "MISSING_RECORD"})
    assert nkvd(master, "rm", k="test:set:utf:✓") == (404, {"error": "MISSING_RECORD"})


def test_empty_value_is_allowed_and_blank_parameters_count_as_present(cluster):
    base = cluster[0].url
    assert request("GET", f"{base}/nkvd/set?k=a&v=") == (200, {"success": True})
    assert nkvd(base, "get", k="a") == (200, "")
    assert request("GET", f"{base}/nkvd/set?k=&v=x") == (400, {"error": "EMPTY_KEY"})


@pytest.mark.parametrize("query, code", [
    ({}, "MISSING_KEY_PARAM"),
    ({"v": "x"}, "MISSING_KEY_PARAM"),
    ({"k": ""}, "EMPTY_KEY"),
    ({"k": "x" * 64, "v": "x"}, "MAXIMUM_KEY_LENGTH_REACHED"),
    ({"k": "𤭢" * 32, "v": "x"}, "MAXIMUM_KEY_LENGTH_REACHED"),  # 64 UTF-16 code units
    ({"k": "x" * 64}, "MAXIMUM_KEY_LENGTH_REACHED"),  # the key is checked before the value
    ({"k": "x"}, "MISSING_VALUE_PARAM"),
    ({"k": "x", "v": "y" * 256}, "MAXIMUM_VALUE_LENGTH_REACHED"),
    ({"k": "x", "v": "𤭢" * 128}, "MAXIMUM_VALUE_LENGTH_REACHED"),
])
def test_set_errors_are_nkvd_codes_with_400(cluster, query, code):
    base = cluster[0].url
    assert nkvd(base, "set", **query) == (400, {"error": code})
    assert nkvd(base, "getKeys") == (200, [])  # nothing was written


def test_longest_allowed_key_and_value_are_accepted(cluster):
    base = cluster[0].url
    assert nkvd(base, "set", k="k" * 63, v="v" * 255) == (200, {"success": True})
    assert nkvd(base, "get", k="k" * 63) == (200, "v" * 255)


@pytest.mark.parametrize("route", ["get", "rm", "is"])
def test_key_errors_of_read_routes(cluster, route):
    base = cluster[0].url
    assert nkvd(base, route) == (400, {"error": "MISSING_KEY_PARAM"})
    assert nkvd(base, route, k="") == (400, {"error": "EMPTY_KEY"})
    assert nkvd(base, route, k="x" * 64) == (400, {"error": "MAXIMUM_KEY_LENGTH_REACHED"})


def test_listing_routes_status_healthcheck_and_clear(cluster):
    base, other = cluster[0].url, cluster[1].url
    for k, v in [("b", "2"), ("a", "1")]:
        nkvd(base, "set", k=k, v=v)
    request("PUT", f"{base}/kv/not-nkvd?acks=all", b"untouched")
    assert nkvd(other, "getKeys") == (200, ["a", "b"])
    assert nkvd(other, "getValues") == (200, ["1", "2"])
    assert nkvd(other, "getAll") == (200, [{"k": "a", "v": "1"}, {"k": "b", "v": "2"}])
    assert nkvd(other, "healthcheck") == (200, {"status": "ok"})
    code, status = nkvd(base, "status")
    assert code == 200 and set(status) == {"version", "hostname", "port", "maxKeyLength", "maxValueLength",
                                           "availableRecords"}
    assert (status["maxKeyLength"], status["maxValueLength"], status["availableRecords"]) == (64, 256, 2)
    assert nkvd(other, "clear") == (200, {"success": True})
    assert nkvd(base, "getAll") == (200, [])
    assert request("GET", f"{base}/kv/not-nkvd")[1]["value"] == "untouched"


def test_a_thousand_concurrent_keep_alive_connections(procs):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2500:
        pytest.skip(f"needs about 2,500 file descriptors (limit {soft})")
    node = procs.start("--nkvd")
    conns = [http.client.HTTPConnection("127.0.0.1", node.port, timeout=30) for _ in range(1000)]
    for conn in conns:
        conn.connect()  # all 1,000 open at once before any request

    def use(i):
        conn = conns[i]
        conn.request("GET", f"/nkvd/set?k=c{i}&v=v{i}")
        first = conn.getresponse()
        first_body = json.loads(first.read())
        conn.request("GET", f"/nkvd/get?k=c{i}")  # same connection: keep-alive
        second = conn.getresponse()
        return first.status, first_body, second.status, json.loads(second.read())

    try:
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            results = list(pool.map(use, range(1000)))
    finally:
        for conn in conns:
            conn.close()
    assert all(r == (200, {"success": True}, 200, f"v{i}") for i, r in enumerate(results))
    assert nkvd(node.url, "status")[1]["availableRecords"] == 1000
