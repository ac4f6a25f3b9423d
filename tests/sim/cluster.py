"""A whole dkvs cluster in one thread: real drivers, real executors, a simulated network.

Each :class:`SimNode` holds what a production process holds: a :class:`~dkvs.driver.NodeDriver`
(which owns the :class:`~dkvs.core.node.Node` and its :class:`~dkvs.core.kvstate.KVState`),
the production :class:`~dkvs.runtime.executor.Executor` that carries out its ready batches, a
transport whose peer table drops messages to unknown peers exactly as the HTTP transport
does, a snapshot worker whose builds finish some ticks later, and a storage. Messages travel
as requests and responses (:class:`Request`, :class:`Response`), the answers to a request
coming back in its response as over HTTP, each request numbered by the driver's in-flight
table; a lost request or response may be noticed by the requester (``send_failed``). Client
requests are answered through :mod:`dkvs.runtime.answers`, the function that builds the
production HTTP answer, and every answer is checked against what the node really applied.
The storage The storage is a :class:`~dkvs.storage.memory.MemoryStorage` that survives
:meth:`SimCluster.crash` (it plays the disk); :meth:`SimCluster.restart` rebuilds the node
from it with :func:`~dkvs.runtime.recovery.restore_node`, exactly as the runtime does.

With ``wire=True`` every message is encoded and decoded by :mod:`dkvs.transport.codec` on
its way, as over HTTP; otherwise nodes receive the (frozen) message objects themselves.

Time is logical. :meth:`SimCluster.tick` is one global tick: every message due is delivered
(one *step* each), then every live node ticks (one *step* for the round). A node's clock may
run a little fast or slow (``skew``): it ticks ``rate`` times per global tick on average.
Masters are flushed after every input, as the runtime does after each burst. After every
step the :class:`~tests.sim.invariants.Invariants` are checked; any failure, including an
assertion inside the core, is raised as :class:`SimFailure` naming the seed and the tick.

The cluster forms the way a real one did before learners: the first node bootstraps, every
other one joins as a voter when the master's ``member_add`` entry for it commits (one at a
time); scenarios add learners with :meth:`SimCluster.join_learner`.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import replace

from dkvs.core.config import CoreConfig
from dkvs.core.kvstate import KVState
from dkvs.core.messages import Snapshot
from dkvs.core.node import MASTER, Node
from dkvs.driver import NodeDriver
from dkvs.errors import DkvsError
from dkvs.runtime.answers import write_answer
from dkvs.runtime.executor import Executor
from dkvs.runtime.recovery import restore_node
from dkvs.transport import codec

from .invariants import Invariants, SimFailure
from .network import UNREACHABLE, SimNetwork
from .convergence import Convergence
from .node_io import Request, Response, SimFeed, SimTransport, SimWork, Token
from .sim_node import ClientOp, SimDisk, SimNode

__all__ = ["SimCluster", "SimNode", "ClientOp", "SimFailure", "SimDisk"]

PUT, DELETE, READ = "put", "delete", "read"
MAX_IN_FLIGHT = 20_000  # more messages than this in the network is a storm: fail, don't hang


def _requester_of(frm: str, to: str, message) -> tuple[str, str]:
    """Who learns of a lost message: replies travel in HTTP responses, so losing one fails
    the request of the node it was addressed to."""
    if isinstance(message, Response):
        return to, frm
    return frm, to


class SimCluster(Convergence):
    """``n`` nodes named ``n1``..``nN``; ``n1`` bootstraps and the others join through it."""

    def __init__(self, n: int = 3, seed: int = 0, *, config: CoreConfig | None = None,
                 skew: float = 0.0, min_delay: int = 1, max_delay: int = 2,
                 drop_rate: float = 0.0, dup_rate: float = 0.0, notice_rate: float = 0.0,
                 write_timeout: int | None = None, join_ticks: int = 2000, wire: bool = False,
                 snapshot_threshold_bytes: int | None = None, build_ticks: tuple[int, int] = (1, 8)) -> None:
        self.seed = seed
        self.wire = wire  # deliver through the production codec (bytes) instead of shared objects
        self.rng = random.Random(f"cluster-{seed}")
        self.config = config or CoreConfig()
        self.skew = skew
        self.net = SimNetwork(seed, min_delay=min_delay, max_delay=max_delay, requester_of=_requester_of)
        self.now = 0
        self.nodes: dict[str, SimNode] = {}
        self.ops: dict[int, ClientOp] = {}
        self.write_timeout = write_timeout or 4 * self.config.election_ticks
        self.inv = Invariants(self.where)
        self.net.on_send = self._check_sent
        self.extra_checks: list[Callable[[SimCluster], None]] = []  # scenario-specific, every step
        self._next_request = 0
        self._events = 0  # client invokes and completions, numbered in the order they happen
        self._join_ticks = join_ticks
        if snapshot_threshold_bytes is None:  # drawn per seed: background compaction or none
            snapshot_threshold_bytes = random.Random(f"snapshots-{seed}").choice((1 << 40, 1 << 40, 400, 3000))
        self.snapshot_threshold_bytes = snapshot_threshold_bytes  # the driver's compaction rule
        self.build_ticks = build_ticks  # a background snapshot build takes this many ticks
        self.bootstrap("n1")
        for i in range(2, n + 1):
            self.join(f"n{i}")
        self.net.set_faults(drop_rate=drop_rate, dup_rate=dup_rate, notice_rate=notice_rate)

    def where(self) -> str:
        return f"seed {self.seed}, tick {self.now}"

    # -- membership ----------------------------------------------------------------------------
    def _new_sim(self, node_id: str) -> SimNode:
        rate = 1.0 + (self.rng.uniform(-self.skew, self.skew) if self.skew else 0.0)
        sim = SimNode(node_id, SimDisk(node_id, self.inv), rate)
        sim.storage.save_node_id(node_id)
        self.nodes[node_id] = sim
        return sim

    def _wire(self, sim: SimNode, node: Node, state: KVState) -> None:
        nid = sim.id
        sim.driver = NodeDriver(node, state, snapshot_threshold_bytes=self.snapshot_threshold_bytes,
                                log_bytes=sim.storage.log_bytes())
        sim.transport = SimTransport(nid, self.net)
        sim.work = SimWork(self, sim)
        sim.feed = SimFeed()
        sim.runner = Executor(sim.driver, sim.storage, sim.transport, sim.work, sim.feed,
                              complete=lambda reply: self._on_reply(nid, reply))

    def _node_rng(self, node_id: str, life: int) -> random.Random:
        return random.Random(f"node-{self.seed}-{node_id}-{life}")

    def bootstrap(self, node_id: str) -> SimNode:
        sim = self._new_sim(node_id)
        node, effects = Node.bootstrap(node_id, sim.url, self.config, self._node_rng(node_id, 0))
        self._wire(sim, node, KVState())
        self._guarded(lambda: sim.driver.bootstrap(effects))
        self._guarded(lambda: sim.runner.run(sim.driver.ready()))
        return sim

    def add_node(self, node_id: str) -> SimNode:
        """Start an empty process for ``node_id`` (not a member until its entry is appended)."""
        sim = self._new_sim(node_id)
        node, state = restore_node(node_id, sim.storage, self.config, self._node_rng(node_id, 0))
        self._wire(sim, node, state)
        return sim

    def join(self, node_id: str, max_ticks: int | None = None, kind: str = "member_add") -> SimNode:
        """Add a node: the master proposes ``kind`` (default ``member_add``: a voter at once;
        see :meth:`join_learner`) with ``acks=majority`` and the change is done when that
        entry commits. Retries (new proposal) until acknowledged or ``max_ticks`` pass."""
        sim = self.nodes.get(node_id) or self.add_node(node_id)
        deadline = self.now + (max_ticks or self._join_ticks)
        while self.now < deadline:
            op = self.propose(kind, node_id, sim.url, acks="majority")
            self.run_until(lambda: op.done or not self.is_pending(op), deadline - self.now)
            if op.ok:
                return sim
            self.run(self.config.heartbeat_ticks)
        raise SimFailure(f"{self.where()}: {node_id} could not join within {max_ticks or self._join_ticks} ticks")

    def join_learner(self, node_id: str, stay: bool = False, max_ticks: int | None = None) -> SimNode:
        """Join as the runtime does: a learner (``learner_add``, promoted by the master once
        caught up), or with ``stay`` one for good (``replica_add``, ``--learner``)."""
        return self.join(node_id, max_ticks, "replica_add" if stay else "learner_add")

    def member_ids(self) -> list[str]:
        return list(self.nodes)

    # -- faults --------------------------------------------------------------------------------
    def crash(self, node_id: str) -> None:
        """The process dies: its node and state vanish, its disk stays."""
        sim = self.nodes[node_id]
        assert sim.alive, f"{node_id} is already down"
        if not sim.runner.backlog:  # what a failed persist left in memory is lost here
            self._guarded(lambda: self.inv.check_disk(sim))
        sim.driver = sim.runner = sim.transport = sim.work = sim.feed = None
        sim.paused_until = 0

    def restart(self, node_id: str) -> None:
        """A new process on the same disk, rebuilt by ``restore_node``."""
        sim = self.nodes[node_id]
        assert not sim.alive, f"{node_id} is running"
        sim.restarts += 1
        node, state = restore_node(node_id, sim.storage, self.config, self._node_rng(node_id, sim.restarts))
        self._wire(sim, node, state)
        self.inv.on_restart(node_id)
        self.check()

    def partition(self, *groups) -> None:
        self.net.partition(*groups)

    def isolate(self, *node_ids: str) -> None:
        self.net.isolate(node_ids, self.nodes)

    def cut(self, frm: str, to: str) -> None:
        self.net.cut(frm, to)

    def heal(self) -> None:
        """Every link up, no more drops or duplicates (delays stay)."""
        self.net.heal()
        self.net.set_faults(drop_rate=0.0, dup_rate=0.0)

    def pause(self, node_id: str, ticks: int) -> None:
        """A scheduling pause of one process (GC, swap, a starved thread): for ``ticks``
        global ticks it handles no message and its clock does not advance; what arrives
        meanwhile waits, as in a socket buffer, and the lost time is caught up at once
        afterwards, as the runtime does."""
        self.nodes[node_id].paused_until = self.now + ticks

    def compact(self, node_id: str) -> bool:
        """Snapshot ``node_id``'s state at its commit point and compact its log at once, the
        way a finished background build does. Returns whether the log was compacted."""
        sim = self.nodes[node_id]
        node = sim.node
        before = node.log.snapshot_seq
        seq, epoch, members, data = sim.driver.snapshot_view()
        if seq <= before or seq > node.commit_seq:
            return False
        self._input(sim, lambda: sim.work.finish_build(seq, epoch, members, data))
        return node.log.snapshot_seq > before

    # -- clients -------------------------------------------------------------------------------
    def masters(self) -> list[SimNode]:
        return [s for s in self.nodes.values() if s.alive and s.node.role == MASTER]

    def master(self) -> SimNode | None:
        """The live master with the highest epoch (a deposed one may not know it yet)."""
        found = self.masters()
        return max(found, key=lambda s: s.node.epoch) if found else None

    def propose(self, kind: str, key: str, value: str | None = None, acks: str = "1",
                via: str | None = None, timeout: int | None = None, cond: int | None = None) -> ClientOp:
        """Send a write to ``via`` (default: the current master). With no master the
        request fails at once with ``no_master``, as a node without one answers 503."""
        timeout = timeout if timeout is not None else self.write_timeout
        return self._request(ClientOp(0, kind, key, value, acks, None, self.now, cond=cond), via,
                             lambda driver, rid: driver.propose(rid, kind, key, value, acks, timeout, cond))

    def put(self, key: str, value: str, acks: str = "1", via: str | None = None,
            timeout: int | None = None, cond: int | None = None) -> ClientOp:
        """A put; with ``cond`` a compare-and-set (applies only if the key's seq is ``cond``)."""
        return self.propose(PUT, key, value, acks, via, timeout, cond)

    def delete(self, key: str, acks: str = "1", via: str | None = None, timeout: int | None = None) -> ClientOp:
        return self.propose(DELETE, key, None, acks, via, timeout)

    def read(self, key: str, via: str | None = None, timeout: int | None = None) -> ClientOp:
        """A consistent read (read index on the master); once the barrier is answered the
        value is the master's state as of its commit point (``KVState.get_committed``)."""
        timeout = timeout if timeout is not None else self.write_timeout
        return self._request(ClientOp(0, READ, key, None, "", None, self.now), via,
                             lambda driver, rid: driver.read(rid, timeout))

    def _request(self, op: ClientOp, via: str | None, call: Callable) -> ClientOp:
        """Number ``op``, record its invoke and hand it to its node; with nowhere to send
        it, fail it at once (``no_master``)."""
        target = self.nodes[via] if via is not None else self.master()
        self._next_request += 1
        op.request_id, op.node = self._next_request, target.id if target else None
        self.ops[op.request_id] = op
        self._events += 1
        op.invoke_order = self._events
        if target is None or not target.alive:
            self._events += 1
            op.completed, op.complete_order, op.error = self.now, self._events, "no_master"
            return op
        self._input(target, lambda: call(target.driver, op.request_id))
        return op

    def is_pending(self, op: ClientOp) -> bool:
        """Can ``op`` still be answered (its node has not crashed since)?"""
        return not op.done and op.node is not None and self.nodes[op.node].alive

    def _on_reply(self, node_id: str, reply) -> None:
        op = self.ops[reply.request_id]
        op.completed, op.result, op.error, op.rejected = self.now, reply.result, reply.error, reply.rejected
        self._events += 1
        op.complete_order = self._events
        if op.kind == READ and reply.error is None:  # what dkvs.runtime.service answers for ?consistent=true
            op.read_value = self.nodes[node_id].state.get_committed(op.key)
        if op.kind in (PUT, DELETE):
            self._answer(self.nodes[node_id], op, reply)
        self.inv.on_reply(node_id, op)

    def _answer(self, sim: SimNode, op: ClientOp, reply) -> None:
        """What the service layer tells the client, checked against what was applied: a
        404 or 409 only for the request's own entry that changed nothing, a 200 never for
        one that did not apply."""
        try:
            op.answer = write_answer(op.kind, op.key, reply, op.acks, 1.0, op.cond)
            op.status = 200
        except DkvsError as exc:
            op.status, op.answer = exc.status, exc.to_json()
        if op.status not in (200, 404, 409):
            return
        entry = (op.result["epoch"], op.result["seq"])
        skipped = entry in sim.feed.skipped
        if op.status == 200 and (op.kind == DELETE or op.cond is not None) and skipped:
            raise SimFailure(f"{self.where()}: {op.kind} {op.key!r} answered 200 but its entry {entry} "
                             f"changed nothing on {sim.id}")
        if op.status in (404, 409) and not skipped:
            raise SimFailure(f"{self.where()}: {op.kind} {op.key!r} answered {op.status} but its entry "
                             f"{entry} was applied on {sim.id} (a stale verdict)")
        if op.status == 409 and op.cond is None:
            raise SimFailure(f"{self.where()}: unconditional put {op.key!r} answered 409")

    # -- time ----------------------------------------------------------------------------------
    def _guarded(self, action: Callable[[], None]) -> None:
        """Run ``action``; anything raised (a core assertion too) surfaces with the seed."""
        try:
            action()
        except SimFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised with the seed attached
            raise SimFailure(f"{self.where()}: {type(exc).__name__}: {exc}\n{self.describe()}") from exc

    def _input(self, sim: SimNode, call: Callable[[], None]) -> None:
        """Feed one input to ``sim``'s driver, execute its ready batch, check invariants."""
        def act():
            call()
            sim.runner.run(sim.driver.ready())
        self._guarded(act)
        self.check()

    def _deliver(self, frm: str, to: str, payload, duplicate: bool = False) -> None:
        sim = self.nodes.get(to)
        if sim is not None and sim.alive and sim.paused_until > self.now:
            self.net.defer(frm, to, payload, sim.paused_until, duplicate)  # waits in the socket buffer
            return
        if isinstance(payload, tuple) and payload and payload[0] is UNREACHABLE:
            lost = payload[1]  # ``to``'s request to ``frm`` (or its response) was lost
            if sim is not None and sim.alive:
                self._input(sim, lambda: self._lost(sim, frm, lost))
            return
        if sim is None or not sim.alive:
            if not duplicate:  # a refused connection, reported like any failed request
                self.net.refused(frm, to, payload)
            return
        if isinstance(payload, Response):
            self._input(sim, lambda: sim.work.answered(frm, payload.send_id, payload.messages))
            return
        message = self._over_the_wire(payload.message)
        token = Token()
        self._input(sim, lambda: sim.driver.step(message, token))
        self.net.send(to, frm, Response(payload.send_id, tuple(token.messages)))

    def _check_sent(self, frm: str, to: str, payload) -> None:
        """Persist before send: every message leaving a node must be backed by its disk."""
        sim = self.nodes.get(frm)
        if sim is None or not isinstance(payload, (Request, Response)):
            return
        for message in (payload.message,) if isinstance(payload, Request) else payload.messages:
            self.inv.on_send(sim, to, message)

    def _lost(self, sim: SimNode, peer: str, lost) -> None:
        send_id = lost.send_id
        sim.work.failed(peer, send_id)

    def _over_the_wire(self, message):
        if self.wire:  # what the HTTP transport does: bytes in between
            if isinstance(message, Snapshot):
                return codec.decode_snapshot(b"".join(codec.encode_snapshot_chunks(message)))
            return codec.decode(codec.encode(message))
        if isinstance(message, Snapshot):  # the receiver gets its own copy of the data
            return replace(message, data=copy.deepcopy(message.data))
        return message

    def tick(self) -> None:
        """One global tick: deliver what is due (a step each), then tick every live node."""
        self.now += 1
        net = self.net
        net.now = self.now
        if net.in_flight() > MAX_IN_FLIGHT:
            raise SimFailure(f"{self.where()}: message storm, {net.in_flight()} messages in flight\n{self.describe()}")
        for frm, to, message, duplicate in net.due():
            self._deliver(frm, to, message, duplicate)

        def tick_round():
            for sim in self.nodes.values():
                if sim.node is None:
                    continue
                sim.acc += sim.rate
                if sim.paused_until > self.now:
                    continue  # paused: the ticks pile up and are caught up afterwards
                while sim.acc >= 1.0:
                    sim.acc -= 1.0
                    sim.driver.tick()
                    sim.runner.run(sim.driver.ready())
                sim.work.tick()
        self._guarded(tick_round)
        self.check()

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()

    def run_until(self, predicate: Callable[[], bool], max_ticks: int) -> int:
        """Tick until ``predicate()`` holds; returns the ticks it took (``max_ticks`` + 1 if never)."""
        for used in range(max_ticks + 1):
            if predicate():
                return used
            self.tick()
        return max_ticks + 1

    def check(self) -> None:
        self.inv.check([s for s in self.nodes.values() if s.node is not None])
        for extra in self.extra_checks:
            extra(self)

    def describe(self) -> str:
        """One line per node, for failure messages."""
        return "\n".join(f"  {sim!r}" for sim in self.nodes.values())
