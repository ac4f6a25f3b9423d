"""The manifest: what a data dir has made durable, so that missing files are noticed.

``manifest.json`` is ``{"crc32": C, "manifest": {"format": 1, "durable_seq": N,
"snapshot_seq": S, "state": bool}}`` (``C`` over the compact, key-sorted JSON of the
inner object), rewritten atomically (:mod:`.atomic`). Why a file of its own: the log and
the snapshot can only prove what they *hold*, never what they *lost*. A deleted newest
segment, a segment cut at a record boundary, a deleted snapshot or a deleted state file
all look like a shorter, valid history. The manifest is a lower bound written after the
fact (``durable_seq`` only ever names entries already fsynced), so recovery can refuse a
data dir that holds less than it once promised:

* ``durable_seq`` — every seq up to it was durable (in the snapshot or the log);
* ``snapshot_seq`` — a snapshot at least this new was durable (an older one is enough
  if the log still holds every later entry; the message names the snapshot otherwise);
* ``newest_segment`` — the first seq of the newest segment file, recorded when the file is
  created (and before any segment is unlinked), so a deleted newest segment is noticed
  even though the entries appended to it since are not in ``durable_seq``;
* ``state`` — a state file (node id, epoch, vote) was written: its absence is damage,
  not a fresh dir (a forgotten vote would allow a double vote).

It is kept apart from ``state.json`` so that the state file's format is not touched.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass

from .atomic import write_atomically
from .records import corruption

__all__ = ["MANIFEST_FILE_NAME", "Manifest", "read_manifest", "write_manifest", "check_state_file",
           "check_recovered"]

MANIFEST_FILE_NAME = "manifest.json"
_FORMAT = 1


@dataclass(frozen=True)
class Manifest:
    durable_seq: int = 0
    snapshot_seq: int = 0
    state: bool = False
    newest_segment: int = 0  # the first seq of the newest segment file (0: none)


def _canonical(inner: dict) -> bytes:
    return json.dumps(inner, sort_keys=True, separators=(",", ":")).encode("utf-8")


def read_manifest(directory: str) -> Manifest | None:
    """The manifest, or ``None`` if there is none; :class:`CorruptStorage` if damaged."""
    path = os.path.join(directory, MANIFEST_FILE_NAME)
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        inner = doc["manifest"]
        ok = doc["crc32"] == zlib.crc32(_canonical(inner)) and inner["format"] == _FORMAT
        manifest = Manifest(int(inner["durable_seq"]), int(inner["snapshot_seq"]), bool(inner["state"]),
                            int(inner["newest_segment"]))
    except (ValueError, LookupError, TypeError):
        ok = False
    if not ok:
        raise corruption(path, 0, "the manifest does not parse or fails its CRC")
    return manifest


def write_manifest(directory: str, manifest: Manifest) -> int:
    """Replace the manifest atomically and durably; return the fsyncs done."""
    inner = {"format": _FORMAT, **asdict(manifest)}
    data = (json.dumps({"crc32": zlib.crc32(_canonical(inner)), "manifest": inner}, sort_keys=True)
            + "\n").encode("utf-8")
    return write_atomically(os.path.join(directory, MANIFEST_FILE_NAME), lambda file: file.write(data))


def check_state_file(directory: str, manifest: Manifest | None, has_state_file: bool) -> None:
    """Refuse a data dir whose state file is gone although the manifest says one was written."""
    if not has_state_file and manifest is not None and manifest.state:
        raise corruption(os.path.join(directory, "state.json"), 0,
                         "the state file is missing (the node's epoch and vote would be forgotten, "
                         "and a double vote become possible)")


def check_recovered(directory: str, manifest: Manifest | None, snapshot_seq: int, last_seq: int,
                    segment_names=None) -> None:
    """Refuse a recovery that holds less than the manifest says was durable."""
    if manifest is None:
        return
    path = os.path.join(directory, MANIFEST_FILE_NAME)
    if segment_names is not None and manifest.newest_segment > snapshot_seq and \
            f"log-{manifest.newest_segment:020d}.seg" not in segment_names:
        raise corruption(path, 0, f"the newest log segment log-{manifest.newest_segment:020d}.seg is missing")
    if last_seq < manifest.durable_seq:
        what = ("the snapshot file is missing or damaged" if snapshot_seq < manifest.snapshot_seq
                else "a log segment is missing or truncated")
        raise corruption(path, 0, f"seqs up to {manifest.durable_seq} were durable but the data dir now ends at "
                                  f"seq {last_seq} ({what})")
