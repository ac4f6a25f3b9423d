"""The rules that keep a node from serving apart from its cluster (issue 12), without sockets.

:class:`FreshRejoin`: a node that bootstrapped a fresh cluster and hears another cluster
at its address rejoins it only when that is provably safe, stops with one line when it
is not, and does nothing when it is not armed. ``_check_lineage`` (via ``join_any``): a
data dir older than cluster ids joins only a cluster it shares a member with.
"""

from __future__ import annotations

import logging
import random
import threading
from types import SimpleNamespace

import pytest

from dkvs.core.config import CoreConfig
from dkvs.core.log import OP_PUT, Entry
from dkvs.core.node import Node
from dkvs.runtime import fresh_rejoin, startup
from dkvs.runtime.fresh_rejoin import FreshRejoin, holds_only_bootstrap
from dkvs.runtime.identity import SENDER_URL_HEADER, ClusterIdentity, UrlSigner
from dkvs.runtime.startup import StartupError
from dkvs.storage import MemoryStorage
from dkvs.transport.auth import CLUSTER_HEADER


def bootstrapped(writes: int = 0) -> Node:
    """A node as Node.bootstrap leaves it, then (as restored) with ``writes`` more entries."""
    config, _ = CoreConfig.from_seconds(0.05, 0.5)
    node, _ = Node.bootstrap("n1", "http://127.0.0.1:7070", config, random.Random(1))
    if not writes:
        return node
    entries = list(node.log.entries) + [Entry(1, 1 + i, OP_PUT, f"k{i}", "v") for i in range(1, writes + 1)]
    return Node("n1", config, random.Random(1), epoch=1, voted_for="n1", entries=entries)


class FakeNode:
    """What FreshRejoin uses of a DkvsNode, recording stop()."""

    def __init__(self, core: Node, data_dir: str | None = None) -> None:
        self.settings = SimpleNamespace(data_dir=data_dir)
        self.signer = UrlSigner(None)
        self.identity = SimpleNamespace(cluster_id="mine")
        self.host = SimpleNamespace(query=lambda fn: fn(core), node=core)
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()


@pytest.fixture
def identity_answers(monkeypatch):
    """fetch_identity as seen by FreshRejoin: URL -> cluster id."""
    answers: dict[str, str] = {}

    def fake(url, node_id, signer, timeout=2.0):
        if url not in answers:
            raise ConnectionRefusedError(111, "Connection refused")
        return {"id": "x", "cluster_id": answers[url]}
    monkeypatch.setattr(fresh_rejoin, "fetch_identity", fake)
    return answers


def run_notice(rejoin: FreshRejoin, theirs: str, url: str | None) -> None:
    before = set(threading.enumerate())
    rejoin.notice(theirs, url)
    for thread in set(threading.enumerate()) - before:
        thread.join(10)


def test_the_bootstrap_alone_is_nothing_acknowledged_and_one_write_is_something():
    assert holds_only_bootstrap(bootstrapped())
    assert not holds_only_bootstrap(bootstrapped(writes=1))


def test_a_node_that_acknowledged_a_write_stops_naming_both_clusters(identity_answers, caplog):
    identity_answers["http://m:1"] = "theirs"
    node = FakeNode(bootstrapped(writes=1))
    rejoin = FreshRejoin(node)
    rejoin.armed = True
    with caplog.at_level(logging.CRITICAL, "dkvs"):
        run_notice(rejoin, "theirs", "http://m:1")
    assert node.stopped.is_set()
    assert "theirs" in rejoin.refusal and "mine" in rejoin.refusal and "--join http://m:1" in rejoin.refusal
    assert caplog.text.count("acknowledged writes") == 1


def test_a_fresh_data_dir_is_not_wiped_the_node_stops(identity_answers):
    identity_answers["http://m:1"] = "theirs"
    node = FakeNode(bootstrapped(), data_dir="/srv/dkvs")
    rejoin = FreshRejoin(node)
    rejoin.armed = True
    run_notice(rejoin, "theirs", "http://m:1")
    assert node.stopped.is_set() and "empty that data dir" in rejoin.refusal


def test_nothing_happens_unless_armed_or_confirmed(identity_answers):
    node = FakeNode(bootstrapped(writes=1))
    rejoin = FreshRejoin(node)
    run_notice(rejoin, "theirs", "http://m:1")  # not armed: --port 0, --join, or state
    rejoin.armed = True
    run_notice(rejoin, "theirs", "http://m:1")  # the URL does not answer
    identity_answers["http://m:2"] = "a third cluster"
    run_notice(rejoin, "theirs", "http://m:2")  # the URL is not of the cluster that spoke
    assert not node.stopped.is_set() and rejoin.refusal is None


def test_without_a_url_it_says_how_once(caplog):
    rejoin = FreshRejoin(FakeNode(bootstrapped()))
    rejoin.armed = True
    with caplog.at_level(logging.ERROR, "dkvs"):
        for _ in range(3):
            rejoin.notice("theirs", None)
    assert caplog.text.count("start it with --join URL") == 1


