"""Each /internal/* route reads its body under its own cap (dkvs.api.internal_limits).

Before, every internal body shared the server's 256 MiB cap, so a join or a vote could make a
node buffer 256 MiB. The table tests show every internal route has a cap and that each cap
still admits the biggest legal message (a full batch, the biggest put, the worst-case
transaction, a snapshot chunk); the HTTP tests, on a 1-node cluster on 127.0.0.1 port 0,
show a body over its cap is refused with 413 from the head alone and changes nothing.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.request

import pytest

from dkvs.api import kv
from dkvs.api.internal_limits import (CONTROL_BODY_BYTES, ENTRY_FRAMING_BYTES, INTERNAL_BODY_CAPS,
                                      TXN_WIRE_BYTES_PER_BODY_BYTE, internal_body_cap, raft_body_cap)
from dkvs.api.kv import txn_body_limit
from dkvs.api.prefetch import PREFETCH_MAX_BYTES
from dkvs.api.server import INTERNAL_MAX_BODY_BYTES
from dkvs.api.service import Limits
from dkvs.core.config import CoreConfig
from dkvs.core.log import OP_PUT, OP_TXN, Entry, Log
from dkvs.core.messages import Append, PeerView
from dkvs.core.txn import encode_txn, parse_txn
from dkvs.runtime.app import DkvsNode, Settings
from dkvs.runtime.service import NodeService
from dkvs.transport import codec
from dkvs.transport.snapshot_stream import MAX_CHUNK_BYTES

BIG = 2 ** 62  # epochs, seqs and commit points as long as they get on the wire
WAIT_SECONDS = 30.0  # a bound on each socket read, never a sleep
CONTROL_PATHS = ("join", "leave", "remove", "transfer", "faults")


def _append(entries, members: int = 5) -> bytes:
    view = tuple(PeerView(f"node-{i}", BIG, True) for i in range(members))
    return codec.encode(Append(BIG, "node-0", BIG, BIG, tuple(entries), BIG, BIG, view))


# --- the table -------------------------------------------------------------------------

def test_every_internal_route_has_its_own_cap():
    assert set(NodeService._INTERNAL) <= set(INTERNAL_BODY_CAPS)
    for method, path in NodeService._INTERNAL:
        cap = internal_body_cap(method, path, {}, Limits(), INTERNAL_MAX_BODY_BYTES)
        assert 0 <= cap <= INTERNAL_MAX_BODY_BYTES, (method, path)


def test_control_messages_and_unknown_paths_get_a_small_cap():
    for path in CONTROL_PATHS + ("no-such-route",):
        assert internal_body_cap("POST", path, {}, Limits(), INTERNAL_MAX_BODY_BYTES) == CONTROL_BODY_BYTES
    assert internal_body_cap("GET", "identity", {}, Limits(), INTERNAL_MAX_BODY_BYTES) == 0
    assert internal_body_cap("GET", "anything", {}, Limits(), INTERNAL_MAX_BODY_BYTES) == 0


def test_the_server_bound_caps_every_route():
    for method, path in INTERNAL_BODY_CAPS:
        assert internal_body_cap(method, path, {}, Limits(), 10) <= 10
    assert internal_body_cap("POST", "snapshot", {}, Limits(), 12345) == 12345  # whole: the server's


def test_a_snapshot_chunk_is_capped_at_the_chunk_limit_and_a_whole_snapshot_by_the_server():
    chunk = {"offset": "0", "total": "9", "seq": "1", "crc": "0", "epoch": "1", "from": "a"}
    assert internal_body_cap("POST", "snapshot", chunk, Limits(), INTERNAL_MAX_BODY_BYTES) == MAX_CHUNK_BYTES
    assert internal_body_cap("POST", "snapshot", {}, Limits(), INTERNAL_MAX_BODY_BYTES) == INTERNAL_MAX_BODY_BYTES


def test_the_raft_cap_is_well_below_the_old_shared_cap_and_follows_the_limits():
    default = raft_body_cap(Limits())
    assert default < INTERNAL_MAX_BODY_BYTES // 2
    assert raft_body_cap(Limits(max_value_bytes=64 * 1024 * 1024)) > default  # bigger values: bigger cap


def test_the_raft_cap_admits_a_full_batch_of_the_worst_characters():
    config = CoreConfig()
    per_entry = config.max_batch_bytes // config.max_batch_entries
    log = Log()
    for seq in range(1, config.max_batch_entries + 1):  # a control character costs 6 bytes
        log.append(Entry(BIG, seq, OP_PUT, "\x01" * 8, "\x01" * (per_entry - 24 - 8), BIG))
    batch = log.slice(1, config.max_batch_entries, config.max_batch_bytes)
    assert len(batch) == config.max_batch_entries  # a batch the master really sends
    assert len(_append(batch)) <= raft_body_cap(Limits())


def test_the_raft_cap_admits_the_biggest_put_alone():
    for limits in (Limits(), Limits(max_key_bytes=4096, max_value_bytes=3 * 1024 * 1024)):
        entry = Entry(BIG, BIG, OP_PUT, "\x01" * limits.max_key_bytes, "\x01" * limits.max_value_bytes, BIG)
        assert len(_append([entry])) <= raft_body_cap(limits)


def _worst_txn_body(body_limit: int, max_value_bytes: int) -> bytes:
    """A transaction body just under ``body_limit`` of puts with value_base64 of bytes that
    are not UTF-8: each becomes \\udcff in the entry, then \\\\udcff on the wire."""
    value = base64.b64encode(b"\xff" * max_value_bytes).decode()
    op = {"op": "put", "key": "k", "value_base64": value}
    per_op = len(json.dumps(op, separators=(",", ":"))) + 1
    ops = [op] * ((body_limit - 20) // per_op)
    body = json.dumps({"success": ops}, separators=(",", ":")).encode()
    assert len(body) <= body_limit
    return body


def _txn_wire_bytes(body: bytes, limits: Limits) -> int:
    txn = parse_txn(json.loads(body), max_key_bytes=limits.max_key_bytes, max_value_bytes=limits.max_value_bytes)
    return len(_append([Entry(BIG, BIG, OP_TXN, "", encode_txn(txn))]))


def test_a_transaction_costs_at_most_the_txn_factor_per_body_byte_and_base64_is_that_worst_case():
    limits = Limits(max_value_bytes=3000)
    fixed = len(_append([Entry(BIG, BIG, OP_TXN, "", "")]))
    per, of = TXN_WIRE_BYTES_PER_BODY_BYTE
    for body_limit in (20_000, 100_000):
        body = _worst_txn_body(body_limit, limits.max_value_bytes)
        wire = _txn_wire_bytes(body, limits) - fixed
        assert wire <= per * len(body) / of
        assert wire >= 0.95 * per * len(body) / of  # the factor is the real worst case, not slack


def test_the_raft_cap_admits_the_biggest_transaction(monkeypatch):
    # The smallest txn body limit is 16 MiB; a smaller one (same rule, same factor) keeps
    # this fast. A tiny batch makes the transaction the figure that decides the cap.
    monkeypatch.setattr(kv, "MAX_TXN_BODY_BYTES", 256 * 1024)
    limits = Limits(max_value_bytes=30_000)
    body = _worst_txn_body(txn_body_limit(limits), limits.max_value_bytes)
    config = CoreConfig(max_batch_entries=1, max_batch_bytes=1)
    assert _txn_wire_bytes(body, limits) <= raft_body_cap(limits, config)
    per, of = TXN_WIRE_BYTES_PER_BODY_BYTE
    assert raft_body_cap(limits, config) - per * txn_body_limit(limits) // of <= 64 * 1024 + ENTRY_FRAMING_BYTES + 1


# --- over HTTP: refused from the head, nothing changed ---------------------------------------

@pytest.fixture(scope="module")
def node():
    node = DkvsNode(Settings(port=0, heartbeat_interval=0.05, election_timeout=0.5)).start()
    try:
        yield node
    finally:
        node.stop()


def _ask(node, method: str, target: str, length: int, body: bytes = b"") -> tuple[int, dict]:
    """Send a head declaring ``length`` body bytes, then ``body`` (none: the head alone); the answer."""
    host, port = node.server.server_address[:2]
    with socket.create_connection((host, port), timeout=WAIT_SECONDS) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode() + body)
        reader = sock.makefile("rb")
        status = int(reader.readline().split()[1])
        headers = {}
        while (line := reader.readline().strip()):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        answer = reader.read(int(headers["content-length"]))
    return status, json.loads(answer)


def _members(node) -> list:
    with urllib.request.urlopen(node.url + "/status", timeout=WAIT_SECONDS) as answer:
        return json.loads(answer.read())["members"]


def _put_and_get(node, key: str, value: str) -> str:
    request = urllib.request.Request(f"{node.url}/kv/{key}", data=value.encode(), method="PUT")
    urllib.request.urlopen(request, timeout=WAIT_SECONDS).close()
    with urllib.request.urlopen(f"{node.url}/kv/{key}", timeout=WAIT_SECONDS) as answer:
        return json.loads(answer.read())["value"]


def test_a_control_message_over_its_cap_is_413_from_the_head_alone_and_changes_nothing(node):
    # Over PREFETCH_MAX_BYTES, so the selector leaves the body to the route, which refuses it
    # unread: the answer comes though the body is never sent.
    before = _members(node)
    for path in CONTROL_PATHS:
        status, answer = _ask(node, "POST", f"/internal/{path}", PREFETCH_MAX_BYTES + 1)
        assert status == 413 and answer["error"] == "payload_too_large", (path, answer)
        assert f"the limit is {CONTROL_BODY_BYTES}" in answer["message"]
    assert _members(node) == before
    assert _put_and_get(node, "after-join", "still serves") == "still serves"


def test_a_join_cap_is_exact(node):
    status, answer = _ask(node, "POST", "/internal/join", CONTROL_BODY_BYTES + 1, b" " * (CONTROL_BODY_BYTES + 1))
    assert status == 413, answer
    status, answer = _ask(node, "POST", "/internal/join", CONTROL_BODY_BYTES, b"x" * CONTROL_BODY_BYTES)
    assert status == 400 and "JSON" in answer["message"], answer  # read, then refused as not JSON


def test_replication_and_snapshot_chunks_over_their_caps_are_413_below_the_old_cap(node):
    cap = raft_body_cap(node.service.limits)
    assert cap + 1 < node.server.internal_max_body_bytes  # the old shared cap would have read it
    status, answer = _ask(node, "POST", "/internal/raft", cap + 1)
    assert status == 413 and f"the limit is {cap}" in answer["message"], answer
    chunk = "/internal/snapshot?seq=1&offset=0&total=99999999&crc=0&epoch=1&from=x"
    status, answer = _ask(node, "POST", chunk, MAX_CHUNK_BYTES + 1)
    assert status == 413 and f"the limit is {MAX_CHUNK_BYTES}" in answer["message"], answer
    assert _put_and_get(node, "after-raft", "still serves") == "still serves"


def test_the_server_bound_still_lowers_every_cap(node, monkeypatch):
    monkeypatch.setattr(node.server, "internal_max_body_bytes", 16)
    status, answer = _ask(node, "POST", "/internal/join", 17, b"{" * 17)
    assert status == 413 and "the limit is 16" in answer["message"], answer
    assert _put_and_get(node, "after-bound", "still serves") == "still serves"
