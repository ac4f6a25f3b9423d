"""``--join URL --learner``: a read replica end to end (issue 13, learners). It is replicated
to, shows in /status as a non-voter that is never promoted, serves reads, and a dead replica
blocks neither acks=majority nor acks=all writes (it counts in no quorum)."""

from .procs import get, put, status, wait_until


def test_a_learner_replica_reads_never_votes_and_never_blocks_writes(procs):
    first = procs.start()
    replica = procs.start("--join", first.url, "--learner")
    assert put(first.url, "k", "v", acks="majority")[0] == 200
    wait_until(lambda: get(replica.url, "k")[0] == 200, what="the replica holding k")
    members = {m["id"]: m for m in status(first.url)["members"]}
    rid = status(replica.url)["id"]
    assert members[rid]["voter"] is False and members[rid]["auto_promote"] is False
    assert status(first.url)["quorum"]["members"] == 1  # voters only
    replica.kill()
    assert put(first.url, "k", "w", acks="majority")[0] == 200
    assert put(first.url, "k", "x", acks="all")[0] == 200
    assert {m["id"]: m["voter"] for m in status(first.url)["members"]}[rid] is False
