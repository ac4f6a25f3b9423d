"""A whole dkvs cluster in one thread: real cores, real effect runners, a simulated network.

Each :class:`SimNode` holds what a production process holds: a :class:`~dkvs.core.node.Node`,
its :class:`~dkvs.core.kvstate.KVState`, an :class:`~dkvs.runtime.runner.EffectRunner` and a
storage. The storage is a :class:`~dkvs.storage.memory.MemoryStorage` that survives
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

The cluster forms the way a real one does: the first node bootstraps, every other one joins
when the master's ``member_add`` entry for it commits (one at a time).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from dkvs.core.config import CoreConfig
from dkvs.core.kvstate import KVState
from dkvs.core.messages import AppendReply, Snapshot, VoteReply
from dkvs.core.node import MASTER, SLAVE, Node
from dkvs.runtime.recovery import restore_node
from dkvs.runtime.runner import EffectRunner
from dkvs.storage.base import StoredSnapshot
from dkvs.storage.memory import MemoryStorage
from dkvs.transport import codec

from .invariants import Invariants, SimFailure
from .network import UNREACHABLE, SimNetwork

__all__ = ["SimCluster", "SimNode", "ClientOp", "SimFailure", "SimDisk"]

PUT, DELETE, READ = "put", "delete", "read"
MAX_IN_FLIGHT = 20_000  # more messages than this in the network is a storm: fail, don't hang


def _requester_of(frm: str, to: str, message) -> tuple[str, str]:
    """Who learns of a lost message: replies travel in HTTP responses, so losing one fails
    the request of the node it was addressed to."""
    if isinstance(message, (AppendReply, VoteReply)):
        return to, frm
    return frm, to


class SimDisk(MemoryStorage):
    """Memory storage that reports what is written to it (and survives crashes)."""

    def __init__(self, node_id: str, invariants: Invariants) -> None:
        super().__init__()
        self._id = node_id
        self._inv = invariants
        self.rollbacks: list[list] = []

    def append(self, entries) -> None:
        self._inv.on_persist(self._id, entries)
        super().append(entries)

    def save_rollback(self, entries) -> str:
        self.rollbacks.append(list(entries))
        self._inv.on_rollback(self._id, entries)
        return f"rollback #{len(self.rollbacks)} of {self._id}"


@dataclass
class ClientOp:
    """One client request and, once answered, its outcome."""

    request_id: int
    kind: str  # put, delete, read, member_add, member_remove
    key: str
    value: str | None
    acks: str
    node: str | None  # where it was proposed (None: no master to send it to)
    invoked: int
    completed: int | None = None
    result: dict | None = None
    error: str | None = None
    read_value: tuple | None = None  # reads: (value, seq) found on the master, or None
    cond: int | None = None  # compare-and-set: the key's expected seq (0: absent)
    invoke_order: int = 0  # position in the run's total order of client events
    complete_order: int = 0

    @property
    def done(self) -> bool:
        return self.completed is not None

    @property
    def ok(self) -> bool:
        return self.done and self.error is None


class SimNode:
    """One member's process: node, state and runner (gone while crashed) and its disk."""

    def __init__(self, node_id: str, disk: SimDisk, rate: float) -> None:
        self.id = node_id
        self.url = f"http://{node_id}.sim:7070"
        self.storage = disk
        self.rate = rate
        self.acc = 0.0
        self.node: Node | None = None
        self.state: KVState | None = None
        self.runner: EffectRunner | None = None
        self.restarts = 0

    @property
    def alive(self) -> bool:
        return self.node is not None

    def __repr__(self) -> str:
        if self.node is None:
            return f"<{self.id} crashed>"
        n = self.node
        return (f"<{self.id} {n.role} epoch={n.epoch} last=({n.log.last_epoch},{n.log.last_seq}) "
                f"commit={n.commit_seq} master={n.master_id} voted={n.voted_for} members={','.join(n.members)}>")


