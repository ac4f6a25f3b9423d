"""Atomic, durable file replacement: the only way dkvs rewrites a whole file.

The recipe (and why each step): write the new content to ``NAME.tmp``; ``fsync`` it, so
its bytes are on disk before any name points at them; ``rename`` it over ``NAME``, which
POSIX makes atomic (a reader sees the old file or the new one, never a mix); ``fsync`` the
directory, so the rename itself survives a power loss. A crash at any point leaves either
the old ``NAME`` or the new one, plus perhaps a stray ``NAME.tmp`` that the next open
removes (:func:`remove_temp_files`).
"""

from __future__ import annotations

import os
from typing import BinaryIO, Callable

__all__ = ["TEMP_SUFFIX", "write_atomically", "fsync_dir", "remove_temp_files"]

TEMP_SUFFIX = ".tmp"


def fsync_dir(path: str) -> None:
    """Make the directory entries of ``path`` (creations, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str, write: Callable[[BinaryIO], None]) -> int:
    """Replace ``path`` by what ``write(file)`` writes, atomically and durably.

    Returns the number of fsyncs done (for the storage's fsync counter). On any error the
    temp file is removed and ``path`` is left as it was.
    """
    temp = path + TEMP_SUFFIX
    try:
        with open(temp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.remove(temp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(path) or ".")
    return 2


def remove_temp_files(directory: str) -> list[str]:
    """Delete leftovers of interrupted :func:`write_atomically` calls; return their paths."""
    removed = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in names:
        if name.endswith(TEMP_SUFFIX):
            path = os.path.join(directory, name)
            os.remove(path)
            removed.append(path)
    return removed
