"""``dkvs members|leader|backup|restore``: the operator's subcommands of the command-line client.

Same conventions as the data subcommands (:mod:`dkvs.client.cli`): ``--url``/``DKVS_URL``,
``--token``/``DKVS_TOKEN`` (an admin token when the cluster has client auth), ``--ca-file``
for ``https://`` nodes, ``--json``; exit 0 done, 1 refused for a reason of the cluster's
(no such member, a live member without ``--force``, no slave to hand over to), 2 usage,
connection or any other error, one line on stderr.

Unlike the data subcommands they talk to the node named by ``--url`` (the first one that
answers), not to the master they would discover: any node takes them (it relays
membership changes and transfers to the master itself), and a backup is served by the
node asked, from its own state. ``--cluster-secret-file`` (``DKVS_CLUSTER_SECRET_FILE``)
signs the requests, which a node with a cluster secret and no client auth asks for
before it changes the membership or the master.

``restore`` talks to no node: it writes a data dir (:mod:`dkvs.tools.backup`).
"""

from __future__ import annotations

import argparse
import json
from urllib.parse import quote, urlencode

from .admin import NodeAdmin
from .backup import download_backup

__all__ = ["ADMIN_COMMANDS", "add_admin_parsers", "run_admin"]

ADMIN_COMMANDS = ("members", "leader", "backup", "restore")
BACKUP_TIMEOUT_SECONDS = 60.0  # per request of a backup (a chunk, or the wait for the build)
TRANSFER_MARGIN_SECONDS = 10.0


def add_admin_parsers(sub, common: argparse.ArgumentParser) -> None:
    """Add the operator subcommands to the client's subparsers (``common``: shared flags)."""
    signed = argparse.ArgumentParser(add_help=False)
    signed.add_argument("--cluster-secret-file", help="file with the cluster secret, to sign the request "
                        "(env DKVS_CLUSTER_SECRET_FILE); needed by a node with a secret and no --auth-file")
    p = sub.add_parser("members", parents=[common, signed], help="members list | members remove ID [--force]")
    p.add_argument("action", nargs="?", choices=("list", "remove"), default="list")
    p.add_argument("id", nargs="?", help="with remove: the member to remove")
    p.add_argument("--force", action="store_true", help="remove the member even though it is alive")
    p = sub.add_parser("leader", parents=[common, signed], help="show the master | leader transfer [--to ID]")
    p.add_argument("action", nargs="?", choices=("show", "transfer"), default="show")
    p.add_argument("--to", help="with transfer: the member to hand over to (default: the most up-to-date slave)")
    p.add_argument("--transfer-timeout", type=float, help="with transfer: seconds the master waits for the "
                   "target before it takes writes again (default: one election timeout; at most 60)")
    p = sub.add_parser("backup", parents=[common], help="write the node's committed state to FILE (verified)")
    p.add_argument("file")
    p = sub.add_parser("restore", help="seed an empty --data-dir from a backup FILE, for a new cluster")
    p.add_argument("file")
    p.add_argument("--data-dir", required=True, help="a new or empty directory")
    p.add_argument("--advertise-url", default=None, help="the URL the new node will be reached at: its "
                   "--advertise-url, or http://HOST:PORT of its --host/--port (default http://127.0.0.1:7070)")
    p.add_argument("--id", help="the new node's id (default: generated)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")


def run_admin(args, urls: list[str], token: str | None, ssl_context, secret: str | None, usage, emit) -> int:
    """Run one operator subcommand; ``usage(message)`` raises the client's usage error and
    ``emit(doc, text)`` prints JSON or text. Errors propagate as :mod:`dkvs.errors`."""
    if args.command == "restore":
        return _restore(args, usage, emit)
    with NodeAdmin(urls, token=token, secret=secret, ssl_context=ssl_context, timeout=args.timeout) as admin:
        return _RUN[args.command](admin, args, usage, emit)


