"""Members and leadership administered through any node (issue 13, deliverable 5).

Done-when: ``dkvs members remove`` of a dead member works when sent to a slave. The
cluster runs with a cluster secret and no client auth, so the routes that change it want a
request signed with the secret (``--cluster-secret-file``): unsigned ones change nothing.
A live member is refused without ``--force`` (exit 1); ``dkvs leader transfer`` through a
slave hands over; ``dkvs members list`` and ``dkvs leader`` show the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from dkvs.tools.local_cluster import http_call

from .procs import ProcessGroup, status, wait_until

SECRET = "members-admin-secret-0123456789"


def dkvs(*args: str, env: dict | None = None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DKVS_")}
    done = subprocess.run([sys.executable, "-m", "dkvs", *args], capture_output=True, timeout=120,
                          env={**clean, **(env or {})})
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def member_ids(url: str) -> set[str]:
    return {m["id"] for m in status(url)["members"]}


def test_members_remove_of_a_dead_member_through_a_slave_and_leader_transfer(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    signed = ("--cluster-secret-file", str(secret))
    with ProcessGroup() as group:
        nodes = group.cluster(4, *signed)
        first = wait_until(lambda: group.master(), 30, what="a master")
        dead = next(n for n in nodes if n is not first)
        live = [n for n in nodes if n is not dead]
        dead.kill()

        def roles():
            """(master, its slaves) now: on a loaded machine a failover may move the master,
            and a new master counts a member alive until it has not heard it for a while."""
            def seen_dead():
                master = group.master()
                return master and any(m["id"] == dead.id and m["alive"] is False
                                      for m in status(master.url)["members"]) and master
            master = wait_until(seen_dead, 60, what="a master that sees the member dead")
            return master, [n for n in live if n is not master]

        master, (via, other) = roles()
        code, out, err = dkvs("members", "list", "--url", via.url, "--json")
        assert code == 0, err
        listed = {m["id"]: m for m in json.loads(out)["members"]}
        assert set(listed) == {n.id for n in nodes}

        # Unsigned: refused by the slave before anything is relayed.
        code, body = http_call(via.url, "DELETE", f"/members/{dead.id}", timeout=30)
        assert code == 401 and dead.id in member_ids(master.url), body
        # A live member needs --force: exit 1, one line, nothing removed.
        code, out, err = dkvs("members", "remove", other.id, "--url", via.url, *signed)
        assert code == 1 and len(err.splitlines()) == 1 and other.id in member_ids(master.url), err
        # The dead one, through a slave: done, and every node agrees.
        master, (via, other) = roles()
        code, out, err = dkvs("members", "remove", dead.id, "--url", via.url, *signed)
        assert code == 0 and out.strip() == f"removed {dead.id}", err
        for node in live:
            wait_until(lambda: dead.id not in member_ids(node.url), 30, what=f"{node.id} to drop {dead.id}")
        code, out, err = dkvs("members", "remove", dead.id, "--url", via.url, *signed)
        assert code == 1 and "no member" in err  # already gone: not found

        # Leadership through a slave, to the other slave.
        now = wait_until(lambda: group.master(), 30, what="a master")
        asked, target = [n for n in live if n is not now]
        code, out, err = dkvs("leader", "transfer", "--to", target.id, "--url", asked.url, "--json", *signed)
        assert code == 0, err
        answer = json.loads(out)
        assert answer["from"] == now.id and answer["to"] == target.id and answer["master"]["id"] == target.id
        code, out, err = dkvs("leader", "--url", asked.url, "--json")
        assert code == 0 and json.loads(out)["master"]["id"] in {n.id for n in live}, err
        code, out, err = dkvs("leader", "transfer", "--to", "nobody", "--url", asked.url, *signed)
        assert code == 1 and len(err.splitlines()) == 1  # 409: nobody to hand over to
        code, out, err = dkvs("members", "remove", "--url", asked.url)
        assert code == 2 and len(err.splitlines()) == 1  # usage: no id
