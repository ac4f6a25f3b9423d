"""How big a body each ``/internal/*`` route may carry, and why.

Every internal body used to be read under one cap, the server's ``internal_max_body_bytes``
(256 MiB): so a vote, a join or a heartbeat from any local process (no secret) or any member
(with one) could make a node buffer 256 MiB. Each internal message has a natural size,
derived here from the node's :class:`~dkvs.api.service.Limits` and the protocol constants;
:func:`internal_body_cap` is the table :func:`dkvs.api.routes.internal` reads *before* the
body (a body over its cap is a 413, never read, and changes nothing). The server's
``internal_max_body_bytes`` stays an upper bound over all of them (an operator or a test
may lower it): the effective cap is the smaller of the two.

The figures, by route (method, path after ``/internal/``):

* ``GET *`` (``identity``): no GET carries a body, so 0.
* ``POST raft``: one message. The big one is an ``Append`` (the POST fallback of the
  replication stream), whose JSON text (:mod:`dkvs.transport.codec`, ``ensure_ascii=False``)
  costs at most :data:`WIRE_BYTES_PER_CHAR` bytes per character of a key or value (a control
  character travels as ``\\u001f``). A batch is bounded by ``CoreConfig.max_batch_bytes``
  (counted by ``Entry.size``, in characters) and ``max_batch_entries``, except that one entry
  bigger than that travels alone: a put (key + value), or a transaction, whose entry is
  ASCII JSON re-escaped by the codec (see :data:`TXN_WIRE_BYTES_PER_BODY_BYTE`) and whose
  body is at most ``txn_body_limit(limits)``. The cap is the largest of the three, plus the
  message's fixed fields. Votes and ``TimeoutNow`` share this path, so they share its cap:
  the path does not say which message comes before the body is read.
* ``POST snapshot?offset=...`` (a streamed chunk): at most ``MAX_CHUNK_BYTES``, which the
  assembler refuses to exceed anyway.
* ``POST snapshot`` (no ``offset``): a whole snapshot in one body, sent by a host without a
  snapshot worker (``InlineSnapshotWork``). Its size is the store's, so only the server's
  bound applies (None here).
* ``POST join``, ``leave``, ``remove``, ``transfer``, ``faults``: small JSON objects (ids, a
  URL, a cluster id, flags, a list of peer ids): :data:`CONTROL_BODY_BYTES`.
* Any other path: :data:`DEFAULT_INTERNAL_BODY_BYTES` (it is answered 404 after the body).

``POST /internal/forward`` has its own route and cap (``forward_route.MAX_BATCH_BODY_BYTES``)
and a stream upgrade has no body (``dkvs.api.stream``); neither passes through here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..core.config import CoreConfig
from ..transport.snapshot_stream import MAX_CHUNK_BYTES
from .kv import txn_body_limit
from .service import Limits

__all__ = ["internal_body_cap", "raft_body_cap", "snapshot_body_cap", "INTERNAL_BODY_CAPS",
           "CONTROL_BODY_BYTES", "DEFAULT_INTERNAL_BODY_BYTES", "WIRE_BYTES_PER_CHAR",
           "TXN_WIRE_BYTES_PER_BODY_BYTE", "ENTRY_FRAMING_BYTES", "MESSAGE_FRAMING_BYTES"]

# A join names an id, a URL and a cluster id; a leave, a remove or a transfer an id and flags;
# faults a list of peer ids. A few hundred bytes each; 64 KiB leaves room for hundreds of
# 256-character member ids and still costs a node nothing worth attacking.
CONTROL_BODY_BYTES = 64 * 1024
# A path no handler knows is answered 404: it needs no more room than a control message.
DEFAULT_INTERNAL_BODY_BYTES = CONTROL_BODY_BYTES
# The codec writes JSON with ensure_ascii=False: a character costs at most 6 bytes (a control
# character as \u001f); any other at most 4 (UTF-8; a held binary byte is a lone surrogate: 3).
WIRE_BYTES_PER_CHAR = 6
# A transaction body's worst byte: 4 base64 characters of value_base64 decode to 3 bytes that
# are not UTF-8, held as lone surrogates, which encode_txn (ASCII JSON) writes as \udcXX (6
# characters each) and the codec re-escapes to \\udcXX (7 bytes): 21 wire bytes for 4 body
# bytes. Text (2 body bytes for "é" -> 7 wire bytes) and escapes (\" -> 4) cost less, and the
# normalised transaction is more compact than its body's structure.
TXN_WIRE_BYTES_PER_BODY_BYTE = (21, 4)  # as a fraction, to stay exact
# One entry's fixed part on the wire, [epoch,seq,"op","key","value",cond], beyond what
# Entry.size counts: three integers of up to 20 digits, the op name, quotes and commas.
ENTRY_FRAMING_BYTES = 128
# An Append's fixed fields (epochs, seqs, commit, round, sender) and its peer view (one
# [id, last_seq, alive] row per member): 64 KiB holds hundreds of 256-character ids.
MESSAGE_FRAMING_BYTES = 64 * 1024

_DEFAULT_CONFIG = CoreConfig()


def raft_body_cap(limits: Limits, config: CoreConfig | None = None) -> int:
    """The largest legal ``POST /internal/raft`` body: one Append holding a full batch, or
    a single put or transaction bigger than a batch (it travels alone).

    ``config`` is the *sender's* batching (``max_batch_bytes``, ``max_batch_entries``): not a
    flag, so every node has the defaults, which is what None means.
    """
    config = config or _DEFAULT_CONFIG
    batch = WIRE_BYTES_PER_CHAR * config.max_batch_bytes + ENTRY_FRAMING_BYTES * config.max_batch_entries
    put = WIRE_BYTES_PER_CHAR * (limits.max_key_bytes + limits.max_value_bytes) + ENTRY_FRAMING_BYTES
    per, of = TXN_WIRE_BYTES_PER_BODY_BYTE
    txn = -(-per * txn_body_limit(limits) // of) + ENTRY_FRAMING_BYTES  # rounded up
    return MESSAGE_FRAMING_BYTES + max(batch, put, txn)


def snapshot_body_cap(query: Mapping[str, str]) -> int | None:
    """A streamed chunk (``offset`` in the query): ``MAX_CHUNK_BYTES``. A whole snapshot in
    one body: None, only the server's bound (its size is the store's)."""
    return MAX_CHUNK_BYTES if "offset" in query else None


def _control(limits: Limits, query: Mapping[str, str]) -> int:
    return CONTROL_BODY_BYTES


# (method, path after /internal/) -> cap(limits, query): bytes, or None for the server's bound.
INTERNAL_BODY_CAPS: dict[tuple[str, str], Callable[[Limits, Mapping[str, str]], int | None]] = {
    ("POST", "raft"): lambda limits, query: raft_body_cap(limits),
    ("POST", "snapshot"): lambda limits, query: snapshot_body_cap(query),
    ("GET", "identity"): lambda limits, query: 0,
    ("POST", "join"): _control,
    ("POST", "leave"): _control,
    ("POST", "remove"): _control,
    ("POST", "transfer"): _control,
    ("POST", "faults"): _control,
}


def internal_body_cap(method: str, path: str, query: Mapping[str, str], limits: Limits,
                      upper: int | None = None) -> int:
    """The body cap of ``method /internal/<path>?query``, never above ``upper`` (the server's
    ``internal_max_body_bytes``; None: no bound beyond the route's own).

    A GET has no body (0); a path not in :data:`INTERNAL_BODY_CAPS`, the default.
    """
    rule = INTERNAL_BODY_CAPS.get((method, path))
    if rule is not None:
        cap = rule(limits, query)
    else:
        cap = 0 if method == "GET" else DEFAULT_INTERNAL_BODY_BYTES
    if cap is None:
        if upper is None:
            raise ValueError(f"{method} /internal/{path} is bounded by the server only: give upper")
        return upper
    return cap if upper is None else min(cap, upper)
