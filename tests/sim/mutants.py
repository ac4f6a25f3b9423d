"""The catalogue of protocol mutants the simulator and the core tests must kill.

Each mutant deletes or weakens exactly one safety rule of ``dkvs/core`` or of the node
around it (the driver ``dkvs/driver`` and its executor), as one textual patch of one file: every ``(old, new)`` pair must occur *exactly once* in the pristine file,
so a refactoring that moves the rule makes ``scripts/mutation_test.py`` fail loudly instead
of silently testing nothing. ``rule`` says, in one sentence, what the mutant breaks; the
docs table (docs/simulation.md, "Mutation testing") lists which test kills each one.

If a refactoring changes a snippet, update the snippet to break the *same* rule in its new
place; never delete a mutant because it became hard to kill (STYLE habit 12).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Mutant", "MUTANTS", "QUICK"]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root: dkvs/core, dkvs/driver or the executor
    edits: tuple[tuple[str, str], ...]  # (old, new): old occurs exactly once in the file
    rule: str


def _m(name: str, path: str, old: str, new: str, rule: str, *more: tuple[str, str]) -> Mutant:
    return Mutant(name, "dkvs/core/" + path, ((old, new),) + more, rule)


def _node(name: str, path: str, old: str, new: str, rule: str, *more: tuple[str, str]) -> Mutant:
    """A rule of the whole node, outside the core (``path`` from the repository root)."""
    return Mutant(name, path, ((old, new),) + more, rule)


MUTANTS: tuple[Mutant, ...] = (
    # -- commit rules ----------------------------------------------------------------------------
    _m("commit_current_epoch_only", "master.py",
       "if candidate > self.commit_seq and self.log.epoch_at(candidate) == self.epoch:",
       "if candidate > self.commit_seq:",
       "a master counts replicas only for entries of its own epoch (Raft figure 8)"),
    _m("master_commit_monotonic", "master.py",
       "if candidate > self.commit_seq and self.log.epoch_at(candidate) == self.epoch:",
       "if candidate != self.commit_seq and self.log.epoch_at(candidate) == self.epoch:",
       "the master's commit point never moves back (a new member holds nothing yet)"),
    _m("slave_commit_bounded_by_match", "slave.py",
       "self.commit_seq = max(self.commit_seq, min(msg.commit_seq, match))",
       "self.commit_seq = max(self.commit_seq, msg.commit_seq)",
       "a slave commits only entries it verified to match the master's log"),
    _m("slave_commit_monotonic", "slave.py",
       "self.commit_seq = max(self.commit_seq, min(msg.commit_seq, match))",
       "self.commit_seq = min(msg.commit_seq, match)",
       "a late batch with an older commit point never moves a slave's commit back"),
    # -- durability levels -----------------------------------------------------------------------
    _m("acks_majority_waits_for_commit", "master.py",
       "(ACKS_MAJORITY, self.commit_seq)",
       "(ACKS_MAJORITY, self.log.last_seq)",
       "acks=majority is answered only once the write is committed"),
    _m("acks_all_waits_for_live_members", "master.py",
       "return min(min(held), self.commit_seq)",
       "return self.commit_seq",
       "acks=all is answered only once every live member holds the write"),
    _m("abandon_pending_on_step_down", "node.py",
       "        if was_master:\n            self._abandon_pending(out)",
       "        if False:\n            self._abandon_pending(out)",
       "a deposed master fails its pending durable writes instead of answering them later"),
    # -- elections -------------------------------------------------------------------------------
    _m("voter_freshness", "election.py",
       "up_to_date = (msg.last_epoch, msg.last_seq) >= (self.log.last_epoch, self.log.last_seq)",
       "up_to_date = True",
       "a voter grants only a candidate whose log is at least as fresh as its own"),
    _m("one_vote_per_epoch", "election.py",
       "and self.voted_for in (None, msg.sender) and self.role != MASTER)",
       "and self.role != MASTER)",
       "a voter grants at most one candidate per epoch"),
    _m("vote_persisted_before_reply", "election.py",
       "            self.voted_for = msg.sender\n            out.append(PersistState(self.epoch, msg.sender))",
       "            self.voted_for = msg.sender",
       "a vote is on disk before the reply that grants it leaves (persist before send)"),
    _m("candidate_vote_persisted", "election.py",
       "        self.voted_for = self.id\n        self.elections_started += 1\n"
       "        out.append(PersistState(self.epoch, self.id))",
       "        self.voted_for = self.id\n        self.elections_started += 1",
       "a candidate's new epoch and self-vote are on disk before it asks for votes"),
    _m("vote_stickiness", "election.py",
       "        if self.hears_master() and not msg.transfer:\n"
       "            out.append(Send(msg.sender, VoteReply(self.epoch, self.id, False)))\n"
       "            return\n",
       "",
       "a node that still hears a live master refuses real votes (no disruption)"),
    _m("pre_vote_needs_lost_master", "election.py",
       "lost_master = not self.hears_master()",
       "lost_master = True",
       "pre-vote: a node that hears a live master refuses to help depose it"),
    _m("pre_vote_reply_stage", "election.py",
       "if self.role != CANDIDATE or msg.pre_vote != self.pre_voting:",
       "if self.role != CANDIDATE:",
       "a pre-vote grant never counts as a real vote"),
    _m("majority_is_more_than_half", "quorum.py",
       "return member_count // 2 + 1",
       "return (member_count + 1) // 2",
       "a quorum is more than half of the members (two halves cannot both win)"),
    # -- epochs ----------------------------------------------------------------------------------
    _m("epoch_fencing", "node.py",
       "        if message.epoch < self.epoch:\n            if isinstance(message, (Append, Snapshot)):",
       "        if False:\n            if isinstance(message, (Append, Snapshot)):",
       "messages from an older epoch are refused (a deposed master cannot write)"),
    _m("pre_vote_keeps_epoch", "node.py",
       "        if isinstance(message, VoteRequest):\n            return True",
       "        if isinstance(message, VoteRequest) and not message.pre_vote:\n            return True",
       "a pre-vote never changes anyone's epoch (a flapping node cannot depose the master)"),
    _m("check_quorum", "master.py",
       "        return heard < majority(len(voters))",
       "        return False",
       "a master that has not heard a majority for T steps down"),
    # -- reads -----------------------------------------------------------------------------------
    _m("read_index_majority_round", "master.py",
       "if read.round > confirmed or read.read_seq > commit_seq:",
       "if read.read_seq > commit_seq:",
       "a consistent read waits for a majority to confirm the master after it arrived"),
    _m("read_index_fresh_round", "master.py",
       "_PendingRead(self.read_round + 1,",
       "_PendingRead(self.read_round,",
       "a consistent read needs a new round: acknowledgements from before it arrived do not count"),
    _m("read_index_waits_for_commit", "master.py",
       "if read.round > confirmed or read.read_seq > commit_seq:",
       "if read.round > confirmed:",
       "a consistent read waits until everything the master applied is committed"),
    # -- log matching and divergence -------------------------------------------------------------
    _m("log_matching", "slave.py",
       "elif log.epoch_at(prev) != msg.prev_epoch:",
       "elif log.epoch_at(prev) is None:",
       "a slave accepts a batch only if it holds (prev_epoch, prev_seq)"),
    _m("truncate_only_on_conflict", "slave.py",
       "            if held != entry.epoch:",
       "            if True:",
       "entries already held are skipped; only a conflicting epoch truncates the log"),
    _m("rollback_undoes_applied_entries", "slave.py",
       "        out.append(Rollback(after_seq, tuple(dropped)))\n",
       "",
       "truncated entries are undone in the state and kept in a rollback file"),
    _m("rollback_keeps_discarded_entries", "slave.py",
       "        out.append(Rollback(after_seq, tuple(dropped)))\n",
       "        out.append(Rollback(after_seq, ()))\n",
       "nothing is dropped silently: truncated entries go to the rollback record"),
    _m("undo_kept_until_commit", "kvstate.py",
       "        while undo and undo[0][0] <= commit_seq:",
       "        while undo:",
       "undo records of applied entries are kept until they commit, so a rollback is complete"),
    _m("fork_point_search_moves_back", "master.py",
       "return max(p.match_seq + 1, min(candidate, msg.match_seq), 1)",
       "return max(p.match_seq + 1, msg.match_seq + 1, 1)",
       "after a refusal the master retries strictly before the refused point, so the search ends"),
    # -- membership ------------------------------------------------------------------------------
    _m("single_membership_change", "master.py",
       "        return any(e.op in MEMBERSHIP_OPS for e in self.log.entries[self.commit_seq - self.log.snapshot_seq:])",
       "        return False",
       "one membership change at a time: the next waits until the last one committed"),
    _m("membership_after_own_commit", "master.py",
       "        if self.log.epoch_at(self.commit_seq) != self.epoch:\n            return True\n",
       "",
       "a new master changes membership only after committing an entry of its own epoch"),
    # -- snapshots -------------------------------------------------------------------------------
    _m("snapshot_install_guard", "slave.py",
       "if msg.seq <= self.commit_seq or log.epoch_at(msg.seq) == msg.snap_epoch:",
       "if log.epoch_at(msg.seq) == msg.snap_epoch:",
       "a snapshot older than the slave's commit point is never installed"),
    _m("snapshot_carries_members", "slave.py",
       "            self._base_members = tuple(msg.members)\n",
       "",
       "an installed snapshot brings the member list as of its seq"),
    _m("snapshot_is_committed_state", "kvstate.py",
       "        for _, key, old in reversed(self._undo):",
       "        for _, key, old in ():",
       "a snapshot (and compaction) holds only committed state, never entries that may roll back"),
)

MUTANTS += (
    # -- the node around the core: driver and executor -------------------------------------------
    _node("verdict_reaches_its_request", "dkvs/driver/driver.py",
          "                        self.requests.rejected(epochs[seq], seq, current_seq)\n",
          "",
          "a write applied without effect (delete of an absent key, failed compare-and-set) is "
          "answered 404/409, bound to the request that created that entry"),
    _node("peers_before_sends", "dkvs/runtime/executor.py",
          "        if ready.peers is not None:\n            self.transport.set_peers(ready.peers)\n"
          "        early = ",
          "        early = ",
          "the transport learns a new member's address before anything is sent to it",
          ("        for told in notes:",
           "        if ready.peers is not None:\n            self.transport.set_peers(ready.peers)\n"
           "        for told in notes:")),
    _node("no_snapshot_while_commit_stuck", "dkvs/driver/driver.py",
          "        if self.node.commit_seq <= self.node.log.snapshot_seq:\n            return\n",
          "",
          "no whole-state snapshot while the commit point has not moved past the last one"),
    _node("one_snapshot_build_at_a_time", "dkvs/driver/driver.py",
          "        if self.building or self.log_bytes <",
          "        if self.log_bytes <",
          "at most one snapshot build runs at a time"),
    _node("one_snapshot_stream_per_peer", "dkvs/driver/driver.py",
          "                if effect.to not in self.streaming:",
          "                if True:",
          "a snapshot is streamed to a peer at most once at a time"),
    # -- data operations decided at apply time (issue 14) -----------------------------------------
    _node("conditional_delete_checks_seq", "dkvs/core/kvstate.py",
          "                elif entry.cond is not None and current[1] != entry.cond:\n",
          "                elif False:\n",
          "a conditional delete applies only when the key is at the asked seq, on every replica"),
    _node("txn_compares_at_apply", "dkvs/core/txn.py",
          "    succeeded = all(_holds(get(key), kind, arg) for key, kind, arg in txn[\"c\"])\n",
          "    succeeded = True\n",
          "a transaction's branch is chosen by its comparisons against the state it is applied to"),
    _node("apply_result_reaches_its_request", "dkvs/driver/driver.py",
          "            self.requests.applied(entry.epoch, entry.seq, answer)\n",
          "",
          "a multi-key entry's apply result (deleted count, txn verdict and reads) is answered to "
          "the request that created that entry"),
    _node("lease_fresh_ttl_on_new_master", "dkvs/driver/leases.py",
          "        self.deadlines = {lease_id: now + self.ticks(ttl) for lease_id, ttl in leases.items()}\n",
          "        self.deadlines = {lease_id: now for lease_id, ttl in leases.items()}\n",
          "a new master starts every lease over with its full ttl, so no lease expires early on a failover"),
)

MUTANTS += (
    # -- leadership transfer (dkvs/core/transfer.py) -----------------------------------------------
    _m("transfer_stops_writes", "master.py",
       "        if self.transfer_target is not None:  # handing over: the log must stop growing\n"
       "            return [Reply(request_id, error=\"transfer_in_progress\")]\n",
       "",
       "a master handing over takes no new writes, so the target's log is complete when it campaigns"),
    _m("transfer_waits_for_catch_up", "transfer.py",
       "if p is None or p.match_seq < self.log.last_seq or self.commit_seq < self.log.last_seq:",
       "if p is None or self.commit_seq < self.log.last_seq:",
       "TimeoutNow goes only to a target that holds the master's whole log"),
    _m("transfer_waits_for_commit", "transfer.py",
       "if p is None or p.match_seq < self.log.last_seq or self.commit_seq < self.log.last_seq:",
       "if p is None or p.match_seq < self.log.last_seq:",
       "the master hands over only once its log is committed, so pending acks=majority writes are answered"),
    _m("transfer_bypasses_stickiness", "election.py",
       "if self.hears_master() and not msg.transfer:",
       "if self.hears_master():",
       "voters grant a candidate its master handed leadership to, although they still hear that master"),
    _m("transfer_has_a_deadline", "transfer.py",
       "if self.now >= self.transfer_deadline:",
       "if False:",
       "an unfinished transfer ends at its deadline and the master takes writes again"),
)

MUTANTS += (
    # -- read index rounds (issue 15: rounds start at once, shared by concurrent reads) ----------
    _m("read_index_counts_own_round_only", "master.py",
       "if read.round > confirmed or",
       "if read.round - 1 > confirmed or",
       "a read is released only by acknowledgements of its own round or a later one, never of the "
       "round in flight when it arrived"),
    _m("read_index_counts_a_majority_of_voters", "master.py",
       "return acked[others_needed - 1] if",
       "return acked[0] if",
       "a read round is confirmed by a majority of the voters, not by any one slave (five voters: "
       "the master and two slaves)"),
    # -- learners (dkvs/core/membership.py; tests/sim/test_scenarios_learners.py) -----------------
    _m("learner_not_in_commit_quorum", "quorum.py",
       "    held = [match_seqs.get(voter, 0) for voter in voters]",
       "    held = list(match_seqs.values())",
       "a learner's copy never counts towards the commit point"),
    _m("learner_not_in_check_quorum", "master.py",
       "if self.now - p.last_heard_tick < window and peer not in self.learners)",
       "if self.now - p.last_heard_tick < window)",
       "check-quorum counts voters only: a master that hears only learners steps down"),
    _m("learner_not_in_read_round", "master.py",
       "for peer, p in self.progress.items() if peer not in self.learners),",
       "for peer, p in self.progress.items()),",
       "a learner's answer never confirms a consistent read's round"),
    _m("learner_never_campaigns", "election.py",
       "        if not self.is_voter():\n            # Not (yet) a member, or a learner",
       "        if self.id not in self.members:\n            # Not (yet) a member, or a learner",
       "a learner never starts a (pre-)vote"),
    _m("learner_vote_does_not_count", "election.py",
       "granted = sum(1 for member in self.votes if self.is_voter(member))",
       "granted = len(self.votes)",
       "a candidate counts only voters' votes"),
    _m("promote_only_when_caught_up", "master.py",
       "caught_up = (p.match_seq > 0 and p.match_seq + lag >= self.log.last_seq",
       "caught_up = (True",
       "a learner is promoted only once it holds the log to within one batch of the master"),
    _m("acks_all_ignores_learners", "master.py",
       "            if peer in self.learners:\n                continue\n",
       "",
       "acks=all waits for live voters only, never for a (slow) learner"),
    _m("transfer_skips_learners", "transfer.py",
       "if self.now - p.last_heard_tick < window and peer not in self.learners]",
       "if self.now - p.last_heard_tick < window]",
       "leadership is handed only to a voter, never to a learner that cannot win"),
)

MUTANTS += (
    # -- pipelined replication (dkvs/core/progress.py; tests/test_core_pipeline.py) --------------
    _m("pipelined_commit_counts_confirmed_only", "progress.py",
       "        self.match_seq = max(self.match_seq, match_seq)\n",
       "        self.match_seq = max(self.match_seq, self.next_seq - 1)\n",
       "a success confirms only what the slave said it holds: batches still in flight (the "
       "optimistic next_seq) never count towards the commit point"),
    _m("refusal_drops_the_window", "progress.py",
       "        self._drop_in_flight()\n        self.probing = True\n        return True\n",
       "        self.probing = True\n        return True\n",
       "a refusal drops every batch in flight and resends at once from the fork-point search's "
       "guess, instead of waiting for the dropped window to time out"),
)

MUTANTS += (
    # -- a master's own address (dkvs/core/master.py; tests/test_core_own_url.py) ----------------
    _m("master_keeps_a_stale_own_url", "master.py",
       "if self.own_url and listed is not None and listed != self.own_url:",
       "if False:",
       "a master serving at another URL than its member row opens its epoch by correcting that "
       "row, so clients and slaves are not sent to a dead address"),
)

MUTANTS += (
    # -- read leases (dkvs/core/read_lease.py; tests/test_core_read_lease.py,
    #    tests/sim/test_scenarios_read_lease.py, tests/sim/test_scenarios_read_lease_seeds.py) -------
    _m("lease_dropped_at_transfer", "transfer.py",
       "        self.end_read_lease_for_epoch()  # before any TimeoutNow leaves (dkvs.core.read_lease)\n",
       "",
       "a master gives up its read lease before TimeoutNow leaves: transfer votes pass the voters' hold"),
    _m("restarted_voter_holds_vote", "election.py",
       "            return self.now < self.config.min_election_ticks\n",
       "            return False\n",
       "with lease reads a restarted voter (which forgot its last contact) grants no real vote for "
       "min_election_ticks after it starts"),
    _m("voter_holds_vote_whatever_its_role", "election.py",
       "        if not msg.transfer and self.vote_held():",
       "        if False:",
       "with lease reads a voter grants no real vote within min_election_ticks of its last master "
       "contact, even once it forgot that master (a newer epoch) or campaigns"),
    _m("own_election_held", "election.py",
       "            if self.vote_held():  # our own vote is held too: retry at the next timeout\n"
       "                return False\n",
       "",
       "with lease reads a node starts no election (a vote for itself) while its vote is held"),
    _m("lease_measured_from_the_send", "read_lease.py",
       "sent = sorted((ticks[p.acked_round] for peer, p in self.progress.items()",
       "sent = sorted((p.last_heard_tick for peer, p in self.progress.items()",
       "a lease runs from the tick the acknowledged round was sent, not from the answer's arrival"),
    _m("lease_has_a_margin", "config.py",
       "        return self.min_election_ticks - self.lease_margin_ticks\n",
       "        return self.min_election_ticks\n",
       "a lease is shorter than the voters' hold by the tick granularity and the drift allowance"),
    _m("lease_needs_a_majority", "read_lease.py",
       "        need = majority(len(voters)) - 1  # this master counts itself\n",
       "        need = 1\n",
       "a lease needs answers from voters that make a majority with the master"),
    _m("leased_read_waits_for_commit", "master.py",
       "if self.read_lease_valid() and self.commit_seq >= self.log.last_seq:",
       "if self.read_lease_valid():",
       "a leased read is answered only once everything the master appended is committed"),
    _m("lease_dropped_on_membership_change", "node.py",
       "        self.drop_read_lease()  # a majority of the new list is another set of voters\n",
       "",
       "a membership change drops the read lease (a majority of the new list is other voters)"),
    _m("lease_dropped_on_clock_jump", "read_lease.py",
       "        slow, so time measured across the jump is too short. Drop the lease.\"\"\"\n"
       "        self.drop_read_lease()\n",
       "        slow, so time measured across the jump is too short. Drop the lease.\"\"\"\n",
       "ticks dropped by the host (a long stall) drop the read lease"),
    # -- the master replicates while it writes its own disk (tests/sim/test_scenarios_durable_master.py)
    _m("master_counts_durable_seq_only", "master.py",
       "matches[self.id] = self._own_durable_seq()",
       "matches[self.id] = self.log.last_seq",
       "a master's batch leaves before its own fsync, so its copy counts in a commit only up to "
       "what its disk holds: an entry it failed to persist commits only through a majority of "
       "other durable copies"),
    # -- hardening of the HTTP front end (tests/test_internal_body_limits.py) ----------------------
    _node("join_body_capped", "dkvs/api/internal_limits.py",
          '    ("POST", "join"): _control,\n',
          '    ("POST", "join"): lambda limits, query: None,\n',
          "a join's body is read under a small cap, not the server-wide 256 MiB one"),
    # -- the HTTP fast lane (dkvs/api/fast_lane.py; tests/api/test_api_fast_lane*.py) -------------
    _node("fast_lane_takes_cors_requests", "dkvs/api/fast_lane.py",
          '_FALLBACK_FIELDS = ("origin", "expect", "transfer-encoding")',
          '_FALLBACK_FIELDS = ("expect", "transfer-encoding")',
          "a request with an Origin goes to the worker path, which adds the CORS answer headers"),
    _node("fast_lane_takes_big_bodies", "dkvs/api/fast_lane.py",
          "if \"content-length\" not in fields or length > DRAIN_LIMIT_BYTES \\\n",
          "if \"content-length\" not in fields \\\n",
          "a body the worker path would refuse unread (and close the connection over) is not taken"),
    _node("lane_forwards_only_once", "dkvs/api/fast_lane.py",
          ' or exchange.headers.get(FORWARDED_HEADER):',
          ':',
          "a write that was already forwarded once is not forwarded again (no forwarding loop while "
          "masters change)"),
    _node("lane_write_redone_on_handover", "dkvs/runtime/lane_requests.py",
          "        if outcome.error == TRANSFER_IN_PROGRESS:\n            on_answer(None)\n            return\n",
          "",
          "a lane write refused during a handover goes to the blocking path, which waits for the "
          "new master, instead of being answered 503"),
)

# A fast, representative subset for the CI smoke test (tests/test_mutation_smoke.py).
QUICK = ("commit_current_epoch_only", "read_index_majority_round", "one_vote_per_epoch",
         "epoch_fencing", "log_matching")
