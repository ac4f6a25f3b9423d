"""The checker on histories of a simulated *correct* store with CAS, txns and leases.

The brute-force test in ``test_check_cas_txn.py`` checks the group search against the
same compiled model, so a mistake in the model itself (how a seq resolves, which values
collapse) slips through it. Here an independent, obviously correct store (a dict of
``key -> (value, seq, lease)``, one global seq) runs concurrent clients: every operation
takes effect at one instant inside its interval, info operations at any later time or
never, leases expire at random times. Whatever the checker decides, it must call every
such history linearizable; and a forged second winner of one compare-and-set must be
caught. Two model mistakes found by real chaos runs are of exactly this kind.
"""

from __future__ import annotations

import heapq
import itertools
import random

import pytest

from dkvs.check import check_history

LATENCY = 100  # time units from invoke to the effect, and again to the answer


class _Store:
    def __init__(self) -> None:
        self.data: dict[str, tuple[str, int, int | None]] = {}
        self.seq = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def version(self, key: str) -> int:
        return self.data[key][1] if key in self.data else 0

    def write(self, key: str, value: str | None, seq: int, lease: int | None = None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = (value, seq, lease)


class _Simulation:
    def __init__(self, seed: int, processes: int, operations: int, info_rate: float) -> None:
        self.rng = random.Random(seed)
        self.store = _Store()
        self.events: list[dict] = []
        self.queue: list = []
        self.order = itertools.count()
        self.left = operations
        self.info_rate = info_rate
        self.known: dict[tuple[int, str], int] = {}  # (client, key) -> last seq seen
        self.process = {client: client for client in range(processes)}
        self.values = itertools.count(1)
        self.leases = itertools.count(1)
        for client in range(processes):
            self.at(self.rng.randint(0, LATENCY), self.invoke, client)

    def at(self, time: int, action, *args) -> None:
        heapq.heappush(self.queue, (time, next(self.order), action, args))

    def run(self) -> list[dict]:
        while self.queue:
            time, _, action, args = heapq.heappop(self.queue)
            action(time, *args)
        return self.events

    def invoke(self, time: int, client: int) -> None:
        if self.left <= 0:
            return
        self.left -= 1
        rng = self.rng
        kind = rng.choice(("put", "get", "get", "cas", "cas", "cas-delete", "delete", "txn", "read", "lease"))
        key = rng.choice(("x", "y") if kind not in ("lease",) else ("l",))
        process = self.process[client]
        value = f"v{next(self.values)}"
        event = {"process": process, "type": "invoke", "f": kind, "key": key, "value": None, "time": time}
        if kind in ("put", "cas", "lease"):
            event.update(f="put", value=value)
        if kind in ("cas", "cas-delete"):
            event.update(if_seq=self.known.get((client, key), 0), f="put" if kind == "cas" else "delete")
        if kind == "delete":
            event["f"] = "delete"
        if kind == "lease":
            event["lease"] = True
        if kind in ("txn", "read"):
            del event["key"]
            event["f"] = "txn"
            gets = [{"op": "get", "key": k} for k in ("x", "y")]
            if kind == "read":
                event["txn"] = {"compare": [], "success": gets, "failure": []}
            else:
                event["txn"] = {"compare": [{"key": "x", "seq": self.known.get((client, "x"), 0)}],
                                "success": [{"op": "put", "key": k, "value": f"{value}{k}"} for k in ("x", "y")],
                                "failure": gets}
        self.events.append(event)
        outcome = rng.choices(("ok", "info", "fail"), (1 - self.info_rate - 0.05, self.info_rate, 0.05))[0]
        effect = time + rng.randint(0, LATENCY)
        if outcome == "info":
            effect = time + rng.randint(0, 10 * LATENCY) if rng.random() < 0.7 else None
        if outcome == "fail":
            effect = None
        answer: dict = {}
        if effect is not None:
            self.at(effect, self.apply, event, kind, answer)
        done = (effect if effect is not None and effect > time else time) + rng.randint(0, LATENCY)
        self.at(done + (1 if outcome == "info" else 0), self.complete, client, event, kind, outcome, answer)

    def apply(self, time: int, event: dict, kind: str, answer: dict) -> None:
        store, key = self.store, event.get("key")
        if kind in ("put", "lease"):
            seq = store.next_seq()
            lease = next(self.leases) if kind == "lease" else None
            store.write(key, event["value"], seq, lease)
            answer["seq"] = seq
            if lease is not None and self.rng.random() < 0.7:
                self.at(time + self.rng.randint(1, 5 * LATENCY), self.expire, key, lease)
        elif kind == "get":
            answer.update(value=store.data.get(key, (None,))[0], seq=store.version(key) or None)
        elif kind in ("cas", "cas-delete", "delete"):
            seq = store.next_seq()
            if kind == "delete" or store.version(key) == event["if_seq"]:
                if kind == "cas-delete" and key not in store.data:
                    answer["found"] = False
                    return
                answer.update(seq=seq, found=key in store.data if kind == "delete" else None)
                store.write(key, None if kind != "cas" else event["value"], seq)
            else:
                answer["conflict"] = store.version(key)
        else:
            self.apply_txn(event["txn"], answer)

    def apply_txn(self, body: dict, answer: dict) -> None:
        store = self.store
        seq = store.next_seq()
        succeeded = all(store.version(c["key"]) == c["seq"] for c in body["compare"])
        results = []
        for op in body["success" if succeeded else "failure"]:
            if op["op"] == "put":
                store.write(op["key"], op["value"], seq)
                results.append({"op": "put", "key": op["key"], "seq": seq})
            elif op["key"] in store.data:
                value, version, _ = store.data[op["key"]]
                results.append({"op": "get", "key": op["key"], "found": True, "seq": version, "value": value})
            else:
                results.append({"op": "get", "key": op["key"], "found": False, "seq": 0})
        answer.update(succeeded=succeeded, results=results, seq=seq)

    def expire(self, time: int, key: str, lease: int) -> None:
        if key in self.store.data and self.store.data[key][2] == lease:
            self.store.write(key, None, self.store.next_seq())

    def complete(self, time: int, client: int, event: dict, kind: str, outcome: str, answer: dict) -> None:
        done = {k: event[k] for k in ("process", "f", "key", "value") if k in event}
        done.update(type=outcome, time=time)
        if outcome == "ok":
            if kind == "get":
                done["value"] = answer["value"]
            done.update({k: v for k, v in answer.items() if v is not None and k != "value"})
            key = event.get("key")
            if "conflict" in answer:
                self.known[(client, key)] = answer["conflict"]
            elif kind in ("txn", "read"):
                for result in answer["results"]:
                    if result["op"] == "get":
                        self.known[(client, result["key"])] = result["seq"]
            elif kind in ("delete", "cas-delete"):
                self.known[(client, key)] = 0
            elif answer.get("seq") is not None:
                self.known[(client, key)] = answer["seq"]
        self.events.append(done)
        if outcome == "info":
            self.process[client] += 1000  # a crashed process: carry on as a new one
        self.at(time + self.rng.randint(0, LATENCY // 2), self.invoke, client)


def simulate(seed: int, processes: int = 5, operations: int = 300, info_rate: float = 0.15) -> list[dict]:
    events = _Simulation(seed, processes, operations, info_rate).run()
    return sorted(events, key=lambda e: e["time"])  # stable: an invoke stays before its completion


@pytest.mark.parametrize("seed", range(20))
def test_histories_of_a_correct_store_are_linearizable(seed):
    events = simulate(seed)
    result = check_history(events, budget=50_000)
    assert result.linearizable is True, (seed, result)


@pytest.mark.parametrize("seed", range(5))
def test_a_forged_second_winner_of_a_cas_is_caught(seed):
    events = simulate(seed, operations=120)  # refuting (and shrinking) costs more than passing
    winners = [e for e in events if e["type"] == "ok" and e["f"] == "put" and "seq" in e and "conflict" not in e]
    invokes = {(e["process"], e["value"]): e for e in events if e["type"] == "invoke" and e.get("if_seq")}
    cas = next(e for e in winners if (e["process"], e["value"]) in invokes)
    invoke = invokes[(cas["process"], cas["value"])]
    forged = [dict(invoke, process=10**6, value="forged", time=cas["time"]),
              dict(cas, process=10**6, value="forged", seq=10**6, time=cas["time"] + 1)]
    result = check_history(sorted(events + forged, key=lambda e: e["time"]), budget=50_000)
    assert result.linearizable is False, (seed, result)
