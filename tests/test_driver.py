"""The node driver alone: verdicts bound to requests, peers before sends, in-flight table,
snapshot policy, narration. Each test drives one driver with crafted messages and logical
time; no threads, no sockets."""

from __future__ import annotations

import random

from dkvs.core.config import CoreConfig
from dkvs.core.kvstate import KVState
from dkvs.core.log import OP_DELETE, OP_MEMBER_ADD, OP_NOOP, OP_PUT, Entry
from dkvs.core.messages import Append, AppendReply, VoteReply
from dkvs.core.node import MASTER, Node
from dkvs.driver import BuildSnapshot, CompactStorage, NodeDriver, StreamSnapshot

MEMBERS = ((("n1", "http://n1"), ("n2", "http://n2"), ("n3", "http://n3")))


def slave_driver(node_id: str = "n2", election_ticks: int = 10, **kwargs) -> NodeDriver:
    node = Node(node_id, CoreConfig(heartbeat_ticks=1, election_ticks=election_ticks), random.Random(1),
                entries=[Entry(1, i + 1, OP_MEMBER_ADD, m, u) for i, (m, u) in enumerate(MEMBERS)])
    state = KVState()
    state.apply(node.log.entries, 0)
    return NodeDriver(node, state, **kwargs)


def run(driver: NodeDriver):
    """Execute a ready batch the way a host does, minus the I/O; returns it and the replies."""
    ready = driver.ready()
    return ready, driver.apply(ready).replies


def win_election(driver: NodeDriver) -> None:
    """Tick until the driver campaigns, then grant its pre-vote and its vote (from a peer)."""
    node = driver.node
    voter = "n3" if node.id != "n3" else "n1"
    while not node.pre_voting:
        driver.tick()
    driver.step(VoteReply(node.epoch, voter, True, pre_vote=True))
    driver.step(VoteReply(node.epoch, voter, True))
    assert node.role == MASTER
    run(driver)


def acked(driver: NodeDriver, *peers: str) -> None:
    """``peers`` answer the master: they hold its whole log (sent outside the in-flight table)."""
    for peer in peers:
        driver.received(peer, 0, [AppendReply(driver.node.epoch, peer, True, driver.node.log.last_seq)])


def test_verdict_of_a_rolled_back_entry_never_reaches_a_later_write_at_its_seq():
    # Proves the stale-verdict fix: a slave applies a delete of an absent key at seq 6
    # (changes nothing), the entry is rolled back by a new master that only refills seq 4,
    # this node becomes master itself and a client's unconditional put lands at seq 6 again.
    # Verdicts were kept by seq and answered that put 409; now they belong to the entry.
    d = slave_driver()
    d.step(Append(1, "n1", 3, 1, (Entry(1, 4, OP_PUT, "k", "v"), Entry(1, 5, OP_PUT, "k2", "v"),
                                  Entry(1, 6, OP_DELETE, "ghost")), 3))
    run(d)
    d.step(Append(2, "n3", 3, 1, (Entry(2, 4, OP_NOOP),), 3))
    ready, _ = run(d)
    assert d.node.log.last_seq == 4 and d.state.get("k") is None
    win_election(d)  # epoch 3: its opening no-op takes seq 5
    d.propose(7, OP_PUT, "x", "1", "1", 10)
    _, replies = run(d)
    assert [(r.request_id, r.result["seq"], r.rejected) for r in replies] == [(7, 6, None)]


def test_delete_of_an_absent_key_is_rejected_for_its_own_request_only():
    d = slave_driver()
    win_election(d)
    d.propose(1, OP_DELETE, "ghost", None, "1", 10)
    d.propose(2, OP_PUT, "k", "v", "1", 10, cond=0)
    d.propose(3, OP_PUT, "k", "w", "1", 10, cond=0)
    _, replies = run(d)
    seq_k = d.state.get("k")[1]
    assert {r.request_id: r.rejected for r in replies} == {1: 0, 2: None, 3: seq_k}


def test_peers_reach_the_transport_in_the_batch_that_first_sends_to_them():
    # Proves the fix for the dropped first snapshot: a member added by a log entry gets a
    # transport address in the same ready batch as the first message to it.
    d = slave_driver("n1")
    win_election(d)
    acked(d, "n2", "n3")  # the master's opening no-op is committed: membership may change
    d.propose(1, OP_MEMBER_ADD, "n4", "http://n4", "1", 10)
    ready, _ = run(d)
    assert ready.peers is not None and ready.peers["n4"] == "http://n4"
    assert any(out.to == "n4" for out in ready.sends)


