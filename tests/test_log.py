"""The replicated log: positions, epoch history, truncation, compaction (dkvs.core.log)."""

from __future__ import annotations

import pytest

from dkvs.core.log import OP_NOOP, OP_PUT, Entry, Log


def build(*epochs: int, snapshot_seq: int = 0, snapshot_epoch: int = 0) -> Log:
    """A log whose entries after the snapshot have the given epochs, in order."""
    log = Log(snapshot_seq, snapshot_epoch)
    for i, epoch in enumerate(epochs):
        seq = snapshot_seq + 1 + i
        log.append(Entry(epoch, seq, OP_PUT, f"k{seq}", f"v{seq}"))
    return log


def test_empty_log_positions():
    log = Log()
    assert (log.first_seq, log.last_seq, log.last_epoch) == (1, 0, 0)
    assert log.epoch_at(0) == 0 and log.epoch_at(1) is None


def test_append_tracks_last_and_epochs():
    log = build(1, 1, 2, 2, 2, 5)
    assert (log.last_seq, log.last_epoch) == (6, 5)
    assert [log.epoch_at(s) for s in range(1, 7)] == [1, 1, 2, 2, 2, 5]
    assert log.get(3) == Entry(2, 3, OP_PUT, "k3", "v3")
    assert log.epoch_at(7) is None


def test_append_refuses_gaps_and_older_epochs():
    # The log's two structural invariants are asserted, not assumed.
    log = build(2, 2)
    with pytest.raises(AssertionError):
        log.append(Entry(2, 4, OP_NOOP))  # gap: 3 is missing
    with pytest.raises(AssertionError):
        log.append(Entry(1, 3, OP_NOOP))  # epochs never decrease


def test_epoch_history_first_and_last_seq():
    log = build(1, 1, 2, 2, 2, 5)
    assert [log.first_seq_of_epoch(e) for e in (1, 2, 3, 5)] == [1, 3, None, 6]
    assert [log.last_seq_of_epoch(e) for e in (1, 2, 3, 5)] == [2, 5, None, 6]
    assert log.first_seq_of_epoch(9) is None and log.last_seq_of_epoch(9) is None


def test_truncate_returns_dropped_and_rewinds_epoch_history():
    log = build(1, 1, 2, 2, 3)
    dropped = log.truncate_after(3)
    assert [e.seq for e in dropped] == [4, 5]
    assert (log.last_seq, log.last_epoch) == (3, 2)
    assert log.last_seq_of_epoch(2) == 3 and log.first_seq_of_epoch(3) is None
    log.append(Entry(4, 4, OP_NOOP))  # a new master's epoch continues after the fork point
    assert log.first_seq_of_epoch(4) == 4 and log.last_seq_of_epoch(2) == 3


def test_truncate_at_epoch_boundary_forgets_the_epoch():
    log = build(1, 2, 2)
    log.truncate_after(1)
    assert log.first_seq_of_epoch(2) is None and log.last_seq_of_epoch(1) == 1


def test_truncate_into_snapshot_is_refused():
    log = build(1, 1, snapshot_seq=10, snapshot_epoch=1)
    log.truncate_after(10)  # down to the snapshot point is fine
    assert log.last_seq == 10
    with pytest.raises(AssertionError):
        log.truncate_after(9)


def test_compact_keeps_the_last_compacted_position():
    log = build(1, 1, 2, 2, 3)
    log.compact(3)
    assert (log.snapshot_seq, log.snapshot_epoch, log.first_seq, log.last_seq) == (3, 2, 4, 5)
    assert log.epoch_at(3) == 2  # a batch continuing the snapshot can still be checked
    assert log.epoch_at(2) is None  # gone
    assert log.first_seq_of_epoch(2) == 4  # first *retained* seq of epoch 2
    assert log.last_seq_of_epoch(2) == 4 and log.last_seq_of_epoch(3) == 5
    log.compact(2)  # compacting behind the snapshot is a no-op
    assert log.snapshot_seq == 3


def test_last_seq_of_epoch_wholly_compacted():
    # The fork-point search may ask about an epoch that only the snapshot remembers.
    log = build(1, 1, 2, 2)
    log.compact(4)
    assert log.entries == [] and log.last_seq == 4 and log.last_epoch == 2
    assert log.last_seq_of_epoch(2) == 4
    assert log.last_seq_of_epoch(1) is None


def test_compact_everything_then_append():
    log = build(1, 1)
    log.compact(2)
    log.append(Entry(3, 3, OP_NOOP))
    assert (log.first_seq_of_epoch(3), log.last_seq, log.last_epoch) == (3, 3, 3)


def test_compact_past_the_end_is_refused():
    log = build(1, 1)
    with pytest.raises(AssertionError):
        log.compact(3)


def test_reset_installs_a_snapshot_point():
    log = build(1, 1, 2)
    dropped = log.reset(10, 4)
    assert [e.seq for e in dropped] == [1, 2, 3]
    assert (log.snapshot_seq, log.last_seq, log.last_epoch, log.entries) == (10, 10, 4, [])
    log.append(Entry(4, 11, OP_NOOP))
    assert log.first_seq_of_epoch(4) == 11 and log.epoch_at(10) == 4


def test_slice_bounds_by_count_and_bytes():
    log = build(*([1] * 10))
    assert [e.seq for e in log.slice(3, 4, 1 << 20)] == [3, 4, 5, 6]
    assert [e.seq for e in log.slice(9, 100, 1 << 20)] == [9, 10]
    assert log.slice(11, 5, 1 << 20) == []
    size = log.get(1).size()
    assert [e.seq for e in log.slice(1, 100, 2 * size)] == [1, 2]
    assert [e.seq for e in log.slice(1, 100, 1)] == [1]  # at least one entry, however large


def test_slice_of_compacted_seq_is_an_error():
    log = build(1, 1, 1)
    log.compact(2)
    with pytest.raises(ValueError):
        log.slice(2, 10, 1 << 20)
    assert [e.seq for e in log.slice(3, 10, 1 << 20)] == [3]
