"""``python -m dkvs`` / ``dkvs``: start one node (see ``--help``).

Every flag has an environment variable (``DKVS_<FLAG>``); flags win over the environment,
and an empty variable counts as unset. The node prints one line on stdout once it serves,
``dkvs node <id> listening on <url>``, and exits with status 0 on SIGTERM or Ctrl-C after
leaving the cluster cleanly.

A node that cannot start prints one line on stderr, ``dkvs: error: <what and how to fix
it>``, and exits with status 2, promptly and without a traceback: every value is parsed
here from one table (:data:`FLAGS`), and an error names the flag or the environment
variable the bad value came from; the checks that need more than one value or the machine
(data dir, listen address, the join) live in :mod:`dkvs.runtime.startup`.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from . import __version__
from .api.service import ACKS_LEVELS, Limits

__all__ = ["main", "build_parser", "FLAGS", "UsageError", "resolve"]

DESCRIPTION = """Start a dkvs node. With no flags: a single-node cluster, in memory, on
http://127.0.0.1:7070. Add --join URL (any node of a cluster) to join an existing cluster,
and --data-dir DIR to keep data across restarts."""

EXIT_USAGE = 2
# The interpreter's thread switch interval in a node process (Python's default: 0.005 s).
# A node's threads give the GIL up in their own socket calls; a forced switch every 5 ms
# only adds hand-overs between request threads in the middle of a request (fewer context
# switches per write with 0.05: docs/benchmarks.md). Still far below the heartbeat
# interval, so a busy thread cannot starve the ticker. Set by main() when it runs a node,
# never on import (tests and tools that import dkvs keep the default).
NODE_SWITCH_INTERVAL_SECONDS = 0.05
# A first argument naming one of these runs the command-line client (dkvs.client.cli.COMMANDS).
CLIENT_COMMANDS = ("get", "put", "del", "ls", "watch", "txn", "lease", "status", "members", "leader", "backup", "restore")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
FSYNC_MODES = ("always", "batch", "never")


class UsageError(Exception):
    """A bad flag or environment value; the message is one line for the operator."""


# --- value parsers: text → value, or ValueError with the rule ---------------------------

def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw


def _port(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and int(raw) <= 65535):
        raise ValueError("must be a port number from 0 to 65535 (0 = any free port)")
    return int(raw)


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError("must be a positive number of seconds")
    return value


def _count(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) < 2 ** 63):
        raise ValueError("must be a positive integer")
    return int(raw)


MAX_REPLICATION_WINDOW = 64


def _window(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_REPLICATION_WINDOW):
        raise ValueError(f"must be a whole number of batches from 1 to {MAX_REPLICATION_WINDOW}")
    return int(raw)


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return raw.lower()
    return parse


def _join(raw: str) -> str:
    from .runtime.startup import StartupError, parse_join_urls
    try:
        return ",".join(parse_join_urls(raw))
    except StartupError as exc:
        raise ValueError(str(exc).split(": ", 1)[-1]) from None


def _url(raw: str) -> str:
    if not (raw.startswith(("http://", "https://")) and len(raw.split("://", 1)[1].strip("/")) > 0):
        raise ValueError("must be a URL such as http://10.0.0.5:7070")
    return raw.rstrip("/")


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not (origin.startswith(("http://", "https://"))
                                  and "/" not in origin.split("://", 1)[1]):
            raise ValueError(f"{origin!r} is not an origin: use scheme://host[:port] (no path), or *")
    return origins


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _boolean(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError(f"must be one of {', '.join(_TRUE + _FALSE)}")


@dataclass(frozen=True)
class Flag:
    """One option: its flag, parser, default and help; the env variable is derived."""

    name: str
    parse: Callable[[str], object]
    default: object
    help: str
    metavar: str | None = None
    switch: bool = False  # given without a value; its env variable takes 1/0, true/false...

    @property
    def dest(self) -> str:
        return self.name[2:].replace("-", "_")

    @property
    def env(self) -> str:
        return "DKVS_" + self.dest.upper()


FLAGS: tuple[Flag, ...] = (
    Flag("--host", _text, "127.0.0.1", "address to listen on; beyond loopback a cluster secret is "
         "required (or --insecure)"),
    Flag("--port", _port, 7070, "port to listen on; 0 = any free port"),
    Flag("--id", _text, None, "node id, unique in the cluster; default: generated (kept in the data dir)"),
    Flag("--join", _join, None, "URL(s) of any node(s) of the cluster to join, comma-separated, tried in "
         "turn; host:port means http://host:port. Without it the node starts a new cluster",
         metavar="URL[,URL...]"),
    Flag("--learner", _boolean, False, "with --join: stay a non-voting learner (read replica, backup); "
         "without it a joining node is a learner only until it has caught up", switch=True),
    Flag("--join-timeout", _seconds, 10.0, "seconds to keep trying --join before giving up", metavar="S"),
    Flag("--data-dir", _text, None, "where the log, snapshots and vote live; default: in memory "
         "(lost on exit)", metavar="DIR"),
    Flag("--advertise-url", _url, None, "URL other nodes use to reach this one; default http://HOST:PORT",
         metavar="URL"),
    Flag("--heartbeat-interval", _seconds, 0.1, "seconds between master heartbeats", metavar="S"),
    Flag("--election-timeout", _seconds, 1.0, "seconds of master silence before an election "
         "(randomized ±50%%); at least twice --heartbeat-interval", metavar="S"),
    Flag("--default-acks", _choice(ACKS_LEVELS), "1", "durability of writes that give no ?acks= "
         f"({', '.join(ACKS_LEVELS)})", metavar="{" + ",".join(ACKS_LEVELS) + "}"),
    Flag("--replication-window", _window, 2, "replication batches in flight per slave before the master "
         "waits for an answer (1 = one at a time)", metavar="N"),
    Flag("--lease-reads", _boolean, False, "answer consistent GETs on the master from a leader lease, with "
         "no round trip, while a majority confirmed it within the election timeout minus a margin; "
         "assumes bounded clock drift (docs/protocol.md, 'Reads: the lease'); set it on every node",
         switch=True),
    Flag("--fast-lane", _boolean, True, "answer plain key reads and writes on the thread that holds the "
         "connection, with no worker hand-over (docs/architecture.md); off: every request goes to a "
         "worker, as before", metavar="{on,off}"),
    Flag("--max-key-bytes", _count, 1024, "largest key, in UTF-8 bytes", metavar="BYTES"),
    Flag("--max-value-bytes", _count, 1024 * 1024, "largest value, in UTF-8 bytes", metavar="BYTES"),
    Flag("--cluster-secret", _text, None, "shared secret: internal requests are HMAC-signed and "
         "checked (visible in ps: prefer --cluster-secret-file)", metavar="SECRET"),
    Flag("--cluster-secret-file", _text, None, "file holding the cluster secret (one line)", metavar="PATH"),
    Flag("--auth-file", _text, None, "JSON file of client tokens with roles and key prefixes; clients then "
         "send 'Authorization: Bearer TOKEN'; re-read on SIGHUP (docs/security.md)", metavar="PATH"),
    Flag("--insecure", _boolean, False, "allow listening beyond loopback without a cluster secret",
         switch=True),
    Flag("--rebuild", _boolean, False, "with --data-dir and --join: if the data dir is damaged, move its "
         "files aside (DIR/damaged-TIME/) and rejoin the cluster as a new member, resynced from it",
         switch=True),
    Flag("--fsync", _choice(FSYNC_MODES), "batch", "with --data-dir: fsync every write (always), every "
         "--fsync-interval (batch), or never", metavar="{" + ",".join(FSYNC_MODES) + "}"),
    Flag("--fsync-interval", _seconds, 0.1, "seconds between fsyncs with --fsync batch", metavar="S"),
    Flag("--snapshot-threshold", _count, 1024 * 1024, "snapshot the state and compact the log when the log "
         "passes this size and the size of the last snapshot", metavar="BYTES"),
    Flag("--cors-origins", _origins, (), "comma-separated origins allowed to call the public API from a "
         "browser; default: none (same-origin only)", metavar="ORIGINS"),
    Flag("--nkvd", _boolean, False, "serve the nkvd-compatible routes under /nkvd (they change data on "
         "GET: never expose them to browsers)", switch=True),
    Flag("--enable-fault-injection", _boolean, False, "allow /internal/faults to cut this node off from "
         "peers (testing only)", switch=True),
    # TLS (docs/security.md, "TLS").
    Flag("--tls-cert", _text, None, "PEM certificate (chain) of this node: with --tls-key it serves HTTPS only "
         "and calls peers over HTTPS", metavar="PATH"),
    Flag("--tls-key", _text, None, "PEM private key of --tls-cert", metavar="PATH"),
    Flag("--tls-ca", _text, None, "PEM CA certificate(s) peers (and client certificates) are verified "
         "against; with it this node presents its certificate to peers", metavar="PATH"),
    Flag("--tls-client-auth", _choice(("none", "optional", "required")), "none", "client certificates: "
         "none, optional or required (checked against --tls-ca)", metavar="{none,optional,required}"),
    # Connection limits (docs/architecture.md, "Connections and workers").
    Flag("--max-connections", _count, 1024, "open connections served at once; more get a 503 and are "
         "closed", metavar="N"),
    Flag("--request-timeout", _seconds, 10.0, "seconds a request head has to arrive; a body then must keep "
         "64 KiB/s", metavar="S"),
    Flag("--idle-timeout", _seconds, 60.0, "seconds an idle keep-alive connection stays open", metavar="S"),
    Flag("--log-level", _choice(LOG_LEVELS), "info", f"logging level ({', '.join(LOG_LEVELS)})",
         metavar="LEVEL"),
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line (no usage block) with status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"dkvs: error: {message} (see dkvs --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dkvs", description=DESCRIPTION,
                epilog="Every flag has an environment variable, shown in brackets; the flag wins.")
    for flag in FLAGS:
        shown = "" if flag.default in (None, (), False) else f" (default: {flag.default})"
        help_text = f"{flag.help}{shown} [{flag.env}]"
        if flag.switch:
            p.add_argument(flag.name, action="store_true", default=None, help=help_text)
        else:
            p.add_argument(flag.name, metavar=flag.metavar, default=None, help=help_text)
    p.add_argument("--version", action="version", version=f"dkvs {__version__}")
    return p


def resolve(args: argparse.Namespace, environ=None) -> dict[str, object]:
    """Each flag's value: from the command line, else its env variable, else the default.

    Raises :class:`UsageError` naming the flag or the variable a bad value came from.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for flag in FLAGS:
        given = getattr(args, flag.dest)
        if given is not None:
            if flag.switch:
                values[flag.dest] = True
                continue
            raw, source = given, flag.name
        elif environ.get(flag.env, ""):
            raw, source = environ[flag.env], flag.env
        else:
            values[flag.dest] = flag.default
            continue
        try:
            values[flag.dest] = flag.parse(raw)
        except ValueError as exc:
            shown = f"{source}={raw!r}" if source == flag.env else f"{source} {raw!r}"
            raise UsageError(f"{shown}: {exc}") from None
    if values["cluster_secret"] and values["cluster_secret_file"]:
        raise UsageError("give --cluster-secret or --cluster-secret-file, not both")
    if values["learner"] and not values["join"]:
        raise UsageError("--learner needs --join URL (a node starting a new cluster is its only voter)")
    if values["election_timeout"] < 2 * values["heartbeat_interval"]:
        raise UsageError(f"--election-timeout ({values['election_timeout']:g} s) must be at least twice "
                         f"--heartbeat-interval ({values['heartbeat_interval']:g} s)")
    return values


