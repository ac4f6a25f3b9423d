"""A live 3-node cluster run with ``--replication-window 4`` (several batches in flight).

What this proves: the flag reaches the core and the driver, concurrent ``acks=majority``
writes (which make the master pipeline batches to each slave) are acknowledged and
arrive everywhere, and a slave killed and restarted with its data dir catches up through
the windowed path (a loss, then probing, then the window again).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .procs import get, put, status, wait_until

WINDOW = ("--replication-window", "4")


def _write_all(url: str, keys: range) -> list[int]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda i: put(url, f"k{i}", f"v{i}", acks="majority")[0], keys))


def test_pipelined_writes_replicate_and_a_restarted_slave_catches_up(procs, tmp_path):
    dirs = [str(tmp_path / f"n{i}") for i in range(3)]
    master = procs.start("--data-dir", dirs[0], *WINDOW)
    slaves = [procs.start("--join", master.url, "--data-dir", d, *WINDOW) for d in dirs[1:]]
    procs.wait_formed([master, *slaves])
    assert status(master.url)["role"] == "master"

    assert _write_all(master.url, range(200)) == [200] * 200
    last = status(master.url)["last_seq"]
    for slave in slaves:
        wait_until(lambda s=slave: status(s.url).get("last_seq", 0) >= last, what="a slave to hold every write")
        assert get(slave.url, "k199")[1]["value"] == "v199"

    victim = slaves[0]
    port = victim.port
    victim.kill()
    assert _write_all(master.url, range(200, 300)) == [200] * 100  # the other slave makes the majority
    again = procs.start("--data-dir", dirs[1], *WINDOW, port=port)
    last = status(master.url)["last_seq"]
    wait_until(lambda: status(again.url).get("last_seq", 0) >= last, what="the restarted slave to catch up")
    assert get(again.url, "k299")[1]["value"] == "v299"
    assert put(master.url, "after", "v", acks="all")[0] == 200
