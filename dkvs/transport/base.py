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
from .snapshot_stream import ChunkMeta, SnapshotAssembler

__all__ = ["Transport"]


class Transport(abc.ABC):
    @abc.abstractmethod
    def start(self, deliver: Callable[[str, int, list], None], unreachable: Callable[[str, int], None]) -> None:
        """Begin delivering answers; called once before the first :meth:`send`.

        ``deliver(peer, send_id, messages)`` gets the answers to one request (possibly
        none); ``unreachable(peer, send_id)`` reports a request that was not delivered.
        Both are called from transport threads."""

    @abc.abstractmethod
    def set_peers(self, peers: Mapping[str, str]) -> None:
        """Replace the id → address map (addresses of removed peers are forgotten)."""

    @abc.abstractmethod
    def send(self, to: str, message: Message, send_id: int = 0) -> None:
        """Queue ``message`` for ``to``; never blocks, never raises for network faults.
        ``send_id`` comes back with the answers (or the failure) of this request."""

    @abc.abstractmethod
    def send_snapshot(self, to: str, snapshot: Message) -> None:
        """Like :meth:`send`, for the (large) snapshot message; may stream it in chunks."""

    def stream_snapshot(self, to: str, reader, sender_epoch: int, sender_id: str,
                        should_stop: Callable[[], bool] | None = None) -> None:
        """Send the stored snapshot ``reader`` (a :class:`dkvs.storage.base.SnapshotReader`)
        to ``to``, blocking the calling *worker* thread until it is handed over.

        Never call it on the node's thread. Raises ``OSError`` when the stream fails and
        :class:`InterruptedError` when ``should_stop()`` turns true; the receiver's
        answers arrive through ``deliver``. This default, for transports that do not
        stream (the simulator), joins the chunks locally through a
        :class:`~dkvs.transport.snapshot_stream.SnapshotAssembler` (so the bytes are
        checked end to end) and hands the message to :meth:`send_snapshot`.
        """
        meta = reader.meta
        assembler = SnapshotAssembler()
        snapshot = None
        try:
            for offset, chunk in reader.chunks():
                if should_stop is not None and should_stop():
                    raise InterruptedError("snapshot stream stopped")
                snapshot = assembler.accept(ChunkMeta(sender_id, sender_epoch, meta.seq, offset, meta.size,
                                                      meta.crc32), chunk)
        finally:
            assembler.close()
        if snapshot is None:
            raise OSError(f"snapshot at seq {meta.seq} did not verify")
        self.send_snapshot(to, snapshot)

    @abc.abstractmethod
    def close(self) -> None:
        """Stop sender threads and close connections; later sends are dropped."""
