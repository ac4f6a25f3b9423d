"""One place that narrates the cluster: notes for the operator, derived from the node.

After every input the driver compares what an operator cares about — role, epoch, known
master, members, and on a master whether a majority is still heard — with what it was
before, and turns each change into one :class:`~dkvs.driver.ready.Note` carrying the node
id and ``epoch=N``. The *reason* comes from the input that caused it: a timer (heartbeat
timeout, check-quorum), a message (a higher epoch seen), or the node's own campaign.
Deriving notes from observed state, rather than sprinkling log calls through the core,
keeps the core pure and makes every transition narrated exactly once.
"""

from __future__ import annotations

from ..core.election import CANDIDATE, MASTER, SLAVE
from ..core.quorum import majority
from .ready import INFO, WARNING, Note

__all__ = ["Narrator", "note", "quorum_view", "reachable_members", "TICK", "MESSAGE", "CALL"]

TICK, MESSAGE, CALL = "tick", "message", "call"


class Narrator:
    def __init__(self, node) -> None:
        self._seen = self._observe(node)
        self._quorum_ok = True
        self._alive: dict[str, bool] = {}  # on a master: which peers were heard lately
        self.heard: dict[str, int] = {}  # peer id -> node.now of its last message (any role)

    @staticmethod
    def _observe(node) -> tuple:
        return (node.role, node.epoch, node.master_id, dict(node.members), node.pre_voting,
                node.elections_started, node.transfer_target, node.transfer_campaigns, dict(node.learners))

    def _unchanged(self, node) -> bool:
        """``self._observe(node) == self._seen``, field by field (runs twice per burst)."""
        role, epoch, master, members, pre, started, transfer, handed, learners = self._seen
        return (node.role == role and node.epoch == epoch and node.master_id == master
                and node.pre_voting == pre and node.elections_started == started
                and node.transfer_target == transfer and node.transfer_campaigns == handed
                and node.members == members and node.learners == learners)

    def after(self, node, cause: str, sender: str | None, notes: list[Note]) -> None:
        """Compare ``node`` with the last observation; append a note per change."""
        if cause == MESSAGE and sender in node.members:  # members only: bounded
            self.heard[sender] = node.now
        if self._unchanged(node):  # the common case, decided without copying two dicts
            if node.role == MASTER and cause == TICK:
                self._watch_quorum(node, notes)
            return
        seen = self._observe(node)
        role0, epoch0, master0, members0, pre0, started0, transfer0, handed0, learners0 = self._seen
        role, epoch, master, members, pre, started, transfer, handed, learners = seen
        self._seen = seen
        say = _Sayer(node, notes)
        self._narrate_transfer(node, say, transfer0, transfer, role, epoch > epoch0, handed > handed0)
        if started > started0 and handed == handed0:
            say(INFO, "election_started", f"election started for epoch={epoch} (pre-vote won; rank last_epoch="
                f"{node.log.last_epoch} last_seq={node.log.last_seq})", last_seq=node.log.last_seq)
        elif role == CANDIDATE and pre and not (role0 == CANDIDATE and pre0):
            reason = "heartbeat timeout" if cause == TICK else f"after {cause}"
            say(INFO, "pre_vote", f"no master heard ({reason}); asking for pre-votes", reason=reason)
        if role == MASTER and role0 != MASTER:
            self._quorum_ok, self._alive = True, {}
            say(INFO, "elected", f"elected master (epoch={epoch}, {len(members)} members)", members=len(members))
        elif role0 == MASTER and role != MASTER:
            if epoch > epoch0:
                reason = f"higher epoch seen from {sender}" if sender else "higher epoch seen"
            elif node.id not in members:
                reason = "removed from the cluster"
            else:
                reason = "check-quorum lost: no majority heard within the election timeout"
            say(WARNING, "stepped_down", f"stepped down as master ({reason})", reason=reason)
        elif role0 == CANDIDATE and role == SLAVE and epoch == epoch0 and master is None:
            say(INFO, "election_lost", "election not won (a fresher node is campaigning, or no majority answered)")
        if master != master0 and master is not None and master != node.id:
            say(INFO, "following", f"following master {master} at {members.get(master, '?')}", master=master)
        elif epoch > epoch0 and role != MASTER and started == started0:
            who = f" from {sender}" if sender else ""
            say(INFO, "epoch", f"adopted epoch={epoch} (was {epoch0}){who}", previous=epoch0)
        for member_id in sorted(members.keys() - members0.keys()):
            kind = learners.get(member_id, "voter")
            say(INFO, "member_added", f"member {member_id} added as {kind} ({members[member_id]})",
                member=member_id, url=members[member_id], voter=kind == "voter")
        for member_id in sorted(learners0.keys() & members.keys() - learners.keys()):
            say(INFO, "member_promoted", f"learner {member_id} promoted to voter "
                f"({len(members) - len(learners)} voters)", member=member_id)
        for member_id in sorted(members0.keys() - members.keys()):
            say(INFO, "member_removed", f"member {member_id} removed", member=member_id)

    @staticmethod
    def _narrate_transfer(node, say, target0, target, role, newer_epoch: bool, campaigning: bool) -> None:
        """Leadership transfer (kind ``leadership_transfer``): started and ended on the
        master, and the target's immediate campaign."""
        kind = "leadership_transfer"
        if target is not None and target0 is None:
            say(INFO, kind, f"handing leadership over to {target}; new writes wait until it ends",
                phase="started", to=target)
        elif target0 is not None and target is None:
            if role == MASTER:
                say(WARNING, kind, f"leadership transfer to {target0} abandoned (not done by its deadline); "
                    "taking writes again", phase="abandoned", to=target0)
            elif newer_epoch:
                say(INFO, kind, f"handed leadership over to {target0}", phase="done", to=target0)
            else:
                say(WARNING, kind, f"leadership transfer to {target0} ended: this node stopped being master",
                    phase="failed", to=target0)
        if campaigning:
            say(INFO, kind, f"{node.handed_over_by} handed leadership over: campaigning for epoch={node.epoch} "
                "at once (no pre-vote)", phase="campaign", handed_over_by=node.handed_over_by)

    def _watch_quorum(self, node, notes: list[Note]) -> None:
        """On a master: note each member that goes silent for an election timeout or comes
        back, and when the majority of live members is lost or regained."""
        window = node.config.election_ticks
        say = _Sayer(node, notes)
        alive = {peer: node.now - p.last_heard_tick < window for peer, p in node.progress.items()}
        for peer, up in sorted(alive.items()):
            if up != self._alive.get(peer, True):
                url = node.members.get(peer, "?")
                if up:
                    say(INFO, "member_up", f"member {peer} ({url}) answers again", member=peer)
                else:
                    say(WARNING, "member_down", f"member {peer} ({url}) silent for an election timeout",
                        member=peer)
        self._alive = alive
        voters = node.voters()  # learners count in no quorum
        heard = 1 + sum(up for peer, up in alive.items() if peer not in node.learners)
        ok = heard >= majority(len(voters))
        if ok != self._quorum_ok:
            self._quorum_ok = ok
            if ok:
                say(INFO, "quorum_regained", f"quorum regained: {heard} of {len(voters)} voters heard",
                    heard=heard, members=len(voters))
            else:
                say(WARNING, "quorum_lost", f"quorum lost: {heard} of {len(voters)} voters heard, "
                    f"{majority(len(voters))} needed; acks=majority writes wait",
                    heard=heard, members=len(voters), needed=majority(len(voters)))


