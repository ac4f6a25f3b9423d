"""ChangeFeed.call_when_applied: parked read-your-writes answers run once, in seq order,
when the index covers them (record or reset), or with False once their timeout passed.
They run on the feed's own thread (not the applying one), so tests wait for them."""

from __future__ import annotations

import threading

from dkvs.core.log import OP_PUT, Entry
from dkvs.runtime.changes import ChangeFeed

BOUND_SECONDS = 10.0  # generous: only a hang would reach it


def puts(*seqs: int) -> list[Entry]:
    return [Entry(1, seq, OP_PUT, f"k{seq}", "v") for seq in seqs]


class Calls:
    """Collects (name, applied) from callbacks; ``wait_for(n)`` blocks until n arrived."""

    def __init__(self) -> None:
        self.calls: list = []
        self._cond = threading.Condition()

    def callback(self, name):
        def called(applied: bool) -> None:
            with self._cond:
                self.calls.append((name, applied))
                self._cond.notify_all()
        return called

    def wait_for(self, n: int) -> list:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.calls) >= n, BOUND_SECONDS), self.calls
            return list(self.calls)


def test_callbacks_run_in_seq_order_once_their_entry_is_applied():
    feed, calls = ChangeFeed(), Calls()
    for seq in (3, 1, 2, 5):
        feed.call_when_applied(seq, calls.callback(seq), timeout=60.0)
    feed.record(puts(1, 2), set())
    assert calls.wait_for(2) == [(1, True), (2, True)]
    feed.record(puts(3, 4), set())
    assert calls.wait_for(3) == [(1, True), (2, True), (3, True)]
    feed.record(puts(5), set())
    assert calls.wait_for(4)[-1] == (5, True)
    feed.call_when_applied(6, calls.callback(6), timeout=60.0)
    feed.record(puts(6), set())
    assert calls.wait_for(5)[4:] == [(6, True)]  # and nothing ran twice


def test_an_already_applied_seq_calls_back_at_once_on_the_callers_thread():
    feed, calls = ChangeFeed(), Calls()
    feed.record(puts(1, 2), set())
    feed.call_when_applied(2, calls.callback("now"), timeout=60.0)
    assert calls.calls == [("now", True)]


def test_skipped_entries_still_advance_the_index():
    feed, calls = ChangeFeed(), Calls()
    feed.call_when_applied(1, calls.callback("a"), timeout=60.0)
    feed.record(puts(1), {1})  # a 404 delete changes nothing but is applied
    assert calls.wait_for(1) == [("a", True)]


def test_a_snapshot_reset_runs_the_callbacks_it_covers():
    feed, calls = ChangeFeed(), Calls()
    feed.call_when_applied(10, calls.callback(10), timeout=60.0)
    feed.call_when_applied(20, calls.callback(20), timeout=60.0)
    feed.reset(15)
    assert calls.wait_for(1) == [(10, True)]
    feed.reset(20)
    assert calls.wait_for(2) == [(10, True), (20, True)]


def test_a_callback_whose_seq_never_comes_is_called_with_false_after_its_timeout():
    feed, calls = ChangeFeed(), Calls()
    feed.call_when_applied(7, calls.callback("late"), timeout=0.01)
    feed.call_when_applied(8, calls.callback("later"), timeout=0.02)
    assert calls.wait_for(2) == [("late", False), ("later", False)]
    feed.record(puts(7, 8), set())  # the index arriving afterwards calls nobody again
    feed.call_when_applied(9, calls.callback("marker"), timeout=60.0)
    feed.record(puts(9), set())
    assert calls.wait_for(3)[2:] == [("marker", True)]


def test_a_timer_started_for_a_long_timeout_wakes_for_a_shorter_one():
    feed, calls = ChangeFeed(), Calls()
    feed.call_when_applied(9, calls.callback("long"), timeout=3600.0)
    feed.call_when_applied(9, calls.callback("short"), timeout=0.01)
    assert calls.wait_for(1) == [("short", False)]
    feed.record(puts(9), set())
    assert calls.wait_for(2) == [("short", False), ("long", True)]


def test_a_failing_callback_does_not_stop_the_others():
    feed, calls = ChangeFeed(), Calls()

    def broken(applied: bool) -> None:
        raise RuntimeError("bug")

    feed.call_when_applied(1, broken, timeout=60.0)
    feed.call_when_applied(1, calls.callback("ok"), timeout=60.0)
    feed.record(puts(1), set())
    assert calls.wait_for(1) == [("ok", True)]


def test_blocking_waiters_still_wake_on_record():
    feed = ChangeFeed()
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(feed.wait_index(3, BOUND_SECONDS)))
    waiter.start()
    feed.record(puts(1, 2, 3), set())
    waiter.join(BOUND_SECONDS)
    assert woke == [True]


def test_callbacks_do_not_run_on_the_applying_thread():
    feed, calls = ChangeFeed(), Calls()
    threads = []
    feed.call_when_applied(1, lambda applied: (threads.append(threading.current_thread()),
                                               calls.callback("a")(applied)), timeout=60.0)
    feed.record(puts(1), set())
    calls.wait_for(1)
    assert threads and threads[0] is not threading.current_thread()
