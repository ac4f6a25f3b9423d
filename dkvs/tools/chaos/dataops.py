"""The chaos clients' data operations: compare-and-set, transactions and leases.

Mixed into :class:`~.clients.ChaosClient`; each method runs one operation, records it in
the history (in the checker's format, docs/checker.md) and returns its
:class:`~.history.OpRecord`. The rules are those of plain writes (``fail`` only when
certainly without effect), plus:

* **CAS** (``cas``: ``PUT ?if_seq=N``; ``cas-delete``: ``DELETE ?if_seq=N``). ``N`` is the
  seq this client last saw for the key (0 if it never saw it), so most succeed and some
  race. A 409 is an ``ok`` with ``conflict`` (the key's seq at that point of the log).
* **Transactions** on a fixed pair of keys (``k0+k1``, ``k2+k3``, ...): a *write* compares
  the first key's seq with the one last seen and puts both keys (else reads both); a
  *read* reads both in one snapshot. Pairs keep the checker's groups small.
* **Leases** on their own keys (``l0``..): grant a lease with a short ttl, put a key with
  it, renew it (keepalive), read the keys, and now and then abandon the lease so it
  expires under the faults. The checker lets a leased key vanish at any time after its
  put (docs/checker.md); grants and keepalives change no key, so they are counted, not
  recorded. ``lease_stats`` holds the counts.
"""

from __future__ import annotations

import json
import urllib.parse

from .history import Answer, OpRecord, classify_conditional, classify_txn, describe

__all__ = ["DataOpsMixin", "lease_key_name", "txn_pair"]

ABANDON_SHARE = 0.1  # of lease operations: drop the lease without revoking it, so it expires


def lease_key_name(index: int) -> str:
    return f"l{index}"


def txn_pair(key_index: int, keys: int) -> tuple[str, ...]:
    """The fixed group of ``key_index``: ``(k2i, k2i+1)``, or one key at an odd end."""
    first = key_index - key_index % 2
    return tuple(f"k{n}" for n in (first, first + 1) if n < keys)


def _path(key: str) -> str:
    return "/kv/" + urllib.parse.quote(key, safe="")


