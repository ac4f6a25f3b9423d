"""The command line's values and the start-up checks, without starting a node.

Every flag is parsed from one table; a bad value names the flag or the environment variable
it came from. The checks of :mod:`dkvs.runtime.startup` also guard nodes built in-process.
(Subprocess tests of the whole start-up path: tests/integration/test_startup_errors.py.)
"""

from __future__ import annotations

import errno
import os

import pytest

from dkvs.api.service import Limits
from dkvs.cli import FLAGS, UsageError, build_parser, resolve, settings_from_values
from dkvs.runtime.app import DkvsNode, Settings
from dkvs.runtime.startup import (StartupError, check_listen_address, listen_error, parse_join_urls,
                                  read_secret_file, validate_settings)


def values(argv: list[str], env: dict | None = None) -> dict:
    return resolve(build_parser().parse_args(argv), env or {})


def test_defaults_are_the_documented_ones():
    v = values([])
    assert (v["host"], v["port"], v["join_timeout"], v["default_acks"]) == ("127.0.0.1", 7070, 10.0, "1")
    assert v["cors_origins"] == () and v["nkvd"] is False and v["insecure"] is False


def test_every_flag_has_an_env_twin_and_the_flag_wins():
    assert {f.env for f in FLAGS} >= {"DKVS_PORT", "DKVS_JOIN_TIMEOUT", "DKVS_CLUSTER_SECRET_FILE",
                                     "DKVS_NKVD", "DKVS_INSECURE", "DKVS_CORS_ORIGINS"}
    assert values([], {"DKVS_PORT": "7071"})["port"] == 7071
    assert values(["--port", "7072"], {"DKVS_PORT": "abc"})["port"] == 7072
    assert values([], {"DKVS_PORT": ""})["port"] == 7070  # empty = unset
    assert values([], {"DKVS_NKVD": "true"})["nkvd"] is True
    assert values(["--nkvd"], {"DKVS_NKVD": "0"})["nkvd"] is True


@pytest.mark.parametrize("argv, env, named", [
    (["--port", "99999"], {}, "--port '99999'"),
    (["--port", "-1"], {}, "--port '-1'"),
    ([], {"DKVS_PORT": "abc"}, "DKVS_PORT='abc'"),
    (["--heartbeat-interval", "-0.1"], {}, "--heartbeat-interval"),
    (["--election-timeout", "0"], {}, "--election-timeout"),
    (["--election-timeout", "nan"], {}, "--election-timeout"),
    (["--heartbeat-interval", "0.5", "--election-timeout", "0.5"], {}, "at least twice"),
    ([], {"DKVS_DEFAULT_ACKS": "2"}, "DKVS_DEFAULT_ACKS='2'"),
    ([], {"DKVS_INSECURE": "maybe"}, "DKVS_INSECURE"),
    (["--join-timeout", "0"], {}, "--join-timeout"),
    (["--cors-origins", "https://ops.test/path"], {}, "--cors-origins"),
    (["--join", "ftp://x"], {}, "--join"),
    (["--join", "http://"], {}, "names no host"),
    (["--cluster-secret", "a", "--cluster-secret-file", "f"], {}, "not both"),
])
def test_a_bad_value_names_where_it_came_from(argv, env, named):
    with pytest.raises(UsageError) as refused:
        values(argv, env)
    assert named in str(refused.value)
    assert "\n" not in str(refused.value)


def test_join_urls_get_a_scheme_and_a_port_and_several_are_kept_in_order():
    assert parse_join_urls("127.0.0.1:7071") == ["http://127.0.0.1:7071"]
    assert parse_join_urls("node-a") == ["http://node-a:7070"]
    assert parse_join_urls("http://a:1/, b:2 ,") == ["http://a:1", "http://b:2"]
    assert parse_join_urls("http://a") == ["http://a"]  # an explicit URL is taken as written
    assert parse_join_urls("https://a:1") == ["https://a:1"]  # TLS clusters join over https
    for bad in ("", " , ", "http://a:1/kv", "a:notaport"):
        with pytest.raises(StartupError):
            parse_join_urls(bad)


