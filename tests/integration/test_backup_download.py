"""The backup download against an in-process node: every way it can go wrong ends without a
file (or with a verified one).

Chunks are made tiny so a small store takes many requests; the checksum catches a changed
byte (and the target is never created), a backup the node dropped mid-way is started again,
a backup still being built answers 202 and the client waits on it, and with client auth a
backup needs an admin token.
"""

from __future__ import annotations

import json
import os

import pytest

from dkvs import Client
from dkvs.api import admin_routes
from dkvs.client import backup as backup_module
from dkvs.client.admin import NodeAdmin
from dkvs.client.backup import BackupFailed, download_backup
from dkvs.errors import Forbidden
from dkvs.runtime import backups
from dkvs.runtime.app import DkvsNode, Settings
from dkvs.storage.snapshot_file import read_snapshot

KEYS = 600


@pytest.fixture(scope="module")
def node():
    node = DkvsNode(Settings(port=0, heartbeat_interval=0.05, election_timeout=0.5)).start()
    try:
        with Client([node.url], timeout=30) as client:
            for i in range(KEYS):
                client.put(f"key/{i:05d}", f"value {i}")
            client.put("bin", b"\x00\xff\xfe")
        yield node
    finally:
        node.stop()


@pytest.fixture(autouse=True)
def tiny_chunks(monkeypatch):
    monkeypatch.setattr(admin_routes, "SNAPSHOT_CHUNK_BYTES", 1000)


def test_a_backup_in_many_chunks_is_the_node_state(node, tmp_path):
    path = tmp_path / "b"
    with NodeAdmin([node.url], timeout=30) as admin:
        info = download_backup(admin, str(path))
    assert info.size > 10 * 1000 and info.keys == KEYS + 1 and info.role == "master"
    snapshot = read_snapshot(str(path))
    assert snapshot.seq == info.seq and len(snapshot.items) == KEYS + 1
    with Client([node.url], timeout=30) as client:
        assert {k: v for k, v, _ in snapshot.items}["key/00042"] == client.get("key/00042")
    assert os.listdir(tmp_path) == ["b"]


def test_a_changed_byte_fails_the_checksum_and_leaves_no_file(node, tmp_path, monkeypatch):
    real_read = backups.Export.read

    def corrupt(self, offset, max_bytes):
        data = real_read(self, offset, max_bytes)
        return bytes([data[0] ^ 1]) + data[1:] if offset == 3000 else data

    monkeypatch.setattr(backups.Export, "read", corrupt)
    with NodeAdmin([node.url], timeout=30) as admin, pytest.raises(BackupFailed, match="checksum"):
        download_backup(admin, str(tmp_path / "b"))
    assert os.listdir(tmp_path) == []


def test_a_backup_dropped_midway_is_started_again(node, tmp_path, monkeypatch):
    real_get = backups.BackupExports.get
    calls = []

    def forget_once(self, export_id):
        calls.append(export_id)
        return None if len(calls) == 2 else real_get(self, export_id)

    monkeypatch.setattr(backups.BackupExports, "get", forget_once)
    with NodeAdmin([node.url], timeout=30) as admin:
        info = download_backup(admin, str(tmp_path / "b"))
    assert len(calls) > 3 and read_snapshot(str(tmp_path / "b")).seq == info.seq


def test_a_backup_being_built_answers_202_and_the_client_waits(node, tmp_path, monkeypatch):
    with Client([node.url], timeout=30) as client:
        client.put("moved", "on")  # a new commit seq: the next backup is a new build
    monkeypatch.setattr(admin_routes, "BUILD_WAIT_SECONDS", 0.0)
    real_build, real_get = backups.Export.build, backup_module._get
    answered_202 = []

    def held_build(self, members, data, directory):
        for _ in range(1000):  # held until the client saw a 202 (bounded: 10 s)
            if answered_202:
                break
            self._cancel.wait(0.01)
        real_build(self, members, data, directory)

    def spy_get(admin, target, deadline):
        answer = real_get(admin, target, deadline)
        if answer.status == 202:
            answered_202.append(json.loads(answer.body))
        return answer

    monkeypatch.setattr(backups.Export, "build", held_build)
    monkeypatch.setattr(backup_module, "_get", spy_get)
    with NodeAdmin([node.url], timeout=30) as admin:
        info = download_backup(admin, str(tmp_path / "b"))
    assert answered_202 and answered_202[0]["building"] is True and answered_202[0]["seq"] == info.seq


def test_with_client_auth_a_backup_needs_an_admin_token_for_every_key(tmp_path):
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"tokens": [{"token": "reader", "role": "read"},
                                           {"token": "app-admin", "role": "admin", "prefixes": ["app/"]},
                                           {"token": "boss", "role": "admin"}]}))
    node = DkvsNode(Settings(port=0, auth_file=str(auth))).start()
    try:
        for weak in ("reader", "app-admin"):  # a backup holds every key: prefixes are not enough
            with NodeAdmin([node.url], token=weak, timeout=30) as admin, pytest.raises(Forbidden):
                download_backup(admin, str(tmp_path / "b"))
        assert not (tmp_path / "b").exists()
        with NodeAdmin([node.url], token="boss", timeout=30) as admin:
            assert download_backup(admin, str(tmp_path / "b")).keys == 0
    finally:
        node.stop()


def test_stopping_drops_the_exports(node, tmp_path):
    # (Last in this file: the node takes no backup once its exports are closed.)
    with NodeAdmin([node.url], timeout=30) as admin:
        first = admin.request("GET", "/snapshot")
        export_id = first.headers["x-dkvs-snapshot"]
        node.service.close_backups()
        gone = admin.request("GET", f"/snapshot?id={export_id}&offset=0")
    assert first.status == 200 and gone.status == 404 and gone.json()["error"] == "backup_gone"