class DataOpsMixin:
    """Needs from the client: ``number``, ``clients``, ``process``, ``workload``, ``rng``,
    ``recorder``, ``connections``, ``written``, ``seen`` (key -> last seq seen)."""

    def perform_data(self, url: str, f: str, key: str) -> OpRecord | None:
        return getattr(self, "_" + f.replace("-", "_"))(url, key)

    # -- helpers ---------------------------------------------------------------------------
    def _next_value(self, suffix: str = "") -> str:
        self.written += 1
        return f"c{self.number}-{self.written}{suffix}"

    def _query(self) -> str:
        return f"acks=majority&timeout={self.workload.timeout_s:g}"

    def _finish(self, f: str, key: str, value: str | None, invoke_ns: int, answer: Answer, outcome,
                keys: tuple[str, ...] = (), **extra) -> OpRecord:
        process = self.process
        seq = answer.body.get("seq") if answer.status == 200 and isinstance(answer.body.get("seq"), int) else None
        history_f = {"cas": "put", "cas-delete": "delete", "lease-put": "put"}.get(f, f)
        complete_ns = self.recorder.complete(process, outcome.type, history_f, None if f == "txn" else key,
                                             value if history_f != "delete" else None, outcome.found,
                                             seq=seq if outcome.type == "ok" else None,
                                             conflict=outcome.conflict, **extra)
        record = OpRecord(process, f, key, value, "majority", invoke_ns, complete_ns, outcome.type, outcome.type,
                          outcome.found, answer.status, "", describe(answer), seq, keys)
        self.recorder.add_operation(record)
        if outcome.type == "info":
            self.process += self.clients
        elif f == "txn":
            pass  # what it saw is in its results (see _learn_results)
        elif outcome.conflict is not None:
            self.seen[key] = outcome.conflict
        elif seq is not None and outcome.type == "ok":
            self.seen[key] = 0 if history_f == "delete" else seq
        return record

    # -- compare-and-set ---------------------------------------------------------------------
    def _cas(self, url: str, key: str) -> OpRecord:
        value, if_seq = self._next_value(), self.seen.get(key, 0)
        invoke_ns = self.recorder.invoke(self.process, "put", key, value, if_seq=if_seq)
        answer = self.connections.request(url, "PUT", f"{_path(key)}?if_seq={if_seq}&{self._query()}",
                                          value.encode("utf-8"))
        return self._finish("cas", key, value, invoke_ns, answer, classify_conditional("put", answer))

    def _cas_delete(self, url: str, key: str) -> OpRecord:
        if_seq = self.seen.get(key, 0) or 1
        invoke_ns = self.recorder.invoke(self.process, "delete", key, None, if_seq=if_seq)
        answer = self.connections.request(url, "DELETE", f"{_path(key)}?if_seq={if_seq}&{self._query()}")
        record = self._finish("cas-delete", key, None, invoke_ns, answer, classify_conditional("delete", answer))
        if record.found is False:
            self.seen[key] = 0
        return record

    # -- transactions ------------------------------------------------------------------------
    def _txn(self, url: str, key: str) -> OpRecord:
        pair = txn_pair(int(key[1:]), self.workload.keys)
        if self.rng.random() < 0.5:
            body = {"compare": [], "success": [{"op": "get", "key": k} for k in pair], "failure": []}
            writes: tuple[str, ...] = ()
        else:
            body = {"compare": [{"key": pair[0], "seq": self.seen.get(pair[0], 0)}],
                    "success": [{"op": "put", "key": k, "value": self._next_value(f"-{k}")} for k in pair],
                    "failure": [{"op": "get", "key": k} for k in pair]}
            writes = pair
        invoke_ns = self.recorder.invoke(self.process, "txn", None, None, txn=body)
        answer = self.connections.request(url, "POST", f"/txn?{self._query()}", json.dumps(body).encode("utf-8"))
        outcome = classify_txn(answer)
        extra = {}
        if outcome.type == "ok":
            extra = {"succeeded": answer.body.get("succeeded"), "results": answer.body.get("results")}
        record = self._finish("txn", pair[0], None, invoke_ns, answer, outcome, writes, **extra)
        if outcome.type == "ok":
            self._learn_results(answer.body.get("results") or [])
        return record

    def _learn_results(self, results: list) -> None:
        for result in results:
            if isinstance(result, dict) and isinstance(result.get("seq"), int) and result.get("op") != "delete":
                self.seen[result.get("key")] = result["seq"]

    # -- leases ------------------------------------------------------------------------------
    def _lease(self, url: str, key: str) -> OpRecord | None:
        stats = self.lease_stats
        if self.lease is None:
            answer = self.connections.request(url, "POST", f"/lease?ttl={self.workload.lease_ttl_s:g}")
            if answer.status == 200 and isinstance(answer.body.get("id"), int):
                self.lease = answer.body["id"]
                stats["granted"] += 1
            return None
        draw = self.rng.random()
        if draw < ABANDON_SHARE:
            self.lease = None  # never renewed again: it must expire on its own
            stats["abandoned"] += 1
            return None
        if draw < 0.45:
            return self._lease_put(url, key)
        if draw < 0.7:
            answer = self.connections.request(url, "POST", f"/lease/{self.lease}/keepalive")
            if answer.status == 200:
                stats["renewed"] += 1
            elif answer.status == 404:
                stats["expired_on_keepalive"] += 1
                self.lease = None
            return None
        return self.perform(url, "get", key, None)

    def _lease_put(self, url: str, key: str) -> OpRecord:
        value = self._next_value()
        invoke_ns = self.recorder.invoke(self.process, "put", key, value, lease=self.lease)
        answer = self.connections.request(url, "PUT", f"{_path(key)}?lease={self.lease}&{self._query()}",
                                          value.encode("utf-8"))
        if answer.status == 404 and str(answer.body.get("error")) == "lease_not_found":
            self.lease = None
            self.lease_stats["expired_on_put"] += 1
        return self._finish("lease-put", key, value, invoke_ns, answer, classify_conditional("put", answer))

