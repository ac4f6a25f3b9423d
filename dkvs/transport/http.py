"""HTTP transport: a replication stream and a POST sender per peer, replies come back.

Replication (``Append``: batches and heartbeats) goes over one long-lived stream per peer
(:mod:`.stream_sender`, framed and authenticated per frame by :mod:`.stream_frames`;
``docs/protocol.md``, "Replication stream"): no HTTP request per batch. Everything else —
votes, ``TimeoutNow``, snapshots — and replication to a peer that does not take streams
goes through a :class:`_PeerSender`: a bounded queue drained by one thread that POSTs
messages over one keep-alive ``http.client`` connection. Either way messages to a peer
leave in order, and a slow or dead peer never blocks the node or the other peers. The
receiver answers each message with the messages it addresses back to the sender (an
append's reply, a vote), so a round trip costs one request or one pair of frames.

A full queue drops the new message: the core notices (timeouts) and resends. A failed
request closes the connection and reports the peer unreachable.

Snapshots stream outside the sender threads: :meth:`HttpTransport.stream_snapshot` runs on
the caller's worker thread with a connection of its own, one chunk in flight
(:mod:`.snapshot_stream` has the protocol), so heartbeats and batches to that peer keep
flowing while hundreds of megabytes go by.

Fault injection (``--enable-fault-injection`` only): :meth:`HttpTransport.block` drops all
traffic to the given peers; the receiving side drops traffic *from* them, so a partition
is symmetric. Used by ``scripts/chaos.py``.
"""

from __future__ import annotations

import collections
import http.client
import logging
import threading
import urllib.parse
from collections.abc import Callable, Mapping

from ..core.messages import Append, Message
from ..storage.base import SNAPSHOT_READ_CHUNK_BYTES
from . import codec
from .auth import Signer
from .base import Transport
from .snapshot_stream import ChunkMeta, chunk_query
from .stream_frames import RAFT_PATH
from .stream_loop import LoopStreamSender
from .stream_sender import StreamSender
from .tls import peer_context

__all__ = ["HttpTransport", "RAFT_PATH", "SNAPSHOT_PATH"]

log = logging.getLogger("dkvs.transport")

SNAPSHOT_PATH = "/internal/snapshot"
QUEUE_MESSAGES = 256
CONNECT_TIMEOUT_SECONDS = 1.0
REQUEST_TIMEOUT_SECONDS = 5.0
SNAPSHOT_TIMEOUT_SECONDS = 300.0  # the last chunk: the receiver parses and installs the state
SNAPSHOT_CHUNK_TIMEOUT_SECONDS = 30.0
MAX_SNAPSHOT_RESTARTS = 3  # times a receiver may send a stream back to another offset


