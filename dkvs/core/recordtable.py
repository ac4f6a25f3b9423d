"""The state's storage: one ``bytes`` record per key, in sorted chunks.

Why one record: at a million keys of 64 B with 256 B values, a ``dict`` of ``str`` keys
mapping to ``(str value, int seq)`` tuples costs ~600 bytes of memory per key (two
``str`` headers, a tuple, an int, the hash table, a sorted index beside it). One
``bytes`` object holding key, seq and value, kept in sorted chunks with no hash table,
costs ~380: one object header, one pointer. The price is a lookup by two C ``bisect``
calls instead of a hash probe (about a microsecond), and a decode on every read.

Record layout (:func:`pack`)::

    escaped key (UTF-8) | 00 00 | seq (16 hex digits, ASCII) | value (UTF-8)

Text is encoded with ``surrogatepass``, a bijection for every ``str`` (binary values are
held as surrogate-escaped text, :mod:`dkvs.core.values`; so are any lone surrogates a
client sent in JSON). In the key every ``00`` byte becomes ``00 01``, so ``00 00`` ends the
key and never occurs inside it; that escape keeps the byte order of records equal to the
order of their keys as ``str`` (UTF-8 preserves code point order). So:

* records sort like their keys, and a sorted list of records is a sorted index;
* the records of keys starting with ``p`` are exactly those starting with ``escape(p)``;
* a key's record starts with ``escape(key) + 00 00`` (its *probe*), which no other key's
  record does;
* no record holds the byte ``FF`` (UTF-8 never does, nor do hex digits, which is why the
  seq is written in hex), so records joined by ``FF`` split back apart in one C call.

The same records, joined, are the blocks of a snapshot file
(:mod:`dkvs.storage.snapshot_file`), so writing, sending and loading a snapshot never
builds a Python object per key beyond the record itself.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

__all__ = ["RecordTable", "pack", "pack_with_probe", "unpack", "unpack_value", "probe", "prefix_bytes", "record_key",
           "CHUNK_RECORDS", "END", "SEQ_BYTES", "SEPARATOR"]

CHUNK_RECORDS = 512  # a chunk splits at twice this: inserts move at most ~1,000 pointers
END = b"\x00\x00"  # ends the key in a record
SEQ_BYTES = 16  # hex digits of the seq: the whole u64 range
SEPARATOR = b"\xff"  # never inside a record


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:  # never for records this module packed; damaged bytes still read
        return data.decode("utf-8", "surrogateescape")


def prefix_bytes(prefix: str) -> bytes:
    """The escaped bytes every record of a key starting with ``prefix`` starts with."""
    data = _encode(prefix)
    return data.replace(b"\x00", b"\x00\x01") if b"\x00" in data else data


def probe(key: str) -> bytes:
    """What ``key``'s record starts with (and sorts right before)."""
    data = key.encode("utf-8", "surrogatepass")
    return (data.replace(b"\x00", b"\x00\x01") if b"\x00" in data else data) + END


def pack(key: str, value: str, seq: int) -> bytes:
    return probe(key) + b"%016x" % seq + value.encode("utf-8", "surrogatepass")


def pack_with_probe(key: str, value: str, seq: int) -> tuple[bytes, bytes]:
    """``(probe(key), pack(key, value, seq))`` with one encoding of the key (the apply path)."""
    head = probe(key)
    return head, head + b"%016x" % seq + value.encode("utf-8", "surrogatepass")


def _key_end(record: bytes) -> int:
    at = record.find(END)
    return len(record) if at < 0 else at  # only a damaged record lacks one: read, never crash


def _head(record: bytes) -> bytes:
    """The probe a record starts with (its escaped key and the key end)."""
    return record[:_key_end(record) + len(END)]


def record_key(record: bytes) -> str:
    data = record[:_key_end(record)]
    return _decode(data.replace(b"\x00\x01", b"\x00") if b"\x00" in data else data)


def unpack_value(record: bytes) -> tuple[str, int]:
    """``(value, seq)`` of a record."""
    at = _key_end(record) + 2
    try:
        seq = int(record[at:at + SEQ_BYTES], 16)
    except ValueError:  # a damaged record (loading checks shape and order, not every digit)
        seq = 0
    return _decode(record[at + SEQ_BYTES:]), seq


def unpack(record: bytes) -> tuple[str, str, int]:
    """``(key, value, seq)`` of a record."""
    return (record_key(record), *unpack_value(record))


