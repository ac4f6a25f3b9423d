"""The executor sends before it persists only for a master whose batch persists entries only.

A fake driver, storage and transport record the order of the executor's calls. A master's
entry-only batch leaves first (its slaves write their copies while it writes its own,
Raft thesis §10.2.1); a batch that persists an epoch or a vote, and every batch of a slave,
is on disk before any message leaves; answers to an incoming message, applies and replies
always wait for the persist. A persist that fails after the sends left answers the waiting
writes once (disk_full), and the node stops sending.
"""

from __future__ import annotations

import errno

from dkvs.core.effects import Apply, PersistEntries, PersistState, Reply
from dkvs.core.log import Entry
from dkvs.driver import Applied, ClientReply, OutgoingMessage, Ready
from dkvs.runtime.executor import Executor


class FakeNode:
    def __init__(self, role: str) -> None:
        self.role = role
        self.now = 0
        self.id, self.epoch = "n1", 1
        self.durable_reported = False


class FakeDriver:
    def __init__(self, calls: list, role: str) -> None:
        self.calls = calls
        self.node = FakeNode(role)
        self.committed: list = []  # what the next persist lets the master commit
        self.applied: list = []

    def persisted(self, log_bytes: int, flushed: bool = False) -> list:
        self.calls.append(("persisted", flushed))
        committed, self.committed = self.committed, []
        return committed

    def persist_failed(self, reason: str) -> list:
        self.calls.append("persist_failed")
        return [ClientReply(7, {"seq": 1}, "disk_full")]

    def persist_recovered(self) -> None:
        self.calls.append("persist_recovered")

    def apply(self, ready: Ready) -> Applied:
        self.calls.append(("apply", len(ready.apply)))
        self.applied.extend(ready.apply)
        done = Applied()
        done.replies = [ClientReply(r.request_id, r.result, r.error) for r in ready.replies]
        return done


class FakeStorage:
    def __init__(self, calls: list) -> None:
        self.calls = calls
        self.error: int | None = None

    def append(self, entries) -> None:
        if self.error is not None:
            raise OSError(self.error, "No space left on device")
        self.calls.append("append")

    def save_state(self, epoch, voted_for) -> None:
        self.calls.append("save_state")

    def log_bytes(self) -> int:
        return 0


class FakeTransport:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def set_peers(self, peers) -> None:
        self.calls.append("set_peers")

    def send(self, to, message, send_id=0) -> None:
        self.calls.append(("send", to))


class Token:
    """An incoming exchange: records when its answers are handed to it."""

    def __init__(self, calls: list) -> None:
        calls_ = calls

        class Messages(list):
            def extend(self, items) -> None:
                calls_.append("respond")
                super().extend(items)
        self.messages = Messages()


def executor(role: str):
    calls: list = []
    driver = FakeDriver(calls, role)
    answers: list = []
    ex = Executor(driver, FakeStorage(calls), FakeTransport(calls), None, None,
                  complete=lambda reply: (calls.append(("reply", reply.request_id, reply.error)),
                                          answers.append(reply)))
    return ex, driver, calls


def batch(calls, *persist, token=None) -> Ready:
    entry = Entry(1, 5, "put", "k", "v")
    ready = Ready(persist=list(persist) or [PersistEntries((entry,))],
                  sends=[OutgoingMessage(1, "n2", "append"), OutgoingMessage(2, "n3", "append")],
                  apply=[Apply((entry,), 4)], replies=[Reply(9, {"seq": 5})])
    if token is not None:
        ready.responses[token] = ["vote_reply"]
    return ready


def test_a_master_sends_its_entry_only_batch_before_persisting_it():
    ex, _, calls = executor("master")
    token = Token(calls)
    ex.run(batch(calls, token=token))
    assert calls == [("send", "n2"), ("send", "n3"), "append", ("persisted", True), "respond",
                     ("apply", 1), ("reply", 9, None)]


def test_the_executor_tells_the_core_it_reports_durability():
    ex, driver, _ = executor("master")
    assert driver.node.durable_reported


def test_a_master_batch_that_persists_a_vote_or_epoch_persists_before_it_sends():
    ex, _, calls = executor("master")
    ex.run(batch(calls, PersistState(2, "n1"), PersistEntries((Entry(2, 5, "noop"),))))
    assert calls[:3] == ["save_state", "append", ("persisted", True)]
    assert calls.index(("send", "n2")) > calls.index("append")


def test_a_slave_persists_before_it_sends_or_answers():
    ex, _, calls = executor("slave")
    token = Token(calls)
    ex.run(batch(calls, token=token))
    assert calls[:4] == ["append", ("persisted", True), ("send", "n2"), ("send", "n3")]
    assert calls.index("respond") > calls.index("append")


def test_a_commit_made_possible_by_the_persist_is_applied_and_answered_in_the_same_batch():
    ex, driver, calls = executor("master")
    driver.committed = [Apply((), 5), Reply(10, {"seq": 5})]
    ex.run(batch(calls))
    assert calls[-3:] == [("apply", 1), ("reply", 9, None), ("reply", 10, None)]
    assert driver.applied == [Apply((Entry(1, 5, "put", "k", "v"),), 5)]  # the bare commit point folded in


def test_a_persist_that_fails_after_the_sends_left_answers_each_write_once_and_stops_sending():
    ex, _, calls = executor("master")
    ex.storage.error = errno.ENOSPC
    ready = batch(calls)
    ready.replies.append(Reply(7, {"seq": 5}))  # an acks=1 reply of the same batch, told disk_full already
    ex.run(ready)
    assert calls[:3] == [("send", "n2"), ("send", "n3"), "persist_failed"]
    replies = [c for c in calls if c[0] == "reply"]
    assert replies == [("reply", 7, "disk_full"), ("reply", 9, "disk_full")]  # 7 once; 9 may rest on the lost write
    assert ("apply", 1) not in calls  # applies wait for the disk
    calls.clear()
    ex.run(batch(calls))  # still failing (retried only every few ticks): nothing leaves
    assert not [c for c in calls if c[0] == "send"]