def test_foreign_traffic_reaches_the_hook_with_the_sender_url():
    heard = []
    identity = ClusterIdentity(MemoryStorage(), UrlSigner(None), "mine", on_foreign=lambda *a: heard.append(a))
    identity.check_incoming("/internal/raft", {CLUSTER_HEADER: "theirs", SENDER_URL_HEADER: "http://m:1"})
    identity.check_incoming("/internal/raft", {CLUSTER_HEADER: "theirs", SENDER_URL_HEADER: "file:///etc"})
    identity.check_incoming("/internal/raft", {CLUSTER_HEADER: "mine", SENDER_URL_HEADER: "http://m:1"})
    assert heard == [("theirs", "http://m:1"), ("theirs", None)]


def test_the_url_signer_names_its_url_outside_the_signature():
    signer = UrlSigner("secret", node_id="a")
    signer.url = "http://127.0.0.1:7070"
    headers = signer.headers("POST", "/internal/raft", b"x", to="b")
    assert headers[SENDER_URL_HEADER] == "http://127.0.0.1:7070"
    receiver = UrlSigner("secret", node_id="b")
    assert receiver.verify_head("POST", "/internal/raft", {**headers, SENDER_URL_HEADER: "http://x:1"}) is None


# --- a data dir older than cluster ids -------------------------------------------------------

@pytest.fixture
def cluster_ids(monkeypatch):
    """fetch_identity and post_internal as seen by join_any: URL -> cluster id; joins accepted."""
    ids: dict[str, str | None] = {}
    joined: list[str] = []

    def fake_identity(url, node_id, signer, timeout=2.0):
        if url not in ids:
            raise ConnectionRefusedError(111, "Connection refused")
        return {"id": "x", "cluster_id": ids[url]}

    def fake_post(url, route, body, signer, timeout):
        joined.append(url)
        return 200, {"id": body["id"]}
    monkeypatch.setattr(startup, "fetch_identity", fake_identity)
    monkeypatch.setattr(startup, "post_internal", fake_post)
    return ids, joined


def test_an_old_data_dir_joins_a_url_it_lists_or_a_cluster_it_shares_a_member_with(cluster_ids):
    ids, joined = cluster_ids
    ids.update({"http://10.0.0.1:1": "c1", "http://10.0.0.2:1": "c1"})
    startup.join_any(["http://10.0.0.1:1"], "n1", "http://10.0.0.5:1", UrlSigner(None), 5.0, known=["http://10.0.0.1:1"])
    startup.join_any(["http://10.0.0.2:1"], "n1", "http://10.0.0.5:1", UrlSigner(None), 5.0, known=["http://10.0.0.1:1"])
    assert joined == ["http://10.0.0.1:1", "http://10.0.0.2:1"]


@pytest.mark.parametrize("known, theirs", [([], "c2"), (["http://10.0.0.1:1"], "c2"), (["http://10.0.0.1:1"], None)],
                         ids=["standalone", "other-cluster", "cluster-without-id"])
def test_an_old_data_dir_of_another_cluster_is_refused_before_the_join(cluster_ids, known, theirs):
    ids, joined = cluster_ids
    ids.update({"http://10.0.0.1:1": None if theirs is None else "c1", "http://10.0.0.9:1": theirs})
    with pytest.raises(StartupError, match="made before cluster ids"):
        startup.join_any(["http://10.0.0.9:1"], "n1", "http://10.0.0.5:1", UrlSigner(None), 5.0, known=known)
    assert joined == []


# --- --rebuild: the damaged files aside, the former id named ---------------------------------

def test_a_rebuild_moves_everything_but_the_lock_and_the_cluster_id_aside(tmp_path, caplog):
    import datetime

    from dkvs.runtime.recovery import former_id, move_damaged_aside, warn_if_left_behind
    from dkvs.storage.datadir import write_state
    for name in ("LOCK", "cluster_id", "manifest.json", "log-00000000000000000001.seg"):
        (tmp_path / name).write_text("x")
    (tmp_path / "rollback").mkdir()
    write_state(str(tmp_path), "old-id", 7, "old-id")
    aside = move_damaged_aside(str(tmp_path), datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", "cluster_id", "damaged-20260102T000000.000000Z",
                                                          "rollback"]
    assert sorted(p.name for p in (tmp_path / aside).iterdir()) == ["log-00000000000000000001.seg",
                                                                   "manifest.json", "state.json"]
    assert former_id(aside) == "old-id"
    with caplog.at_level(logging.WARNING, "dkvs"):
        warn_if_left_behind("old-id", {"members": {"new": "http://b:2"}})
        assert caplog.text == ""
        warn_if_left_behind("old-id", {"members": {"old-id": "http://a:1", "new": "http://b:2"}})
    assert "former id old-id is still a member at http://a:1" in caplog.text
