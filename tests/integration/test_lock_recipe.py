"""The lock recipe of dkvs.Client (issue 14): one holder at a time, fencing tokens that
only grow, and a lock that frees itself when its holder stops renewing (a crash)."""

import threading
import time

import pytest

from dkvs.client import Client, Lock, LockTimeout


@pytest.fixture(scope="module")
def urls(shared_cluster):
    return [n.url for n in shared_cluster]


def test_a_held_lock_times_out_others_and_the_next_holder_gets_a_larger_token(urls):
    with Client(urls) as a, Client(urls[1:] + urls[:1]) as b:
        first = Lock(a, "locks/one", ttl=5, owner="a")
        token = first.acquire()
        with pytest.raises(LockTimeout):
            Lock(b, "locks/one", ttl=5, owner="b").acquire(timeout=0.5)
        assert a.get("locks/one") == "a"
        second = Lock(b, "locks/one", ttl=5, owner="b")
        waiter = threading.Thread(target=second.acquire, kwargs={"timeout": 20})
        waiter.start()
        first.release()
        waiter.join(30)
        assert second.token is not None and second.token > token
        second.release()
        assert not first.lost and not second.lost


def test_a_crashed_holders_lock_frees_after_its_ttl(urls):
    with Client(urls) as client:
        crashed = client.grant_lease(1)  # a holder that took the lock and then died
        taken = client.put("locks/two", "dead", if_seq=0, lease=crashed)
        lock = Lock(client, "locks/two", ttl=5)
        started = time.monotonic()
        assert lock.acquire(timeout=20) > taken.seq
        assert time.monotonic() - started >= 0.5  # not before the dead holder's lease ran out
        lock.release()


def test_contending_threads_never_overlap_and_tokens_grow(urls):
    holders, tokens, errors = [], [], []
    guard = threading.Lock()

    def work(i: int) -> None:
        try:
            with Client(urls[i % 3:] + urls[:i % 3]) as client:
                for _ in range(4):
                    lock = Lock(client, "locks/three", ttl=5, owner=str(i))
                    token = lock.acquire(timeout=60)
                    with guard:
                        holders.append(i)
                        assert len(holders) == 1, holders
                        tokens.append(token)
                    time.sleep(0.01)
                    with guard:
                        holders.remove(i)
                    lock.release()
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, [repr(e) for e in errors]
    assert len(tokens) == 16 and tokens == sorted(tokens) and len(set(tokens)) == 16
