"""Convergence of a simulated cluster: heal, restart, run until stable, compare everything.

A mixin of :class:`~tests.sim.cluster.SimCluster` (it uses the cluster's nodes, clock and
invariants): after the faults of a run, :meth:`Convergence.settle` brings every node back
and proves the cluster agrees on one master, one log, one member list and one state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dkvs.core.node import SLAVE

from .invariants import SimFailure

if TYPE_CHECKING:
    from .sim_node import SimNode

__all__ = ["Convergence"]


class Convergence:
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
            if s.node.members != ref.node.members or s.node.learners != ref.node.learners:
                raise SimFailure(f"{self.where()}: {s.id} has members {sorted(s.node.members)} "
                                 f"(learners {sorted(s.node.learners)}), master {ref.id} has "
                                 f"{sorted(ref.node.members)} (learners {sorted(ref.node.learners)})")
        self.inv.check_final(sims, self.config)
