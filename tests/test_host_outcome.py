"""The host's per-request Outcome makes its lock only when a waiter must sleep (issue 15):
completing and waiting may race from two threads, and no wake-up may be lost."""

import threading

from dkvs.runtime.host import Outcome


def test_an_outcome_completed_before_the_wait_returns_at_once():
    outcome = Outcome(1)
    outcome.set({"seq": 1}, None)
    assert outcome.wait(0) and outcome.wait(None) and outcome.result == {"seq": 1}


def test_a_wait_nobody_completes_times_out_and_a_later_completion_still_counts():
    outcome = Outcome(1)
    assert outcome.wait(0.01) is False
    outcome.done()
    assert outcome.wait(0) is True


def test_a_sleeping_waiter_is_woken_by_done_from_another_thread():
    outcome = Outcome(1)
    waiting = threading.Event()

    def complete():
        waiting.wait(10)
        outcome.set({"seq": 2}, None)

    thread = threading.Thread(target=complete)
    thread.start()
    waiting.set()
    assert outcome.wait(10) is True and outcome.result == {"seq": 2}
    thread.join(10)


def test_completion_racing_the_start_of_a_wait_never_loses_the_wake_up():
    lost = 0
    for _ in range(500):
        outcome = Outcome(1)
        start = threading.Barrier(2)
        thread = threading.Thread(target=lambda: (start.wait(10), outcome.done()))
        thread.start()
        start.wait(10)
        lost += not outcome.wait(10)
        thread.join(10)
    assert lost == 0
