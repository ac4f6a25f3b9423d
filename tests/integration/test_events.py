"""The cluster event feed, GET /events (issue #16), with real node processes."""

import threading

from .procs import request, status, wait_until


def events(base: str, after: int = 0, wait: float | None = None) -> dict:
    query = f"?after={after}" + (f"&wait={wait}" if wait is not None else "")
    code, body = request("GET", f"{base}/events{query}", timeout=(wait or 0) + 5)
    assert code == 200, body
    return body


def find(feed: list, kind: str, **details):
    return next((e for e in feed if e["kind"] == kind
                 and all(e["details"].get(k) == v for k, v in details.items())), None)


def test_after_a_master_sigkill_a_survivor_lists_the_election_with_reason_epoch_and_new_master(procs):
    nodes = procs.cluster(3)
    master_url = wait_until(lambda: status(nodes[0].url)["master"], 10, what="a master")["url"]
    master = next(n for n in nodes if n.url == master_url)
    others = [n for n in nodes if n is not master]
    assert wait_until(lambda: find(events(master.url)["events"], "member_added"), 10, what="member events")
    # A long poll parked on a survivor before the kill returns with the first new event.
    start = events(others[0].url)["next"]
    polled = []
    poller = threading.Thread(target=lambda: polled.append(events(others[0].url, start, wait=30)))
    poller.start()
    master.kill()
    new = wait_until(lambda: next((n for n in others if status(n.url)["role"] == "master"), None), 30,
                     what="a new master")
    epoch = status(new.url)["epoch"]
    follower = next(n for n in others if n is not new)
    poller.join(35)
    assert polled and polled[0]["events"] and polled[0]["events"][0]["index"] > start, polled

    won = wait_until(lambda: find(events(new.url)["events"], "elected"), 10, what="the election event")
    assert won["epoch"] == epoch and won["node"] == new.id and f"epoch={epoch}" in won["text"]
    feed = events(new.url)["events"]
    campaign = find(feed, "pre_vote")
    assert campaign and campaign["details"]["reason"], feed  # its own timeout, or a peer's pre-vote
    # Whichever survivor's timer fired first says so.
    reasons = {e["details"].get("reason") for n in others for e in events(n.url)["events"] if e["kind"] == "pre_vote"}
    assert "heartbeat timeout" in reasons, reasons
    assert find(feed, "election_started") is not None
    assert [e["index"] for e in feed] == sorted(e["index"] for e in feed)
    followed = wait_until(lambda: find(events(follower.url)["events"], "following", master=new.id), 10,
                          what="the follower's event naming the new master")
    assert followed["epoch"] == epoch and followed["node"] == follower.id
    assert isinstance(followed["time"], float) and followed["level"] == "info"
    # The role history in /status and the role-change counter in /metrics agree.
    history = status(new.url)["role_history"]
    assert history[-1]["role"] == "master" and history[-1]["epoch"] == epoch


def test_events_page_with_next_and_reject_bad_parameters(shared_cluster):
    base = shared_cluster[0].url
    wait_until(lambda: events(base)["events"], 10, what="the first events")
    first = events(base)
    assert first["next"] == first["events"][-1]["index"] and first["dropped"] == 0
    assert events(base, first["next"], wait=0.05)["events"] == []
    assert events(base, first["next"] - 1)["events"] == first["events"][-1:]
    for query in ("after=-1", "after=x", "wait=0", "wait=61", "after=1&after=2", "since=1"):
        code, body = request("GET", f"{base}/events?{query}")
        assert code == 400 and body["error"], (query, body)
