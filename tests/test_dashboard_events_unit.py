"""The event ring and the persist timing behind GET /events and /metrics (issue #16), without sockets.

Named test_dashboard_* because the dashboard reads them; a fake clock makes times exact.
"""

from __future__ import annotations

import errno
import threading

import pytest

from dkvs.api.metrics import Histogram, RequestMetrics, format_value
from dkvs.core.log import OP_PUT, Entry
from dkvs.driver import INFO, WARNING, note
from dkvs.runtime.events import ClusterEvents
from dkvs.runtime.persist_timing import AppendClock, TimedStorage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_events_are_indexed_paged_with_next_and_report_what_fell_out_of_the_ring():
    events = ClusterEvents(capacity=3, clock=Clock())
    for i in range(5):
        events.add("member_added", INFO, f"m{i}", "n1", 1, member=f"m{i}")
    answer = events.since(0)
    assert [e["index"] for e in answer["events"]] == [3, 4, 5]
    assert answer["dropped"] == 2 and answer["next"] == 5
    assert events.since(4)["events"][0]["details"] == {"member": "m4"}
    assert events.since(5) == {"events": [], "next": 5, "dropped": 0, "started": 1000.0}
    assert events.since(99)["next"] == 5  # a reader from before a restart starts again


def test_a_long_poll_returns_as_soon_as_an_event_is_recorded():
    events = ClusterEvents()
    got = []
    reader = threading.Thread(target=lambda: got.append(events.since(0, wait=30)))
    reader.start()
    events.add("quorum_lost", WARNING, "lost", "n1", 3, heard=1)
    reader.join(30)
    assert got and got[0]["events"][0]["kind"] == "quorum_lost"
    assert events.since(1, wait=0.01)["events"] == []  # times out empty


def test_notes_become_events_and_count_role_changes_and_rolled_back_entries():
    role = ["slave"]
    clock = Clock()
    events = ClusterEvents(role_of=lambda: role[0], clock=clock)
    role[0] = "master"
    clock.now = 1005.0
    events.record(note(INFO, "elected", "n1", 2, "elected master (epoch=2, 3 members)", members=3))
    events.record(note(INFO, "member_added", "n1", 2, "member n4 added", member="n4"))
    role[0] = "slave"
    events.record(note(WARNING, "rollback", "n1", 3, "rolled back", entries=7, file="rollback/x", after_seq=4))
    assert events.role_changes == 2 and events.rollback_entries == 7
    assert [h["role"] for h in events.role_history()] == ["slave", "master", "slave"]
    assert events.role_history()[1] == {"time": 1005.0, "role": "master", "epoch": 2}
    first = events.since(0)["events"][0]
    assert first["kind"] == "elected" and first["text"] == "node n1 epoch=2: elected master (epoch=2, 3 members)"
    assert first["node"] == "n1" and first["epoch"] == 2 and first["details"] == {"members": 3}


class FakeStorage:
    def __init__(self, seconds=0.0, error=None) -> None:
        self.fsync_count = 0
        self.appended: list = []
        self.error = error

    def append(self, entries) -> None:
        if self.error:
            raise self.error
        self.appended.extend(entries)
        self.fsync_count += 1

    def save_state(self, epoch, voted_for) -> None:
        self.fsync_count += 1

    def log_bytes(self) -> int:
        return 42


def entries(first, last):
    return [Entry(1, seq, OP_PUT, f"k{seq}", "v") for seq in range(first, last + 1)]


def test_timed_storage_passes_calls_through_and_times_the_ones_that_fsynced():
    inner = FakeStorage()
    timed = TimedStorage(inner)
    timed.append(entries(1, 3))
    timed.save_state(2, "n1")
    assert [e.seq for e in inner.appended] == [1, 2, 3] and timed.log_bytes() == 42
    _, _, count = timed.fsync_seconds.snapshot()
    assert count == 2
    assert timed.append_clock.age(2, now=10**10) > 0 and timed.append_clock.age(4, now=10**10) == 0


def test_a_compaction_that_freed_log_space_is_an_event():
    class Compacting(FakeStorage):
        size = 1000

        def log_bytes(self) -> int:
            return self.size

        def compact(self, seq) -> None:
            self.size = 10 if seq >= 5 else self.size

    events = ClusterEvents()
    timed = TimedStorage(Compacting(), events, lambda: "n1", lambda: 2)
    timed.compact(3)  # nothing freed: no event
    timed.compact(5)
    [event] = events.since(0)["events"]
    assert event["kind"] == "compaction" and event["details"] == {"seq": 5, "bytes_before": 1000, "bytes_after": 10}


def test_a_full_disk_becomes_an_event_and_the_error_goes_on():
    events = ClusterEvents()
    timed = TimedStorage(FakeStorage(error=OSError(errno.ENOSPC, "No space left on device")), events,
                         lambda: "n1", lambda: 4)
    with pytest.raises(OSError):
        timed.append(entries(1, 1))
    event = events.since(0)["events"][0]
    assert event["kind"] == "disk_full" and event["text"].startswith("node n1 epoch=4: disk full")


def test_append_clock_ages_the_oldest_missing_entry_and_forgets_rewritten_seqs():
    clock = AppendClock(samples=3)
    clock.appended(1, 10, at=100.0)
    clock.appended(11, 20, at=105.0)
    assert clock.age(5, now=110.0) == 10.0 and clock.age(11, now=110.0) == 5.0
    clock.appended(15, 16, at=108.0)  # after a truncation: seqs 15.. were written again
    assert clock.age(16, now=110.0) == 2.0 and clock.age(17, now=110.0) == 0.0
    clock.appended(17, 30, at=109.0)
    clock.appended(31, 40, at=109.5)  # the oldest sample falls out: a lower bound remains
    assert clock.age(1, now=110.0) == 2.0


def test_request_histograms_are_split_by_method_and_values_never_use_exponents():
    metrics = RequestMetrics()
    metrics.observe("/kv/{key}", "PUT", 200, 0.002)
    metrics.observe("/kv/{key}", "GET", 200, 0.0001)
    hist = Histogram((0.001, 0.01))
    hist.observe(0.00002)
    text = metrics.render([("x_seconds", "histogram", "x.", [({}, hist)]), ("g", "gauge", "g.", [({}, 1.5e-7)])])
    assert 'dkvs_http_request_duration_seconds_count{route="/kv/{key}",method="PUT"} 1' in text
    assert 'dkvs_http_request_duration_seconds_count{route="/kv/{key}",method="GET"} 1' in text
    assert 'x_seconds_bucket{le="0.001"} 1' in text and "x_seconds_sum 0.00002" in text
    assert "\ng 0\n" in text and "e-" not in text
    assert "process_cpu_seconds_total" in text
    assert [format_value(v) for v in (3, 0.5, 2.0, True, float("inf"))] == ["3", "0.5", "2", "1", "+Inf"]