def test_a_resend_waits_while_the_previous_request_is_on_the_wire_and_stale_answers_drop():
    d = slave_driver("n1", election_ticks=200, inflight_expiry_ticks=30)
    while not d.node.pre_voting:
        d.tick()
    d.step(VoteReply(d.node.epoch, "n3", True, pre_vote=True))
    d.step(VoteReply(d.node.epoch, "n3", True))
    first = {out.to: out.send_id for out in run(d)[0].sends}  # the new master's first batch
    for _ in range(5):  # well past the core's resend timeout (2 heartbeats), inside expiry
        d.tick()
    sends = run(d)[0].sends
    assert not [s for s in sends if s.to == "n2"], "a second request to a busy peer"
    assert d.inflight.suppressed > 0
    for _ in range(30):
        d.tick()
    resent = [s for s in run(d)[0].sends if s.to == "n2"]
    assert resent, "after expiry the core's resend must go out"
    old_id = first["n2"]
    before = d.node.progress["n2"].match_seq
    d.received("n2", old_id, [AppendReply(d.node.epoch, "n2", True, d.node.log.last_seq)])
    assert d.node.progress["n2"].match_seq == before and d.inflight.stale == 1
    d.received("n2", resent[-1].send_id, [AppendReply(d.node.epoch, "n2", True, d.node.log.last_seq)])
    assert d.node.progress["n2"].match_seq == d.node.log.last_seq


def test_no_whole_state_work_while_the_commit_point_cannot_move():
    # Proves the stuck-commit fix: a master whose slaves are gone keeps writing (acks=1);
    # the log outgrows the threshold but the commit point stays, so no snapshot is built.
    d = slave_driver("n1", snapshot_threshold_bytes=100)
    win_election(d)
    committed = d.node.commit_seq
    builds = 0
    for i in range(200):
        d.propose(i + 10, OP_PUT, f"k{i}", "v" * 20, "1", 10)
        d.persisted(40 * (i + 1))
        ready, _ = run(d)
        builds += sum(isinstance(w, BuildSnapshot) for w in ready.work)
    assert d.node.commit_seq == committed and builds <= 1


def test_snapshot_is_built_once_and_the_log_compacted_only_when_it_is_durable():
    d = slave_driver("n2", snapshot_threshold_bytes=100)
    entries = tuple(Entry(1, 4 + i, OP_PUT, f"k{i}", "v") for i in range(10))
    d.step(Append(1, "n1", 3, 1, entries, 13))
    d.persisted(1000)
    ready, _ = run(d)
    assert [type(w) for w in ready.work] == [BuildSnapshot]
    seq, epoch, members, data = d.snapshot_view()
    assert seq == 13 and epoch == 1 and len(members) == 3
    assert not [w for w in run(d)[0].work if isinstance(w, BuildSnapshot)], "one build at a time"
    assert d.node.log.snapshot_seq == 0, "nothing compacted before the snapshot is durable"
    d.snapshot_built(seq, 500)
    ready, _ = run(d)
    assert d.node.log.snapshot_seq == 13 and CompactStorage(13) in ready.work


def test_a_snapshot_is_streamed_to_a_peer_once_at_a_time():
    d = slave_driver("n1", snapshot_threshold_bytes=1)
    win_election(d)
    d.propose(1, OP_PUT, "k", "v", "1", 10)
    acked(d, "n3")  # n2 is a member that holds nothing yet
    d.persisted(10)
    run(d)
    seq, epoch, members, data = d.snapshot_view()
    d.snapshot_built(seq, 10)
    run(d)
    # n2 refuses the master's batch: it has nothing, so it needs what the log no longer has
    d.received("n2", 0, [AppendReply(d.node.epoch, "n2", False, d.node.log.last_seq, hint_seq=0)])
    streams = []
    for _ in range(40):
        d.tick()
        acked(d, "n3")
        streams += [w for w in run(d)[0].work if isinstance(w, StreamSnapshot)]
    assert streams == [StreamSnapshot("n2")]
    d.send_failed("n2", 0)  # a heartbeat to n2 failed: the core forgets its request and retries...
    for _ in range(40):
        d.tick()
        acked(d, "n3")
        streams += [w for w in run(d)[0].work if isinstance(w, StreamSnapshot)]
    assert streams == [StreamSnapshot("n2")], "...but the stream still running is not started twice"
    d.snapshot_streamed("n2", seq, "connection reset")
    for _ in range(40):
        d.tick()
        acked(d, "n3")
        streams += [w for w in run(d)[0].work if isinstance(w, StreamSnapshot)]
    assert streams.count(StreamSnapshot("n2")) == 2


def test_every_role_change_is_narrated_once_with_epoch():
    d = slave_driver()
    d.step(Append(1, "n1", 3, 1, (), 3))
    notes = [n.text for n in run(d)[0].notes]
    assert notes == ["node n2 epoch=1: following master n1 at http://n1"]
    win_election(d)
    while d.node.role == MASTER:  # nobody answers: check-quorum steps it down
        d.tick()
    texts = [n.text for n in run(d)[0].notes]
    assert any("stepped down as master (check-quorum lost" in t and "epoch=2" in t for t in texts)


def test_a_member_going_silent_and_coming_back_is_narrated_on_the_master():
    d = slave_driver("n1")
    win_election(d)
    kinds = []
    for _ in range(12):  # n2 answers, n3 stays silent past the election timeout
        d.tick()
        acked(d, "n2")
        kinds += [n.kind for n in run(d)[0].notes]
    assert kinds.count("member_down") == 1 and "quorum_lost" not in kinds
    acked(d, "n3")
    d.tick()
    notes = run(d)[0].notes
    assert [n.details["member"] for n in notes if n.kind == "member_up"] == ["n3"]
