"""The I/O a simulated node's driver sees: a transport, a snapshot worker, a change feed.

Each plays its production counterpart's contract with the simulator's network and clock:

* :class:`SimTransport` keeps a peer table like :class:`~dkvs.transport.http.HttpTransport`
  and silently drops a message to a peer it does not know (the reason the driver updates
  peers before it sends);
* :class:`SimWork` is the background snapshot worker: a build finishes some ticks after it
  started (writes go on meanwhile), a stream is one request whose answer, loss or timeout
  completes it;
* :class:`SimFeed` records which applied entries changed nothing, so every client answer
  can be checked against what really happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from dkvs.core.messages import Snapshot
from dkvs.storage.base import SnapshotSuperseded

__all__ = ["Request", "Response", "Token", "SimTransport", "SimWork", "SimFeed"]


@dataclass(frozen=True)
class Request:
    """A message posted to a peer; ``send_id`` numbers it in the sender's in-flight table."""

    send_id: int
    message: object


@dataclass(frozen=True)
class Response:
    """The HTTP response to request ``send_id``: the answers the peer addressed back."""

    send_id: int
    messages: tuple


class Token:
    """The HTTP exchange a message arrived in: the driver puts its answers here."""

    def __init__(self) -> None:
        self.messages: list = []


class SimTransport:
    def __init__(self, node_id: str, net) -> None:
        self.node_id = node_id
        self.net = net
        self.peers: dict[str, str] = {}

    def set_peers(self, peers) -> None:
        self.peers = dict(peers)

    def send(self, to: str, message, send_id: int = 0) -> None:
        if to in self.peers:
            self.net.send(self.node_id, to, Request(send_id, message))


class SimFeed:
    def __init__(self) -> None:
        self.skipped: set[tuple[int, int]] = set()  # (epoch, seq) applied without effect

    def record(self, entries, skipped) -> None:
        if skipped:
            for entry in entries:
                if entry.seq in skipped:
                    self.skipped.add((entry.epoch, entry.seq))

    def rollback(self, after_seq: int) -> None:
        pass

    def reset(self, seq: int) -> None:
        pass


class SimWork:
    """Background snapshot work of one simulated node (see the module docstring)."""

    def __init__(self, cluster, sim) -> None:
        self.cluster = cluster
        self.sim = sim
        self.pending_build: tuple | None = None  # (due tick, seq, epoch, members, data)
        self.streams: dict[int, tuple[str, int, int]] = {}  # send_id -> (peer, seq, started)
        self._next_stream = 0

    # -- the worker interface the executor calls ------------------------------------------------
    def build(self, seq: int, epoch: int, members: tuple, data) -> None:
        low, high = self.cluster.build_ticks
        due = self.cluster.now + self.cluster.rng.randint(low, high)
        self.pending_build = (due, seq, epoch, members, data)

    def stream(self, peer: str, sender_epoch: int, sender_id: str) -> None:
        driver = self.sim.driver
        stored = self.sim.storage.load_snapshot()
        if stored is None:
            driver.snapshot_streamed(peer, 0, "no snapshot is stored")
            return
        self._next_stream -= 1  # negative ids: never in the driver's in-flight table
        self.streams[self._next_stream] = (peer, stored.seq, self.cluster.now)
        message = Snapshot(sender_epoch, sender_id, stored.seq, stored.epoch,
                           tuple(tuple(m) for m in stored.members), stored.items)
        self.sim.transport.send(peer, message, self._next_stream)

    # -- completions ----------------------------------------------------------------------------
    def finish_build(self, seq: int, epoch: int, members: tuple, data) -> None:
        """What the production worker does: ``Storage.write_snapshot`` (which refuses to
        replace a newer snapshot), then report; the driver's ``CompactStorage`` follows."""
        try:
            nbytes = self.sim.storage.write_snapshot(seq, epoch, members, data)
        except SnapshotSuperseded as exc:
            self.sim.driver.snapshot_built(seq, 0, f"superseded: {exc}")
            return
        self.sim.driver.snapshot_built(seq, nbytes)

    def answered(self, peer: str, send_id: int, messages) -> None:
        self.sim.driver.received(peer, send_id, messages)
        stream = self.streams.pop(send_id, None)
        if stream is not None:
            self.sim.driver.snapshot_streamed(peer, stream[1])

    def failed(self, peer: str, send_id: int) -> None:
        stream = self.streams.pop(send_id, None)
        if stream is not None:
            self.sim.driver.snapshot_streamed(peer, stream[1], "the request was lost")
        else:
            self.sim.driver.send_failed(peer, send_id)

    def tick(self) -> None:
        """Finish a build that is due; give up on streams unanswered for too long."""
        now = self.cluster.now
        ran = False
        if self.pending_build is not None and self.pending_build[0] <= now:
            _, seq, epoch, members, data = self.pending_build
            self.pending_build = None
            self.finish_build(seq, epoch, members, data)
            ran = True
        timeout = self.cluster.config.snapshot_timeout
        for send_id, (peer, seq, started) in list(self.streams.items()):
            if now - started >= timeout:
                del self.streams[send_id]
                self.sim.driver.snapshot_streamed(peer, seq, "timed out")
                ran = True
        if ran:
            self.sim.runner.run(self.sim.driver.ready())
