"""The verdict on a lock run: fencing tokens, as the protected resource saw them (pure).

A lease lock cannot stop two processes from *believing* they hold it at once: a holder
paused longer than the ttl wakes up still believing, while the lease has expired and
someone else holds the lock. What makes the lock safe is fencing: every write to the
protected resource carries the holder's token (the seq of its lock key's write), and the
resource refuses a token lower than the highest it has accepted. The chaos lock workload
(:mod:`.lockload`) keeps the resource in a dkvs key written by compare-and-set, and this
module checks, from the holders' records:

1. **Tokens are unique**: no two acquisitions got the same token (two holders of one
   lock instance would be a broken lock, fencing or not).
2. **Accepted tokens never go back**: in the resource's own order (the seq of each
   accepted write), every accepted token is at least every token accepted before it, so
   a stale holder never wrote after a newer one.
3. **The resource kept the newest token**: its final value carries a token at least as
   high as the highest accepted one.

Overlapping *beliefs* (two holders' ``[acquired, released]`` intervals intersect) are
counted, not failed: they are the situation fencing exists for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FencedWrite", "Holder", "check_lock", "token_of"]


@dataclass
class FencedWrite:
    """One attempt to write the resource: ``outcome`` is ``accepted`` (with the write's
    ``seq``), ``rejected`` (the resource held ``seen_token`` > ours), or ``unknown``."""

    outcome: str
    time_ns: int
    seq: int | None = None
    seen_token: int | None = None


@dataclass
class Holder:
    """One successful acquisition and what its holder did until it released."""

    client: int
    token: int
    acquire_invoke_ns: int
    acquired_ns: int
    released_ns: int | None = None
    lost: bool = False  # a keepalive found the lease gone while held
    paused: int = 0  # simulated pauses (longer than the ttl) while holding
    writes: list[FencedWrite] = field(default_factory=list)


def token_of(value: str | None) -> int:
    """The token at the front of a resource value ``"TOKEN:client:n"``; 0 when absent."""
    if not value:
        return 0
    head = value.split(":", 1)[0]
    return int(head) if head.isdigit() else 0


def _overlapping_beliefs(holders: Sequence[Holder], end_ns: int) -> int:
    spans = sorted((h.acquired_ns, h.released_ns or end_ns) for h in holders)
    count, latest_end = 0, None
    for start, end in spans:
        if latest_end is not None and start < latest_end:
            count += 1
        latest_end = end if latest_end is None else max(latest_end, end)
    return count


def check_lock(holders: Sequence[Holder], final_value: str | None, end_ns: int, failed_acquires: int = 0,
               final_known: bool = True) -> dict:
    """The figures and the violations (empty when the lock held up) of one lock run;
    ``final_value`` is the resource's value read at the end (``final_known`` False: the
    final read did not succeed, so rule 3 is not judged)."""
    violations = []
    for token, count in Counter(h.token for h in holders).items():
        if count > 1:
            clients = sorted(h.client for h in holders if h.token == token)
            violations.append(f"token {token} was given to {count} acquisitions (clients {clients})")
    accepted = sorted((w.seq, h.token, h.client) for h in holders for w in h.writes
                      if w.outcome == "accepted" and w.seq is not None)
    highest = (0, None)
    for seq, token, client in accepted:
        if token < highest[0]:
            violations.append(f"client {client}'s token {token} was accepted at seq {seq}, after token "
                              f"{highest[0]} of client {highest[1]}")
        elif token > highest[0]:
            highest = (token, client)
    if accepted and final_known and token_of(final_value) < highest[0]:
        violations.append(f"the resource ended with token {token_of(final_value)}, below the accepted {highest[0]}")
    writes = [w for h in holders for w in h.writes]
    return {
        "acquisitions": len(holders),
        "failed_acquisitions": failed_acquires,
        "distinct_tokens": len({h.token for h in holders}),
        "accepted_writes": len(accepted),
        "rejected_stale_writes": sum(w.outcome == "rejected" for w in writes),
        "unknown_writes": sum(w.outcome == "unknown" for w in writes),
        "overlapping_beliefs": _overlapping_beliefs(holders, end_ns),
        "lost_leases_noticed": sum(h.lost for h in holders),
        "holder_pauses": sum(h.paused for h in holders),
        "highest_token": highest[0],
        "final_token": token_of(final_value),
        "violations": violations,
    }
