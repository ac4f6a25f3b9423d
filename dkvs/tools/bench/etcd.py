"""etcd as a peer to measure against: find or unpack the binary, run a local 3-member cluster.

Nothing here needs root or changes the system. The binary comes from, in order: the
``--etcd PATH`` the caller names, ``etcd`` on ``PATH``, or Debian's ``etcd-server``
package fetched with ``apt-get download`` (an ordinary user may run it: it only writes
the ``.deb`` into the current directory) and unpacked with ``dpkg -x`` into a scratch
directory that later runs reuse. When none of that works, :class:`EtcdUnavailable` says
why in one sentence and the caller skips etcd.

:class:`EtcdCluster` starts ``n`` members on 127.0.0.1 with their own data directories
under a fresh temporary directory. etcd cannot bind port 0 and report the port, so free
ports are found by binding port 0 first and closing the socket; if a member still fails
to start (another program took the port meanwhile) the whole cluster is started once
more on new ports. ``close()`` terminates every member (then kills), and removes the data.
Members log to a file in their data directory, never to a pipe nobody reads.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["EtcdUnavailable", "EtcdCluster", "find_etcd", "etcd_version", "DEFAULT_CACHE_DIR"]

DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / f"dkvs-bench-etcd-{os.getuid()}"
INSTALL_TIMEOUT_SECONDS = 180.0
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 5.0
HTTP_TIMEOUT_SECONDS = 3.0
START_ATTEMPTS = 2


class EtcdUnavailable(Exception):
    """etcd cannot be found, installed or started here; the message says why."""


def _runs(binary: str) -> bool:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def etcd_version(binary: str) -> str:
    """``etcd Version: 3.4.23`` → ``"3.4.23"`` (or ``"unknown"``)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in out.splitlines():
        if line.lower().startswith("etcd version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def find_etcd(explicit: str | None = None, cache_dir: Path = DEFAULT_CACHE_DIR, progress=None) -> str:
    """The path of a working etcd binary; installs one into ``cache_dir`` if needed."""
    if explicit:
        if not _runs(explicit):
            raise EtcdUnavailable(f"--etcd {explicit} does not run")
        return explicit
    on_path = shutil.which("etcd")
    if on_path and _runs(on_path):
        return on_path
    unpacked = cache_dir / "root" / "usr" / "bin" / "etcd"
    if unpacked.exists() and _runs(str(unpacked)):
        return str(unpacked)
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        raise EtcdUnavailable("etcd is not installed and this system has no apt-get/dpkg to fetch "
                              "Debian's etcd-server package (give --etcd PATH)")
    if progress:
        progress(f"fetching Debian's etcd-server package into {cache_dir} ...")
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        for old in glob.glob(str(cache_dir / "etcd-server_*.deb")):
            os.unlink(old)
        subprocess.run(["apt-get", "download", "etcd-server"], cwd=cache_dir, capture_output=True,
                       timeout=INSTALL_TIMEOUT_SECONDS, check=True)
        debs = glob.glob(str(cache_dir / "etcd-server_*.deb"))
        if not debs:
            raise EtcdUnavailable("apt-get download etcd-server produced no package")
        subprocess.run(["dpkg", "-x", debs[0], str(cache_dir / "root")], capture_output=True,
                       timeout=INSTALL_TIMEOUT_SECONDS, check=True)
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise EtcdUnavailable(f"could not fetch or unpack etcd-server ({reason[-1] if reason else exc})") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EtcdUnavailable(f"could not fetch or unpack etcd-server ({exc})") from None
    if not (unpacked.exists() and _runs(str(unpacked))):
        raise EtcdUnavailable(f"the unpacked etcd-server has no working {unpacked}")
    return str(unpacked)


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports the kernel considers free right now (bound to port 0, then closed)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def gateway_call(url: str, path: str, doc: dict, timeout: float = HTTP_TIMEOUT_SECONDS) -> dict | None:
    """POST ``doc`` to etcd's JSON gateway; the answer's JSON, or None on any failure."""
    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(doc).encode(), {"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        return json.loads(body) if response.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


class EtcdCluster:
    """``n`` etcd members on 127.0.0.1, each with its own data dir; stopped on close.

    ``client_urls`` lists the members' client URLs; :meth:`leader_first` orders them
    leader first (writes go to the leader, as dkvs writes go to its master).
    """

    def __init__(self, binary: str, n: int = 3, data_dir_root: str | None = None) -> None:
        self.binary, self.size = binary, n
        self.procs: list[subprocess.Popen] = []
        self.client_urls: list[str] = []
        self.run_dir = Path(tempfile.mkdtemp(prefix="dkvs-bench-etcd-", dir=data_dir_root))
        try:
            for attempt in range(START_ATTEMPTS):
                if self._start(attempt):
                    return
                self._stop_members()
            raise EtcdUnavailable(f"the {n}-member etcd cluster did not become healthy within "
                                  f"{START_TIMEOUT_SECONDS:.0f} s (logs were in {self.run_dir})")
        except BaseException:
            self.close()
            raise

    def _start(self, attempt: int) -> bool:
        ports = _free_ports(2 * self.size)
        names = [f"m{i}" for i in range(self.size)]
        peer_urls = [f"http://127.0.0.1:{ports[2 * i + 1]}" for i in range(self.size)]
        self.client_urls = [f"http://127.0.0.1:{ports[2 * i]}" for i in range(self.size)]
        initial = ",".join(f"{name}={url}" for name, url in zip(names, peer_urls))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        token = f"dkvs-bench-{uuid.uuid4().hex[:8]}"
        for name, client, peer in zip(names, self.client_urls, peer_urls):
            data_dir = self.run_dir / f"try{attempt}-{name}"
            data_dir.mkdir(parents=True)
            with open(data_dir.with_suffix(".log"), "wb") as log_file:
                self.procs.append(subprocess.Popen(
                    [self.binary, "--name", name, "--data-dir", str(data_dir),
                     "--listen-client-urls", client, "--advertise-client-urls", client,
                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                     "--initial-cluster", initial, "--initial-cluster-state", "new",
                     "--initial-cluster-token", token, "--logger", "zap", "--log-level", "warn"],
                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env))
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if any(proc.poll() is not None for proc in self.procs):
                return False  # a member died (a port taken meanwhile?): start again
            if all(self._member_health(url) for url in self.client_urls) and self.leader() is not None:
                return True
            time.sleep(0.1)
        return False

    @staticmethod
    def _member_health(url: str) -> bool:
        host, _, port = url.removeprefix("http://").partition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT_SECONDS)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            return response.status == 200 and json.loads(response.read()).get("health") == "true"
        except (OSError, http.client.HTTPException, ValueError):
            return False
        finally:
            conn.close()

    def leader(self) -> str | None:
        """The client URL of the current leader, or None."""
        for url in self.client_urls:
            status = gateway_call(url, "/v3/maintenance/status", {})
            if status and status.get("leader") and status.get("header", {}).get("member_id") == status["leader"]:
                return url
        return None

    def leader_first(self) -> tuple[list[str], list[int]]:
        """Client URLs and pids, the leader's first."""
        leader = self.leader()
        order = sorted(range(self.size), key=lambda i: self.client_urls[i] != leader)
        return [self.client_urls[i] for i in order], [self.procs[i].pid for i in order]

    def _stop_members(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_SECONDS)
        self.procs = []

    def close(self) -> None:
        self._stop_members()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
