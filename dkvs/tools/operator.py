"""What the operator commands share (``dkvs.tools.members``, ``dkvs.tools.leader``).

Credentials — the admin token (``--token-file`` / ``DKVS_TOKEN``) when the cluster has
client auth, the cluster secret (``--cluster-secret-file`` / ``DKVS_CLUSTER_SECRET_FILE``) to
sign when it has one — so the commands work in every setup; finding the master through any
node; one signed POST to it; and the exit convention: one line, 0 done, 1 refused or
unreachable, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from ..runtime.startup import StartupError, read_secret_file
from ..transport.auth import Signer
from .local_cluster import http_call

__all__ = ["add_credential_flags", "credentials", "find_master", "post_to_master", "run_command", "OPERATOR_ID"]

OPERATOR_ID = "operator"  # the signed sender of an operator's request (not a member)


def add_credential_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token-file", help="file holding an admin token [DKVS_TOKEN holds the token itself]")
    parser.add_argument("--cluster-secret-file", help="the cluster secret, to sign the request "
                        "[DKVS_CLUSTER_SECRET_FILE]")


def credentials(args) -> tuple[dict, Signer]:
    """``(headers with the bearer token, signer)`` from the flags or the environment."""
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


def find_master(url: str, headers: dict, timeout: float) -> tuple[dict, dict]:
    """``(status of the node at url, its master {id, url} or {} when none is known)``."""
    code, status = http_call(url, "GET", "/status", timeout=timeout, headers=headers)
    if code != 200:
        raise RuntimeError(f"{url}/status answered {code}: {status.get('message', status)}")
    return status, status.get("master") or {}


def post_to_master(master: dict, path: str, headers: dict, signer: Signer, timeout: float) -> dict:
    """POST ``path`` to the master, signed for it; its JSON answer, or RuntimeError."""
    signed = signer.headers("POST", path, b"", to=master["id"])
    code, answer = http_call(master["url"], "POST", path, b"", timeout=timeout, headers={**headers, **signed})
    if code != 200:
        raise RuntimeError(f"the master refused: {code} {answer.get('message', answer)}")
    return answer


def run_command(name: str, run: Callable[[], str]) -> int:
    """Print what ``run`` returns; a failure is one line on stderr (exit 1, or 2 for usage)."""
    try:
        print(run())
    except StartupError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    return 0
