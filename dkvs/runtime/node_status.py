"""What a node says about itself: ``/status``, ``/metrics`` and ``GET /events``.

A mixin of :class:`~dkvs.runtime.service.NodeService` (it reads ``self.host``,
``self.url``, ``self.cluster_id`` and ``self._quorum``): the protocol half comes from the
node (``Node.status``, the driver's quorum view), the rest from the host's event feed,
storage and process. docs/metrics.md lists every metric.
"""

from __future__ import annotations

import os
import time

from .. import __version__
from ..driver.narrator import quorum_view, reachable_members

__all__ = ["StatusMixin"]


class StatusMixin:
    def metrics(self) -> list:
        host = self.host
        clock = host.timed_storage.append_clock
        now = time.time()

        def read(node):
            last = node.log.last_seq
            lag = [(peer, max(0, last - p.match_seq)) for peer, p in node.progress.items()]
            return (node.role, node.epoch, last, node.commit_seq, node.elections_started,
                    node.elections_won, lag, len(node.members), node.master_id is not None, self._quorum(node),
                    len(node.learners))
        role, epoch, last_seq, commit_seq, started, won, lag, members, has_master, quorum, learners = host.query(read)
        storage = host.storage
        events = host.events
        lag_seconds = [({"peer": peer}, round(clock.age(last_seq - behind + 1, now), 3) if behind else 0)
                       for peer, behind in lag]
        families = [
            ("dkvs_role", "gauge", "1 for this node's current role.",
             [({"role": r}, int(r == role)) for r in ("master", "slave", "candidate")]),
            ("dkvs_epoch", "gauge", "Current epoch (term).", [({}, epoch)]),
            ("dkvs_last_seq", "gauge", "Last seq in this node's log.", [({}, last_seq)]),
            ("dkvs_commit_seq", "gauge", "Highest seq known to be held by a majority.", [({}, commit_seq)]),
            ("dkvs_members", "gauge", "Members of the cluster (learners included).", [({}, members)]),
            ("dkvs_learners", "gauge", "Members that do not vote (learners).", [({}, learners)]),
            ("dkvs_keys", "gauge", "Keys in this node's state.", [({}, len(host.state))]),
            ("dkvs_has_master", "gauge", "1 when this node knows a master (itself included).",
             [({}, int(has_master))]),
            ("dkvs_quorum_ok", "gauge", "1 when a majority is reachable: on the master, members heard within "
             "the election timeout; elsewhere, a master heard within it.", [({}, int(quorum["ok"]))]),
            ("dkvs_replication_lag_entries", "gauge", "On the master: entries each slave is behind.",
             [({"peer": peer}, behind) for peer, behind in lag]),
            ("dkvs_replication_lag_seconds", "gauge", "On the master: age of the oldest entry each slave "
             "lacks (0 when it lacks none).", lag_seconds),
            ("dkvs_elections_started_total", "counter", "Elections this node started.", [({}, started)]),
            ("dkvs_elections_won_total", "counter", "Elections this node won.", [({}, won)]),
            ("dkvs_role_changes_total", "counter", "Role changes of this node since it started.",
             [({}, events.role_changes)]),
            ("dkvs_rollback_entries_total", "counter", "Entries this node rolled back (kept in rollback/).",
             [({}, events.rollback_entries)]),
            ("dkvs_events_total", "counter", "Cluster events this node recorded (GET /events).",
             [({}, events.last_index)]),
            ("dkvs_snapshots_total", "counter", "Snapshots taken by this node.",
             [({}, host.snapshots_taken)]),
            ("dkvs_fsyncs_total", "counter", "fsync calls made by the storage.",
             [({}, getattr(storage, "fsync_count", 0))]),
            ("dkvs_build_info", "gauge", "Always 1; the version in a label.", [({"version": __version__}, 1)]),
        ]
        path = getattr(storage, "path", None)
        if path:
            families += [
                ("dkvs_fsync_duration_seconds", "histogram", "Time of persist calls that fsynced (write and "
                 "fsync), and of the background flusher's fsyncs.", [({}, host.timed_storage.fsync_seconds)]),
                ("dkvs_data_dir_bytes", "gauge", "Bytes in the data dir.", [({}, _dir_bytes(path))]),
                ("dkvs_data_dir_free_bytes", "gauge", "Bytes free for this user on the data dir's filesystem.",
                 [({}, _free_bytes(path))]),
            ]
        return families

    def status(self) -> dict:
        host = self.host
        def read(node):
            heard = self.host.driver.narrator.heard
            return node.status(), quorum_view(node, heard), reachable_members(node, heard), dict(heard), node.now
        status, quorum, reachable, heard, now = host.query(read)
        for member in status["members"]:
            if member["id"] not in reachable:  # unknown or silent: say when it was last heard
                member["alive"] = False
                tick = heard.get(member["id"])
                member["last_seen"] = (round(time.time() - (now - tick) * host.tick_seconds, 1)
                                       if tick is not None else None)  # Unix time; None: never
        status["url"] = self.url
        status["cluster_id"] = self.cluster_id
        count = sum(1 for member in status["members"] if member["voter"])  # learners never vote
        status["failover"] = count >= 3
        if count == 2:
            status["warning"] = ("a 2-node cluster has no automatic failover (a majority of 2 is 2); "
                                 "run 3 or more nodes")
        status["keys"] = len(host.state)
        status["quorum"] = quorum
        status["version"] = __version__
        started = host.events.started
        status["started"] = round(started, 3)
        status["uptime_seconds"] = round(max(0.0, time.time() - started), 1)
        status["role_history"] = host.events.role_history()
        status["events_index"] = host.events.last_index
        storage = host.storage
        path = getattr(storage, "path", None)
        status["storage"] = {"kind": "file" if path else "memory",
                             "fsync": getattr(storage, "fsync_policy", None),
                             "data_dir_bytes": _dir_bytes(path) if path else None,
                             "free_bytes": _free_bytes(path) if path else None}
        return status

    def events(self, after: int, wait: float | None) -> dict:
        """``GET /events``: the events after index ``after`` (long poll with ``wait``)."""
        return self.host.events.since(after, wait or 0.0)

_DIR_BYTES_CACHE: dict[str, tuple[float, int]] = {}
DIR_BYTES_CACHE_SECONDS = 5.0  # /status is polled twice a second per dashboard: walk the dir less


def _dir_bytes(path: str) -> int:
    now = time.monotonic()
    cached = _DIR_BYTES_CACHE.get(path)
    if cached is not None and now - cached[0] < DIR_BYTES_CACHE_SECONDS:
        return cached[1]
    total = _walk_bytes(path)
    _DIR_BYTES_CACHE[path] = (now, total)
    return total


def _walk_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _free_bytes(path: str) -> int:
    try:
        stat = os.statvfs(path)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize
