"""With ``--fsync always`` a slave fsyncs an entry before it acknowledges it (issue 12,
deliverable 8), so ``acks=majority`` means "on disk on a majority".

The slave's host is driven as production drives it (an Append delivered as from an HTTP
request, the answer read from the request's outcome); the storage's fsync and the hand-over
of the answer are recorded in order. A slave that answered before its fsync — the reply
handed out before the persist step, or an append that left the fsync to a flusher — fails.
"""

from __future__ import annotations

import random

import pytest

import dkvs.runtime.host as host_module
import dkvs.storage.file as file_module
from dkvs.core.config import CoreConfig
from dkvs.core.log import OP_MEMBER_ADD, OP_PUT, Entry
from dkvs.core.messages import Append, AppendReply
from dkvs.driver import NodeDriver
from dkvs.runtime.host import NodeHost
from dkvs.runtime.recovery import restore_node
from dkvs.storage import FileStorage

from null_transport import NullTransport


class _Recorded(list):
    events: list

    def extend(self, items) -> None:
        items = list(items)
        if any(isinstance(m, AppendReply) and m.success for m in items):
            self.events.append("ack")
        super().extend(items)


@pytest.mark.parametrize("policy, fsynced_first", [("always", True), ("batch", False)])
def test_a_slave_acknowledges_only_after_its_fsync(tmp_path, monkeypatch, policy, fsynced_first):
    events: list[str] = []
    real_sync = file_module._fdatasync
    monkeypatch.setattr(file_module, "_fdatasync", lambda fd: (events.append("fsync"), real_sync(fd)))

    class RecordingOutcome(host_module.Outcome):
        __slots__ = ()

        def __init__(self) -> None:
            super().__init__()
            self.messages = _Recorded()
            self.messages.events = events

    monkeypatch.setattr(host_module, "Outcome", RecordingOutcome)
    storage = FileStorage(tmp_path, fsync=policy, fsync_interval_seconds=3600.0)
    members = [Entry(1, 1, OP_MEMBER_ADD, "m", "http://m"), Entry(1, 2, OP_MEMBER_ADD, "s", "http://s")]
    storage.append(members)
    node, state = restore_node("s", storage, CoreConfig(), random.Random(1))
    host = NodeHost(NodeDriver(node, state), storage, NullTransport(), tick_seconds=3600.0)
    host.start([])
    try:
        events.clear()
        write = Append(1, "m", prev_seq=2, prev_epoch=1, entries=(Entry(1, 3, OP_PUT, "k", "v"),), commit_seq=2)
        answers = host.deliver_and_wait(write, 30.0)
    finally:
        host.stop()
    assert any(isinstance(m, AppendReply) and m.success and m.match_seq == 3 for m in answers), answers
    assert "ack" in events
    acked_at = events.index("ack")
    assert ("fsync" in events[:acked_at]) is fsynced_first, events
