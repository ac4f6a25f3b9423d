"""Timing and batching knobs of the core, in ticks and counts (the core has no clock).

The host turns seconds into ticks: with the defaults a tick is a fifth of the heartbeat
interval, so the CLI's ``--heartbeat-interval 0.1 --election-timeout 1.0`` become
``HEARTBEAT_TICKS = 5`` and ``ELECTION_TICKS = 50``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CoreConfig", "LEASE_DRIFT_PERCENT", "LEASE_GRANULARITY_TICKS"]

TICKS_PER_HEARTBEAT = 5
# Lease reads (:mod:`dkvs.core.read_lease`): how much faster one node's clock may run than
# another's over one election timeout, in percent of ``min_election_ticks``, and the ticks
# lost to counting time in whole ticks at both ends (a send and a check each happen
# somewhere inside their tick). Both are taken off the lease, never added.
LEASE_DRIFT_PERCENT = 10
LEASE_GRANULARITY_TICKS = 2


@dataclass(frozen=True)
class CoreConfig:
    """Protocol tunables.

    ``election_ticks`` is the base election timeout T: a slave waits a random time in
    [T/2, 3T/2) (DESIGN §3, ±50%) before it campaigns, refuses votes while it heard a
    master within T/2, and a master steps down when it has not heard a majority for T.
    """

    heartbeat_ticks: int = TICKS_PER_HEARTBEAT
    election_ticks: int = 50
    max_batch_entries: int = 1024
    max_batch_bytes: int = 1 << 20
    append_timeout_ticks: int = 0  # 0 = derive: 2 heartbeats
    snapshot_timeout_ticks: int = 0  # 0 = derive: 10 T
    # Replication batches in flight per slave (pipelining, :mod:`dkvs.core.progress`). The
    # host must let as many through per peer (the driver's ``inflight_window``).
    max_inflight_batches: int = 1
    # Lease-based consistent reads (``--lease-reads``, :mod:`dkvs.core.read_lease`). Off: every
    # consistent read costs a read-index round. On, on *every* node: voters also hold their
    # votes after a restart, which is what makes the master's lease safe.
    lease_reads: bool = False

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1 or self.election_ticks < 2 * self.heartbeat_ticks:
            raise ValueError("need heartbeat_ticks >= 1 and election_ticks >= 2 * heartbeat_ticks")
        if self.max_inflight_batches < 1:
            raise ValueError("need max_inflight_batches >= 1")

    @property
    def min_election_ticks(self) -> int:
        return max(1, self.election_ticks // 2)

    @property
    def lease_margin_ticks(self) -> int:
        """Ticks taken off a lease: tick granularity plus the clock-drift allowance."""
        drift = -(-self.min_election_ticks * LEASE_DRIFT_PERCENT // 100)  # rounded up
        return LEASE_GRANULARITY_TICKS + drift

    @property
    def lease_ticks(self) -> int:
        """How long after a send a majority acknowledged the master may answer reads alone:
        ``min_election_ticks - lease_margin_ticks`` (0 or less: never; the read index serves)."""
        return self.min_election_ticks - self.lease_margin_ticks

    @property
    def append_timeout(self) -> int:
        """Ticks before an unanswered batch counts as lost. Well below T/2 (the shortest
        election timeout): a slave hears nothing while its batch is outstanding, so a lost
        batch must be resent (doubling as a heartbeat) before the slave gives up on us."""
        return self.append_timeout_ticks or 2 * self.heartbeat_ticks

    @property
    def snapshot_timeout(self) -> int:
        return self.snapshot_timeout_ticks or 10 * self.election_ticks

    @classmethod
    def from_seconds(cls, heartbeat_interval: float, election_timeout: float, **extra) -> tuple[CoreConfig, float]:
        """Config for the given timings and the tick length in seconds to drive it with."""
        tick_seconds = heartbeat_interval / TICKS_PER_HEARTBEAT
        election_ticks = max(2 * TICKS_PER_HEARTBEAT, round(election_timeout / tick_seconds))
        return cls(TICKS_PER_HEARTBEAT, election_ticks, **extra), tick_seconds
