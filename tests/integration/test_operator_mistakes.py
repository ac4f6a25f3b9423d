"""Every operator mistake issue 12 lists, made on purpose: a clear line or a clean recovery.

The walk follows the issue's opening list. A mistake that stops a node must give exit
status 2 and exactly one ``dkvs: error:`` line on stderr, no traceback, in bounded time
(``refused_with``, shared with ``test_startup_errors``). A mistake made against a running
cluster must, besides, leave the cluster as it was: the same member list (no dead extra
member) and the same epoch (no election it caused), read from the master before and
after (:func:`cluster_view`). Mistakes the cluster recovers from (the in-memory restart of
the first node) must end with the old place taken back, nothing extra, the data visible.

The rest of the issue's list is not an operator mistake and has its own tests: a full
disk (``tests/test_disk_full.py``), twelve kinds of data-dir damage
(``tests/test_data_dir_damage.py``), a lost majority (``test_quorum_visible``), the slave
restarted per the README (``test_restart_rejoin``), the docs' examples
(``test_docs_examples``).

Cases that need no cluster run ``python -m dkvs`` alone; the cluster cases share one
in-memory cluster (:func:`cluster`) where the mistake does not disturb it. Clusters run
with a long election timeout (:data:`STEADY`) so that a loaded machine does not hold
elections of its own while the epoch is watched; a master is moved by a leadership
transfer, not by waiting for a failover.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from dkvs.tools import leader
from dkvs.tools.local_cluster import http_call

from .procs import get, put, status, wait_until
from .test_startup_errors import run_dkvs, refused_with


STEADY = ("--election-timeout", "5")  # with the 0.05 s test heartbeat: 2.5 s of silence at least


def cluster_view(nodes) -> tuple[list[tuple[str, str]], int]:
    """(members as sorted (id, url), epoch) as the cluster's master reports them."""
    def from_master():
        for node in nodes:
            if node.alive():
                s = status(node.url)
                if s.get("role") == "master":
                    return s
        return None
    s = wait_until(from_master, what="a master")
    return sorted((m["id"], m["url"]) for m in s["members"]), s["epoch"]


@pytest.fixture(scope="module")
def cluster():
    """One 3-node in-memory cluster for the mistakes that must not disturb it."""
    from .procs import ProcessGroup
    group = ProcessGroup()
    try:
        nodes = group.cluster(3, *STEADY)
        assert put(nodes[0].url, "existing", "v", acks="all")[0] == 200
        yield nodes
    finally:
        group.close()


# --- start-up values: no cluster involved --------------------------------------------------

@pytest.mark.parametrize("args, env, expected", [
    (["--port", "99999"], {}, "--port '99999': must be a port number from 0 to 65535"),
    ([], {"DKVS_PORT": "abc"}, "DKVS_PORT='abc': must be a port number"),
    (["--port", "0", "--heartbeat-interval", "-0.1"], {}, "--heartbeat-interval '-0.1': must be a positive"),
    (["--port", "0"], {"DKVS_HEARTBEAT_INTERVAL": "-1"}, "DKVS_HEARTBEAT_INTERVAL='-1'"),
    (["--port", "0", "--heartbeat-interval", "1", "--election-timeout", "1"], {}, "at least twice"),
    (["--port", "0", "--heartbeat-interval", "2", "--election-timeout", "1"], {}, "at least twice"),
    (["--port", "0"], {"DKVS_DEFAULT_ACKS": "2"}, "DKVS_DEFAULT_ACKS='2': must be one of 1, majority, all"),
    (["--port", "0", "--fsync", "sometimes"], {}, "--fsync 'sometimes': must be one of"),
    (["--port", "0", "--join", "ftp://127.0.0.1:1"], {}, "the scheme must be http"),
    (["--port", "0", "--join", "http://127.0.0.1:1/path"], {}, "without a path or query"),
], ids=["port-99999", "DKVS_PORT-abc", "negative-heartbeat", "negative-heartbeat-env",
        "heartbeat-equals-election", "heartbeat-above-election", "DKVS_DEFAULT_ACKS-2", "fsync-typo",
        "join-ftp", "join-with-path"])
def test_a_bad_value_is_one_line(args, env, expected):
    assert expected in refused_with(*args, env=env)


def test_a_data_dir_that_is_a_file(tmp_path):
    afile = tmp_path / "hostname"
    afile.write_text("x")
    assert f"--data-dir {afile} is a file, not a directory" in refused_with("--port", "0", "--data-dir", str(afile))


