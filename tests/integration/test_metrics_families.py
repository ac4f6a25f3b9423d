"""/metrics on master and slave has every family of issue #16, and the text parses."""

import re
import shutil
import subprocess

import pytest

from .procs import put, request, status, wait_until
from .test_watch_and_metrics import _SAMPLE

NODE_FAMILIES = {
    "dkvs_http_requests_total": "counter", "dkvs_http_request_duration_seconds": "histogram",
    "dkvs_role": "gauge", "dkvs_epoch": "gauge", "dkvs_last_seq": "gauge", "dkvs_commit_seq": "gauge",
    "dkvs_members": "gauge", "dkvs_keys": "gauge", "dkvs_elections_started_total": "counter",
    "dkvs_elections_won_total": "counter", "dkvs_snapshots_total": "counter", "dkvs_fsyncs_total": "counter",
    "dkvs_fsync_duration_seconds": "histogram", "dkvs_replication_lag_seconds": "gauge",
    "dkvs_replication_lag_entries": "gauge", "dkvs_has_master": "gauge", "dkvs_quorum_ok": "gauge",
    "dkvs_role_changes_total": "counter", "dkvs_rollback_entries_total": "counter", "dkvs_build_info": "gauge",
    "dkvs_data_dir_bytes": "gauge", "dkvs_data_dir_free_bytes": "gauge",
    "process_resident_memory_bytes": "gauge", "process_cpu_seconds_total": "counter",
    "process_open_fds": "gauge", "process_start_time_seconds": "gauge",
}


def scrape(base: str) -> str:
    code, text = _get_text(f"{base}/metrics")
    assert code == 200
    return text


def _get_text(url: str) -> tuple[int, str]:
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return answer.status, answer.read().decode()


def parse(text: str) -> tuple[dict, dict]:
    """(family -> type, sample line -> value) with every sample line checked by the
    regular expression of test_watch_and_metrics and every sample under a TYPE."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            _, _, name, kind = line.split()
            assert name not in types, f"{name} declared twice"
            types[name] = kind
        elif line and not line.startswith("#"):
            assert _SAMPLE.match(line), line
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            assert family in types, f"sample {line!r} has no TYPE"
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return types, samples


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from .procs import ProcessGroup
    group = ProcessGroup()
    dirs = [tmp_path_factory.mktemp(f"node{i}") for i in range(3)]
    try:
        first = group.start("--data-dir", str(dirs[0]), "--fsync", "always")
        nodes = [first] + [group.start("--data-dir", str(d), "--fsync", "always", "--join", first.url)
                           for d in dirs[1:]]
        yield nodes
    finally:
        group.close()


def _roles(nodes):
    master_url = wait_until(lambda: status(nodes[0].url)["master"], 10, what="a master")["url"]
    master = next(n for n in nodes if n.url == master_url)
    return master, [n for n in nodes if n is not master]


def test_master_and_slave_expose_every_family_and_the_text_parses(cluster):
    master, slaves = _roles(cluster)
    for i in range(20):
        assert put(master.url, f"fam{i}", "v")[0] == 200
    request("GET", f"{master.url}/kv/fam1")
    for node, role in ((master, "master"), (slaves[0], "slave")):
        wait_until(lambda: status(node.url)["role"] == role, 10, what=role)
        types, samples = parse(scrape(node.url))
        for name, kind in NODE_FAMILIES.items():
            assert types.get(name) == kind, (role, name, types.get(name))
        assert samples["dkvs_has_master"] == 1 and samples["dkvs_quorum_ok"] == 1, role
        assert samples['dkvs_build_info{version="' + status(node.url)["version"] + '"}'] == 1
        assert samples["process_resident_memory_bytes"] > 1e6 and samples["process_open_fds"] > 3
        assert samples["process_start_time_seconds"] > 1.5e9 and samples["dkvs_data_dir_bytes"] > 0
    text = scrape(master.url)
    types, samples = parse(text)
    # Request latency is split by method; fsyncs were timed (--fsync always).
    assert samples['dkvs_http_request_duration_seconds_count{route="/kv/{key}",method="PUT"}'] >= 20
    assert samples['dkvs_http_request_duration_seconds_count{route="/kv/{key}",method="GET"}'] >= 1
    assert samples["dkvs_fsync_duration_seconds_count"] >= 20
    assert len(re.findall(r"^dkvs_replication_lag_seconds\{peer=", text, re.M)) == 2
    assert len(re.findall(r"^dkvs_replication_lag_entries\{peer=", text, re.M)) == 2
    assert samples['dkvs_role{role="master"}'] == 1 and samples["dkvs_role_changes_total"] >= 0


def test_a_paused_slave_shows_growing_lag_in_entries_and_seconds(cluster):
    master, slaves = _roles(cluster)
    paused = slaves[1]
    peer = f"{{peer=\"{paused.id}\"}}"
    paused.pause()
    try:
        for i in range(5):
            assert put(master.url, f"lag{i}", "v")[0] == 200

        def lag():
            samples = parse(scrape(master.url))[1]
            key = peer
            return samples["dkvs_replication_lag_entries" + key], samples["dkvs_replication_lag_seconds" + key]
        entries, seconds = wait_until(lambda: (lambda v: v if v[0] >= 5 and v[1] > 0 else None)(lag()), 10,
                                      what="lag on the paused slave")
        later = wait_until(lambda: (lambda v: v if v[1] > seconds else None)(lag()), 10, what="growing lag")
        assert later[0] >= entries
    finally:
        paused.resume()
    wait_until(lambda: all(v == 0 for k, v in parse(scrape(master.url))[1].items()
                           if k.startswith("dkvs_replication_lag_entries{")), 10, what="lag back to 0")


def test_fsyncs_of_the_batch_flusher_are_timed(procs, tmp_path):
    # Under --fsync batch an append does not fsync on the node's thread: only the flusher's
    # fsyncs (wrapped from outside the storage) can move the histogram after the start.
    node = procs.start("--data-dir", str(tmp_path / "batch"), "--fsync", "batch")
    assert put(node.url, "batch-first", "v")[0] == 200
    count = lambda: parse(scrape(node.url))[1].get("dkvs_fsync_duration_seconds_count", 0)  # noqa: E731
    before = wait_until(lambda: (lambda c: c if c >= 1 else None)(count()), 10, what="the first timed fsync")
    for i in range(5):
        assert put(node.url, f"batch{i}", "v")[0] == 200
    wait_until(lambda: count() > before, 10, what="a timed flusher fsync")
    samples = parse(scrape(node.url))[1]
    assert samples["dkvs_fsyncs_total"] >= samples["dkvs_fsync_duration_seconds_count"]


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_check_metrics_passes_on_master_and_slave(cluster):
    master, slaves = _roles(cluster)
    for node in (master, slaves[0]):
        done = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape(node.url), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
