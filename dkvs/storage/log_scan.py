"""Reading a data dir's log back at start-up: which segments hold the log after the snapshot,
which are leftovers to delete, and where a torn tail must be cut.

Pure decisions over the files (no state of :class:`~.file.FileStorage`), so the rules —
no gap between segments, none between the snapshot and the log, segments wholly covered
by the snapshot are leftovers of an interrupted compaction — sit in one place.
"""

from __future__ import annotations

import logging
import os

from ..core.log import Entry
from .records import corruption
from .segments import SEGMENT_HEADER_BYTES, Segment, SegmentRead, parse_segment_name, read_segment

__all__ = ["scan_log", "truncate_torn_tail"]

log = logging.getLogger("dkvs.storage")


def scan_log(path: str, base: int, torn: list[SegmentRead]) -> tuple[list[Segment], list[Entry], list[str]]:
    """(segments kept, entries after ``base``, paths to delete) of the log in ``path``.

    ``base`` is the snapshot's seq; a segment with a torn tail is appended to ``torn`` (the
    caller truncates it once the manifest agrees). Any other damage raises CorruptStorage.
    """
    found = sorted((first, os.path.join(path, name)) for name in os.listdir(path)
                   if (first := parse_segment_name(name)) is not None)
    # Segments wholly covered by the snapshot (leftovers of an interrupted compaction).
    covered = 0
    while covered + 1 < len(found) and found[covered + 1][0] - 1 <= base:
        covered += 1
    doomed = [segment_path for _, segment_path in found[:covered]]
    segments: list[Segment] = []
    entries: list[Entry] = []
    for i, (first, segment_path) in enumerate(found[covered:], start=covered):
        if segments and first != segments[-1].last_seq + 1:
            raise corruption(segment_path, 0, f"gap in seqs: the previous segment ends at seq "
                                              f"{segments[-1].last_seq}, this one starts at {first}")
        read = read_segment(segment_path, first, is_last=i == len(found) - 1)
        if read.torn_offset is not None:
            torn.append(read)
        segments.append(read.segment)
        entries.extend(entry for entry in read.entries if entry.seq > base)
    if not segments or segments[-1].last_seq <= base:
        doomed += [segment.path for segment in segments]  # the snapshot covers all
        segments, entries = [], []
    elif segments[0].first_seq > base + 1:
        raise corruption(segments[0].path, SEGMENT_HEADER_BYTES,
                         f"gap in seqs: the snapshot ends at seq {base}, the log starts at "
                         f"seq {segments[0].first_seq}")
    return segments, entries, doomed


def truncate_torn_tail(read: SegmentRead) -> None:
    """Cut a segment's torn tail (a write interrupted by a crash), durably, with a warning."""
    log.warning("%s: %s at offset %d; truncating the torn tail (%d bytes), the log now ends "
                "at seq %d", read.segment.path, read.torn_problem, read.torn_offset,
                read.torn_bytes, read.segment.last_seq)
    with open(read.segment.path, "r+b") as file:
        file.truncate(read.torn_offset)
        file.flush()
        os.fsync(file.fileno())
