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
import sys
import urllib.parse

from .operator import add_credential_flags, credentials, find_master, post_to_master, run_command

__all__ = ["main"]

TIMEOUT_SECONDS = 15.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dkvs.tools.members", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("list", "remove"))
    p.add_argument("url", help="any node of the cluster")
    p.add_argument("id", nargs="?", help="with remove: the member to remove")
    p.add_argument("--force", action="store_true", help="remove the member even though it is alive")
    add_credential_flags(p)
    return p


def _run(args) -> str:
    headers, signer = credentials(args)
    status, master = find_master(args.url, headers, TIMEOUT_SECONDS)
    if args.command == "list":
        return json.dumps([{k: m.get(k) for k in ("id", "url", "role", "alive")} for m in status["members"]])
    if not master.get("url"):
        raise RuntimeError("no master is known: a member can be removed only while a majority is alive "
                           "(see docs/operations.md)")
    query = urllib.parse.urlencode({"id": args.id, **({"force": "true"} if args.force else {})})
    post_to_master(master, f"/internal/remove?{query}", headers, signer, TIMEOUT_SECONDS)
    return f"removed {args.id}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "remove" and not args.id:
        print("members: error: remove needs the id of the member", file=sys.stderr)
        return 2
    return run_command("members", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
