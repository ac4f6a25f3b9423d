"""A sorted set of strings with cheap inserts: a list of sorted chunks.

A flat sorted list costs a memmove of the whole list per new key (slow at a million
keys); re-sorting on every listing costs n log n. Chunks of at most ``CHUNK_KEYS`` keys
keep both insert and range scan near O(sqrt n) / O(log n + k).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

__all__ = ["SortedKeys"]

CHUNK_KEYS = 512


class SortedKeys:
    def __init__(self) -> None:
        self._chunks: list[list[str]] = []
        self._maxes: list[str] = []  # last key of each chunk
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def add(self, key: str) -> None:
        """Insert ``key`` (the caller guarantees it is not present)."""
        if not self._chunks:
            self._chunks.append([key])
            self._maxes.append(key)
        else:
            i = bisect.bisect_left(self._maxes, key)
            if i == len(self._chunks):
                i -= 1
                self._chunks[i].append(key)
                self._maxes[i] = key
            else:
                bisect.insort(self._chunks[i], key)
            if len(self._chunks[i]) > 2 * CHUNK_KEYS:
                chunk = self._chunks[i]
                self._chunks[i : i + 1] = [chunk[:CHUNK_KEYS], chunk[CHUNK_KEYS:]]
                self._maxes[i : i + 1] = [chunk[CHUNK_KEYS - 1], chunk[-1]]
        self._len += 1

    def remove(self, key: str) -> None:
        """Remove ``key`` (the caller guarantees it is present)."""
        i = bisect.bisect_left(self._maxes, key)
        chunk = self._chunks[i]
        del chunk[bisect.bisect_left(chunk, key)]
        if chunk:
            self._maxes[i] = chunk[-1]
        else:
            del self._chunks[i], self._maxes[i]
        self._len -= 1

    def iter_from(self, start: str, inclusive: bool = True) -> Iterator[str]:
        """Keys ``>= start`` (or ``> start``), in order."""
        find = bisect.bisect_left if inclusive else bisect.bisect_right
        i = find(self._maxes, start)
        if i == len(self._chunks):
            return
        chunk = self._chunks[i]
        yield from chunk[find(chunk, start):]
        for chunk in self._chunks[i + 1 :]:
            yield from chunk

    def clear(self) -> None:
        self._chunks, self._maxes, self._len = [], [], 0

    def update_sorted(self, keys: list[str]) -> None:
        """Replace the contents with already sorted, distinct ``keys`` (snapshot restore)."""
        self._chunks = [keys[i : i + CHUNK_KEYS] for i in range(0, len(keys), CHUNK_KEYS)]
        self._maxes = [c[-1] for c in self._chunks]
        self._len = len(keys)