def test_a_data_dir_held_by_another_process_names_its_pid(procs, tmp_path):
    holder = procs.start("--data-dir", str(tmp_path / "d"))
    line = refused_with("--port", "0", "--data-dir", str(tmp_path / "d"))
    assert f"pid {holder.proc.pid}" in line
    assert holder.alive() and status(holder.url)["role"] == "master"  # the holder is untouched


def test_an_address_in_use_names_the_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in refused_with("--port", str(port))


@pytest.mark.parametrize("written", ["http://127.0.0.1:{port}", "127.0.0.1:{port}"], ids=["url", "no-scheme"])
def test_join_to_a_dead_url_is_bounded_and_lists_the_urls_tried(written):
    with socket.socket() as probe:  # bound, not listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        line = refused_with("--port", "0", "--join", written.format(port=port), "--join-timeout", "0.5")
    assert f"within 0.5 s (--join-timeout); tried http://127.0.0.1:{port} (connection refused)" in line


def test_a_damaged_data_dir_is_refused_naming_the_way_out(procs, tmp_path):
    data = tmp_path / "d"
    node = procs.start("--data-dir", str(data), "--fsync", "always")
    assert put(node.url, "k", "v")[0] == 200
    node.kill()
    (data / "state.json").unlink()  # the node would forget its epoch and its vote
    line = refused_with("--port", "0", "--data-dir", str(data))
    assert "state.json" in line


def test_join_to_its_own_url_with_nothing_else_to_try(procs):
    with socket.socket() as probe:  # a port nobody listens on: the node's own, to be
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    line = refused_with("--port", str(port), "--join", f"127.0.0.1:{port}")
    assert f"--join http://127.0.0.1:{port} is this node's own URL: give the URL of another member" in line


def test_a_data_dir_restarted_with_another_id_is_refused(procs, tmp_path):
    node = procs.start("--data-dir", str(tmp_path / "d"))
    assert node.terminate() == 0
    line = refused_with("--port", "0", "--data-dir", str(tmp_path / "d"), "--id", "someone-else")
    assert f"--id someone-else does not match the id {node.id}" in line


# --- mistakes made against a running cluster: the cluster stays as it was --------------------

def test_strict_parameters_change_nothing(cluster):
    before = cluster_view(cluster)
    url = cluster[1].url  # a slave: it must refuse too, not forward a weakened write
    for method, path in (("PUT", "/kv/typo?ack=majority"), ("PUT", "/kv/typo?acks=1&acks=all"),
                         ("GET", "/kv/existing?consistant=true"), ("DELETE", "/kv/existing?if_sq=1"),
                         ("GET", "/kv?prefix=a&prefix=b"), ("GET", "/status?verbose=1")):
        code, body = http_call(url, method, path, b"v" if method == "PUT" else None)
        assert code == 400 and body["error"] == "bad_request", (method, path, code, body)
    assert get(cluster[0].url, "typo")[0] == 404
    assert get(cluster[0].url, "existing")[0] == 200
    assert cluster_view(cluster) == before


def test_joining_with_the_data_dir_of_a_standalone_node_is_refused(cluster, procs, tmp_path):
    # Started without --join (its own new cluster), written to, stopped, restarted with --join.
    data = str(tmp_path / "standalone")
    alone = procs.start("--data-dir", data)
    theirs = status(alone.url)["cluster_id"]
    assert put(alone.url, "mine", "v")[0] == 200
    assert alone.terminate() == 0
    before = cluster_view(cluster)
    line = refused_with("--port", "0", "--data-dir", data, "--join", cluster[0].url)
    assert theirs in line and status(cluster[0].url)["cluster_id"] in line and "empty --data-dir" in line
    assert cluster_view(cluster) == before


def test_joining_with_the_data_dir_of_another_clusters_member_is_refused(cluster, procs, tmp_path):
    other = procs.start()
    data = str(tmp_path / "member")
    member = procs.start("--join", other.url, "--data-dir", data)
    theirs = status(member.url)["cluster_id"]
    member.kill()
    before = cluster_view(cluster)
    line = refused_with("--port", "0", "--data-dir", data, "--join", cluster[2].url)
    assert theirs in line and "empty --data-dir" in line
    assert cluster_view(cluster) == before


