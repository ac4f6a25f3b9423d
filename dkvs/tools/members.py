"""``python -m dkvs.tools.members``: list a cluster's members, remove dead ones (admin).

The repair command of docs/operations.md: a member that died for good stays in the member
list (and counts in every majority) until an operator removes it. This command finds the
master through the node it is given and asks it to remove the member, with the admin token
(``--token-file`` / ``DKVS_TOKEN``) when the cluster has client auth, and signed with the
cluster secret (``--cluster-secret-file``) when it has one, so it works in every setup.
A live member is refused unless ``--force``. Exit status 0 on success, 1 when the cluster
refused or could not be reached, 2 on bad usage; always one line.

    python -m dkvs.tools.members list http://10.0.0.5:7070 --token-file admin.token
    python -m dkvs.tools.members remove http://10.0.0.5:7070 ID --token-file admin.token
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse

from ..runtime.startup import StartupError, read_secret_file
from ..transport.auth import Signer
from .local_cluster import http_call

__all__ = ["main"]

TIMEOUT_SECONDS = 15.0
OPERATOR_ID = "operator"  # the signed sender of an operator's request (not a member)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dkvs.tools.members", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("list", "remove"))
    p.add_argument("url", help="any node of the cluster")
    p.add_argument("id", nargs="?", help="with remove: the member to remove")
    p.add_argument("--force", action="store_true", help="remove the member even though it is alive")
    p.add_argument("--token-file", help="file holding an admin token [DKVS_TOKEN holds the token itself]")
    p.add_argument("--cluster-secret-file", help="the cluster secret, to sign the request "
                   "[DKVS_CLUSTER_SECRET_FILE]")
    return p


def _credentials(args) -> tuple[dict, Signer]:
    token = os.environ.get("DKVS_TOKEN", "")
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as file:
                token = file.read().strip()
        except OSError as exc:
            raise StartupError(f"cannot read --token-file {args.token_file}: {exc.strerror or exc}") from None
    secret_file = args.cluster_secret_file or os.environ.get("DKVS_CLUSTER_SECRET_FILE")
    signer = Signer(read_secret_file(secret_file) if secret_file else None, node_id=OPERATOR_ID)
    return ({"Authorization": f"Bearer {token}"} if token else {}), signer


def _run(args) -> str:
    headers, signer = _credentials(args)
    code, status = http_call(args.url, "GET", "/status", timeout=TIMEOUT_SECONDS, headers=headers)
    if code != 200:
        raise RuntimeError(f"{args.url}/status answered {code}: {status.get('message', status)}")
    if args.command == "list":
        return json.dumps([{k: m.get(k) for k in ("id", "url", "role", "alive")} for m in status["members"]])
    master = status.get("master") or {}
    if not master.get("url"):
        raise RuntimeError("no master is known: a member can be removed only while a majority is alive "
                           "(see docs/operations.md)")
    query = urllib.parse.urlencode({"id": args.id, **({"force": "true"} if args.force else {})})
    path = f"/internal/remove?{query}"
    signed = signer.headers("POST", path, b"", to=master["id"])
    code, answer = http_call(master["url"], "POST", path, b"", timeout=TIMEOUT_SECONDS,
                             headers={**headers, **signed})
    if code != 200:
        raise RuntimeError(f"the master refused: {code} {answer.get('message', answer)}")
    return f"removed {args.id}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "remove" and not args.id:
        print("members: error: remove needs the id of the member", file=sys.stderr)
        return 2
    try:
        print(_run(args))
    except StartupError as exc:
        print(f"members: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        print(f"members: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
