"""``--fast-lane on|off``: parsed, carried to the node's settings and to its HTTP server."""

from __future__ import annotations

import http.client

import pytest

from dkvs.cli import UsageError, build_parser, resolve, settings_from_values
from dkvs.runtime.app import DkvsNode, Settings
from dkvs.runtime.startup import StartupError


def values(argv: list[str], env: dict | None = None) -> dict:
    return resolve(build_parser().parse_args(argv), env or {})


def test_the_lane_is_on_by_default_and_the_flag_or_its_variable_turn_it_off():
    assert values([])["fast_lane"] is True and Settings().fast_lane is True
    assert settings_from_values(values(["--fast-lane", "off"])).fast_lane is False
    assert values([], {"DKVS_FAST_LANE": "0"})["fast_lane"] is False
    assert values(["--fast-lane", "on"], {"DKVS_FAST_LANE": "off"})["fast_lane"] is True  # the flag wins


def test_a_bad_value_is_refused_naming_its_source():
    with pytest.raises(UsageError) as refused:
        values([], {"DKVS_FAST_LANE": "maybe"})
    assert "DKVS_FAST_LANE" in str(refused.value)
    with pytest.raises(StartupError):
        DkvsNode(Settings(port=0, fast_lane="yes"))


@pytest.mark.parametrize("lane", [True, False])
def test_a_node_serves_the_same_with_the_lane_on_or_off(lane):
    node = DkvsNode(Settings(port=0, fast_lane=lane)).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", node.server.server_port, timeout=10)
        conn.request("PUT", "/kv/x", b"1")
        assert conn.getresponse().read() == b'{"key":"x","seq":2,"epoch":1,"replicas":1}'
        conn.request("GET", "/kv/x")
        assert conn.getresponse().read() == b'{"key":"x","value":"1","seq":2}'
        conn.close()
        assert node.server.fast_lane.enabled is lane
        assert (node.server.fast_lane.served > 0) is lane
    finally:
        node.stop()
