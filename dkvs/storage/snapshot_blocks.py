"""Snapshot items as blocks of records: the binary chunk of a snapshot file, and the
sequence type that carries them from a file (or a stream) into the state.

Why: a snapshot of a million keys used to be JSON chunks, parsed into a list per item and
then into a dict entry and a tuple per key (seconds at a million keys). The state now keeps
one ``bytes`` record per key (:mod:`dkvs.core.recordtable`), so a snapshot block is simply
those records, joined by the one byte no record holds::

    count (u32, little-endian) | record FF record FF ... record

Encoding is one ``join``; decoding is one ``split`` plus checks done by C-speed ``map``
calls: the count matches, records are strictly increasing (also across blocks) and none
is too short (:func:`check_records` says what is not checked, and why that is safe). A block
that fails is refused with the offset, never half-loaded: bytes that arrive over the
network are not trusted beyond their CRC (and nothing here evaluates them: no pickle, no
marshal).

:class:`RecordItems` is what a loaded snapshot's ``items`` is: a read-only sequence of
``[key, value, seq]`` lists (what every caller of ``StoredSnapshot.items`` expects) that
also hands its blocks to ``KVState.restore`` (``record_blocks()``) without building them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from operator import eq, lt

from ..core.recordtable import END, SEPARATOR, SEQ_BYTES, pack, unpack

__all__ = ["RecordItems", "encode_block", "decode_block", "check_records", "pack_items", "BlockError"]

_COUNT_BYTES = 4
_MIN_TAIL = len(END) + SEQ_BYTES  # a key end and a seq follow every key
_SEQ_LIMIT = 16 ** SEQ_BYTES


class BlockError(ValueError):
    """A block that is not a valid, sorted run of records (the message says why)."""


def encode_block(records: list[bytes]) -> bytes:
    """The payload of one block frame (without its kind byte)."""
    return len(records).to_bytes(_COUNT_BYTES, "little") + SEPARATOR.join(records)


def decode_block(payload: bytes, start: int = 0, previous: bytes | None = None) -> list[bytes]:
    """The records of a block payload beginning at ``payload[start]``; :class:`BlockError`
    if it is malformed, unsorted, holds a key twice or does not follow ``previous``."""
    if len(payload) - start <= _COUNT_BYTES:
        raise BlockError("block too short for its count")
    count = int.from_bytes(payload[start:start + _COUNT_BYTES], "little")
    records = payload[start + _COUNT_BYTES:].split(SEPARATOR)
    if len(records) != count:
        raise BlockError(f"block counts {count} records but holds {len(records)}")
    check_records(records, previous)
    return records


def check_records(records: list[bytes], previous: bytes | None = None) -> None:
    """:class:`BlockError` unless ``records`` are strictly increasing, all after
    ``previous`` (the record before them, if any), and none is too short to hold a key end
    and a seq.

    What is not checked per record, and why that is safe: a key end and the seq's digits
    (a ``find`` and a slice per record would double the load time). Decoding a record
    never raises (:mod:`dkvs.core.recordtable`), so such damage — which the frame CRC has
    already made unlikely — reads as a wrong value, never a crash; order is what the
    table's lookups rely on, and that is checked.
    """
    if min(map(len, records)) < _MIN_TAIL:
        raise BlockError("a record is too short to hold a key end and a seq")
    if not all(map(lt, records, islice(records, 1, None))):
        raise BlockError("records are not in strictly increasing key order")
    if previous is not None and not previous < records[0]:
        raise BlockError("block does not follow the previous one in key order")


def pack_items(items: Iterable) -> list[bytes]:
    """Records of ``[key, value, seq]`` items, in their order; :class:`BlockError` for an
    item of the wrong shape (so a malformed format-1 file is refused, not crashed on)."""
    records = []
    try:
        for key, value, seq in items:
            if type(key) is not str or type(value) is not str or type(seq) is not int or not 0 <= seq < _SEQ_LIMIT:
                raise BlockError(f"malformed snapshot item {[key, value, seq]!r:.80}")
            records.append(pack(key, value, seq))
    except BlockError:
        raise
    except (TypeError, ValueError) as exc:  # not a 3-item sequence
        raise BlockError(f"malformed snapshot item ({exc})") from None
    return records


class RecordItems(Sequence):
    """A snapshot's items as sorted blocks of records; reads as ``[key, value, seq]`` lists.

    Read-only by contract: the state adopts copies of the blocks, a storage may keep the
    object. ``record_blocks()`` is the fast path (``KVState.restore``, the snapshot writer).
    """

    def __init__(self, blocks: Iterable[list[bytes]] = ()) -> None:
        if isinstance(blocks, RecordItems):
            blocks = blocks.record_blocks()
        self._blocks = [block for block in blocks if block]
        self._len = sum(map(len, self._blocks))

    def record_blocks(self) -> list[list[bytes]]:
        return self._blocks

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[list]:
        for block in self._blocks:
            for record in block:
                yield list(unpack(record))

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self._len)
            if step != 1:
                return list(self)[index]
            return [list(unpack(r)) for r in self._records(start, stop)]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("snapshot item index out of range")
        return list(unpack(next(self._records(index, index + 1))))

    def _records(self, start: int, stop: int) -> Iterator[bytes]:
        at = 0
        for block in self._blocks:
            if at >= stop:
                return
            if at + len(block) > start:
                yield from block[max(0, start - at):stop - at]
            at += len(block)

    def __eq__(self, other) -> bool:
        if isinstance(other, RecordItems):
            return self._len == other._len and all(map(eq, self._records(0, self._len),
                                                       other._records(0, other._len)))
        if isinstance(other, (list, tuple)):
            return self._len == len(other) and all(map(_same_item, self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"RecordItems({self._len} items in {len(self._blocks)} blocks)"


def _same_item(item: list, other) -> bool:
    return item == list(other) if isinstance(other, (list, tuple)) else False
