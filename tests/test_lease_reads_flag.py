"""``--lease-reads``: parsed, carried to the node's settings and to the core's config."""

from __future__ import annotations

import pytest

from dkvs.cli import UsageError, build_parser, resolve, settings_from_values
from dkvs.core.config import CoreConfig


def values(argv: list[str], env: dict | None = None) -> dict:
    return resolve(build_parser().parse_args(argv), env or {})


def test_lease_reads_are_off_by_default():
    assert values([])["lease_reads"] is False
    assert settings_from_values(values([])).lease_reads is False
    assert CoreConfig().lease_reads is False


def test_the_flag_and_its_variable_turn_lease_reads_on():
    assert values(["--lease-reads"])["lease_reads"] is True
    assert values([], {"DKVS_LEASE_READS": "true"})["lease_reads"] is True
    assert values([], {"DKVS_LEASE_READS": "0"})["lease_reads"] is False
    assert settings_from_values(values(["--lease-reads"])).lease_reads is True


def test_a_bad_variable_is_refused_naming_it():
    with pytest.raises(UsageError) as refused:
        values([], {"DKVS_LEASE_READS": "maybe"})
    assert "DKVS_LEASE_READS" in str(refused.value)


def test_the_config_carries_the_flag_and_a_lease_shorter_than_the_vote_hold():
    config, _ = CoreConfig.from_seconds(0.1, 1.0, lease_reads=True)
    assert config.lease_reads
    assert 0 < config.lease_ticks < config.min_election_ticks
    assert config.lease_ticks == config.min_election_ticks - config.lease_margin_ticks == 20
