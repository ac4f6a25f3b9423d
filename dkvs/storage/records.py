"""CRC32 framing, and the compact binary encoding of log entries.

Every record dkvs writes to a log segment or a snapshot file is one *frame*::

    +------------------+------------------+--------------------+
    | length: u32 (LE) | crc32: u32 (LE)  | payload (length B) |
    +------------------+------------------+--------------------+

``crc32`` is ``zlib.crc32(payload)``. A frame can fail in three ways: it is *short* (its
header or payload runs past the end of the file), its length is impossible, or its CRC
does not match. This module only reports which; whether that is a torn tail (repairable)
or corruption (not) is decided by the reader of the whole file (:mod:`.segments`).

A log entry's payload (fixed head of 21 bytes, no JSON on the write hot path)::

    epoch u64 | seq u64 | flags u8 | key_length u32 | key (UTF-8) | value (UTF-8, the rest)

A compare-and-set put (op code 6) or conditional delete (op code 9) stores its condition
seq as a u64 at the end of the key region (``key_length`` counts it). A prefix delete (7)
keeps its prefix as the key; a transaction (8) its ASCII JSON program as the value; a lease
grant (10) its ttl in ms as the value, a lease revoke (11) the lease id as the key. Binary
values are held surrogate-escaped (:mod:`dkvs.core.values`) and written with
``surrogatepass``, so every byte value round-trips. ``flags`` carries the op code in its low 7 bits and :data:`VALUE_NONE_FLAG` when the value
is ``None``, so an empty value and no value stay distinct. All integers little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from zlib import crc32

from ..core.log import (OP_DELETE, OP_DELETE_PREFIX, OP_LEARNER_ADD, OP_LEASE_GRANT, OP_LEASE_REVOKE, OP_MEMBER_ADD,
                        OP_MEMBER_PROMOTE, OP_MEMBER_REMOVE, OP_NOOP, OP_PUT, OP_REPLICA_ADD, OP_TXN, Entry)
from .base import CorruptStorage

__all__ = [
    "FRAME",
    "FRAME_BYTES",
    "ENTRY_HEAD_BYTES",
    "VALUE_NONE_FLAG",
    "OP_CODES",
    "frame",
    "encode_entries",
    "decode_entry",
    "scan_entries",
    "ScanResult",
    "find_valid_entry_after",
    "corruption",
    "WAY_OUT",
]

FRAME = struct.Struct("<II")  # payload length, crc32(payload)
FRAME_BYTES = FRAME.size
ENTRY_HEAD = struct.Struct("<QQBI")  # epoch, seq, flags, key length
ENTRY_HEAD_BYTES = ENTRY_HEAD.size
_SEQ = struct.Struct("<Q")
_SEQ_OFFSET_IN_FRAME = FRAME_BYTES + 8  # the seq follows the frame header and the epoch

VALUE_NONE_FLAG = 0x80
_OP_MASK = 0x7F
# The on-disk op codes. Append only: a code, once written, keeps its meaning forever.
OP_CODES = {OP_PUT: 1, OP_DELETE: 2, OP_NOOP: 3, OP_MEMBER_ADD: 4, OP_MEMBER_REMOVE: 5,
            OP_DELETE_PREFIX: 7, OP_TXN: 8, OP_LEASE_GRANT: 10, OP_LEASE_REVOKE: 11,
            OP_LEARNER_ADD: 12, OP_REPLICA_ADD: 13, OP_MEMBER_PROMOTE: 14}
_OPS_BY_CODE = {code: op for op, code in OP_CODES.items()}
# A put or delete with a condition (compare-and-set): the condition seq (u64) follows the key.
CONDITIONAL_PUT_CODE = 6
CONDITIONAL_DELETE_CODE = 9
_CONDITIONAL_CODES = {OP_PUT: CONDITIONAL_PUT_CODE, OP_DELETE: CONDITIONAL_DELETE_CODE}
_OPS_BY_CODE[CONDITIONAL_PUT_CODE] = OP_PUT
_OPS_BY_CODE[CONDITIONAL_DELETE_CODE] = OP_DELETE

WAY_OUT = (
    "The data dir is damaged beyond a torn tail, so this node must not serve from it: "
    "move the data dir away and start the node empty with --join to resync from the cluster."
)


def corruption(path: str, offset: int, problem: str) -> CorruptStorage:
    """The one shape of every corruption report: file, offset, what, and the way out."""
    return CorruptStorage(f"{path} at offset {offset}: {problem}. {WAY_OUT}")


def frame(payload: bytes) -> bytes:
    """``payload`` with its frame header in front."""
    return FRAME.pack(len(payload), crc32(payload)) + payload


def encode_entries(entries: list[Entry], first_seq: int, start_offset: int) -> tuple[bytes, list[int]]:
    """Frame ``entries`` into one buffer (one ``write`` for the whole batch).

    Returns the buffer and, per entry, the file offset just past its frame when the buffer
    is written at ``start_offset``. Raises ``ValueError`` unless the seqs run
    ``first_seq, first_seq + 1, ...`` and every op is known: a log with a hole or an
    unknown op must never reach the disk.
    """
    parts: list[bytes] = []
    ends: list[int] = []
    pack_head, pack_frame = ENTRY_HEAD.pack, FRAME.pack
    seq, offset = first_seq, start_offset
    for entry in entries:
        if entry.seq != seq:
            raise ValueError(f"entry seq {entry.seq} does not continue the log (expected {seq})")
        code = OP_CODES.get(entry.op)
        if code is None:
            raise ValueError(f"unknown op {entry.op!r} in entry {seq}")
        key = entry.key.encode("utf-8", "surrogatepass")
        if entry.cond is not None:
            code = _CONDITIONAL_CODES.get(entry.op)
            if code is None:
                raise ValueError(f"op {entry.op!r} cannot carry a condition (entry {seq})")
            key += _SEQ.pack(entry.cond)  # decoded back out of the key region
        if entry.value is None:
            payload = pack_head(entry.epoch, seq, code | VALUE_NONE_FLAG, len(key)) + key
        else:
            payload = pack_head(entry.epoch, seq, code, len(key)) + key + entry.value.encode(
                "utf-8", "surrogatepass")
        parts.append(pack_frame(len(payload), crc32(payload)))
        parts.append(payload)
        offset += FRAME_BYTES + len(payload)
        ends.append(offset)
        seq += 1
    return b"".join(parts), ends


def decode_entry(payload: bytes) -> Entry:
    """The entry in a CRC-checked payload; ``ValueError`` if it does not parse."""
    if len(payload) < ENTRY_HEAD_BYTES:
        raise ValueError("record shorter than an entry head")
    epoch, seq, flags, key_length = ENTRY_HEAD.unpack_from(payload)
    op = _OPS_BY_CODE.get(flags & _OP_MASK)
    if op is None:
        raise ValueError(f"unknown op code {flags & _OP_MASK}")
    key_end = ENTRY_HEAD_BYTES + key_length
    if key_end > len(payload):
        raise ValueError("key runs past the end of the record")
    cond = None
    if flags & _OP_MASK in (CONDITIONAL_PUT_CODE, CONDITIONAL_DELETE_CODE):
        if key_length < _SEQ.size:
            raise ValueError("conditional put without its condition")
        (cond,) = _SEQ.unpack_from(payload, key_end - _SEQ.size)
        key = payload[ENTRY_HEAD_BYTES:key_end - _SEQ.size].decode("utf-8", "surrogatepass")
    else:
        key = payload[ENTRY_HEAD_BYTES:key_end].decode("utf-8", "surrogatepass")
    if flags & VALUE_NONE_FLAG:
        if key_end != len(payload):
            raise ValueError("record has bytes after the key but says it holds no value")
        value = None
    else:
        value = payload[key_end:].decode("utf-8", "surrogatepass")
    return Entry(epoch, seq, op, key, value, cond)


@dataclass
class ScanResult:
    """What :func:`scan_entries` found in a buffer.

    ``entries[i]`` ends at file offset ``ends[i]``. Scanning stopped at ``stop``; when
    ``problem`` is ``None`` that is the end of the buffer. ``out_of_order_seq`` is set when
    the frame at ``stop`` is intact but holds the wrong seq: never a torn write.
    """

    entries: list[Entry] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    stop: int = 0
    problem: str | None = None
    out_of_order_seq: int | None = None


def scan_entries(buf: bytes, offset: int, first_seq: int) -> ScanResult:
    """Decode consecutive entry frames from ``buf[offset:]``, expecting ``first_seq`` first."""
    result = ScanResult()
    entries, ends = result.entries, result.ends
    size, seq = len(buf), first_seq
    while offset < size:
        problem, entry, end = _frame_at(buf, offset)
        if problem is not None:
            result.problem = problem
            break
        if entry.seq != seq:
            result.problem = f"expected seq {seq} but found an intact record with seq {entry.seq}"
            result.out_of_order_seq = entry.seq
            break
        entries.append(entry)
        ends.append(end)
        offset, seq = end, seq + 1
    result.stop = offset
    return result


def find_valid_entry_after(buf: bytes, offset: int, expected_seq: int, window_seqs: int) -> int | None:
    """The offset of an intact entry frame at or after ``offset`` whose seq lies in
    ``[expected_seq, expected_seq + window_seqs)``, or ``None``.

    This tells a torn tail (nothing intact follows the bad frame) from damage in the
    middle (intact records follow). Searching for the seq bytes runs at C speed, so the
    whole rest of a large segment is checked; the window covers runs of up to
    ``window_seqs - 1`` damaged records in a row.
    """
    for seq in range(expected_seq, expected_seq + window_seqs):
        pattern = _SEQ.pack(seq)
        hit = buf.find(pattern, offset + _SEQ_OFFSET_IN_FRAME)
        while hit != -1:
            start = hit - _SEQ_OFFSET_IN_FRAME
            problem, entry, _ = _frame_at(buf, start)
            if problem is None and entry.seq == seq:
                return start
            hit = buf.find(pattern, hit + 1)
    return None


def _frame_at(buf: bytes, offset: int) -> tuple[str | None, Entry | None, int]:
    """``(problem, entry, end offset)`` for the entry frame starting at ``offset``."""
    size = len(buf)
    if size - offset < FRAME_BYTES:
        return "short frame header (torn write)", None, offset
    length, crc = FRAME.unpack_from(buf, offset)
    start = offset + FRAME_BYTES
    end = start + length
    if length < ENTRY_HEAD_BYTES:
        return f"impossible record length {length}", None, offset
    if end > size:
        return f"record of {length} bytes runs past the end of the file (torn write)", None, offset
    payload = buf[start:end]
    if crc32(payload) != crc:
        return "CRC mismatch", None, offset
    try:
        return None, decode_entry(payload), end
    except (ValueError, UnicodeDecodeError) as exc:
        return f"undecodable record ({exc})", None, offset
