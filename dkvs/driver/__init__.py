"""The node driver: a pure, deterministic owner of everything one node decides.

No I/O, threads, clocks or randomness here (a test checks the imports): hosts — the
threaded runtime and the simulator — feed it inputs and execute its :class:`Ready` batches.
"""

from .driver import DEFAULT_SNAPSHOT_THRESHOLD_BYTES, Applied, NodeDriver
from .narrator import note
from .ready import (
    INFO,
    WARNING,
    BuildSnapshot,
    ClientReply,
    CompactStorage,
    Note,
    OutgoingMessage,
    Ready,
    StreamSnapshot,
)

__all__ = [
    "NodeDriver",
    "Applied",
    "Ready",
    "OutgoingMessage",
    "ClientReply",
    "BuildSnapshot",
    "StreamSnapshot",
    "CompactStorage",
    "Note",
    "note",
    "INFO",
    "WARNING",
    "DEFAULT_SNAPSHOT_THRESHOLD_BYTES",
]