def test_joining_with_a_standalone_data_dir_older_than_cluster_ids_is_refused(cluster, procs, tmp_path):
    # No cluster_id file to compare: it used to adopt the cluster's id, crash on the first
    # append ("would truncate committed entries") and leave a dead extra member behind.
    data = tmp_path / "old"
    alone = procs.start("--data-dir", str(data))
    for i in range(5):
        assert put(alone.url, f"mine{i}", "v")[0] == 200
    assert alone.terminate() == 0
    (data / "cluster_id").unlink()
    before = cluster_view(cluster)
    line = refused_with("--port", "0", "--data-dir", str(data), "--join", cluster[0].url)
    assert "made before cluster ids" in line and "none but itself" in line and "empty --data-dir" in line
    assert cluster_view(cluster) == before


def test_joining_with_the_id_of_a_live_member_is_refused(cluster):
    before = cluster_view(cluster)
    line = refused_with("--port", "0", "--id", cluster[1].id, "--join", cluster[0].url)
    assert "409" in line and f"node id {cluster[1].id!r} is already used by a live member" in line
    assert cluster_view(cluster) == before


def test_a_joining_node_that_cannot_be_reached_back_adds_nothing(cluster):
    before = cluster_view(cluster)
    line = refused_with("--port", "0", "--advertise-url", "http://127.0.0.1:1", "--join", cluster[0].url)
    assert "403" in line and "could not be reached" in line
    assert cluster_view(cluster) == before


def test_a_crashed_in_memory_member_restarted_with_its_command_line_takes_its_place(cluster, procs):
    # Last on the shared cluster: it replaces one of its nodes (at the same URL).
    dead = cluster[2]
    before_members, before_epoch = cluster_view(cluster)
    dead.kill()
    again = procs.start("--join", cluster[0].url, *STEADY, port=dead.port)  # a new id at the old address
    expected = sorted([m for m in before_members if m[0] != dead.id] + [(again.id, dead.url)])
    wait_until(lambda: cluster_view(cluster[:2])[0] == expected, what="the new id in the old place")
    assert cluster_view(cluster[:2])[1] == before_epoch
    cluster[2] = again
    wait_until(lambda: get(again.url, "existing")[0] == 200, what="the data on the new node")


# --- restarts: the first node (in memory, or with a wiped data dir), a member's data dir ------

def _first_node_killed(procs, data_dir=None, *common, credentials=()):
    """A 3-node cluster whose first node (no --join) handed leadership over and was killed."""
    first = procs.start(*STEADY, *common, *(("--data-dir", str(data_dir)) if data_dir else ()))
    others = [procs.start("--join", first.url, *STEADY, *common) for _ in range(2)]
    procs.wait_formed([first, *others])
    assert put(first.url, "existing", "v", acks="all")[0] == 200
    assert leader.main(["transfer", first.url, "--to", others[0].id, *credentials]) == 0
    wait_until(lambda: status(others[0].url).get("role") == "master", what="the new master")
    first.kill()
    return first, others


@pytest.mark.parametrize("common", [
    (),
    ("--cluster-secret-file", "SECRET"),
], ids=["no-secret", "secret"])
def test_restarting_the_first_node_in_memory_with_its_command_line_rejoins(procs, tmp_path, common):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    common = tuple(str(secret) if arg == "SECRET" else arg for arg in common)
    first, others = _first_node_killed(procs, None, *common, credentials=common)
    members, epoch = cluster_view(others)
    assert (first.id, first.url) in members  # dead, as after any crash
    started = time.monotonic()
    again = procs.start(*STEADY, *common, port=first.port)  # the original command line: no --join
    assert again.id != first.id  # an in-memory node gets a new id ...
    # ... and takes its old place: the dead predecessor is replaced, nothing extra is left.
    expected = sorted([(again.id, first.url)] + [(n.id, n.url) for n in others])
    wait_until(lambda: cluster_view(others)[0] == expected, what="the restarted node in its old place")
    print(f"restarted first node back in its place {time.monotonic() - started:.2f} s after start "
          f"(load {os.getloadavg()[0]:.2f})")
    assert cluster_view(others)[1] == epoch  # no election
    assert wait_until(lambda: get(again.url, "existing")[0] == 200, what="the data on the restarted node")
    assert put(again.url, "after", "w", acks="all")[0] == 200
    s = status(again.url)
    assert s["cluster_id"] == status(others[0].url)["cluster_id"] and again.alive()


