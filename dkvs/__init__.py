"""dkvs: a replicated key-value store written with nothing but the Python standard library.

One master orders every write in a sequence-numbered log and ships it to the slaves in
ordered batches; a dead master is replaced by an election among the survivors. The
protocol lives in :mod:`dkvs.core`, a pure state machine; threads, sockets and disks
live in :mod:`dkvs.runtime`, :mod:`dkvs.transport` and :mod:`dkvs.storage`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
