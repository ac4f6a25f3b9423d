"""``python -m dkvs.tools.leader transfer URL [--to ID]``: hand leadership over (admin).

The command behind a planned master change (rolling restarts, moving the master off a
machine; docs/operations.md): it finds the master through the node it is given and asks
it to hand over to ``--to`` (default: its most up-to-date slave). The master stops taking
new writes (they wait, they do not fail), brings the target fully up to date, tells it to
campaign at once and steps down (dkvs.core.transfer). Credentials as for
``python -m dkvs.tools.members``: the admin token (``--token-file`` / ``DKVS_TOKEN``) with
client auth, the cluster secret (``--cluster-secret-file``) to sign. Prints one JSON line
(``from``, ``to``, ``epoch``, ``master``); exit 0 on success, 1 when refused or
unreachable, 2 on bad usage.

    python -m dkvs.tools.leader transfer http://10.0.0.5:7070 --to n2 --token-file admin.token
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.parse

from .operator import add_credential_flags, credentials, find_master, post_to_master, run_command

__all__ = ["main"]

DEFAULT_TIMEOUT_SECONDS = 5.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dkvs.tools.leader", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("transfer",))
    p.add_argument("url", help="any node of the cluster")
    p.add_argument("--to", help="the member to hand over to (default: the most up-to-date slave)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                   help=f"seconds the master waits for the target before it takes writes again "
                   f"(default {DEFAULT_TIMEOUT_SECONDS:g})")
    add_credential_flags(p)
    return p


def _run(args) -> str:
    headers, signer = credentials(args)
    _, master = find_master(args.url, headers, args.timeout)
    if not master.get("url"):
        raise RuntimeError("no master is known right now; retry once one is elected")
    query = urllib.parse.urlencode({"timeout": f"{args.timeout:g}", **({"to": args.to} if args.to else {})})
    return json.dumps(post_to_master(master, f"/internal/transfer?{query}", headers, signer, args.timeout + 10))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= 60):
        print("leader: error: --timeout must be a number of seconds in (0, 60]", file=sys.stderr)
        return 2
    return run_command("leader", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
