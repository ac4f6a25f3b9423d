"""Log segments: the log split into files, so compaction deletes a prefix by unlinking.

A segment is ``log-<first seq, 20 digits>.seg``: a 16-byte header (magic ``DKVSLOG1`` and
the first seq again, u64 LE) followed by entry frames (:mod:`.records`) with consecutive
seqs from that first seq on. Segments are created atomically (header written to a temp
file, fsynced, renamed), so a segment file always has a whole header.

Reading a segment (:func:`read_segment`) applies the recovery rules:

* an intact record with the wrong seq is corruption, wherever it is;
* a bad frame (short, impossible length, CRC mismatch) in the *last* segment with no
  intact record after it is a torn tail: the caller truncates it;
* a bad frame followed by an intact record, or in any segment but the last, is
  corruption: those bytes were once durable and are now damaged.
"""

from __future__ import annotations

import os
import re
import struct
from array import array
from dataclasses import dataclass

from ..core.log import Entry
from .atomic import write_atomically
from .records import corruption, find_valid_entry_after, scan_entries

__all__ = [
    "SEGMENT_MAGIC",
    "SEGMENT_HEADER_BYTES",
    "RESYNC_WINDOW_SEQS",
    "Segment",
    "SegmentRead",
    "segment_name",
    "parse_segment_name",
    "create_segment",
    "read_segment",
]

SEGMENT_MAGIC = b"DKVSLOG1"
_HEADER = struct.Struct("<8sQ")  # magic, first seq
SEGMENT_HEADER_BYTES = _HEADER.size
# How many seqs past a bad frame we look for intact records before calling it a torn tail.
RESYNC_WINDOW_SEQS = 64
_NAME = re.compile(r"^log-(\d{20})\.seg$")


def segment_name(first_seq: int) -> str:
    return f"log-{first_seq:020d}.seg"


def parse_segment_name(name: str) -> int | None:
    """The first seq encoded in a segment file name, or ``None`` for other files."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


class Segment:
    """One segment file and the end offset of each of its records.

    Invariant: ``ends[i]`` is the file offset just past the record of seq
    ``first_seq + i``; the file is exactly ``size_bytes`` long (between calls).
    8 bytes per record is the whole in-memory index: it makes truncation and
    :meth:`bytes_after` O(1) without rereading the file.
    """

    __slots__ = ("path", "first_seq", "ends")

    def __init__(self, path: str, first_seq: int, ends=()) -> None:
        self.path = path
        self.first_seq = first_seq
        self.ends = array("Q", ends)

    @property
    def last_seq(self) -> int:
        """The seq of the last record (``first_seq - 1`` when the segment is empty)."""
        return self.first_seq + len(self.ends) - 1

    @property
    def size_bytes(self) -> int:
        return self.ends[-1] if self.ends else SEGMENT_HEADER_BYTES

    def end_of(self, seq: int) -> int:
        """The offset just past record ``seq`` (the header's end if ``seq`` precedes it)."""
        if seq < self.first_seq:
            return SEGMENT_HEADER_BYTES
        assert seq <= self.last_seq, (seq, self.last_seq)
        return self.ends[seq - self.first_seq]

    def bytes_after(self, seq: int) -> int:
        """Bytes taken by the records of this segment with a seq above ``seq``."""
        return self.size_bytes - self.end_of(min(seq, self.last_seq))

    def __repr__(self) -> str:
        return f"Segment({self.path!r}, {self.first_seq}..{self.last_seq})"


def create_segment(directory: str, first_seq: int) -> tuple[Segment, int]:
    """Create an empty segment starting at ``first_seq``; return it and the fsyncs done."""
    path = os.path.join(directory, segment_name(first_seq))
    header = _HEADER.pack(SEGMENT_MAGIC, first_seq)
    fsyncs = write_atomically(path, lambda file: file.write(header))
    return Segment(path, first_seq), fsyncs


@dataclass
class SegmentRead:
    """A segment as read back: its index, its entries, and the torn tail found, if any."""

    segment: Segment
    entries: list[Entry]
    torn_offset: int | None = None
    torn_problem: str | None = None
    torn_bytes: int = 0


def read_segment(path: str, first_seq: int, is_last: bool) -> SegmentRead:
    """Read and check a whole segment (see the module docstring for the rules).

    Raises :class:`CorruptStorage` for damage that is not a torn tail of the last
    segment. Does not modify the file: truncating the torn tail is the caller's call.
    """
    with open(path, "rb") as file:
        buf = file.read()
    if len(buf) < SEGMENT_HEADER_BYTES:
        raise corruption(path, 0, "segment header is short")
    magic, header_first = _HEADER.unpack_from(buf)
    if magic != SEGMENT_MAGIC:
        raise corruption(path, 0, f"bad segment magic {magic!r}")
    if header_first != first_seq:
        raise corruption(path, 8, f"header says first seq {header_first}, file name says {first_seq}")
    scan = scan_entries(buf, SEGMENT_HEADER_BYTES, first_seq)
    segment = Segment(path, first_seq, scan.ends)
    read = SegmentRead(segment, scan.entries)
    if scan.problem is None:
        return read
    if scan.out_of_order_seq is not None:
        raise corruption(path, scan.stop, f"gap in seqs: {scan.problem}")
    if not is_last:
        raise corruption(path, scan.stop, f"{scan.problem} in a segment that is not the last one")
    expected = first_seq + len(scan.entries)
    intact = find_valid_entry_after(buf, scan.stop, expected, RESYNC_WINDOW_SEQS)
    if intact is not None:
        raise corruption(path, scan.stop,
                         f"{scan.problem} in record seq {expected}, followed by an intact record at "
                         f"offset {intact}")
    read.torn_offset, read.torn_problem = scan.stop, scan.problem
    read.torn_bytes = len(buf) - scan.stop
    return read
