"""The Transport contract: best-effort, ordered-per-peer delivery of core messages.

The core treats the network as lossy: it resends on its own timers, tolerates duplicates
and reordering, and rejects stale epochs. So a transport promises little and must never
block the caller:

* :meth:`send` returns at once. It may drop the message (queue full, peer down); it must
  not raise for network reasons.
* Messages to one peer leave in the order they were sent (a per-peer queue), which keeps
  batches flowing in log order in the common case; the core does not rely on it for safety.
* Answers come back through the ``deliver`` callback given to :meth:`start`, called from
  transport threads with ``(message)``; the host queues them for the node's thread.
  ``unreachable(peer_id)`` is called when a send failed, so the core may retry sooner.
* Peers are addressed by node id; :meth:`set_peers` maps ids to addresses and may be
  called at any time from the node's thread.

Implementations: :class:`dkvs.transport.http.HttpTransport` (production) and the
simulator's network in ``tests/sim``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping

from ..core.messages import Message

__all__ = ["Transport"]


class Transport(abc.ABC):
    @abc.abstractmethod
    def start(self, deliver: Callable[[Message], None], unreachable: Callable[[str], None]) -> None:
        """Begin delivering answers; called once before the first :meth:`send`."""

    @abc.abstractmethod
    def set_peers(self, peers: Mapping[str, str]) -> None:
        """Replace the id → address map (addresses of removed peers are forgotten)."""

    @abc.abstractmethod
    def send(self, to: str, message: Message) -> None:
        """Queue ``message`` for ``to``; never blocks, never raises for network faults."""

    @abc.abstractmethod
    def send_snapshot(self, to: str, snapshot: Message) -> None:
        """Like :meth:`send`, for the (large) snapshot message; may stream it in chunks."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop sender threads and close connections; later sends are dropped."""