def settings_from_values(v: dict):
    from .runtime.app import Settings
    from .runtime.startup import read_secret_file

    secret = v["cluster_secret"]
    if v["cluster_secret_file"]:
        secret = read_secret_file(v["cluster_secret_file"])
    limits = Limits(max_key_bytes=v["max_key_bytes"], max_value_bytes=v["max_value_bytes"],
                    default_acks=v["default_acks"])
    return Settings(host=v["host"], port=v["port"], node_id=v["id"], join=v["join"], data_dir=v["data_dir"],
                    advertise_url=v["advertise_url"], heartbeat_interval=v["heartbeat_interval"],
                    election_timeout=v["election_timeout"], limits=limits, cluster_secret=secret,
                    fsync=v["fsync"], fsync_interval=v["fsync_interval"],
                    snapshot_threshold=v["snapshot_threshold"], cors_origins=v["cors_origins"],
                    fault_injection=v["enable_fault_injection"], join_timeout=v["join_timeout"],
                    nkvd=v["nkvd"], insecure=v["insecure"], auth_file=v["auth_file"],
                    max_connections=v["max_connections"], request_timeout=v["request_timeout"],
                    idle_timeout=v["idle_timeout"], tls_cert=v["tls_cert"], tls_key=v["tls_key"],
                    tls_ca=v["tls_ca"], tls_client_auth=v["tls_client_auth"], rebuild=v["rebuild"],
                    learner=v["learner"], replication_window=v["replication_window"],
                    lease_reads=v["lease_reads"], fast_lane=v["fast_lane"])