def reachable_members(node, heard: dict[str, int] | None = None) -> set[str]:
    """The members this node can tell are alive (itself included; read on its thread).

    A master: the slaves heard within the election timeout (its check-quorum rule). A
    slave that hears its master: the members that master last reported alive. Any other
    node: the peers it heard from (votes, vote refusals, heartbeats) within the election
    timeout — ``heard`` as kept by :class:`Narrator` — since the last master's report is
    stale once that master is not heard.
    """
    window = node.config.election_ticks
    alive = {node.id}
    if node.role == MASTER:
        alive |= {peer for peer, p in node.progress.items() if node.now - p.last_heard_tick < window}
    elif (node.master_id is not None and node.last_master_contact is not None
          and node.now - node.last_master_contact < window):
        alive |= {v.id for v in node.view if v.alive} | {node.master_id}
    else:
        alive |= {peer for peer, tick in (heard or {}).items() if node.now - tick < window}
    return alive & set(node.members) | {node.id}


def quorum_view(node, heard: dict[str, int] | None = None) -> dict:
    """Whether a majority is reachable, as this node can tell, and what to tell a client
    that finds no master: ``reason`` tells an election that can succeed (a majority is
    reachable, or the node has just started and heard no one yet) from a lost majority,
    which no retry will cure by itself. Only voters count (``members`` is the number of
    voters): a learner, reachable or not, changes no majority."""
    voters = set(node.voters())
    members = len(voters)
    reachable = len(reachable_members(node, heard) & voters)
    reachable = min(reachable, members) if members else reachable
    needed = majority(members) if members else 1
    view = {"ok": reachable >= needed, "reachable": reachable, "members": members, "needed": needed}
    # Slaves do not hear each other while a master lives: for two election timeouts after
    # the master went silent (time for every survivor's pre-vote round to be heard) a
    # short count means "not heard yet", not "gone" — an election, not a lost majority.
    window = 2 * node.config.election_ticks
    recent_master = node.last_master_contact is not None and node.now - node.last_master_contact < window
    if view["ok"] or node.now < node.config.election_ticks or recent_master:
        view["reason"] = "election in progress"
    else:
        view["reason"] = f"no majority: {reachable} of {members} members reachable, {needed} needed"
    return view


class _Sayer:
    def __init__(self, node, notes: list[Note]) -> None:
        self._id, self._epoch = node.id, node.epoch
        self._notes = notes

    def __call__(self, level: str, kind: str, text: str, **details) -> None:
        self._notes.append(note(level, kind, self._id, self._epoch, text, **details))


def note(level: str, kind: str, node_id: str, epoch: int, text: str, **details) -> Note:
    """A :class:`Note` whose text starts with the node id and ``epoch=N``."""
    return Note(level, kind, f"node {node_id} epoch={epoch}: {text}", node_id, epoch, details)
