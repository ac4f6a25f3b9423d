"""Signed internal requests: what the signature covers, replays, wrong targets, the clock
window and the bounded nonce memory — all on a fake clock, no sockets."""

from __future__ import annotations

import pytest

from dkvs.transport.auth import (DIGEST_HEADER, MAX_CLOCK_SKEW_SECONDS, NONCE_HEADER, SENDER_HEADER,
                                 SIGNATURE_HEADER, TARGET_HEADER, TIMESTAMP_HEADER, NonceCache, Signer,
                                 body_digest)

SECRET = "correct horse battery staple"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def pair(clock, sender="a", receiver="b", secret=SECRET):
    return Signer(secret, clock, node_id=sender), Signer(secret, clock, node_id=receiver)


def test_a_signed_request_verifies_head_then_body(clock):
    a, b = pair(clock)
    headers = a.headers("POST", "/internal/remove?id=c", b'{"x":1}', to="b")
    assert headers[SENDER_HEADER] == "a" and headers[TARGET_HEADER] == "b"
    assert b.verify_head("POST", "/internal/remove?id=c", headers) is None
    assert b.verify_body(headers, b'{"x":1}') is None
    assert b.sender(headers) == "a"


def test_streamed_bodies_hash_like_whole_ones():
    assert body_digest([b"ab", b"", b"c"]) == body_digest(b"abc")


@pytest.mark.parametrize("method,target", [("GET", "/internal/remove?id=c"), ("POST", "/internal/leave?id=c"),
                                           ("POST", "/internal/remove?id=d"), ("POST", "/internal/remove"),
                                           ("POST", "/internal/remove?id=c&force=true")])
def test_method_path_and_query_are_covered(clock, method, target):
    a, b = pair(clock)
    headers = a.headers("POST", "/internal/remove?id=c", b"", to="b")
    assert b.verify_head(method, target, headers) == "bad signature"


@pytest.mark.parametrize("name,value", [(SENDER_HEADER, "c"), (TARGET_HEADER, "c"), (NONCE_HEADER, "00" * 16),
                                        (DIGEST_HEADER, body_digest(b"other")),
                                        (TIMESTAMP_HEADER, f"{1_000_001.0:.3f}")])
def test_every_signed_header_is_covered(clock, name, value):
    a, b = pair(clock)
    headers = a.headers("POST", "/internal/raft", b"body", to="b")
    headers[name] = value
    assert b.verify_head("POST", "/internal/raft", headers) == "bad signature"


def test_a_body_other_than_the_signed_one_is_refused(clock):
    a, b = pair(clock)
    headers = a.headers("POST", "/internal/raft", b"body", to="b")
    assert b.verify_head("POST", "/internal/raft", headers) is None
    assert b.verify_body(headers, b"bodY") == "the body does not match its signed digest"


def test_a_replay_is_refused_even_much_later_within_the_window(clock):
    a, b = pair(clock)
    headers = a.headers("POST", "/internal/raft", b"m", to="b")
    assert b.verify_head("POST", "/internal/raft", headers) is None
    clock.now += MAX_CLOCK_SKEW_SECONDS - 1
    assert "replayed" in b.verify_head("POST", "/internal/raft", headers)
    clock.now += 2
    assert "stale" in b.verify_head("POST", "/internal/raft", headers)


def test_a_request_for_one_node_is_refused_by_another(clock):
    a, b = pair(clock)
    c = Signer(SECRET, clock, node_id="c")
    headers = a.headers("POST", "/internal/remove?id=x", b"", to="b")
    assert "another node" in c.verify_head("POST", "/internal/remove?id=x", headers)
    assert b.verify_head("POST", "/internal/remove?id=x", headers) is None


def test_only_a_join_may_be_untargeted(clock):
    a, b = pair(clock)
    join = a.headers("POST", "/internal/join", b"{}")
    assert b.verify_head("POST", "/internal/join", join) is None
    leave = a.headers("POST", "/internal/leave", b"{}")
    assert "another node" in b.verify_head("POST", "/internal/leave", leave)


@pytest.mark.parametrize("missing", [SENDER_HEADER, TARGET_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, DIGEST_HEADER,
                                     SIGNATURE_HEADER])
def test_unsigned_or_partly_signed_requests_are_refused(clock, missing):
    a, b = pair(clock)
    headers = a.headers("POST", "/internal/raft", b"", to="b")
    del headers[missing]
    assert b.verify_head("POST", "/internal/raft", headers) == "unsigned internal request"


def test_wrong_secret_and_skewed_clock_are_refused(clock):
    a, _ = pair(clock, secret="other")
    _, b = pair(clock)
    assert b.verify_head("POST", "/internal/raft", a.headers("POST", "/internal/raft", b"", to="b")) == "bad signature"
    a, b = pair(clock)
    headers = a.headers("POST", "/internal/raft", b"", to="b")
    clock.now -= MAX_CLOCK_SKEW_SECONDS + 1
    assert "stale or future" in b.verify_head("POST", "/internal/raft", headers)
    headers[TIMESTAMP_HEADER] = "nan"
    assert b.verify_head("POST", "/internal/raft", headers) is not None


def test_without_a_secret_nothing_is_signed_or_checked(clock):
    off = Signer(None, clock, node_id="b")
    assert off.headers("POST", "/internal/raft", b"") == {}
    assert off.verify_head("POST", "/internal/raft", {}) is None
    assert off.verify_body({}, b"x") is None


def test_nonces_are_forgotten_once_their_window_passed():
    cache = NonceCache(capacity=3)
    for n in range(3):
        assert cache.add(f"n{n}", expires_at=10.0 + n, now=0.0) is None
    assert cache.add("n3", expires_at=20.0, now=0.0) == "too many signed requests in the validity window"
    assert cache.add("n0", expires_at=30.0, now=5.0) == "replayed request (nonce already seen)"
    assert cache.add("n3", expires_at=20.0, now=11.5) is None  # n0 and n1 expired
    assert len(cache) == 2


def test_nonce_memory_is_bounded_under_a_stream_of_requests(clock):
    a, _ = pair(clock)
    b = Signer(SECRET, clock, node_id="b", nonces=NonceCache(capacity=100))
    for _ in range(1000):
        clock.now += 1.0
        assert b.verify_head("POST", "/internal/raft", a.headers("POST", "/internal/raft", b"", to="b")) is None
    assert len(b.nonces) <= MAX_CLOCK_SKEW_SECONDS + 1
