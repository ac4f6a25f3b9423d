"""A full (or read-only, or vanished) disk is a 507 answer, not a crash (issue 12, part 3).

A live node on 127.0.0.1 (port 0) whose storage is wrapped by a stub that raises the
errors a full disk raises; then, when the machine allows it, a real 2 MiB tmpfs filled to
the brim. Each checks: writes get 507 ``insufficient_storage`` (JSON), reads are served,
writes work again by themselves once space is freed, and no acknowledged write is lost.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from dkvs.errors import InsufficientStorage
from dkvs.runtime.answers import raise_for
from dkvs.runtime.app import DkvsNode, Settings
from dkvs.driver import ClientReply

DEADLINE_SECONDS = 20.0


def call(method: str, url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class FailingStorage:
    """The node's storage, except that while ``error`` is set every write raises it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.error: int | None = None
        self.failures = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _check(self) -> None:
        if self.error is not None:
            self.failures += 1
            raise OSError(self.error, os.strerror(self.error))

    def append(self, entries) -> None:
        self._check()
        self.inner.append(entries)

    def save_state(self, epoch, voted_for) -> None:
        self._check()
        self.inner.save_state(epoch, voted_for)

    def truncate_after(self, seq) -> None:
        self._check()
        self.inner.truncate_after(seq)


def start(data_dir) -> DkvsNode:
    return DkvsNode(Settings(port=0, data_dir=str(data_dir), fsync="always")).start()


def put_until_ok(url: str, key: str, value: str) -> dict:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        status, body = call("PUT", f"{url}/kv/{key}", value.encode())
        if status == 200:
            return body
        assert status == 507 and body["error"] == "insufficient_storage", (status, body)
        assert time.monotonic() < deadline, "the node did not write again after space was freed"
        time.sleep(0.05)  # polling a condition, with the bound above


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EIO, errno.ENOENT])
def test_a_failing_disk_gets_507_and_the_node_writes_again(tmp_path, code):
    node = start(tmp_path)
    acknowledged = {}
    try:
        url = node.url
        assert call("PUT", f"{url}/kv/a", b"1")[0] == 200
        acknowledged["a"] = "1"
        stub = FailingStorage(node.host.executor.storage)
        node.host.executor.storage = stub
        stub.error = code
        status, body = call("PUT", f"{url}/kv/b", b"2")
        assert status == 507 and body["error"] == "insufficient_storage", body
        assert "not acknowledged" in body["message"]
        assert call("GET", f"{url}/kv/b")[0] == 404  # not durable, so not visible
        status, body = call("PUT", f"{url}/kv/c", b"3")  # refused at once, nothing logged
        assert status == 507 and "nothing was written" in body["message"], body
        status, body = call("GET", f"{url}/kv/a")  # reads are served
        assert status == 200 and body["value"] == "1", body
        assert node.host.failed is None and stub.failures >= 1
        stub.error = None  # space is freed
        put_until_ok(url, "d", "4")
        acknowledged["d"] = "4"
        assert call("PUT", f"{url}/kv/c", b"3")[0] == 200
        acknowledged["c"] = "3"
    finally:
        node.stop()
    node = start(tmp_path)  # every acknowledged write survived
    try:
        for key, value in acknowledged.items():
            status, body = call("GET", f"{node.url}/kv/{key}")
            assert status == 200 and body["value"] == value, (key, body)
    finally:
        node.stop()


def test_the_507_answer():
    with pytest.raises(InsufficientStorage, match="may or may not be applied") as caught:
        raise_for(ClientReply(1, {"seq": 7}, "disk_full"), "majority", 5.0)
    assert caught.value.status == 507 and caught.value.to_json()["error"] == "insufficient_storage"
    with pytest.raises(InsufficientStorage, match="nothing was written"):
        raise_for(ClientReply(1, None, "disk_full"), "1", 5.0)


