"""A distributed lock on a lease and a compare-and-set, with a fencing token (issue 14).

``Lock(client, "locks/job7", ttl=10)``: :meth:`Lock.acquire` grants a lease and puts the
lock key with ``if_seq=0`` (only if absent) and that lease; whoever's put applies first
holds the lock. The others long-poll the key until it is deleted (released, or expired with
its holder's lease) and try again. While held, a thread renews the lease every ``ttl / 3``.

Guarantees and limits (read before relying on it):

* **At most one holder at a time, as the cluster sees it**: the key exists at most once,
  and only a put with ``if_seq=0`` creates it, decided at apply time in log order.
* **The fencing token is the seq of the lock key's write.** Seqs only grow, so each new
  holder's token is larger than every earlier holder's. A holder that stalls (GC pause, a
  partition) longer than ``ttl`` loses the lock *without knowing it* until its next
  keepalive fails; a second holder may then be working. No lock service can prevent that;
  the protection is that every resource the lock guards must reject a token lower than
  the highest it has seen (Kleppmann's fencing). ``Lock.token`` is what to send.
* The lease expires by the master's clock; a failover restarts it with a full ttl, so a
  crashed holder's lock frees after ``ttl`` (up to ``2 × ttl`` across a failover).
* ``lost`` becomes True when a keepalive finds the lease gone; stop working at once.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import quote

from ..errors import Conflict, DkvsError, NotFound
from .client import Client, _Call

__all__ = ["Lock", "LockTimeout"]


class LockTimeout(DkvsError):
    """The lock was not acquired within the asked timeout."""

    status = 0
    code = "lock_timeout"


class Lock:
    def __init__(self, client: Client, name: str, ttl: float = 10.0, owner: str = "") -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds; got {ttl!r}")
        self.client, self.name, self.ttl, self.owner = client, name, float(ttl), owner
        self.lease: int | None = None
        self.token: int | None = None  # the fencing token while held
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, timeout: float | None = None) -> int:
        """Block until held (or LockTimeout); returns the fencing token."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.lease, self.lost = self.client.grant_lease(self.ttl), False
        try:
            while True:
                try:
                    written = self.client.put(self.name, self.owner, if_seq=0, lease=self.lease)
                except Conflict as exc:
                    self._wait_released(exc.current_seq or 0, deadline)
                    continue
                except NotFound:  # our lease expired while we waited: take a new one
                    self.lease = self.client.grant_lease(self.ttl)
                    continue
                self.token = written.seq
                break
        except BaseException:
            self._revoke()
            raise
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name=f"dkvs-lock-{self.name}", daemon=True)
        self._renewer.start()
        return self.token

    def release(self) -> None:
        """Give the lock up: revoking the lease deletes the key (the next waiter wakes)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        self._revoke()
        self.token = None

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _revoke(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            try:
                self.client.revoke_lease(lease)
            except NotFound:
                pass  # already expired: the key is gone too

    def _wait_released(self, seq: int, deadline: float | None) -> None:
        """Long-poll the lock key until it changes after ``seq`` (or the deadline)."""
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise LockTimeout(f"lock {self.name!r} not acquired in time")
            wait = max(0.05, min(30.0, left) if left is not None else 30.0)
            target = f"/kv/{quote(self.name, safe='')}?wait={wait:g}&after_seq={seq}"
            answer = self.client._perform(_Call("GET", target, server_wait_seconds=wait, key=self.name))
            if answer.get("changed"):
                if answer.get("value") is None and answer.get("value_base64") is None:
                    return  # deleted: released, or expired with its holder's lease
                seq = answer["seq"]

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            lease = self.lease
            if lease is None:
                return
            try:
                self.client.keepalive(lease)
            except NotFound:
                self.lost = True
                return
            except DkvsError:
                continue  # unreachable for now: try again; the lease outlives a short outage
