"""``--replication-window N``: parsed, bounded, and carried to the node's settings."""

from __future__ import annotations

import pytest

from dkvs.cli import UsageError, build_parser, resolve, settings_from_values


def values(argv: list[str], env: dict | None = None) -> dict:
    return resolve(build_parser().parse_args(argv), env or {})


def test_the_default_window_is_one_batch():
    assert values([])["replication_window"] == 2
    assert settings_from_values(values([])).replication_window == 2


def test_the_flag_and_its_variable_set_the_window():
    assert values(["--replication-window", "4"])["replication_window"] == 4
    assert values([], {"DKVS_REPLICATION_WINDOW": "2"})["replication_window"] == 2
    assert settings_from_values(values(["--replication-window", "8"])).replication_window == 8


@pytest.mark.parametrize("raw", ["0", "65", "-1", "two", "1.5", ""])
def test_a_bad_window_is_refused_naming_the_flag(raw):
    if raw == "":
        assert values([], {"DKVS_REPLICATION_WINDOW": raw})["replication_window"] == 2  # empty = unset
        return
    with pytest.raises(UsageError) as refused:
        values(["--replication-window", raw])
    assert "--replication-window" in str(refused.value) and "1 to 64" in str(refused.value)