def test_loopback_needs_no_secret_but_other_addresses_do():
    for host in ("127.0.0.1", "::1", "localhost", "127.1.2.3"):
        check_listen_address(host, has_secret=False, insecure=False)
    for host in ("0.0.0.0", "::", ""):
        with pytest.raises(StartupError, match="without a cluster secret"):
            check_listen_address(host, has_secret=False, insecure=False)
        check_listen_address(host, has_secret=True, insecure=False)
        check_listen_address(host, has_secret=False, insecure=True)


def test_in_process_nodes_are_checked_before_binding_or_locking(tmp_path):
    data = tmp_path / "data"
    with pytest.raises(StartupError, match="cluster secret"):
        DkvsNode(Settings(host="0.0.0.0", port=0, data_dir=str(data)))
    assert not data.exists()
    for bad in (Settings(port=70000), Settings(limits=Limits(default_acks="2")),
                Settings(heartbeat_interval=-1.0), Settings(heartbeat_interval=0.5, election_timeout=0.5),
                Settings(join="ftp://x"), Settings(join_timeout=0)):
        with pytest.raises(StartupError):
            validate_settings(bad)


def test_the_listen_error_names_the_address():
    busy = listen_error("127.0.0.1", 7070, OSError(errno.EADDRINUSE, "Address already in use"))
    assert "127.0.0.1:7070" in str(busy) and "already in use" in str(busy)
    assert "[::1]:7070" in str(listen_error("::1", 7070, OSError(errno.EADDRNOTAVAIL, "x")))


def test_secret_file_is_read_stripped_and_refused_when_empty_or_missing(tmp_path):
    path = tmp_path / "secret"
    path.write_text("s3cret \n")
    os.chmod(path, 0o600)
    assert read_secret_file(str(path)) == "s3cret"
    assert settings_from_values(values(["--cluster-secret-file", str(path)])).cluster_secret == "s3cret"
    path.write_text("\n")
    with pytest.raises(StartupError, match="is empty"):
        read_secret_file(str(path))
    with pytest.raises(StartupError, match="cannot read"):
        read_secret_file(str(tmp_path / "absent"))


def test_join_tries_each_url_and_each_address_of_a_name_in_turn(monkeypatch):
    import socket

    from dkvs.runtime import startup
    from dkvs.transport.auth import Signer

    tried = []

    def fake_post(url, route, body, signer, timeout):
        tried.append(url)
        if url == "http://127.0.0.1:7071":
            return 200, {"id": body["id"]}
        raise ConnectionRefusedError(111, "Connection refused")

    def fake_resolve(host, port, *args, **kwargs):
        assert host == "db.example"
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(startup, "post_internal", fake_post)
    monkeypatch.setattr(startup.socket, "getaddrinfo", fake_resolve)
    urls = parse_join_urls("10.9.9.9:7070,db.example:7071")
    assert startup.join_any(urls, "n1", "http://127.0.0.1:7075", Signer(None), 5.0) == {"id": "n1"}
    assert tried == ["http://10.9.9.9:7070", "http://[::1]:7071", "http://127.0.0.1:7071"]


def test_join_gives_up_after_its_timeout_naming_every_url(monkeypatch):
    from dkvs.runtime import startup
    from dkvs.transport.auth import Signer

    def refuse(url, *args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(startup, "post_internal", refuse)
    with pytest.raises(StartupError) as failed:
        startup.join_any(["http://10.9.9.9:1", "http://10.9.9.9:2"], "n1", "http://x:1", Signer(None), 0.3)
    assert str(failed.value) == ("could not join a cluster within 0.3 s (--join-timeout); tried "
                                 "http://10.9.9.9:1 (connection refused); http://10.9.9.9:2 (connection refused)")