def test_restarting_the_first_node_on_a_wiped_data_dir_stops_it_naming_the_way_out(procs, tmp_path):
    data = tmp_path / "first"
    first, others = _first_node_killed(procs, data)
    before = cluster_view(others)
    for name in os.listdir(data):  # the data dir lost: the node starts a new cluster there
        (data / name).unlink()
    done = run_dkvs("--port", str(first.port), "--heartbeat-interval", "0.05", "--election-timeout", "0.5",
                    "--data-dir", str(data))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    critical = [line for line in done.stderr.splitlines() if " CRITICAL " in line]
    theirs = status(others[0].url)["cluster_id"]
    assert len(critical) == 1 and theirs in critical[0] and "--join http://" in critical[0], done.stderr
    assert "empty that data dir" in critical[0]
    assert cluster_view(others) == before  # the crashed member stays as it was, nothing added


def test_a_member_restarted_with_its_data_dir_and_no_join_takes_its_place_back(procs, tmp_path):
    dirs = [str(tmp_path / f"n{i}") for i in range(3)]
    first = procs.start("--data-dir", dirs[0], *STEADY)
    nodes = [first] + [procs.start("--join", first.url, "--data-dir", d, *STEADY) for d in dirs[1:]]
    procs.wait_formed(nodes)
    before = cluster_view(nodes)
    port = nodes[2].port
    nodes[2].kill()
    again = procs.start("--data-dir", dirs[2], *STEADY, port=port)
    assert again.id == nodes[2].id
    procs.wait_formed([nodes[0], nodes[1], again])
    assert cluster_view(nodes[:2]) == before
    # The same with --join and a data dir older than cluster ids: it shares members, it joins.
    port = nodes[1].port
    nodes[1].kill()
    (tmp_path / "n1" / "cluster_id").unlink()
    old = procs.start("--data-dir", dirs[1], "--join", again.url, *STEADY, port=port)
    procs.wait_formed([nodes[0], old, again])
    assert cluster_view([nodes[0], old, again]) == before


# --- a damaged member rebuilt from the cluster (--rebuild) -----------------------------------

def test_a_damaged_member_refuses_then_rebuilds_from_the_cluster_as_a_new_member(procs, tmp_path):
    dirs = [tmp_path / f"n{i}" for i in range(3)]
    first = procs.start("--data-dir", str(dirs[0]), *STEADY)
    nodes = [first] + [procs.start("--join", first.url, "--data-dir", str(d), "--fsync", "always", *STEADY)
                       for d in dirs[1:]]
    procs.wait_formed(nodes)
    for i in range(20):
        assert put(first.url, f"k{i}", f"v{i}", acks="all")[0] == 200
    members, epoch = cluster_view(nodes)
    damaged = nodes[2]
    damaged.kill()
    (dirs[2] / "state.json").unlink()  # its vote and epoch: it must not vote as itself again
    line = refused_with("--port", "0", "--data-dir", str(dirs[2]))
    assert "state file is missing" in line and "--rebuild" in line
    assert "--rebuild needs --data-dir and --join" in refused_with("--port", "0", "--data-dir", str(dirs[2]),
                                                                   "--rebuild")
    started = time.monotonic()
    again = procs.start("--data-dir", str(dirs[2]), "--rebuild", "--join", first.url, *STEADY, port=damaged.port)
    assert again.id != damaged.id
    expected = sorted([m for m in members if m[0] != damaged.id] + [(again.id, damaged.url)])
    wait_until(lambda: cluster_view(nodes[:2])[0] == expected, what="the rebuilt member in the old place")
    assert cluster_view(nodes[:2])[1] == epoch
    wait_until(lambda: all(get(again.url, f"k{i}")[1].get("value") == f"v{i}" for i in range(20)),
               what="every acknowledged write on the rebuilt member")
    print(f"damaged member rebuilt and serving every write {time.monotonic() - started:.2f} s after start "
          f"(load {os.getloadavg()[0]:.2f})")
    aside = [p for p in dirs[2].iterdir() if p.name.startswith("damaged-")]
    assert len(aside) == 1 and any(p.name.startswith("log-") for p in aside[0].iterdir())
    # Restarted again, the rebuilt data dir is whole: it resumes as the new member.
    assert again.terminate() == 0
    resumed = procs.start("--data-dir", str(dirs[2]), "--rebuild", "--join", first.url, *STEADY, port=damaged.port)
    assert resumed.id == again.id
