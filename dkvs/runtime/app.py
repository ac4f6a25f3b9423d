"""Assemble one dkvs node: storage, core, host thread, transport, HTTP server.

:class:`DkvsNode` is what ``python -m dkvs`` runs, and what integration tests start
in-process. Start-up order matters: the HTTP server binds first (so ``--port 0`` yields a
real url that the node can announce), then the node is recovered or created, then its
threads start, then — with ``--join`` — it asks the cluster to add it.

Before any of that, the settings are checked (:func:`~dkvs.runtime.startup.validate_settings`):
a node that cannot start raises :class:`~dkvs.runtime.startup.StartupError` with one
sentence, before it holds a data dir lock or a socket.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from dataclasses import dataclass, field

from ..api.service import Limits
from ..core.config import CoreConfig
from ..core.node import MASTER, Node
from ..errors import DkvsError
from ..core.kvstate import KVState
from ..api.cors import CorsPolicy
from ..api.routes import route_table
from ..storage import FileStorage, MemoryStorage
from ..storage.base import CorruptStorage
from ..storage.datadir import DataDirLocked
from ..transport.auth import Signer
from ..transport.http import HttpTransport
from ..transport.tls import set_peer_context
from .admin import post_internal
from ..driver import DEFAULT_SNAPSHOT_THRESHOLD_BYTES, NodeDriver
from ..transport.snapshot_stream import SnapshotAssembler
from .handover import transfer_leader
from .host import NodeHost
from .fresh_rejoin import FreshRejoin
from .forward_writes import batch_signer
from .identity import ClusterIdentity, UrlSigner
from .snapshots import SnapshotWorker
from .recovery import former_id, move_damaged_aside, restore_node, warn_if_left_behind
from .service import NodeService
from .startup import (DEFAULT_JOIN_TIMEOUT_SECONDS, StartupError, join_any, join_targets, listen_error,
                      load_auth_file, load_tls, parse_join_urls, validate_settings)

__all__ = ["Settings", "DkvsNode"]

log = logging.getLogger("dkvs")

LEAVE_RETRY_SECONDS = 0.05


@dataclass
class Settings:
    """Everything a node is configured with (the CLI fills it from flags and env)."""

    host: str = "127.0.0.1"
    port: int = 7070
    node_id: str | None = None
    join: str | None = None
    data_dir: str | None = None
    advertise_url: str | None = None
    heartbeat_interval: float = 0.1
    election_timeout: float = 1.0
    limits: Limits = field(default_factory=Limits)
    cluster_secret: str | None = None
    fsync: str = "batch"
    fsync_interval: float = 0.1
    snapshot_threshold: int = DEFAULT_SNAPSHOT_THRESHOLD_BYTES
    cors_origins: tuple[str, ...] = ()  # off: same-origin only (the dashboard is served by the node)
    fault_injection: bool = False
    join_timeout: float = DEFAULT_JOIN_TIMEOUT_SECONDS
    nkvd: bool = False  # the /nkvd routes change state on GET: off unless asked for
    insecure: bool = False  # allow listening beyond loopback without a cluster secret
    auth_file: str | None = None  # client tokens (--auth-file); None: no client authentication
    max_connections: int = 1024
    request_timeout: float = 10.0
    idle_timeout: float = 60.0
    tls_cert: str | None = None  # with tls_key: HTTPS only, peers called over HTTPS
    tls_key: str | None = None
    tls_ca: str | None = None  # verifies peers (and client certificates); peers present their cert
    tls_client_auth: str = "none"  # none | optional | required
    learner: bool = False  # --learner: join as a non-voting replica that is never promoted
    replication_window: int = 2  # --replication-window: batches in flight per slave (dkvs.core.progress)
    lease_reads: bool = False  # --lease-reads: consistent reads from a leader lease (dkvs.core.read_lease)
    fast_lane: bool = True  # --fast-lane: plain key requests without a worker hand-over (dkvs.api.fast_lane)
    rebuild: bool = False  # a damaged data dir: move it aside, rejoin as a new member (dkvs.runtime.recovery)


class DkvsNode:
    """One running node. ``start()`` returns once it serves; ``stop()`` tears it down."""

    def __init__(self, settings: Settings) -> None:
        validate_settings(settings)
        if not isinstance(settings.lease_reads, bool):
            raise StartupError(f"--lease-reads {settings.lease_reads!r} must be true or false")
        if not isinstance(settings.fast_lane, bool):
            raise StartupError(f"--fast-lane {settings.fast_lane!r} must be on or off")
        self.settings = settings
        self.signer: Signer = UrlSigner(settings.cluster_secret)
        self.rejoin = FreshRejoin(self)  # a fresh node at its old cluster's address rejoins it
        self._former_id: str | None = None  # the id of a data dir rebuilt with --rebuild
        self.auth = load_auth_file(settings.auth_file)
        self.tls_context, peer_tls = load_tls(settings)
        if self.tls_context is not None:
            set_peer_context(peer_tls)
        try:
            self.storage = self._open_storage()
        except DataDirLocked as exc:
            raise StartupError(str(exc)) from None
        self.server = None
        self.host: NodeHost | None = None
        self.transport: HttpTransport | None = None
        self.url = ""
        self.node_id = ""

    def _open_storage(self):
        s = self.settings
        if not s.data_dir:
            return MemoryStorage()
        return FileStorage(s.data_dir, fsync=s.fsync, fsync_interval_seconds=s.fsync_interval)

    def start(self) -> DkvsNode:
        from ..api.server import make_server

        s = self.settings
        try:
            recovered = self.storage.load()
        except CorruptStorage as exc:  # the message names the file and the way out
            self.storage.close()
            if not s.rebuild:
                raise StartupError(f"{exc} (--rebuild with --join does that, keeping the files aside)") from None
            recovered = self._rebuild(exc)
        if s.node_id and recovered.node_id and s.node_id != recovered.node_id:
            self.storage.close()
            raise StartupError(f"--id {s.node_id} does not match the id {recovered.node_id} stored in {s.data_dir}")
        self.node_id = s.node_id or recovered.node_id or secrets.token_hex(4)
        if recovered.node_id != self.node_id:
            self.storage.save_node_id(self.node_id)
        self.signer.bind(self.node_id)
        has_state = recovered.epoch > 0 or recovered.entries or recovered.snapshot is not None
        self.identity = ClusterIdentity(self.storage, self.signer, recovered.cluster_id, fresh=not has_state,
                                        on_foreign=self.rejoin.notice)
        self.rejoin.armed = not has_state and not s.join and s.port != 0
        service = NodeService(s.limits, self.signer, SnapshotAssembler(directory=s.data_dir or None))
        self.service = service
        service.identity = self.identity
        try:
            self.server = make_server(service, s.host, s.port, cors_origins=s.cors_origins,
                                      max_connections=s.max_connections,
                                      request_timeout_seconds=s.request_timeout,
                                      idle_timeout_seconds=s.idle_timeout,
                                      tls_context=self.tls_context, fast_lane=s.fast_lane)
        except OSError as exc:
            self.storage.close()
            raise listen_error(s.host, s.port, exc) from None
        self.server.route_table = route_table(nkvd=s.nkvd)
        self.server.auth = self.auth
        self.server.forwarder.sign_batch = batch_signer(service)  # batched forwarding (issue 15)
        self.server.cors = CorsPolicy(s.cors_origins, member_urls=self._member_urls)
        self.url = s.advertise_url or self.server.url
        self.signer.url = self.url
        config, tick_seconds = CoreConfig.from_seconds(s.heartbeat_interval, s.election_timeout,
                                                       max_inflight_batches=s.replication_window,
                                                       lease_reads=s.lease_reads)
        rng = random.Random(secrets.randbits(64))
        initial = []
        if has_state or s.join:  # a restart, or a new member: a slave until a master reaches it
            node, state = restore_node(self.node_id, self.storage, config, rng, recovered)
            if self.identity.cluster_id is None and list(node.members) == [self.node_id] and not s.join:
                self.identity.create()  # a single node older than cluster ids: its own cluster
        else:  # a new cluster of one
            node, initial = Node.bootstrap(self.node_id, self.url, config, rng)
            state = KVState()
            self.identity.create()
        node.own_url = self.url  # a master restarted at a new address corrects its row
        # A request to a peer is given up after one election timeout: the driver's in-flight
        # table waits exactly that long before it lets the core's resend through.
        self.transport = HttpTransport(self.signer, node_id=self.node_id, fault_injection=s.fault_injection,
                                       request_timeout=max(s.election_timeout, 2 * s.heartbeat_interval),
                                       loop=self.server.connections.watched)
        driver = NodeDriver(node, state, snapshot_threshold_bytes=s.snapshot_threshold,
                            log_bytes=self.storage.log_bytes(), inflight_window=config.max_inflight_batches)
        self.host = NodeHost(driver, self.storage, self.transport, tick_seconds, work_factory=SnapshotWorker)
        service.attach(self.host, self.url)
        self.server.connections.batcher = self.host  # one burst per poll of the selector
        self.host.start(initial)
        self.server.start()
        if not self.signer.enabled:
            log.warning("no cluster secret (--cluster-secret-file): internal routes (/internal/*) are unauthenticated")
        if not self.auth.enabled:
            log.warning("no --auth-file: clients need no token; whoever reaches this port reads and writes every key")
        peers = [url for member, url in node.members.items() if member != self.node_id]
        # A data dir with state but no cluster id joins only a cluster it shares a member with.
        known = peers if has_state and self.identity.cluster_id is None else None
        if s.join:
            try:
                urls = join_targets(self._join_urls(), self.url, peers)
                answer = join_any(urls, self.node_id, self.url, self.signer, s.join_timeout, known,
                                  learner=s.learner)
                self._adopt_from(answer)
                warn_if_left_behind(self._former_id, answer)
                self._wait_for_master(5 * s.election_timeout)
            except BaseException:
                self.stop()
                raise
        elif has_state and peers:
            self._rejoin_in_background(peers, known)
        return self

    def _rebuild(self, damage: CorruptStorage):
        """``--rebuild``: keep the damaged files aside, start empty, rejoin as a new member
        id (why a new id: :mod:`dkvs.runtime.recovery`)."""
        try:
            self.storage = self._open_storage()  # holds the data dir's lock while files move
        except DataDirLocked as exc:
            raise StartupError(str(exc)) from None
        aside = move_damaged_aside(self.settings.data_dir)
        self._former_id = former_id(aside)
        log.warning("rebuilding from the cluster as a new member: the data dir is damaged (%s); its files "
                    "are kept in %s", str(damage).split(". ")[0], aside)
        return self.storage.load()

    def _join_urls(self) -> list[str]:
        """--join's URLs; with TLS, a scheme-less host:port means https://."""
        urls = parse_join_urls(self.settings.join)
        if self.tls_context is None:
            return urls
        return ["https://" + url[len("http://"):] if url.startswith("http://") else url for url in urls]

    def _rejoin_in_background(self, peers: list[str], known: list[str] | None) -> None:
        """A restart without ``--join``: take our place back through the members we knew.

        A node stopped with SIGTERM left the member list, so no master sends to it any
        more; asking a former peer to (re)add it is idempotent for a node that is still a
        member. In the background and never fatal: when the whole cluster restarts, the
        members elect a master among themselves and the join simply finds one later."""
        def run() -> None:
            try:
                self._adopt_from(join_any(peers, self.node_id, self.url, self.signer, self.settings.join_timeout,
                                          known, learner=self.settings.learner))
            except StartupError as exc:
                log.warning("could not rejoin through the members in the data dir: %s", exc)
        threading.Thread(target=run, name="dkvs-rejoin", daemon=True).start()

    def _adopt_from(self, answer: dict) -> None:
        """The join answer names the cluster: a data dir without an id takes it."""
        theirs = answer.get("cluster_id") if isinstance(answer, dict) else None
        if isinstance(theirs, str) and theirs:
            self.identity.adopt(theirs, "the join answer")

    def _member_urls(self) -> list[str]:
        """For CORS: the dashboard of any member may poll this node's /status."""
        return self.host.query(lambda node: list(node.members.values()), timeout=0.5)

    def _wait_for_master(self, timeout: float) -> None:
        """After a join, serve only once the master has reached us: the join commits on a
        majority that need not include this node, and a node that does not know its
        master yet would answer writes with 503."""
        deadline = time.monotonic() + timeout
        while self.host.node.master_id is None and time.monotonic() < deadline:
            time.sleep(0.01)

    @property
    def running(self) -> bool:
        """Serving, or restarting to rejoin its cluster (:mod:`dkvs.runtime.fresh_rejoin`)."""
        return self.rejoin.restarting or (self.host is not None and self.host.running)

    def reload_auth(self) -> bool:
        """Re-read ``--auth-file`` (SIGHUP); a bad file keeps the tokens in force."""
        return self.auth.reload()

    def leave(self, timeout: float = 3.0) -> None:
        """Tell the cluster this node leaves for good (SIGTERM), so it stops counting it.

        A master first hands leadership to its most up-to-date slave (dkvs.core.transfer):
        no failover timeout, and no acknowledged acks=1 write is rolled back. Then it
        leaves as a slave does."""
        if self.host is None:
            return
        node = self.host.node
        if len(node.members) <= 1 or node.id not in node.members:
            return
        if node.role == MASTER:
            self._hand_over(timeout)
        master_url = node.members.get(node.master_id) if node.master_id else None
        if master_url is None:
            log.warning("no master known; leaving without removing this node from the member list")
            return
        self.server.service.leaving = True  # the master calls back to confirm
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, answer = post_internal(master_url, "leave", {"id": node.id}, self.signer, timeout=timeout,
                                               to=node.master_id)
            except OSError as exc:
                log.warning("could not tell the master this node leaves: %s", exc)
                return
            # 503: a master elected a moment ago takes membership changes once its first
            # entry is committed (after a handover, that is now).
            if status != 503 or time.monotonic() + LEAVE_RETRY_SECONDS > deadline:
                break
            time.sleep(LEAVE_RETRY_SECONDS)
        if status != 200:
            log.warning("the master did not confirm the leave: %s", answer.get("message", answer))

    def _hand_over(self, timeout: float) -> None:
        """SIGTERM on a master: transfer leadership before leaving (a failure is logged;
        the node then stops anyway and the others fail over as after a crash)."""
        try:
            answer = transfer_leader(self.server.service, None, None)  # deadline: one election timeout
            log.info("leadership handed over to %s (epoch=%s) before stopping", answer["to"], answer["epoch"])
        except DkvsError as exc:
            log.warning("could not hand leadership over before stopping (%s); the others will fail over",
                        exc.message)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.host is not None:
            self.host.stop()
        if self.transport is not None:
            self.transport.close()
        if getattr(self, "service", None) is not None:
            self.service.assembler.reset()  # a half-received snapshot's temp file goes
            self.service.close_backups()  # and backups being served: their temp files too
        self.storage.close()