def _members(admin: NodeAdmin, args, usage, emit) -> int:
    if args.action == "list":
        if args.id is not None or args.force:
            usage("dkvs members list: takes no id and no --force")
        doc = admin.call("GET", "/members")
        lines = [f"{m.get('id')} {m.get('url')} {m.get('role')} "
                 f"{'alive' if m.get('alive') else 'down' if m.get('alive') is False else 'unknown'} "
                 f"last_seq={m.get('last_seq')}" for m in doc.get("members", ())]
        emit(doc, "\n".join(lines))
        return 0
    if not args.id:
        usage("dkvs members remove: give the id of the member")
    target = "/members/" + quote(args.id, safe="") + ("?force=true" if args.force else "")
    doc = admin.call("DELETE", target, signed=True)
    emit(doc, f"removed {doc.get('removed', args.id)}")
    return 0


def _leader(admin: NodeAdmin, args, usage, emit) -> int:
    if args.action == "show":
        if args.to is not None or args.transfer_timeout is not None:
            usage("dkvs leader: --to and --transfer-timeout go with 'transfer'")
        status = admin.call("GET", "/status")
        master = status.get("master") or {}
        doc = {"master": status.get("master"), "epoch": status.get("epoch"), "answered_by": status.get("id")}
        emit(doc, f"{master.get('id')} {master.get('url')} epoch={status.get('epoch')}" if master
             else f"no master known (asked {status.get('id')}, epoch={status.get('epoch')})")
        return 0
    timeout = args.transfer_timeout
    if timeout is not None and not 0 < timeout <= 60:
        usage("dkvs leader transfer: --transfer-timeout must be in (0, 60] seconds")
    query = {**({"to": args.to} if args.to else {}), **({"timeout": f"{timeout:g}"} if timeout else {})}
    target = "/leader/transfer" + ("?" + urlencode(query) if query else "")
    doc = admin.call("POST", target, signed=True, timeout=(timeout or 5.0) + TRANSFER_MARGIN_SECONDS + args.timeout)
    master = doc.get("master") or {}
    emit(doc, f"leader {doc.get('from')} -> {doc.get('to')} epoch={doc.get('epoch')} master={master.get('url')}")
    return 0


def _backup(admin: NodeAdmin, args, usage, emit) -> int:
    admin.timeout = max(args.timeout, BACKUP_TIMEOUT_SECONDS)
    info = download_backup(admin, args.file)
    doc = {"file": info.path, "seq": info.seq, "epoch": info.epoch, "keys": info.keys, "bytes": info.size,
           "sha256": info.sha256, "node": info.node, "role": info.role}
    emit(doc, f"backup of {info.node} ({info.role}) at seq {info.seq}: {info.keys} keys, {info.size} bytes "
              f"-> {info.path} (sha256 {info.sha256})")
    return 0


def _restore(args, usage, emit) -> int:
    from ..tools.backup import DEFAULT_RESTORE_URL, RestoreError, restore_backup

    try:
        done = restore_backup(args.file, args.data_dir, args.advertise_url or DEFAULT_RESTORE_URL, args.id)
    except RestoreError as exc:
        usage(f"dkvs restore: {exc}")
    doc = {"data_dir": done.data_dir, "id": done.node_id, "cluster_id": done.cluster_id, "url": done.url,
           "seq": done.seq, "keys": done.keys}
    emit(doc, f"restored {done.keys} keys at seq {done.seq} into {done.data_dir}: node {done.node_id} of the new "
              f"cluster {done.cluster_id} at {done.url}; start it with: dkvs --data-dir {done.data_dir} "
              f"(listening at {done.url})")
    return 0


_RUN = {"members": _members, "leader": _leader, "backup": _backup}


def print_json_or_text(as_json: bool):
    def emit(doc, text: str) -> None:
        print(json.dumps(doc, ensure_ascii=False) if as_json else text)
    return emit
