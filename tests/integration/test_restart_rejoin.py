"""A slave restarted with its data dir serves again as soon as it hears the master (issue 12).

The case that stalled: the *first* node of a cluster, a slave after a failover, stopped with
SIGTERM (it leaves the member list) and restarted with the command line of the others,
``--join`` to the first node's URL — its own. It asked itself to add it, got "no master",
and retried until ``--join-timeout`` while the cluster had a healthy master. Each test
prints how long the restarted node took to forward its first write (a figure, not a bound).
"""

import os
import time

import pytest

from .procs import get, put, status, wait_until


def _first_node_as_slave(procs, tmp_path):
    """A 3-node cluster with data dirs whose first node is a slave after a failover."""
    dirs = [str(tmp_path / f"n{i}") for i in range(3)]
    first = procs.start("--data-dir", dirs[0])
    others = [procs.start("--join", first.url, "--data-dir", d) for d in dirs[1:]]
    procs.wait_formed([first, *others])
    assert status(first.url)["role"] == "master"
    port = first.port
    first.kill()  # a failover: one of the others becomes master
    wait_until(lambda: any(status(n.url).get("role") == "master" for n in others), what="a new master")
    first = procs.start("--join", others[0].url, "--data-dir", dirs[0], port=port)
    procs.wait_formed([first, *others])
    assert status(first.url)["role"] == "slave"
    return first, others, dirs[0]


def _restart_and_time(procs, node, data_dir, *extra):
    port = node.port
    assert node.terminate() == 0
    started = time.monotonic()
    again = procs.start("--data-dir", data_dir, *extra, port=port)
    wait_until(lambda: put(again.url, "after-restart", "v")[0] == 200, what="the restarted slave to forward a write")
    print(f"restarted slave forwarded its first write {time.monotonic() - started:.2f} s after start "
          f"(load {os.getloadavg()[0]:.2f})")
    return again


@pytest.mark.parametrize("with_join", [True, False], ids=["join-to-itself", "no-join"])
def test_restarted_first_node_forwards_writes_once_it_hears_the_master(procs, tmp_path, with_join):
    first, others, data_dir = _first_node_as_slave(procs, tmp_path)
    extra = ("--join", first.url) if with_join else ()
    again = _restart_and_time(procs, first, data_dir, *extra)
    assert again.alive()
    members = {m["id"] for m in status(others[0].url)["members"]}
    assert members == {again.id, *(n.id for n in others)}  # its place back, no extra member


def test_a_lone_node_restarted_on_another_port_announces_its_new_url(procs, tmp_path):
    """Its member row and ``master.url`` follow it; its data is still there."""
    data_dir = str(tmp_path / "lone")
    node = procs.start("--data-dir", data_dir)
    wait_until(lambda: put(node.url, "k", "v")[0] == 200, what="the first write")
    old_url = node.url
    assert node.terminate() == 0
    again = procs.start("--data-dir", data_dir)  # port 0: another port
    assert again.url != old_url

    def announced():
        now = status(again.url)
        return now.get("role") == "master" and now["master"]["url"] == again.url and now
    now = wait_until(announced, what="the new url in /status")
    assert [m["url"] for m in now["members"]] == [again.url]
    assert get(again.url, "k")[1]["value"] == "v"
