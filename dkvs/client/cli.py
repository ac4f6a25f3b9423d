"""``dkvs get|put|del|ls|watch|txn|lease|status|members|leader|backup|restore ...``: the command-line client.

``dkvs`` with flags (or none) starts a node; ``dkvs`` followed by one of :data:`COMMANDS`
runs this client instead (:func:`dkvs.cli.main` dispatches on the first argument). It is a
thin layer over :class:`dkvs.client.Client`, so it finds the master, retries what is safe
and reports what is not, exactly as a program using the client would.

Conventions (the rules of issue 14, in one place):

* Nodes: ``--url`` or ``DKVS_URL`` (comma-separated URLs allowed; default
  ``http://127.0.0.1:7070``); a token with ``--token`` or ``DKVS_TOKEN``; for ``https://``
  nodes the cluster's CA with ``--ca-file`` or ``DKVS_CA_FILE``.
* The operator's subcommands (``members``, ``leader``, ``backup``, ``restore``) live in
  :mod:`dkvs.client.cli_admin`.
* Values from the argument, or from standard input when it is omitted (bytes as they are:
  a value that is not UTF-8 is stored as binary).
* Output plain for humans (``get`` prints the value alone, raw bytes for a binary value);
  ``--json`` prints one JSON document (values as ``value`` or ``value_base64``).
* Exit status: 0 success; 1 key not found or condition failed (409, a transaction whose
  comparisons failed); 2 usage, connection or any other error, with one line on stderr.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys

from ..errors import Conflict, DkvsError, NotFound
from .cli_admin import ADMIN_COMMANDS, add_admin_parsers, print_json_or_text, run_admin
from .client import Client
from .connection import tls_context

__all__ = ["COMMANDS", "main", "EXIT_OK", "EXIT_FALSE", "EXIT_ERROR", "DEFAULT_URL"]

COMMANDS = ("get", "put", "del", "ls", "watch", "txn", "lease", "status", *ADMIN_COMMANDS)
EXIT_OK, EXIT_FALSE, EXIT_ERROR = 0, 1, 2
DEFAULT_URL = "http://127.0.0.1:7070"
CLI_RETRY_SECONDS = 3.0  # a person at a prompt: give up on an unreachable cluster soon


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _Usage(f"{self.prog}: {message}")


class _Usage(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="node URL(s), comma-separated (env DKVS_URL; default %s)" % DEFAULT_URL)
    common.add_argument("--token", help="bearer token (env DKVS_TOKEN)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a node (default 5)")
    common.add_argument("--ca-file", help="CA certificate to verify https:// nodes (env DKVS_CA_FILE)")
    write = argparse.ArgumentParser(add_help=False)
    write.add_argument("--acks", choices=("1", "majority", "all"), help="durability to wait for")
    parser = _Parser(prog="dkvs", description="dkvs command-line client (start a node: dkvs [flags])")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    p = sub.add_parser("get", parents=[common], help="print a key's value")
    p.add_argument("key")
    p.add_argument("--consistent", action="store_true", help="linearizable read (from the master)")
    p = sub.add_parser("put", parents=[common, write], help="set a key (value from the argument or stdin)")
    p.add_argument("key")
    p.add_argument("value", nargs="?")
    p.add_argument("--if-seq", type=int, help="only if the key is at this seq (0: only if absent)")
    p.add_argument("--lease", type=int, help="attach the key to this lease")
    p.add_argument("--ttl", type=float, help="give the key a lease of its own of this many seconds")
    p = sub.add_parser("del", parents=[common, write], help="delete a key, or every key under --prefix")
    p.add_argument("key", nargs="?")
    p.add_argument("--if-seq", type=int, help="only if the key is at this seq")
    p.add_argument("--prefix", help="delete every key starting with this (one atomic write)")
    p.add_argument("--all", action="store_true", help="delete every key")
    p = sub.add_parser("ls", parents=[common], help="list keys (and values) under a prefix")
    p.add_argument("prefix", nargs="?", default="")
    p = sub.add_parser("watch", parents=[common], help="print changes to a key or a prefix as they happen")
    p.add_argument("key", nargs="?")
    p.add_argument("--prefix", help="watch every key starting with this")
    p.add_argument("--after-seq", type=int, default=0, help="only changes after this seq")
    p.add_argument("--count", type=int, help="stop after this many changes")
    p = sub.add_parser("txn", parents=[common, write], help="run a transaction (JSON from the argument or stdin)")
    p.add_argument("document", nargs="?")
    p = sub.add_parser("lease", parents=[common], help="lease grant TTL | keepalive ID | revoke ID | info ID")
    p.add_argument("action", choices=("grant", "keepalive", "revoke", "info"))
    p.add_argument("arg", help="the ttl in seconds (grant) or the lease id")
    sub.add_parser("status", parents=[common], help="the cluster as the master sees it")
    add_admin_parsers(sub, common)
    return parser


def _stdin_value() -> str | bytes:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _print_json(doc) -> None:
    print(json.dumps(doc, ensure_ascii=False))


def _value_doc(value) -> dict:
    if isinstance(value, bytes):
        return {"value_base64": base64.b64encode(value).decode("ascii")}
    return {"value": value}


def _write_value(value) -> None:
    if isinstance(value, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()
    else:
        print(value)


def _written(args, result, extra: dict | None = None) -> int:
    doc = {"key": result.key, "seq": result.seq, "epoch": result.epoch, "replicas": result.replicas,
           **(extra or {})}
    if args.json:
        _print_json(doc)
    else:
        print(f"OK seq={result.seq}")
    return EXIT_OK


def _get(client: Client, args) -> int:
    item = client.get_item(args.key, consistent=args.consistent)
    if args.json:
        _print_json({"key": item.key, **_value_doc(item.value), "seq": item.seq})
    else:
        _write_value(item.value)
    return EXIT_OK


def _put(client: Client, args) -> int:
    value = args.value if args.value is not None else _stdin_value()
    written = client.put(args.key, value, acks=args.acks, if_seq=args.if_seq, lease=args.lease, ttl=args.ttl)
    return _written(args, written)


def _del(client: Client, args) -> int:
    chosen = sum((args.key is not None, args.prefix is not None, args.all))
    if chosen != 1:
        raise _Usage("dkvs del: give exactly one of KEY, --prefix P or --all")
    if args.key is None:
        if args.if_seq is not None:
            raise _Usage("dkvs del: --if-seq works only with a KEY")
        if args.prefix == "":
            raise _Usage("dkvs del: --prefix must not be empty (use --all to delete every key)")
        deleted = client.delete_prefix(args.prefix or "", acks=args.acks, everything=args.all)
        _print_json({"deleted": deleted}) if args.json else print(f"deleted {deleted}")
        return EXIT_OK
    return _written(args, client.delete(args.key, acks=args.acks, if_seq=args.if_seq))


def _ls(client: Client, args) -> int:
    for item in client.items(args.prefix):
        if args.json:
            _print_json({"key": item.key, **_value_doc(item.value), "seq": item.seq})
        elif isinstance(item.value, bytes):
            print(f"{item.key}\tbase64:{base64.b64encode(item.value).decode('ascii')}")
        else:
            print(f"{item.key}\t{item.value}")
    return EXIT_OK


def _watch(client: Client, args) -> int:
    if (args.key is None) == (args.prefix is None):
        raise _Usage("dkvs watch: give a KEY or --prefix P")
    seen = 0
    for event in client.watch(key=args.key, prefix=args.prefix, after_seq=args.after_seq):
        if args.json:
            _print_json({"key": event.key, **_value_doc(event.value), "seq": event.seq, "reset": event.reset})
        elif event.deleted:
            print(f"DELETE {event.key} seq={event.seq}", flush=True)
        else:
            shown = event.value if isinstance(event.value, str) else "base64:" + base64.b64encode(event.value).decode()
            print(f"PUT {event.key} seq={event.seq} {shown}", flush=True)
        seen += 1
        if args.count is not None and seen >= args.count:
            return EXIT_OK
    return EXIT_OK


def _txn(client: Client, args) -> int:
    text = args.document if args.document is not None else sys.stdin.read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Usage(f"dkvs txn: the transaction is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _Usage("dkvs txn: the transaction must be a JSON object")
    unknown = set(doc) - {"compare", "success", "failure"}
    if unknown:
        raise _Usage(f"dkvs txn: unknown field {sorted(unknown)[0]!r}; accepted: compare, success, failure")
    answer = client.txn(doc.get("compare", ()), doc.get("success", ()), doc.get("failure", ()), acks=args.acks)
    for result in answer.get("results", ()):
        if isinstance(result.get("value"), bytes):
            result.update(_value_doc(result.pop("value")))
    if args.json:
        _print_json(answer)
    else:
        print(f"{'succeeded' if answer['succeeded'] else 'failed'} seq={answer['seq']}")
        for result in answer.get("results", ()):
            print(" ".join(f"{k}={v}" for k, v in result.items()))
    return EXIT_OK if answer["succeeded"] else EXIT_FALSE


def _lease(client: Client, args) -> int:
    try:
        number = float(args.arg) if args.action == "grant" else int(args.arg)
    except ValueError:
        raise _Usage(f"dkvs lease {args.action}: {args.arg!r} is not a "
                     f"{'number of seconds' if args.action == 'grant' else 'lease id'}") from None
    if args.action == "grant":
        doc = {"id": client.grant_lease(number), "ttl": number}
    elif args.action == "keepalive":
        doc = {"id": number, "ttl": client.keepalive(number)}
    elif args.action == "revoke":
        doc = {"id": number, "deleted": client.revoke_lease(number)}
    else:
        doc = client.lease_info(number)
    if args.json:
        _print_json(doc)
    else:
        print(" ".join(f"{k}={v}" for k, v in doc.items()))
    return EXIT_OK


def _status(client: Client, args) -> int:
    doc = client.status()
    if args.json:
        _print_json(doc)
        return EXIT_OK
    master = (doc.get("master") or {}).get("url") or "none known"
    print(f"{doc.get('id')} {doc.get('role')} epoch={doc.get('epoch')} master={master} "
          f"last_seq={doc.get('last_seq')} commit_seq={doc.get('commit_seq')}")
    for member in doc.get("members", ()):
        print(f"  {member.get('id')} {member.get('url')} {member.get('role')} "
              f"{'alive' if member.get('alive') else 'down'} last_seq={member.get('last_seq')}")
    return EXIT_OK


_RUN = {"get": _get, "put": _put, "del": _del, "ls": _ls, "watch": _watch, "txn": _txn, "lease": _lease,
        "status": _status}


def main(argv: list[str], environ=None) -> int:
    """Run one client command (``argv[0]`` is the command); returns the exit status."""
    environ = os.environ if environ is None else environ
    try:
        args = _parser().parse_args(argv)
        if args.command == "restore":  # writes a data dir; talks to no node
            return run_admin(args, [], None, None, None, _usage, print_json_or_text(args.json))
        urls = [u.strip() for u in (args.url or environ.get("DKVS_URL") or DEFAULT_URL).split(",") if u.strip()]
        if not urls:
            raise _Usage("dkvs: --url is empty")
        if not args.timeout > 0:
            raise _Usage("dkvs: --timeout must be above 0")
        token = args.token or environ.get("DKVS_TOKEN") or None
        ca_file = args.ca_file or environ.get("DKVS_CA_FILE") or None
        if args.command in ADMIN_COMMANDS:
            return run_admin(args, urls, token, _tls(ca_file), _secret(args, environ), _usage,
                             print_json_or_text(args.json))
        try:
            client = Client(urls, timeout=args.timeout, retry_seconds=CLI_RETRY_SECONDS, token=token,
                            ca_file=ca_file)
        except ValueError as exc:
            raise _Usage(f"dkvs: {exc}") from None
        with client:
            return _RUN[args.command](client, args)
    except _Usage as exc:
        return _fail(str(exc))
    except (NotFound, Conflict) as exc:  # a key or lease that does not exist, a failed condition
        print(f"dkvs {argv[0]}: {exc.message if hasattr(exc, 'message') else exc}", file=sys.stderr)
        return EXIT_FALSE
    except DkvsError as exc:
        return _fail(f"dkvs {argv[0]}: {getattr(exc, 'message', None) or exc}")
    except (OSError, ValueError) as exc:
        return _fail(f"dkvs {argv[0]}: {exc}")
    except KeyboardInterrupt:
        return EXIT_ERROR


def _usage(message: str):
    raise _Usage(message)


def _tls(ca_file: str | None):
    try:
        return tls_context(ca_file)
    except (OSError, ValueError) as exc:
        raise _Usage(f"dkvs: --ca-file {ca_file}: {exc}") from None


def _secret(args, environ) -> str | None:
    """The cluster secret from --cluster-secret-file / DKVS_CLUSTER_SECRET_FILE (None: unsigned)."""
    path = getattr(args, "cluster_secret_file", None) or environ.get("DKVS_CLUSTER_SECRET_FILE")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            secret = file.read().strip()
    except OSError as exc:
        raise _Usage(f"dkvs: cannot read --cluster-secret-file {path}: {exc.strerror or exc}") from None
    if not secret:
        raise _Usage(f"dkvs: --cluster-secret-file {path} is empty")
    return secret


def _fail(message: str) -> int:
    print(" ".join(message.split()), file=sys.stderr, flush=True)
    return EXIT_ERROR
