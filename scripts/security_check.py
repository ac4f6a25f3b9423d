#!/usr/bin/env python3
"""Attack live dkvs clusters on 127.0.0.1 and print one PASS/FAIL line per item of issue 11's
"Done when" list; exit 0 only if every item passes.

Everything runs in a temporary directory (cluster secret, auth file, TLS certificates);
every node is a child process started here and killed at the end (and each exits on its own
if this script dies: DKVS_EXIT_WITH_PARENT). Every wait is bounded.

    python3 scripts/security_check.py                 # every item (about a minute)
    python3 scripts/security_check.py --only cors,nkvd,tokens   # a subset (the smoke test)

The resource and TLS attacks live in scripts/security_attacks.py.

Items: tokens, read-token, prefix, internal, membership, open-joins, big-body, slow-conns,
tls, cors, nkvd. Figures (RSS growth, thread counts) are printed on the item's line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dkvs.tools.local_cluster import FAST_TIMINGS, LocalCluster, wait_for  # noqa: E402
from dkvs.transport.auth import Signer  # noqa: E402
from security_attacks import (LIVENESS_SECONDS, MAX_CONNECTIONS, Failed, call, check,  # noqa: E402
                              item_big_body, item_slow_conns, item_tls)

SECRET = "security-check-secret-0123456789"
TOKENS = {"tokens": [{"token": "r-token", "role": "read"}, {"token": "w-token", "role": "write"},
                     {"token": "a-token", "role": "admin"},
                     {"token": "app-token", "role": "write", "prefixes": ["app/"]}]}
ITEMS = ("tokens", "read-token", "prefix", "internal", "membership", "open-joins", "big-body",
         "slow-conns", "tls", "cors", "nkvd")


def kv(key: str) -> str:
    return "/kv/" + urllib.parse.quote(key, safe="")


# --- the clusters -------------------------------------------------------------------------------

class Secured:
    """A 3-node cluster with a cluster secret and an auth file."""

    def __init__(self, root: Path) -> None:
        secret, auth = root / "secret", root / "auth.json"
        secret.write_text(SECRET + "\n")
        auth.write_text(json.dumps(TOKENS))
        secret.chmod(0o600)
        auth.chmod(0o600)
        self.cluster = LocalCluster(*FAST_TIMINGS, "--cluster-secret-file", str(secret), "--auth-file", str(auth),
                                    "--max-connections", str(MAX_CONNECTIONS))
        first = self.cluster.start()
        self.nodes = [first] + [self.cluster.start("--join", first.url) for _ in range(2)]
        ok = wait_for(lambda: all(self._status(n.url).get("master") and len(self._status(n.url).get("members", ())) == 3
                                  for n in self.nodes), LIVENESS_SECONDS, interval=0.05)
        if not ok:
            raise Failed("the secured cluster did not form")

    @staticmethod
    def _status(url: str) -> dict:
        try:
            code, body, _ = call(url, "GET", "/status", token="r-token")
        except OSError:
            return {}
        return body if code == 200 else {}

    def master(self):
        statuses = {n.url: self._status(n.url) for n in self.nodes}
        return next(n for n in self.nodes if statuses[n.url].get("role") == "master")

    def member_count(self) -> int:
        return len(self._status(self.nodes[0].url).get("members", ()))

    def keys(self) -> list[str]:
        code, body, _ = call(self.nodes[0].url, "GET", "/kv?limit=1000", token="a-token")
        check(code == 200, f"an admin listing answered {code}")
        return [item["key"] for item in body["items"]]

    def close(self) -> None:
        self.cluster.close()


def item_tokens(c: Secured) -> str:
    for node in c.nodes:
        for method, path in (("PUT", kv("anon")), ("DELETE", kv("w/1")), ("GET", kv("w/1")), ("GET", "/kv"),
                             ("GET", "/status"), ("GET", "/metrics")):
            code, _, _ = call(node.url, method, path, b"x" if method == "PUT" else None)
            check(code == 401, f"{method} {path} without a token answered {code}")
        code, _, _ = call(node.url, "PUT", kv("anon"), b"x", token="not-a-token")
        check(code == 401, f"an unknown token answered {code}")
    check("anon" not in c.keys(), "a request without a token changed the store")
    return "no token / unknown token: 401 on every node, nothing written"


def item_read_token(c: Secured) -> str:
    master = c.master()
    check(call(master.url, "PUT", kv("ro"), b"1", token="w-token")[0] == 200, "a write token could not write")
    for node in c.nodes:
        code, _, _ = call(node.url, "PUT", kv("ro"), b"2", token="r-token")
        check(code == 403, f"a read token's PUT answered {code}")
        code, _, _ = call(node.url, "DELETE", kv("ro"), token="r-token")
        check(code == 403, f"a read token's DELETE answered {code}")
    code, body, _ = call(master.url, "GET", kv("ro"), token="r-token")
    check(code == 200 and body.get("value") == "1", f"the value changed or is unreadable: {code} {body}")
    return "read token: 403 on PUT/DELETE, value unchanged"


def item_prefix(c: Secured) -> str:
    master = c.master()
    check(call(master.url, "PUT", kv("secret/x"), b"v", token="w-token")[0] == 200, "setup write failed")
    check(call(master.url, "PUT", kv("app/x"), b"v", token="app-token")[0] == 200, "an app/ token could not write app/")
    for node in c.nodes:
        for method in ("PUT", "GET", "DELETE"):
            code, _, _ = call(node.url, method, kv("secret/x"), b"mine" if method == "PUT" else None, token="app-token")
            check(code == 403, f"an app/ token's {method} of secret/x answered {code}")
        code, body, _ = call(node.url, "GET", "/kv?limit=1000", token="app-token")
        check(code == 200 and all(i["key"].startswith("app/") for i in body.get("items", ())),
              f"an app/ token's listing showed other keys: {code}")
    code, body, _ = call(master.url, "GET", kv("secret/x"), token="r-token")
    check(body.get("value") == "v", "secret/x was changed")
    return "prefix token: 403 outside app/, listings show only app/ keys"


def item_internal(c: Secured) -> str:
    target, other = c.nodes[0], c.nodes[1]
    check(call(target.url, "GET", "/internal/identity")[0] == 401, "an unsigned identity request was accepted")
    check(call(target.url, "POST", "/internal/raft", b"{}")[0] == 401, "an unsigned raft message was accepted")
    signer = Signer(SECRET, node_id=other.id)
    captured = signer.headers("GET", "/internal/identity", b"", to=target.id)
    code, _, _ = call(target.url, "GET", "/internal/identity", headers=captured)
    check(code == 200, f"a correctly signed request answered {code}")
    code, _, _ = call(target.url, "GET", "/internal/identity", headers=captured)
    check(code == 401, f"a replay to the same node answered {code}")
    code, _, _ = call(c.nodes[2].url, "GET", "/internal/identity", headers=captured)
    check(code == 401, f"a replay to another node answered {code}")
    fresh = signer.headers("POST", f"/internal/remove?id={other.id}", b"", to=target.id)
    code, _, _ = call(target.url, "POST", f"/internal/remove?id={c.nodes[2].id}&force=true", b"", headers=fresh)
    check(code == 401, f"a signed request with its query swapped answered {code}")
    check(c.member_count() == 3, "a member was lost")
    return "unsigned, replayed (same and other node), altered: 401"


def item_membership(c: Secured) -> str:
    target = c.nodes[0]
    join = json.dumps({"id": "evil", "url": "http://127.0.0.1:1"}).encode()
    check(call(target.url, "POST", "/internal/join", join)[0] == 401, "an unsigned join was not refused")
    for victim in c.nodes:
        body = json.dumps({"id": victim.id}).encode()
        check(call(target.url, "POST", "/internal/leave", body)[0] == 401, "an unsigned leave was not refused")
        for token in (None, "w-token"):
            code, _, _ = call(target.url, "POST", f"/internal/remove?id={victim.id}&force=true", b"", token=token)
            check(code in (401, 403), f"a remove with token {token} answered {code}")
    check(c.member_count() == 3, "the membership changed")
    return "outsider join/leave/remove: refused (401/403), 3 members"


def item_open_joins(root: Path) -> str:
    with LocalCluster(*FAST_TIMINGS) as cluster:
        first = cluster.start()
        nodes = [first] + [cluster.start("--join", first.url) for _ in range(2)]
        cluster.wait_formed(nodes)
        for number, node in enumerate(nodes):
            body = json.dumps({"id": f"ghost{number}", "url": f"http://127.0.0.1:{number + 1}"}).encode()
            code, answer, _ = call(node.url, "POST", "/internal/join", body, timeout=30)
            check(code == 403, f"a join of an unreachable URL answered {code}: {answer}")
        code, status, _ = call(first.url, "GET", "/status")
        check(len(status.get("members", ())) == 3, f"members after the joins: {len(status.get('members', ()))}")
        master_url = status["master"]["url"]
        code, answer, _ = call(master_url, "PUT", kv("after") + "?acks=majority", b"ok")
        check(code == 200, f"a write after the joins answered {code}: {answer}")
    return "3 joins of unreachable URLs: 403, 3 members, acks=majority write 200"


def item_cors(c: Secured) -> str:
    code, _, headers = call(c.nodes[0].url, "OPTIONS", kv("x"), headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization"})
    allow = {k.lower(): v for k, v in headers.items()}.get("access-control-allow-origin")
    check(allow is None, f"preflight from an unlisted origin got Access-Control-Allow-Origin: {allow}")
    return f"preflight from http://evil.example: {code}, no Access-Control-Allow-Origin"


def item_nkvd(c: Secured) -> str:
    for path in ("/nkvd/set?key=a&value=b", "/nkvd/clear", "/nkvd/get?key=a"):
        code, _, _ = call(c.nodes[0].url, "GET", path, token="a-token")
        check(code == 404, f"GET {path} without --nkvd answered {code}")
    return "/nkvd/* without --nkvd: 404"


SECURED_ITEMS = {"tokens": item_tokens, "read-token": item_read_token, "prefix": item_prefix,
                 "internal": item_internal, "membership": item_membership, "big-body": item_big_body,
                 "slow-conns": item_slow_conns, "cors": item_cors, "nkvd": item_nkvd}
OWN_ITEMS = {"open-joins": item_open_joins, "tls": item_tls}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the nodes inherit it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(ITEMS), help="comma-separated items (default: all)")
    args = parser.parse_args(argv)
    chosen = [item.strip() for item in args.only.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in ITEMS]
    if unknown:
        print(f"security_check: error: unknown item(s) {', '.join(unknown)}; choose from {', '.join(ITEMS)}",
              file=sys.stderr)
        return 2
    raise_fd_limit()
    results: list[bool] = []

    def run(name, function, *arguments) -> None:
        started = time.monotonic()
        try:
            detail = function(*arguments)
            ok = True
        except Failed as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # noqa: BLE001 — one line per item, whatever broke
            detail, ok = f"{type(exc).__name__}: {exc}", False
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail} ({time.monotonic() - started:.1f} s)", flush=True)

    with tempfile.TemporaryDirectory(prefix="dkvs-security-") as tmp:
        root = Path(tmp)
        secured_items = [item for item in chosen if item in SECURED_ITEMS]
        if secured_items:
            try:
                secured = Secured(root)
            except Exception as exc:  # noqa: BLE001
                for item in secured_items:
                    results.append(False)
                    print(f"FAIL {item}: the secured cluster did not start ({exc})", flush=True)
                secured = None
            if secured is not None:
                try:
                    for item in secured_items:
                        run(item, SECURED_ITEMS[item], secured)
                finally:
                    secured.close()
        for item in chosen:
            if item in OWN_ITEMS:
                run(item, OWN_ITEMS[item], root)
    passed = sum(results)
    print(f"{passed}/{len(results)} passed; load average {os.getloadavg()[0]:.2f}", flush=True)
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
