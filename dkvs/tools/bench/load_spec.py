"""What the load clients send: the load's description and every request, pre-built.

The same clients speak to two systems (``LoadSpec.protocol``), so a peer comparison
differs only in the requests on the wire: ``dkvs`` (``GET /kv/k7``, ``PUT /kv/k7?acks=``,
``?consistent=true`` reads) and ``etcd`` (its v3 JSON gateway: ``POST /v3/kv/put`` and
``POST /v3/kv/range`` with base64 keys and values; ``serializable`` unless consistent).
Every request is built once per process (:func:`requests_of`), before the clock starts.
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass

__all__ = ["LoadSpec", "WORKLOADS", "PROTOCOLS", "CLIENT_ENGINES", "Request", "key_path",
           "populate_request", "requests_of"]

WORKLOADS = ("get", "put", "mixed")
PROTOCOLS = ("dkvs", "etcd")
CLIENT_ENGINES = ("selector", "http.client")


@dataclass(frozen=True)
class LoadSpec:
    """What to send, where, and with how many clients (picklable: it crosses processes)."""

    workload: str  # "get", "put" or "mixed"
    keys: int
    value_size: int
    acks: str
    read_ratio: float  # share of GETs in "mixed"
    write_url: str
    read_urls: tuple[str, ...]
    concurrency: int
    processes: int
    populate: bool
    seed: int = 1
    protocol: str = "dkvs"  # "dkvs" or "etcd" (its v3 JSON gateway)
    consistent: bool = False  # linearizable reads (dkvs ?consistent=true; etcd not serializable)
    client_engine: str = "selector"  # or "http.client" (the first, costlier engine)

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload must be one of {WORKLOADS}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}")
        if self.client_engine not in CLIENT_ENGINES:
            raise ValueError(f"client_engine must be one of {CLIENT_ENGINES}")
        if self.keys < 1 or self.concurrency < 1 or not 1 <= self.processes <= self.concurrency:
            raise ValueError("need keys ≥ 1 and 1 ≤ processes ≤ concurrency")
        if not self.read_urls:
            raise ValueError("no URL to read from")

    def clients_of(self, process_index: int) -> range:
        """Global indexes of the clients run by process ``process_index``."""
        share, extra = divmod(self.concurrency, self.processes)
        start = process_index * share + min(process_index, extra)
        return range(start, start + share + (process_index < extra))


def key_path(index: int) -> str:
    return f"/kv/k{index}"


Request = tuple  # (method, target, body or None)


def _etcd_body(key: int, value: bytes | None = None, serializable: bool = False) -> bytes:
    doc = {"key": base64.b64encode(key_path(key)[4:].encode()).decode()}
    if value is not None:
        doc["value"] = base64.b64encode(value).decode()
    if serializable:
        doc["serializable"] = True
    return json.dumps(doc).encode()


def populate_request(spec: LoadSpec, key: int) -> Request:
    """The write that pre-populates ``key`` (acks=1 on dkvs: only its existence matters)."""
    value = b"p" * spec.value_size
    if spec.protocol == "etcd":
        return ("POST", "/v3/kv/put", _etcd_body(key, value))
    return ("PUT", f"{key_path(key)}?acks=1", value)


@functools.lru_cache(maxsize=4)
def requests_of(spec: LoadSpec) -> tuple[list[Request], list[Request]]:
    """The read and the write request of every key, built once per process."""
    value, keys = b"v" * spec.value_size, range(spec.keys)
    if spec.protocol == "etcd":
        return ([("POST", "/v3/kv/range", _etcd_body(k, serializable=not spec.consistent)) for k in keys],
                [("POST", "/v3/kv/put", _etcd_body(k, value)) for k in keys])
    query = "?consistent=true" if spec.consistent else ""
    return ([("GET", key_path(k) + query, None) for k in keys],
            [("PUT", f"{key_path(k)}?acks={spec.acks}", value) for k in keys])
