"""Operators can read a failover from the logs: every node narrates its role changes."""

import re

from .procs import status, wait_until


def test_after_a_master_sigkill_the_new_master_logs_its_election_with_its_epoch(procs):
    nodes = procs.cluster(3, "--log-level", "info")
    master_url = status(nodes[0].url)["master"]["url"]
    master = next(n for n in nodes if n.url == master_url)
    others = [n for n in nodes if n is not master]
    master.kill()

    def elected():
        # Found together, so that a second election on a busy machine cannot pair one
        # node's role with another epoch.
        for node in others:
            s = status(node.url)
            if s["role"] == "master":
                line = next((l for l in node.stderr_lines if f"epoch={s['epoch']}: elected master" in l), None)
                if line:
                    return node, s["epoch"], line
        return None

    new, epoch, line = wait_until(elected, what="a new master whose log tells its election with its epoch")
    assert re.search(rf"node \S+ epoch={epoch}: elected master \(epoch={epoch}, 3 members\)", line), line
    follower = next(n for n in others if n is not new)
    wait_until(lambda: any(f"epoch={epoch}: following master" in l for l in follower.stderr_lines),
               what="the other survivor following the new master")