def _fail(message: str) -> int:
    print(f"dkvs: error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in CLIENT_COMMANDS:  # ``dkvs get k``: the client, not a node
        from .client.cli import main as client_main
        return client_main(argv)
    args = build_parser().parse_args(argv)
    try:
        values = resolve(args)
    except UsageError as exc:
        return _fail(str(exc))
    logging.basicConfig(level=values["log_level"].upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .runtime.app import DkvsNode
    from .runtime.startup import StartupError

    sys.setswitchinterval(NODE_SWITCH_INTERVAL_SECONDS)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    node = None
    try:
        node = DkvsNode(settings_from_values(values))
        node.start()
    except StartupError as exc:
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 — one line for the operator; the traceback at debug level
        logging.getLogger("dkvs").debug("start-up failed", exc_info=True)
        if node is not None:
            try:
                node.stop()
            except Exception:  # noqa: BLE001 — already failing; the first error is the one to show
                pass
        return _fail(f"cannot start: {exc} ({type(exc).__name__}; --log-level debug shows the traceback)")
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: node.reload_auth())
    print(f"dkvs node {node.node_id} listening on {node.url}", flush=True)
    # Tools that start nodes as children (tests, benchmarks, demos) set this so that a
    # node never outlives them, even when they are killed before they can clean up.
    parent = os.getppid() if os.environ.get("DKVS_EXIT_WITH_PARENT") == "1" else None
    while not stop.wait(0.5):
        if not node.running:
            node.stop()
            if node.rejoin.refusal:  # already logged: it must not serve apart from its cluster
                return EXIT_USAGE
            logging.getLogger("dkvs").critical("the node stopped working; exiting")
            return 1
        if parent is not None and os.getppid() != parent:
            logging.getLogger("dkvs").warning("the process that started this node is gone; exiting")
            break
    logging.getLogger("dkvs").info("shutting down")
    node.leave()
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
