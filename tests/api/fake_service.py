"""A stand-in node for HTTP tests: a locked dict with a seq counter and switchable failures.

It keeps the :class:`KeyValueService` contract (same answers, same errors) without any
replication, so the front end can be tested alone. ``raise_not_master`` makes writes (and
consistent reads) raise ``NotMaster(url)``; ``raise_no_master``, ``raise_acks_timeout`` and
``raise_crash`` make every call fail the named way. ``calls`` records what reached it.
"""

from __future__ import annotations

import json
import threading

from dkvs.api.service import KeyValueService, Limits, NotMaster
from dkvs.errors import AcksTimeout, Conflict, KeyNotFound, NoMaster

__all__ = ["FakeService", "UNSET"]

UNSET = object()


class FakeService(KeyValueService):
    def __init__(self, limits: Limits | None = None, node_id: str = "fake") -> None:
        self.limits = limits or Limits()
        self.node_id = node_id
        self.url = ""
        self._lock = threading.Lock()
        self._data: dict[str, tuple[str, int]] = {}
        self._seq = 0
        self.calls: list[tuple] = []
        self.raise_not_master = UNSET  # a URL or None: NotMaster(that) on writes
        self.raise_no_master = False
        self.raise_acks_timeout = False
        self.raise_crash = False

    # --- helpers for tests --------------------------------------------------------------

    def snapshot(self) -> tuple[dict, int]:
        """The whole state, to prove a bad request changed nothing."""
        with self._lock:
            return dict(self._data), self._seq

    def _check(self, write: bool) -> None:
        if self.raise_crash:
            raise RuntimeError("the fake service was told to crash")
        if self.raise_no_master:
            raise NoMaster(retry_after=2.5)
        if write and self.raise_not_master is not UNSET:
            raise NotMaster(self.raise_not_master)

    # --- the contract -------------------------------------------------------------------

    def put(self, key: str, value: str, *, acks: str, timeout: float, **extra) -> dict:
        self._check(write=True)
        with self._lock:
            self.calls.append(("put", key, value, acks, timeout))
            self._seq += 1
            self._data[key] = (value, self._seq)
            seq = self._seq
        if self.raise_acks_timeout:
            raise AcksTimeout(f"acks={acks} not reached in {timeout:g} s", seq=seq)
        return {"key": key, "seq": seq, "epoch": 1, "replicas": 1}

    def delete(self, key: str, *, acks: str, timeout: float, if_seq: int | None = None) -> dict:
        self._check(write=True)
        with self._lock:
            self.calls.append(("delete", key, acks, timeout) + (() if if_seq is None else (if_seq,)))
            if key not in self._data:
                raise KeyNotFound(f"no key {key!r}")
            if if_seq is not None and self._data[key][1] != if_seq:
                raise Conflict(f"key {key!r} is at seq {self._data[key][1]}", seq=self._data[key][1])
            del self._data[key]
            self._seq += 1
            return {"key": key, "seq": self._seq, "epoch": 1, "replicas": 1}

    def delete_prefix(self, prefix: str, *, acks: str, timeout: float) -> dict:
        self._check(write=True)
        with self._lock:
            self.calls.append(("delete_prefix", prefix, acks, timeout))
            gone = [k for k in self._data if k.startswith(prefix)]
            for k in gone:
                del self._data[k]
            self._seq += 1
            return {"prefix": prefix, "deleted": len(gone), "seq": self._seq, "epoch": 1, "replicas": 1}

    def txn(self, txn: dict, *, acks: str, timeout: float) -> dict:
        """Records the normalised transaction; runs it like a node would (no replication)."""
        from dkvs.core.txn import run_txn
        self._check(write=True)
        with self._lock:
            self.calls.append(("txn", txn, acks, timeout))
            self._seq += 1
            seq = self._seq

            def put(k, v, lease=None):
                self._data[k] = (v, seq)

            def delete(k):
                return self._data.pop(k, None) is not None

            def delete_prefix(p):
                gone = [k for k in self._data if k.startswith(p)]
                for k in gone:
                    del self._data[k]
                return len(gone)

            result = run_txn(txn, self._data.get, put, delete, delete_prefix)
        return {"succeeded": result["succeeded"], "seq": seq, "epoch": 1, "replicas": 1,
                "results": result["results"]}

    def get(self, key: str, *, consistent: bool) -> dict:
        self._check(write=consistent)
        with self._lock:
            self.calls.append(("get", key, consistent))
            if key not in self._data:
                raise KeyNotFound(f"no key {key!r}")
            value, seq = self._data[key]
        return {"key": key, "value": value, "seq": seq}

    def items(self, prefix: str, after: str | None, limit: int) -> dict:
        self._check(write=False)
        with self._lock:
            self.calls.append(("items", prefix, after, limit))
            keys = sorted(k for k in self._data
                          if k.startswith(prefix) and (after is None or k > after))
            page = [{"key": k, "value": self._data[k][0], "seq": self._data[k][1]}
                    for k in keys[:limit]]
        more = len(keys) > limit
        return {"items": page, "next": page[-1]["key"] if more else None}

    def status(self) -> dict:
        self._check(write=False)
        with self._lock:
            last = self._seq
        return {"id": self.node_id, "url": self.url, "role": "master", "epoch": 1,
                "master": {"id": self.node_id, "url": self.url}, "last_seq": last,
                "commit_seq": last, "members": [
                    {"id": self.node_id, "url": self.url, "role": "master", "last_seq": last,
                     "alive": True}]}

    def events(self, after: int, wait: float | None) -> dict:
        self._check(write=False)
        self.calls.append(("events", after, wait))
        events = [{"index": 1, "time": 0.0, "node": self.node_id, "epoch": 1, "kind": "elected",
                   "level": "info", "text": f"node {self.node_id} epoch=1: elected master", "details": {}}]
        return {"events": [e for e in events if e["index"] > after], "next": max(after, 1), "dropped": 0,
                "started": 0.0}

    def internal(self, method: str, path: str, query: dict, body: bytes,
                 headers: dict) -> tuple[int, bytes]:
        self._check(write=(method == "POST"))
        with self._lock:
            self.calls.append(("internal", method, path))
        echo = {"node": self.node_id, "method": method, "path": path, "query": query,
                "body": body.decode("utf-8", "replace"), "secret": headers.get("X-Dkvs-Secret")}
        return 200, json.dumps(echo).encode()
