"""The master's lease clock: when each lease expires, counted in ticks, never wall time.

Only the master decides expiry. It keeps a deadline per lease (``now + ttl`` in ticks),
renews it on keepalive, and when one passes it proposes a revoke entry; every replica
deletes the lease's keys when it applies that entry (:mod:`dkvs.core.leases`). Nothing here
is replicated: a node that becomes master starts every lease over with its full ttl (as
etcd does), so a failover can make a lease live longer, never expire early. A keepalive is
answered only by the master, from this table, without a log entry.

``ticks_per_second`` converts a ttl (milliseconds, as the log carries it) into ticks; the
host sets it from its tick length. Ticks lost while the node thread was stalled only make
leases last longer.
"""

from __future__ import annotations

import math

__all__ = ["LeaseClock", "DEFAULT_TICKS_PER_SECOND"]

DEFAULT_TICKS_PER_SECOND = 100.0  # the host's default tick (a fifth of a 50 ms heartbeat)


class LeaseClock:
    def __init__(self, ticks_per_second: float = DEFAULT_TICKS_PER_SECOND) -> None:
        self.ticks_per_second = ticks_per_second
        self.deadlines: dict[int, int] = {}  # lease id -> tick at which it expires
        self.revoking: dict[int, int] = {}  # internal request id -> lease id being revoked

    def ticks(self, ttl_ms: int) -> int:
        """``ttl_ms`` in ticks, rounded up, plus one: a lease starts between two ticks, and the
        next may come at once, so a whole ttl has passed only after one tick more."""
        return math.ceil(ttl_ms * self.ticks_per_second / 1000) + 1

    def became_master(self, now: int, leases: dict[int, int]) -> None:
        """Every lease gets a fresh full ttl from now."""
        self.deadlines = {lease_id: now + self.ticks(ttl) for lease_id, ttl in leases.items()}
        self.revoking.clear()

    def stepped_down(self) -> None:
        self.deadlines.clear()
        self.revoking.clear()

    def granted(self, now: int, lease_id: int, ttl_ms: int) -> None:
        self.deadlines.setdefault(lease_id, now + self.ticks(ttl_ms))

    def revoked(self, lease_id: int) -> None:
        self.deadlines.pop(lease_id, None)

    def keepalive(self, now: int, lease_id: int, ttl_ms: int) -> bool:
        """Renew ``lease_id``; False when it is already being revoked (too late)."""
        if lease_id in self.revoking.values() or lease_id not in self.deadlines:
            return False
        self.deadlines[lease_id] = now + self.ticks(ttl_ms)
        return True

    def remaining_ms(self, now: int, lease_id: int) -> int | None:
        deadline = self.deadlines.get(lease_id)
        if deadline is None:
            return None
        return max(0, math.floor((deadline - now) * 1000 / self.ticks_per_second))

    def expired(self, now: int) -> list[int]:
        """Leases past their deadline that no revoke is under way for."""
        busy = set(self.revoking.values())
        return [lease_id for lease_id, deadline in self.deadlines.items() if deadline <= now and lease_id not in busy]