# -- a real full disk -------------------------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MiB tmpfs, unmounted afterwards (skipped unless root may mount one)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def fill(directory) -> str:
    """Fill the file system to the brim; return the filler's path."""
    path = os.path.join(directory, f"filler-{uuid.uuid4().hex}")
    with open(path, "wb", buffering=0) as file:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    file.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return path


def test_a_real_full_tmpfs(tmpfs):
    data = tmpfs / "data"
    node = start(data)
    acknowledged = {}
    try:
        url = node.url
        for i in range(20):
            assert call("PUT", f"{url}/kv/k{i}", f"v{i}".encode())[0] == 200
            acknowledged[f"k{i}"] = f"v{i}"
        filler = fill(tmpfs)
        statuses = []
        for i in range(20, 40):
            status, body = call("PUT", f"{url}/kv/k{i}", ("x" * 2000).encode())
            statuses.append(status)
            assert status in (200, 507), body
            if status == 200:
                acknowledged[f"k{i}"] = "x" * 2000
        assert 507 in statuses
        assert call("GET", f"{url}/kv/k0")[1]["value"] == "v0"  # reads are served
        assert node.host.failed is None
        node.stop()
        node = start(data)  # a restart on the still-full disk serves too
        url = node.url
        assert call("GET", f"{url}/kv/k0")[1]["value"] == "v0"
        deadline = time.monotonic() + DEADLINE_SECONDS
        while (answer := call("PUT", f"{url}/kv/full", b"x" * 4000))[0] == 503:  # its election first
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)
        assert answer[0] == 507 and answer[1]["error"] == "insufficient_storage", answer
        os.remove(filler)  # space is freed
        put_until_ok(url, "after", "yes")
        acknowledged["after"] = "yes"
    finally:
        node.stop()
    node = start(data)
    try:
        for key, value in acknowledged.items():
            status, body = call("GET", f"{node.url}/kv/{key}")
            assert status == 200 and body["value"] == value, (key, status)
    finally:
        node.stop()


def test_a_master_that_cannot_persist_hands_over(tmp_path):
    first = start(tmp_path / "n1")
    nodes = [first]
    try:
        for name in ("n2", "n3"):
            nodes.append(DkvsNode(Settings(port=0, data_dir=str(tmp_path / name), fsync="always",
                                           join=first.url)).start())
        assert call("PUT", f"{first.url}/kv/a?acks=all", b"1")[0] == 200
        stub = FailingStorage(first.host.executor.storage)
        first.host.executor.storage = stub
        stub.error = errno.ENOSPC
        status, body = call("PUT", f"{first.url}/kv/b", b"2")
        assert status == 507, body
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not any(n.host.node.role == "master" for n in nodes[1:]):  # an election, then a new master
            assert time.monotonic() < deadline, "no member took over from the master that cannot persist"
            time.sleep(0.05)
        master = next(n for n in nodes[1:] if n.host.node.role == "master")
        assert put_until_ok(master.url, "c", "3")["seq"] > 0
        assert call("GET", f"{first.url}/kv/a")[1]["value"] == "1"  # the old master still serves reads
        stub.error = None
        deadline = time.monotonic() + DEADLINE_SECONDS
        while call("GET", f"{first.url}/kv/c")[0] != 200:  # it catches up by itself
            assert time.monotonic() < deadline, "the old master did not catch up after space was freed"
            time.sleep(0.05)
        assert first.host.failed is None
    finally:
        for node in reversed(nodes):
            node.stop()


def test_an_idle_node_retries_by_itself(tmp_path):
    node = start(tmp_path)
    try:
        stub = FailingStorage(node.host.executor.storage)
        node.host.executor.storage = stub
        stub.error = errno.ENOSPC
        assert call("PUT", f"{node.url}/kv/b", b"2")[0] == 507
        stub.error = None  # no request arrives: only ticks
        deadline = time.monotonic() + DEADLINE_SECONDS
        while node.host.driver.disk_error is not None:
            assert time.monotonic() < deadline, "the idle node never retried"
            time.sleep(0.05)
        assert call("PUT", f"{node.url}/kv/c", b"3")[0] == 200  # the first write after is accepted
    finally:
        node.stop()
