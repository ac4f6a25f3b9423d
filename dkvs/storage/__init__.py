"""Storage: the durable home of a node's log, snapshot and vote (see :class:`Storage`)."""

from .base import (CorruptStorage, Recovered, SnapshotMeta, SnapshotReader, SnapshotSuperseded, Storage,
                   StoredSnapshot)
from .file import FileStorage
from .memory import MemoryStorage

__all__ = ["Storage", "StoredSnapshot", "Recovered", "CorruptStorage", "MemoryStorage", "FileStorage",
           "SnapshotMeta", "SnapshotReader", "SnapshotSuperseded"]
