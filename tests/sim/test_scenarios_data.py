"""Multi-key entries under failover: prefix deletes and transactions are decided at apply
time, so every replica runs the same branch and deletes the same keys, including entries
that a new master rolls back on some nodes and not others (issue 14)."""

from __future__ import annotations

from dkvs.core.log import OP_DELETE_PREFIX, OP_TXN
from dkvs.core.txn import encode_txn, parse_txn

from .cluster import SimCluster
from .scenario_helpers import T, wait_done, wait_for, wait_master


def _increment(seq: int, value: int) -> str:
    return encode_txn(parse_txn({"compare": [{"key": "n", "seq": seq}],
                                 "success": [{"op": "put", "key": "n", "value": str(value + 1)},
                                             {"op": "delete_prefix", "prefix": "tmp/"}],
                                 "failure": [{"op": "get", "key": "n"}]},
                                max_key_bytes=100, max_value_bytes=100))


def _items(c: SimCluster, node_id: str):
    state = c.nodes[node_id].state
    return tuple(map(tuple, state.items("", None, 10_000)[0])), state.applied_seq


def test_transactions_and_prefix_deletes_agree_on_every_replica_across_a_master_crash():
    # Racing increments (compare on the seq each client last saw) and prefix deletes, with
    # the master crashed mid-way and restarted: when the cluster settles, every node holds
    # the same keys, values and seqs, and the counter counts the transactions that
    # succeeded and survived.
    c = SimCluster(3, seed=14)
    wait_master(c)
    seen = {"a": (0, 0), "b": (0, 0)}
    for round_ in range(30):
        if round_ == 12:
            c.crash(c.master().id)
        if round_ == 20:
            for sim in list(c.nodes.values()):
                if not sim.alive:
                    c.restart(sim.id)
        if c.master() is None:
            wait_master(c)
        c.put(f"tmp/{round_}", "x")
        ops = {client: c.propose(OP_TXN, "", _increment(*seen[client]), acks="majority")
               for client in seen}
        if round_ % 7 == 3:
            c.propose(OP_DELETE_PREFIX, "tmp/", acks="majority")
        wait_done(c, *ops.values())
        for client, op in ops.items():
            if op.error is None and "applied" in (op.result or {}):
                applied = op.result["applied"]
                if applied["succeeded"]:
                    seen[client] = (op.result["seq"], seen[client][1] + 1)
                else:
                    got = applied["results"][0]
                    seen[client] = (got["seq"], int(got["value"]) if got["found"] else 0)
    wait_master(c)
    done = c.put("fence", "last", acks="all")
    wait_done(c, done)
    wait_for(c, lambda: len({_items(c, n) for n in c.member_ids() if c.nodes[n].alive}) == 1, 40 * T,
             "every replica holding the same state")
    items = {k: v for k, v, _ in _items(c, c.master().id)[0]}
    assert int(items["n"]) >= 10  # most increments went through, and the counter is one value everywhere


def test_no_lease_expires_before_its_full_ttl_across_a_failover():
    # A lease of 5 election timeouts holds a key. The master dies halfway through the ttl;
    # the new master starts the lease over with its full ttl (it cannot know how much of it
    # had passed), so the key lives at least a full ttl after the new master took over, and
    # then expires on every live replica through one revoke entry in the log.
    from dkvs.core.log import OP_LEASE_GRANT
    c = SimCluster(3, seed=15)
    wait_master(c)
    ttl_ticks = 5 * T
    ttl_ms = ttl_ticks * 10  # the driver's default clock: 100 ticks a second
    grant = c.propose(OP_LEASE_GRANT, "", str(ttl_ms), acks="majority")
    wait_done(c, grant)
    lease = grant.result["applied"]["id"]
    put = c.propose(OP_TXN, "", encode_txn({"c": [], "s": [["put", "lk", "v", lease]], "f": []}), acks="majority")
    wait_done(c, put)
    assert put.result["applied"]["succeeded"]
    c.run(ttl_ticks // 2)
    old = c.master().id
    c.crash(old)
    while c.master() is None or c.master().id == old:  # tick by tick: the tick it took over
        c.run(1)
        assert c.now < 20 * T, c.where()
    took_over = c.now - 1  # it became master during the last tick
    new = c.master().id
    while c.now + 1 < took_over + ttl_ticks:  # until its full ttl has passed, on every live node
        c.run(1)
        for node_id in c.member_ids():
            if c.nodes[node_id].alive:
                assert c.nodes[node_id].state.get("lk") is not None, (c.where(), node_id)
    wait_for(c, lambda: all(c.nodes[n].state.get("lk") is None for n in c.member_ids() if c.nodes[n].alive),
             4 * T, "the lease expiring on every live replica")
    assert c.master().id == new and lease not in c.nodes[new].state.leases.ttl_ms
