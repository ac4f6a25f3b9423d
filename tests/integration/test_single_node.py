"""One real node started from the CLI, driven with plain urllib (issue #2's "done when")."""

import json
import urllib.parse
import urllib.request

from .procs import get, put, request, status


def test_startup_line_names_the_real_port(procs):
    node = procs.start()
    assert node.line.startswith(f"dkvs node {node.id} listening on http://127.0.0.1:")
    assert node.port != 0
    assert request("GET", f"{node.url}/health") == (200, {"status": "ok"})


def test_put_get_delete_round_trip_with_non_ascii_key_and_value(procs):
    node = procs.start()
    key, value = "clé/ü 1 ✓", "naïve 𤭢 ✓"
    code, written = put(node.url, key, value)
    assert code == 200 and written["key"] == key and written["epoch"] >= 1
    # Plain urllib, no helper: what a user would type.
    with urllib.request.urlopen(f"{node.url}/kv/{urllib.parse.quote(key, safe='')}") as response:
        assert json.loads(response.read()) == {"key": key, "value": value, "seq": written["seq"]}
    assert request("DELETE", f"{node.url}/kv/{urllib.parse.quote(key, safe='')}")[0] == 200
    code, body = get(node.url, key)
    assert code == 404 and body["error"] == "key_not_found"


def test_delete_of_absent_key_is_404_and_changes_no_key(procs):
    node = procs.start()
    put(node.url, "other", "kept")
    code, body = request("DELETE", f"{node.url}/kv/nothing-here")
    assert code == 404 and body["error"] == "key_not_found"
    assert status(node.url)["keys"] == 1 and get(node.url, "other")[1]["value"] == "kept"


def test_prefix_listing_pages_with_after_and_limit(procs):
    node = procs.start()
    for i in range(7):
        put(node.url, f"user:{i}", str(i))
    put(node.url, "other", "x")
    seen, after = [], None
    while True:
        query = {"prefix": "user:", "limit": 3, **({"after": after} if after else {})}
        code, page = request("GET", f"{node.url}/kv?{urllib.parse.urlencode(query)}")
        assert code == 200 and len(page["items"]) <= 3
        seen += [item["key"] for item in page["items"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == [f"user:{i}" for i in range(7)]


def test_status_shows_master_epoch_and_counts_writes(procs):
    node = procs.start()
    first = status(node.url)
    assert first["role"] == "master" and first["epoch"] >= 1
    assert first["master"]["id"] == node.id
    for i in range(5):
        put(node.url, f"k{i}", "v")
    assert status(node.url)["last_seq"] == first["last_seq"] + 5


def test_sigterm_shuts_down_cleanly_with_exit_code_0(procs):
    node = procs.start()
    put(node.url, "k", "v")
    assert node.terminate() == 0


def test_env_variables_configure_the_node(procs):
    node = procs.start(env={"DKVS_ID": "from-env", "DKVS_MAX_KEY_BYTES": "8"})
    assert node.id == "from-env"
    assert put(node.url, "123456789", "v")[0] == 413
    assert put(node.url, "12345678", "v")[0] == 200