class SimCluster:
    """``n`` nodes named ``n1``..``nN``; ``n1`` bootstraps and the others join through it."""

    def __init__(self, n: int = 3, seed: int = 0, *, config: CoreConfig | None = None,
                 skew: float = 0.0, min_delay: int = 1, max_delay: int = 2,
                 drop_rate: float = 0.0, dup_rate: float = 0.0, notice_rate: float = 0.0,
                 write_timeout: int | None = None, join_ticks: int = 2000, wire: bool = False) -> None:
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
        self.extra_checks: list[Callable[[SimCluster], None]] = []  # scenario-specific, every step
        self._next_request = 0
        self._events = 0  # client invokes and completions, numbered in the order they happen
        self._join_ticks = join_ticks
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
        sim.node, sim.state = node, state
        nid = sim.id
        sim.runner = EffectRunner(
            lambda: sim.node, sim.storage, state,
            send=lambda to, msg: self.net.send(nid, to, msg),
            send_snapshot=lambda to, msg: self.net.send_snapshot(nid, to, msg),
            reply=lambda rid, result, error: self._on_reply(nid, rid, result, error))

    def _node_rng(self, node_id: str, life: int) -> random.Random:
        return random.Random(f"node-{self.seed}-{node_id}-{life}")

    def bootstrap(self, node_id: str) -> SimNode:
        sim = self._new_sim(node_id)
        node, effects = Node.bootstrap(node_id, sim.url, self.config, self._node_rng(node_id, 0))
        self._wire(sim, node, KVState())
        self._guarded(lambda: sim.runner.run(effects))
        return sim

    def add_node(self, node_id: str) -> SimNode:
        """Start an empty process for ``node_id`` (not a member until its entry is appended)."""
        sim = self._new_sim(node_id)
        node, state = restore_node(node_id, sim.storage, self.config, self._node_rng(node_id, 0))
        self._wire(sim, node, state)
        return sim

    def join(self, node_id: str, max_ticks: int | None = None) -> SimNode:
        """Add a node the way the runtime does: the master proposes ``member_add`` with
        ``acks=majority`` and the change is done when that entry commits. Retries (new
        proposal) until it is acknowledged or ``max_ticks`` pass."""
        sim = self.nodes.get(node_id) or self.add_node(node_id)
        deadline = self.now + (max_ticks or self._join_ticks)
        while self.now < deadline:
            op = self.propose("member_add", node_id, sim.url, acks="majority")
            self.run_until(lambda: op.done or not self.is_pending(op), deadline - self.now)
            if op.ok:
                return sim
            self.run(self.config.heartbeat_ticks)
        raise SimFailure(f"{self.where()}: {node_id} could not join within {max_ticks or self._join_ticks} ticks")

    def member_ids(self) -> list[str]:
        return list(self.nodes)

    # -- faults --------------------------------------------------------------------------------
    def crash(self, node_id: str) -> None:
        """The process dies: its node and state vanish, its disk stays."""
        sim = self.nodes[node_id]
        assert sim.alive, f"{node_id} is already down"
        self._guarded(lambda: self.inv.check_disk(sim))
        sim.node = sim.state = sim.runner = None

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

    def compact(self, node_id: str) -> bool:
        """Snapshot ``node_id``'s state at its commit point and compact its log, the way the
        runtime does when the log grows. Returns whether a snapshot was taken."""
        sim = self.nodes[node_id]
        node = sim.node
        seq, items = sim.state.snapshot_items()
        if seq <= node.log.snapshot_seq or seq > node.commit_seq:
            return False
        sim.storage.save_snapshot(StoredSnapshot(seq, node.log.epoch_at(seq),
                                                 tuple(node.members_at(seq).items()), items))
        node.compact(seq)
        self.check()
        return True

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
                             lambda node, rid: node.propose(rid, kind, key, value, acks, timeout, cond=cond))

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
                             lambda node, rid: node.propose_read(rid, timeout))

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
        self._input(target, lambda: call(target.node, op.request_id))
        return op

    def is_pending(self, op: ClientOp) -> bool:
        """Can ``op`` still be answered (its node has not crashed since)?"""
        return not op.done and op.node is not None and self.nodes[op.node].alive

    def _on_reply(self, node_id: str, rid: int, result, error) -> None:
        op = self.ops[rid]
        op.completed, op.result, op.error = self.now, result, error
        self._events += 1
        op.complete_order = self._events
        if op.kind == READ and error is None:  # what dkvs.runtime.service answers for ?consistent=true
            op.read_value = self.nodes[node_id].state.get_committed(op.key)
        self.inv.on_reply(node_id, op)

    # -- time ----------------------------------------------------------------------------------
    def _guarded(self, action: Callable[[], None]) -> None:
        """Run ``action``; anything raised (a core assertion too) surfaces with the seed."""
        try:
            action()
        except SimFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised with the seed attached
            raise SimFailure(f"{self.where()}: {type(exc).__name__}: {exc}\n{self.describe()}") from exc

    def _input(self, sim: SimNode, call: Callable[[], list]) -> None:
        """Feed one input to ``sim``, carry out its effects, flush a master, check invariants."""
        def act():
            sim.runner.run(call())
            if sim.node.role == MASTER:
                sim.runner.run(sim.node.flush())
        self._guarded(act)
        self.check()

    def _deliver(self, frm: str, to: str, message, duplicate: bool = False) -> None:
        sim = self.nodes.get(to)
        if message is UNREACHABLE:  # ``to``'s request to ``frm`` failed
            if sim is not None and sim.alive:
                self._input(sim, lambda: sim.node.unreachable(frm))
            return
        if sim is None or not sim.alive:
            if not duplicate:  # a refused connection, reported like any failed request
                self.net.refused(frm, to, message)
            return
        if self.wire:  # what the HTTP transport does: bytes in between
            if isinstance(message, Snapshot):
                message = codec.decode_snapshot(b"".join(codec.encode_snapshot_chunks(message)))
            else:
                message = codec.decode(codec.encode(message))
        elif isinstance(message, Snapshot):  # the receiver gets its own copy of the data
            message = replace(message, data=copy.deepcopy(message.data))
        self._input(sim, lambda: sim.node.step(message))

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
                while sim.acc >= 1.0:
                    sim.acc -= 1.0
                    sim.runner.run(sim.node.tick())
                    if sim.node.role == MASTER:
                        sim.runner.run(sim.node.flush())
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

    # -- convergence ---------------------------------------------------------------------------
    def members(self) -> list[SimNode]:
        """The nodes the (highest-epoch) master counts as members; all nodes if none."""
        master = self.master()
        if master is None:
            return list(self.nodes.values())
        return [self.nodes[m] for m in master.node.members if m in self.nodes]

    def converged(self) -> bool:
        """One master every member follows; every log complete, committed and equal in length."""
        masters = self.masters()
        if len(masters) != 1:
            return False
        m = masters[0].node
        for s in self.members():
            if not s.alive:
                return False
            n = s.node
            if n.epoch != m.epoch or n.master_id != m.id or n.log.last_seq != m.log.last_seq \
                    or n.commit_seq != m.log.last_seq:
                return False
            if n is not m and n.role != SLAVE:
                return False
        return True

    def settle(self, max_ticks: int | None = None, keep_down=()) -> int:
        """Heal the network, restart crashed nodes (but ``keep_down``), run until the cluster
        has stayed converged for a whole election timeout (a master about to step down
        does not count), then check everything. Returns the ticks it took."""
        self.heal()
        for sim in self.nodes.values():
            if not sim.alive and sim.id not in keep_down:
                self.restart(sim.id)
        limit = max_ticks or 40 * self.config.election_ticks
        stable_since = [None]

        def stable() -> bool:
            if not self.converged():
                stable_since[0] = None
                return False
            if stable_since[0] is None:
                stable_since[0] = self.now
            return self.now - stable_since[0] >= self.config.election_ticks

        used = self.run_until(stable, limit)
        if used > limit:
            raise SimFailure(f"{self.where()}: no convergence within {limit} ticks after healing\n{self.describe()}")
        self.check_converged()
        return used

    def check_converged(self) -> None:
        """Same log, members and data on every member; the final invariants hold."""
        sims = self.members()
        ref = self.master()
        for s in sims:
            if s is ref:
                continue
            a, b = s.node.log, ref.node.log
            lo = max(a.snapshot_seq, b.snapshot_seq)
            if a.entries[lo - a.snapshot_seq:] != b.entries[lo - b.snapshot_seq:]:
                raise SimFailure(f"{self.where()}: {s.id}'s log differs from master {ref.id}'s")
            if s.state.data != ref.state.data:
                diff = sorted(set(s.state.data.items()) ^ set(ref.state.data.items()))[:6]
                raise SimFailure(f"{self.where()}: {s.id}'s data differs from master {ref.id}'s: {diff}")
            if s.node.members != ref.node.members:
                raise SimFailure(f"{self.where()}: {s.id} has members {sorted(s.node.members)}, "
                                 f"master {ref.id} has {sorted(ref.node.members)}")
        self.inv.check_final(sims, self.config)

    def describe(self) -> str:
        """One line per node, for failure messages."""
        return "\n".join(f"  {sim!r}" for sim in self.nodes.values())
