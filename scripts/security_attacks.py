"""The resource and TLS attacks of scripts/security_check.py (kept apart to keep each file short).

``item_big_body`` and ``item_slow_conns`` take the secured cluster; ``item_tls`` starts its
own cluster over TLS. Each returns the figures for its PASS line or raises ``Failed``.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from pathlib import Path

from dkvs.tools.local_cluster import FAST_TIMINGS, LocalCluster, wait_for
from dkvs.tools.tls_certs import https_call, make_ca, openssl_available

__all__ = ["Failed", "check", "call", "proc_status", "item_big_body", "item_slow_conns", "item_tls",
           "LIVENESS_SECONDS", "MAX_CONNECTIONS"]

BIG_BODY_BYTES = 250 * 1024 * 1024
RSS_LIMIT_BYTES = 20 * 1024 * 1024
SLOW_CONNECTIONS = 1300
SLOW_ATTACK_SECONDS = 16.0
NEW_CLIENT_AFTER_SECONDS = 15.0
THREADS_OVER_CAP = 48  # "a few dozen"
LIVENESS_SECONDS = 60.0
MAX_CONNECTIONS = 1024


class Failed(Exception):
    """An item's check did not hold; the message says what was seen."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Failed(what)


def call(url: str, method: str, path: str, body: bytes | None = None, token: str | None = None,
         headers: dict | None = None, timeout: float = 10.0) -> tuple[int, dict, dict]:
    """One request on a fresh plain-HTTP connection: (status, JSON body, headers)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        try:
            parsed = json.loads(data or b"{}")
        except ValueError:
            parsed = {"raw": data[:200].decode(errors="replace")}
        return response.status, parsed if isinstance(parsed, dict) else {"value": parsed}, dict(response.getheaders())
    finally:
        conn.close()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (bytes) and Threads of a process, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
        elif name == "Threads":
            values[name] = int(rest)
    return values


def item_big_body(c) -> str:  # c: security_check.Secured
    node = c.nodes[2]
    pid = node.proc.pid
    before = proc_status(pid)
    parts = urllib.parse.urlsplit(node.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    head = (f"POST /internal/raft HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {BIG_BODY_BYTES}\r\n\r\n").encode()
    chunk = b"x" * (1024 * 1024)
    sent, answer = 0, b""
    peak = before["VmRSS"]
    try:
        sock.sendall(head)
        while sent < BIG_BODY_BYTES:
            sock.sendall(chunk)
            sent += len(chunk)
            if sent % (16 * len(chunk)) == 0:
                peak = max(peak, proc_status(pid)["VmRSS"])
    except OSError:
        pass  # the node closed the connection: the expected outcome
    try:
        sock.settimeout(5)
        answer = sock.recv(4096)
    except OSError:
        pass
    sock.close()
    after = proc_status(pid)
    peak = max(peak, after["VmRSS"])
    growth = max(after["VmHWM"] - before["VmHWM"], peak - before["VmRSS"])
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    check(b" 401 " in answer.split(b"\r\n", 1)[0] or sent < BIG_BODY_BYTES,
          f"the body was not refused (sent {sent >> 20} MiB, answer {status_line!r})")
    check(growth < RSS_LIMIT_BYTES, f"RSS grew by {growth / 2**20:.1f} MB")
    check(c.member_count() == 3, "the cluster broke")
    return (f"answer {status_line or 'connection closed'!r} after {sent >> 20} MiB sent; "
            f"RSS growth {growth / 2**20:.1f} MB (limit 20)")


def item_slow_conns(c) -> str:  # c: security_check.Secured
    node = c.nodes[1]
    pid = node.proc.pid
    parts = urllib.parse.urlsplit(node.url)
    address = (parts.hostname, parts.port)
    old = [http.client.HTTPConnection(*address, timeout=10) for _ in range(3)]

    def use(conn) -> int:
        conn.request("GET", "/status", headers={"Authorization": "Bearer r-token"})
        response = conn.getresponse()
        response.read()
        return response.status

    check(all(use(conn) == 200 for conn in old), "the old connections were not served before the attack")
    threads_before = proc_status(pid)["Threads"]
    attackers: list[socket.socket] = []
    stop = threading.Event()
    start = time.monotonic()
    for _ in range(SLOW_CONNECTIONS):
        try:
            attackers.append(socket.create_connection(address, timeout=2))
        except OSError:
            break
    opened = len(attackers)

    def trickle() -> None:  # one header byte per second on every connection
        message = b"GET /status HTTP/1.1\r\nHost: x\r\n"
        position = 0
        while not stop.wait(1.0):
            byte = message[position % len(message):position % len(message) + 1]
            position += 1
            for s in attackers:
                try:
                    s.send(byte, socket.MSG_DONTWAIT)
                except OSError:
                    pass
    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    max_threads, old_failures, new_client = threads_before, [], None
    try:
        while time.monotonic() - start < SLOW_ATTACK_SECONDS:
            max_threads = max(max_threads, proc_status(pid)["Threads"])
            for conn in old:
                try:
                    if use(conn) != 200:
                        old_failures.append("status")
                except (OSError, http.client.HTTPException) as exc:
                    old_failures.append(type(exc).__name__)
            if new_client is None and time.monotonic() - start >= NEW_CLIENT_AFTER_SECONDS:
                try:
                    new_client = call(node.url, "GET", "/status", token="r-token", timeout=5)[0]
                except OSError as exc:
                    new_client = type(exc).__name__
            time.sleep(0.5)
    finally:
        stop.set()
        trickler.join(5)
        for s in attackers:
            s.close()
        for conn in old:
            conn.close()
    figures = (f"{opened} slow connections; threads {threads_before} -> max {max_threads} "
               f"(cap {MAX_CONNECTIONS}); new client at {NEW_CLIENT_AFTER_SECONDS:g} s: {new_client}")
    check(max_threads <= MAX_CONNECTIONS + THREADS_OVER_CAP, "too many threads: " + figures)
    check(not old_failures, f"old connections failed: {old_failures[:5]}; " + figures)
    check(new_client == 200, "the new client was not served: " + figures)
    return figures


def item_tls(root: Path) -> str:
    if not openssl_available():
        raise Failed("the openssl binary is not installed: cannot make certificates")
    ca = make_ca(root / "tls")
    client_context = ca.context()
    client_context.load_cert_chain(*ca.node("client"))

    def args(name):
        cert, key = ca.node(name)
        return ("--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca.cert))

    def status(url):
        try:
            code, body = https_call(url, "GET", "/status", context=client_context)
        except OSError:
            return {}
        return body if code == 200 else {}

    with LocalCluster(*FAST_TIMINGS, "--tls-client-auth", "required") as cluster:
        first = cluster.start(*args("n1"))
        nodes = [first] + [cluster.start("--join", first.url, *args(f"n{i}")) for i in (2, 3)]

        def formed(group):
            seen = [status(n.url) for n in group]
            masters = {(s.get("master") or {}).get("id") for s in seen}
            ids = {n.id for n in group}
            return all(seen) and len(masters) == 1 and None not in masters and all(
                ids <= {m["id"] for m in s["members"] if m.get("alive")} for s in seen)
        check(bool(wait_for(lambda: formed(nodes), LIVENESS_SECONDS, 0.05)), "the TLS cluster did not form")
        for i in range(10):
            code, _ = https_call(nodes[i % 3].url, "PUT", f"/kv/t{i}?acks=all", b"v", context=client_context)
            check(code == 200, f"a write over TLS answered {code}")
        try:
            call(first.url, "GET", "/status", timeout=5)
            refused = False
        except (OSError, http.client.HTTPException):
            refused = True
        check(refused, "plain HTTP was answered on a TLS port")
        try:
            https_call(first.url, "GET", "/health", context=ssl.create_default_context())
            verified = False
        except ssl.SSLCertVerificationError:
            verified = True
        check(verified, "a client without the CA was not refused")
        master_id = status(first.url)["master"]["id"]
        master = next(n for n in nodes if n.id == master_id)
        master.kill()
        survivors = [n for n in nodes if n is not master]
        start = time.monotonic()

        def new_master():
            ids = {(status(n.url).get("master") or {}).get("id") for n in survivors}
            return len(ids) == 1 and None not in ids and master_id not in ids
        check(bool(wait_for(new_master, LIVENESS_SECONDS, 0.05)), "no new master after SIGKILL")
        took = time.monotonic() - start

        def listed(node):
            code, body = https_call(node.url, "GET", "/kv?prefix=t&limit=100", context=client_context)
            return code == 200 and len(body["items"]) == 10
        check(bool(wait_for(lambda: all(listed(n) for n in survivors), LIVENESS_SECONDS)), "writes lost")
    return f"3 nodes over TLS replicate; new master {took:.1f} s after SIGKILL; plain HTTP and no-CA clients refused"