class RecordTable:
    """Records sorted by key, as a list of chunks (each a sorted list of records).

    Invariants: every chunk is non-empty and sorted; ``_maxes[i]`` is the probe (key part) of
    ``_chunks[i][-1]`` — compared with a probe or a prefix it orders exactly like the record,
    and these few short objects stay in the CPU cache while a lookup's first ``bisect``
    walks them (the records themselves are scattered over the whole state);
    chunks are in order; no two records share a key. Pure data structure, not thread-safe.
    """

    def __init__(self, chunks: list[list[bytes]] | None = None) -> None:
        self._chunks: list[list[bytes]] = chunks if chunks is not None else []
        self._maxes: list[bytes] = [_head(chunk[-1]) for chunk in self._chunks]
        self._len = sum(map(len, self._chunks))

    @classmethod
    def from_sorted_blocks(cls, blocks: Iterable[list[bytes]]) -> RecordTable:
        """A table adopting copies of ``blocks`` (non-empty sorted lists, in order, with
        distinct keys); blocks above twice :data:`CHUNK_RECORDS` are cut. C-speed copies."""
        chunks = []
        limit = 2 * CHUNK_RECORDS
        for block in blocks:
            if len(block) <= limit:
                if block:
                    chunks.append(block[:])
            else:
                chunks.extend(block[i:i + CHUNK_RECORDS] for i in range(0, len(block), CHUNK_RECORDS))
        return cls(chunks)

    def __len__(self) -> int:
        return self._len

    def copy(self) -> RecordTable:
        """A private copy sharing the (immutable) records: one list copy per chunk."""
        return RecordTable([chunk[:] for chunk in self._chunks])

    def blocks(self) -> list[list[bytes]]:
        """The chunks themselves (read-only for the caller): sorted lists of records."""
        return self._chunks

    # -- lookups -------------------------------------------------------------------------------
    def _find(self, head: bytes) -> tuple[int, int, bool]:
        """``(chunk, index, found)`` where a record starting with ``head`` is or would go."""
        c = bisect.bisect_left(self._maxes, head)
        if c == len(self._chunks):
            return c, 0, False
        chunk = self._chunks[c]
        i = bisect.bisect_left(chunk, head)
        return c, i, i < len(chunk) and chunk[i].startswith(head)

    def get(self, key: str) -> bytes | None:
        head = probe(key)
        c = bisect.bisect_left(self._maxes, head)
        if c == len(self._maxes):
            return None
        chunk = self._chunks[c]
        record = chunk[bisect.bisect_left(chunk, head)]  # exists: the chunk's last record >= head
        return record if record.startswith(head) else None

    def iter_from(self, head: bytes, skip_equal: bytes | None = None) -> Iterator[bytes]:
        """Records ``>= head`` in order; the first one is skipped if it starts with ``skip_equal``."""
        c = bisect.bisect_left(self._maxes, head)
        if c == len(self._chunks):
            return
        chunk = self._chunks[c]
        i = bisect.bisect_left(chunk, head)
        if skip_equal is not None and i < len(chunk) and chunk[i].startswith(skip_equal):
            i += 1
        yield from chunk[i:]
        for chunk in self._chunks[c + 1:]:
            yield from chunk

    # -- changes -------------------------------------------------------------------------------
    def set(self, key: str, record: bytes) -> bytes | None:
        """Store ``record`` (of ``key``); return the record it replaced, if any."""
        return self.put(probe(key), record)

    def put(self, head: bytes, record: bytes) -> bytes | None:
        """:meth:`set` given the key's probe (``record`` starts with it)."""
        chunks = self._chunks
        c, i, found = self._find(head)
        if found:
            chunk = chunks[c]
            old, chunk[i] = chunk[i], record  # same key: the chunk's max (a probe) is unchanged
            return old
        if not chunks:
            chunks.append([record])
            self._maxes.append(head)
        else:
            if c == len(chunks):
                c -= 1
                chunks[c].append(record)
                self._maxes[c] = head
            else:
                chunks[c].insert(i, record)
            chunk = chunks[c]
            if len(chunk) > 2 * CHUNK_RECORDS:
                chunks[c:c + 1] = [chunk[:CHUNK_RECORDS], chunk[CHUNK_RECORDS:]]
                self._maxes[c:c + 1] = [_head(chunk[CHUNK_RECORDS - 1]), self._maxes[c]]
        self._len += 1
        return None

    def pop(self, key: str) -> bytes | None:
        """Remove ``key``; return its record (``None`` when it was absent)."""
        c, i, found = self._find(probe(key))
        if not found:
            return None
        chunk = self._chunks[c]
        old = chunk.pop(i)
        if not chunk:
            del self._chunks[c], self._maxes[c]
        elif i == len(chunk):  # the last one went: the chunk has a new max
            self._maxes[c] = _head(chunk[-1])
        self._len -= 1
        return old

    def restore(self, key: str, record: bytes | None) -> None:
        """Make ``key``'s record ``record`` (``None``: absent)."""
        if record is None:
            self.pop(key)
        else:
            self.set(key, record)
