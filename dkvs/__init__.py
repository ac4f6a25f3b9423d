"""dkvs: a replicated key-value store written with nothing but the Python standard library.

One master orders every write in a sequence-numbered log and ships it to the slaves in
ordered batches; a dead master is replaced by an election among the survivors. The
protocol lives in :mod:`dkvs.core`, a pure state machine; threads, sockets and disks
live in :mod:`dkvs.runtime`, :mod:`dkvs.transport` and :mod:`dkvs.storage`.

Use it from Python with :class:`dkvs.Client`::

    from dkvs import Client
    client = Client(["http://127.0.0.1:7070"])
    client.put("greeting", "hello", acks="majority")
    client.get("greeting")
"""

__version__ = "0.1.0"

from .client import AcksNotReached, Client, Item, Unavailable, WatchEvent, WriteOutcomeUnknown, WriteResult  # noqa: E402
from .errors import (  # noqa: E402
    AcksTimeout,
    BadRequest,
    Conflict,
    DkvsError,
    KeyNotFound,
    NoMaster,
    PayloadTooLarge,
    Unauthorized,
)

__all__ = [
    "__version__",
    "Client",
    "Item",
    "WriteResult",
    "WatchEvent",
    "DkvsError",
    "KeyNotFound",
    "NoMaster",
    "AcksTimeout",
    "AcksNotReached",
    "Conflict",
    "BadRequest",
    "PayloadTooLarge",
    "Unauthorized",
    "WriteOutcomeUnknown",
    "Unavailable",
]
