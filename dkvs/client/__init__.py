"""A Python client for dkvs: ``Client(["http://127.0.0.1:7070"])``, standard library only.

It finds the master through ``/status``, sends writes straight to it, keeps keep-alive
connections per node, rediscovers the master after a failover, and retries only what is
safe to retry: reads always, writes only when they certainly were not applied. A write
whose fate is unknown raises :class:`WriteOutcomeUnknown` instead. The whole contract is
in the :class:`Client` docstring; usage is in ``docs/client.md``.

Modules: ``client`` (the operations and the retry loop), ``cluster`` (node list, master
discovery), ``connection`` (per-node pools; what a failed exchange means), ``retry``
(backoff), ``errors`` (client-side errors; HTTP answer → exception), ``results``, ``lock``
(a lock recipe on leases and compare-and-set, with fencing tokens), ``cli`` (``dkvs get ...``).
"""

from .client import Client
from .errors import AcksNotReached, Unavailable, WriteOutcomeUnknown
from .lock import Lock, LockTimeout
from .results import Item, WatchEvent, WriteResult

__all__ = ["Client", "Item", "WriteResult", "WatchEvent", "WriteOutcomeUnknown", "AcksNotReached",
           "Unavailable", "Lock", "LockTimeout"]
