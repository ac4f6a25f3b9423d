"""Operators can read a failover from the logs: every node narrates its role changes."""

import re

from .procs import status, wait_until


def test_after_a_master_sigkill_the_new_master_logs_its_election_with_its_epoch(procs):
    nodes = procs.cluster(3, "--log-level", "info")
    master_url = status(nodes[0].url)["master"]["url"]
    master = next(n for n in nodes if n.url == master_url)
    others = [n for n in nodes if n is not master]
    master.kill()
    new = wait_until(lambda: next((n for n in others if status(n.url)["role"] == "master"), None), 30,
                     what="a new master")
    epoch = status(new.url)["epoch"]
    line = wait_until(lambda: next((l for l in new.stderr_lines if f"epoch={epoch}: elected master" in l), None),
                      10, what="the election in the new master's log")
    assert re.search(rf"node \S+ epoch={epoch}: elected master \(epoch={epoch}, 3 members\)", line), line
    follower = next(n for n in others if n is not new)
    wait_until(lambda: any(f"epoch={epoch}: following master" in l for l in follower.stderr_lines), 10,
               what="the other survivor following the new master")
