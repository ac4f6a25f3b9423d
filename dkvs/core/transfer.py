"""Leadership transfer: the master hands over to a chosen, fully up-to-date slave.

Modelled on Raft §3.10 (etcd's ``MsgTransferLeader`` / ``MsgTimeoutNow``). Rules:

* The master picks the target: the one asked for, or the most up-to-date live slave
  (highest replicated seq, then the highest id, as in the bully rank). While a transfer
  runs it takes **no new writes** (``transfer_in_progress``; the HTTP layer answers 503 with
  ``Retry-After``), so the target can catch up with a log that no longer grows.
* Once the target holds every entry of the master's log *and* that log is committed, the
  master sends it :class:`~dkvs.core.messages.TimeoutNow` (again every heartbeat until the
  transfer ends, in case one is lost). Waiting for the commit means every write the master
  acknowledged with ``acks=majority`` is answered before it steps down; and since nothing
  was appended after, no ``acks=1`` write can be rolled back by the handover.
* The target, on a ``TimeoutNow`` from *its own master of its current epoch*, campaigns at
  once for ``epoch + 1`` without a pre-vote, flagging its vote requests ``transfer``.
* A voter normally ignores vote requests while it hears a live master (stickiness, the
  guard against disruptive candidates). It grants a ``transfer`` request all the same,
  and so does the handing-over master itself (it adopts the new epoch and steps down).
  Why that is safe: stickiness and pre-vote only protect *liveness* (a flapping node cannot
  depose a healthy master); *safety* rests on one persisted vote per epoch and the
  up-to-date check, which ``transfer`` requests still pass through unchanged. At most one
  master per epoch and "a committed entry is in every later master's log" both hold. The
  only cost of a stray ``transfer`` request is a needless election, exactly as with a
  timeout.
* With lease reads on, the master gives up its read lease for the rest of its epoch before
  the first ``TimeoutNow`` leaves: the target's ``transfer`` requests pass the voters' vote
  hold that the lease rests on (:mod:`dkvs.core.read_lease`).
* The transfer ends when the master sees a newer epoch (it steps down: success), or at its
  deadline in ticks (default one election timeout): it then resumes taking writes, still
  master of its epoch — the target may have crashed or been cut off.
"""

from __future__ import annotations

from .effects import Effect, Reply, Send
from .messages import TimeoutNow

__all__ = ["TransferMixin", "TRANSFER_IN_PROGRESS", "TRANSFER_TIMEOUT", "NO_TRANSFER_TARGET"]

TRANSFER_IN_PROGRESS = "transfer_in_progress"
TRANSFER_TIMEOUT = "transfer_timeout"
NO_TRANSFER_TARGET = "no_transfer_target"
_MASTER, _CANDIDATE = "master", "candidate"


class TransferMixin:
    """Leadership transfer of :class:`dkvs.core.node.Node` (both ends)."""

    def _init_transfer_state(self) -> None:
        self.transfer_target: str | None = None  # on the master: whom it is handing over to
        self.transfer_deadline = 0
        self.transfer_request: int | None = None
        self.transfer_sent = False
        self.transfer_campaigns = 0  # on the target: elections started because of a TimeoutNow
        self.handed_over_by: str | None = None

    # -- the master's side ---------------------------------------------------------------------
    def transfer_leadership(self, request_id: int | None, to: str | None = None,
                            timeout_ticks: int | None = None) -> list[Effect]:
        """Start handing leadership to ``to`` (None: the most up-to-date live slave).

        Answered (``Reply(request_id)``) when this master steps down for a newer epoch
        (``{"from", "to", "epoch"}``), or with ``transfer_timeout`` at the deadline, or at once
        with ``not_master``, ``transfer_in_progress`` or ``no_transfer_target``.
        """
        if self.role != _MASTER:
            return [Reply(request_id, error="not_master")]
        if self.transfer_target is not None:
            return [Reply(request_id, {"to": self.transfer_target}, error=TRANSFER_IN_PROGRESS)]
        target = to if to is not None else self.transfer_candidate()
        if target is None or target == self.id or target not in self.progress or target in self.learners:
            return [Reply(request_id, {"to": target}, error=NO_TRANSFER_TARGET)]
        self.end_read_lease_for_epoch()  # before any TimeoutNow leaves (dkvs.core.read_lease)
        self.transfer_target = target
        self.transfer_deadline = self.now + (timeout_ticks or self.config.election_ticks)
        self.transfer_request = request_id
        self.transfer_sent = False
        out: list[Effect] = []
        if not self._maybe_send_timeout_now(out):
            self._send_append(target, self.progress[target], out)
        return out

    def transfer_candidate(self) -> str | None:
        """The most up-to-date slave heard within the election timeout (rank: replicated
        seq, then id), or None when no slave is alive."""
        window = self.config.election_ticks
        alive = [(p.match_seq, peer) for peer, p in self.progress.items()
                 if self.now - p.last_heard_tick < window and peer not in self.learners]
        return max(alive)[1] if alive else None

    def _maybe_send_timeout_now(self, out: list[Effect]) -> bool:
        """Send TimeoutNow once the target holds the whole (committed) log."""
        target = self.transfer_target
        if target is None or self.transfer_sent:
            return False
        p = self.progress.get(target)
        if p is None or p.match_seq < self.log.last_seq or self.commit_seq < self.log.last_seq:
            return False
        self.transfer_sent = True
        out.append(Send(target, TimeoutNow(self.epoch, self.id)))
        return True

    def _tick_transfer(self, out: list[Effect], heartbeat: bool) -> None:
        if self.transfer_target is None:
            return
        if self.now >= self.transfer_deadline:
            self._end_transfer(out, error=TRANSFER_TIMEOUT)
            return
        if heartbeat:  # a lost TimeoutNow is sent again
            self.transfer_sent = False
            self._maybe_send_timeout_now(out)

    def _end_transfer(self, out: list[Effect], error: str | None = None) -> None:
        """The transfer is over: stepped down (``error`` None) or abandoned."""
        if self.transfer_target is None:
            return
        result = {"from": self.id, "to": self.transfer_target, "epoch": self.epoch}
        if self.transfer_request is not None:
            out.append(Reply(self.transfer_request, result, error=error))
        self.transfer_target, self.transfer_request, self.transfer_sent = None, None, False

    # -- the target's side ---------------------------------------------------------------------
    def handle_timeout_now(self, msg: TimeoutNow, out: list[Effect]) -> None:
        """Campaign at once, skipping pre-vote: our own master asked us to take over."""
        if self.role == _MASTER or self.id not in self.members or msg.sender != self.master_id:
            return
        self.handed_over_by = msg.sender
        self.transfer_campaigns += 1
        self.role = _CANDIDATE
        self._start_election(out, transfer=True)