class HttpTransport(Transport):
    def __init__(self, signer: Signer | None = None, *, node_id: str = "",
                 connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                 request_timeout: float = REQUEST_TIMEOUT_SECONDS,
                 fault_injection: bool = False, stream: bool = True, loop=None) -> None:
        self.signer = signer or Signer(None)
        self.node_id = node_id
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.fault_injection = fault_injection
        self.blocked: frozenset[str] = frozenset()
        self._senders: dict[str, _PeerSender] = {}
        self.stream = stream  # replication over a stream per peer (.stream_sender), else POSTs
        # The sockets the node's selector watches (dkvs.api.watched): plain-TCP streams are
        # then driven by it (.stream_loop) instead of a thread per peer (.stream_sender).
        self.loop = loop if loop is not None and loop.usable else None
        self._streams: dict[str, StreamSender | LoopStreamSender] = {}
        self._lock = threading.Lock()
        self._deliver: Callable[[str, int, list], None] | None = None
        self._unreachable: Callable[[str, int], None] | None = None
        self._closed = False

    def start(self, deliver, unreachable) -> None:
        self._deliver, self._unreachable = deliver, unreachable

    def set_peers(self, peers: Mapping[str, str]) -> None:
        with self._lock:
            for peer_id in list(self._senders):
                if peer_id not in peers or self._senders[peer_id].url != peers[peer_id]:
                    self._senders.pop(peer_id).close()
                    stream = self._streams.pop(peer_id, None)
                    if stream is not None:
                        stream.close()
            for peer_id, url in peers.items():
                if peer_id != self.node_id and peer_id not in self._senders and not self._closed:
                    sender = self._senders[peer_id] = _PeerSender(self, peer_id, url)
                    if self.stream and self.loop is not None and not sender._tls:
                        self._streams[peer_id] = LoopStreamSender(self, peer_id, sender._host, sender._port,
                                                                  self.loop)
                    elif self.stream:
                        self._streams[peer_id] = StreamSender(self, peer_id, sender._host, sender._port,
                                                              sender._tls)

    def send(self, to: str, message: Message, send_id: int = 0) -> None:
        if to in self.blocked:
            return
        if type(message) is Append:
            stream = self._streams.get(to)
            if stream is not None and stream.usable:
                stream.offer(message, send_id)
                return
        sender = self._senders.get(to)
        if sender is not None:
            sender.offer(message, snapshot=False, send_id=send_id)

    def fallback(self, to: str, message: Message, send_id: int) -> None:
        """Send ``message`` by POST: its stream was refused (an older peer)."""
        sender = self._senders.get(to)
        if sender is not None and to not in self.blocked:
            sender.offer(message, snapshot=False, send_id=send_id)

    def send_snapshot(self, to: str, snapshot: Message) -> None:
        sender = self._senders.get(to)
        if sender is not None and to not in self.blocked:
            sender.offer(snapshot, snapshot=True)

    def stream_snapshot(self, to, reader, sender_epoch, sender_id, should_stop=None,
                        chunk_bytes: int = SNAPSHOT_READ_CHUNK_BYTES) -> None:
        """Stream ``reader``'s snapshot to ``to`` in chunks on this (worker) thread.

        Raises ``OSError`` (peer unknown, partitioned, network, refused, too many
        restarts) or :class:`InterruptedError` when ``should_stop()`` turns true; on
        success the receiver's answers are delivered like any reply.
        """
        sender = self._senders.get(to)
        if sender is None:
            raise OSError(f"no address known for peer {to}")
        meta = reader.meta
        conn = sender.new_connection()
        try:
            offset, restarts = 0, 0
            while True:
                if should_stop is not None and should_stop() or self._closed:
                    raise InterruptedError("snapshot stream stopped")
                if to in self.blocked:
                    raise OSError(f"peer {to} is partitioned (fault injection)")
                chunk = reader.read(offset, chunk_bytes)
                last = offset + len(chunk) >= meta.size
                query = chunk_query(ChunkMeta(sender_id, sender_epoch, meta.seq, offset, meta.size, meta.crc32))
                want, replies = self._post_chunk(conn, to, query, chunk, last)
                if want is None:
                    if to not in self.blocked:
                        self._deliver(to, 0, replies)  # send id 0: like send_snapshot's answers
                    return
                if want != offset + len(chunk) or last:
                    restarts += 1
                    if restarts > MAX_SNAPSHOT_RESTARTS or want > meta.size:
                        raise OSError(f"{to} keeps asking for snapshot offset {want} (sent {offset}+{len(chunk)})")
                offset = want
        except (http.client.HTTPException, codec.CodecError) as exc:
            raise OSError(f"snapshot stream to {to} failed: {exc}") from exc
        finally:
            conn.close()

    def _post_chunk(self, conn: http.client.HTTPConnection, to: str, query: str, chunk: bytes, last: bool):
        if conn.sock is None:
            conn.connect()
        conn.sock.settimeout(SNAPSHOT_TIMEOUT_SECONDS if last else SNAPSHOT_CHUNK_TIMEOUT_SECONDS)
        target = f"{SNAPSHOT_PATH}?{query}"  # signed whole: the query carries the chunk's place
        return codec.decode_snapshot_answer(self._exchange(conn, target, chunk, len(chunk), to,
                                                           "application/octet-stream"))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            senders, self._senders = list(self._senders.values()), {}
            senders += list(self._streams.values())
            self._streams = {}
        for sender in senders:
            sender.close()
        for sender in senders:
            sender.join(timeout=2.0)

    # -- fault injection -------------------------------------------------------------------------
    def block(self, peers) -> None:
        """Drop every message to and from ``peers`` (a network partition)."""
        if not self.fault_injection:
            raise PermissionError("fault injection is disabled (start the node with --enable-fault-injection)")
        self.blocked = frozenset(peers)

    # -- used by the sender threads ----------------------------------------------------------------
    def _post(self, conn: http.client.HTTPConnection, path: str, body, length: int,
              target: str = "") -> list[Message]:
        return codec.decode_many(self._exchange(conn, path, body, length, target, "application/json"))

    def _exchange(self, conn: http.client.HTTPConnection, path: str, body, length: int, to: str,
                  content_type: str) -> bytes:
        """One signed POST (without a secret: only the cluster id header); the answer's body,
        or OSError for any status but 200."""
        headers = {"Content-Type": content_type, "Content-Length": str(length)}
        headers.update(self.signer.headers("POST", path, body, to=to))
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise OSError(f"{path.split('?', 1)[0]} answered {response.status}: {data[:200]!r}")
        return data


class _PeerSender:
    """Owns the connection to one peer; sends queued messages one at a time, in order."""

    def __init__(self, transport: HttpTransport, peer_id: str, url: str) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.url = url
        parts = urllib.parse.urlsplit(url)
        self._tls = parts.scheme == "https"
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or (443 if self._tls else 80)
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._conn: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name=f"dkvs-send-{peer_id}", daemon=True)
        self._thread.start()

    def offer(self, message: Message, snapshot: bool, send_id: int = 0) -> None:
        with self._cond:
            if self._closed or len(self._queue) >= QUEUE_MESSAGES:
                return
            self._queue.append((message, snapshot, send_id))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    break
                message, snapshot, send_id = self._queue.popleft()
            self._send_one(message, snapshot, send_id)
        if self._conn is not None:
            self._conn.close()

    def new_connection(self) -> http.client.HTTPConnection:
        """A connection to this peer: HTTPS verified with the node's peer context for https URLs."""
        timeout = self.transport.connect_timeout
        if self._tls:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=peer_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = self.new_connection()
            self._conn.connect()
            self._conn.sock.settimeout(timeout)
        else:
            self._conn.sock.settimeout(timeout)
        return self._conn

    def _send_one(self, message: Message, snapshot: bool, send_id: int) -> None:
        transport = self.transport
        try:
            if snapshot:
                chunks = codec.encode_snapshot_chunks(message)
                conn = self._connection(SNAPSHOT_TIMEOUT_SECONDS)
                replies = transport._post(conn, SNAPSHOT_PATH, chunks, sum(len(c) for c in chunks), self.peer_id)
            else:
                body = codec.encode(message)
                conn = self._connection(transport.request_timeout)
                replies = transport._post(conn, RAFT_PATH, body, len(body), self.peer_id)
        except (OSError, http.client.HTTPException, codec.CodecError) as exc:
            log.debug("send to %s failed: %s", self.peer_id, exc)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if transport._unreachable is not None and not self._closed:
                transport._unreachable(self.peer_id, send_id)
            return
        if self.peer_id in transport.blocked:
            return  # partition began while the request was on the wire
        transport._deliver(self.peer_id, send_id, replies)
