"""``python -m dkvs`` / ``dkvs``: start one node (see ``--help``).

Every flag has an environment variable (``DKVS_<FLAG>``); flags win over the environment.
The node prints one line on stdout once it serves, ``dkvs node <id> listening on <url>``,
and exits with status 0 on SIGTERM or Ctrl-C after leaving the cluster cleanly.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from . import __version__
from .api.service import ACKS_LEVELS, Limits

__all__ = ["main", "build_parser"]

DESCRIPTION = """Start a dkvs node. With no flags: a single-node cluster, in memory, on
http://127.0.0.1:7070. Add --join URL (any node of a cluster) to join an existing cluster,
and --data-dir DIR to keep data across restarts."""


def _env(name: str, default):
    return os.environ.get("DKVS_" + name, default)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dkvs", description=DESCRIPTION,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add("--host", default=_env("HOST", "127.0.0.1"), help="address to listen on [DKVS_HOST]")
    add("--port", type=int, default=int(_env("PORT", 7070)), help="port to listen on; 0 = any free port [DKVS_PORT]")
    add("--id", default=_env("ID", None),
        help="node id, unique in the cluster; default: generated (kept in the data dir) [DKVS_ID]")
    add("--join", metavar="URL", default=_env("JOIN", None),
        help="URL of any node of the cluster to join; without it the node starts a new cluster [DKVS_JOIN]")
    add("--data-dir", metavar="DIR", default=_env("DATA_DIR", None),
        help="where the log, snapshots and vote live; default: in memory (lost on exit) [DKVS_DATA_DIR]")
    add("--advertise-url", metavar="URL", default=_env("ADVERTISE_URL", None),
        help="URL other nodes use to reach this one; default http://HOST:PORT [DKVS_ADVERTISE_URL]")
    add("--heartbeat-interval", metavar="S", type=_positive_float, default=float(_env("HEARTBEAT_INTERVAL", 0.1)),
        help="seconds between master heartbeats [DKVS_HEARTBEAT_INTERVAL]")
    add("--election-timeout", metavar="S", type=_positive_float, default=float(_env("ELECTION_TIMEOUT", 1.0)),
        help="seconds of master silence before an election (randomized ±50%%) [DKVS_ELECTION_TIMEOUT]")
    add("--default-acks", choices=ACKS_LEVELS, default=_env("DEFAULT_ACKS", "1"),
        help="durability of writes that give no ?acks= [DKVS_DEFAULT_ACKS]")
    add("--max-key-bytes", type=_positive_int, default=int(_env("MAX_KEY_BYTES", 1024)),
        help="largest key, in UTF-8 bytes [DKVS_MAX_KEY_BYTES]")
    add("--max-value-bytes", type=_positive_int, default=int(_env("MAX_VALUE_BYTES", 1024 * 1024)),
        help="largest value, in UTF-8 bytes [DKVS_MAX_VALUE_BYTES]")
    add("--cluster-secret", default=_env("CLUSTER_SECRET", None),
        help="shared secret: internal requests are HMAC-signed and checked [DKVS_CLUSTER_SECRET]")
    add("--fsync", choices=("always", "batch", "never"), default=_env("FSYNC", "batch"),
        help="with --data-dir: fsync every write (always), every --fsync-interval (batch), or never [DKVS_FSYNC]")
    add("--fsync-interval", metavar="S", type=_positive_float, default=float(_env("FSYNC_INTERVAL", 0.1)),
        help="seconds between fsyncs with --fsync batch [DKVS_FSYNC_INTERVAL]")
    add("--snapshot-threshold", metavar="BYTES", type=_positive_int,
        default=int(_env("SNAPSHOT_THRESHOLD", 1024 * 1024)),
        help="snapshot the state and compact the log when the log passes this size and the size of "
             "the last snapshot [DKVS_SNAPSHOT_THRESHOLD]")
    add("--cors-origins", default=_env("CORS_ORIGINS", "*"),
        help="comma-separated origins allowed to call the public API from a browser [DKVS_CORS_ORIGINS]")
    add("--enable-fault-injection", action="store_true",
        default=_env("ENABLE_FAULT_INJECTION", "") not in ("", "0", "false"),
        help="allow /internal/faults to cut this node off from peers (testing only) [DKVS_ENABLE_FAULT_INJECTION]")
    # Connection limits (docs/architecture.md, "Connections and workers"); env strings are
    # checked by the same type functions, so a bad value is one line on stderr and exit 2.
    def _limit(kind, flag: str):
        """A type for a positive limit that reports a bad value in one line (exit 2)."""
        def parse(text: str):
            try:
                value = kind(text)
            except ValueError:
                value = None
            if value is None or not value > 0 or value != value or value == float("inf"):
                print(f"dkvs: {flag} (or DKVS_{flag[2:].upper().replace('-', '_')}) must be a positive "
                      f"{'integer' if kind is int else 'number'}; got {text!r}", file=sys.stderr)
                raise SystemExit(2)
            return value
        return parse

    add("--max-connections", metavar="N", type=_limit(int, "--max-connections"),
        default=_env("MAX_CONNECTIONS", "1024"),
        help="open connections served at once; more get a 503 and are closed [DKVS_MAX_CONNECTIONS]")
    add("--request-timeout", metavar="S", type=_limit(float, "--request-timeout"),
        default=_env("REQUEST_TIMEOUT", "10"),
        help="seconds a request head has to arrive; a body then must keep 64 KiB/s [DKVS_REQUEST_TIMEOUT]")
    add("--idle-timeout", metavar="S", type=_limit(float, "--idle-timeout"),
        default=_env("IDLE_TIMEOUT", "60"),
        help="seconds an idle keep-alive connection stays open [DKVS_IDLE_TIMEOUT]")
    add("--log-level", default=_env("LOG_LEVEL", "info"),
        choices=("debug", "info", "warning", "error", "critical"), help="logging level [DKVS_LOG_LEVEL]")
    add("--version", action="version", version=f"dkvs {__version__}")
    return p


def settings_from_args(args: argparse.Namespace):
    from .runtime.app import Settings

    limits = Limits(max_key_bytes=args.max_key_bytes, max_value_bytes=args.max_value_bytes,
                    default_acks=args.default_acks)
    return Settings(host=args.host, port=args.port, node_id=args.id, join=args.join, data_dir=args.data_dir,
                    advertise_url=args.advertise_url, heartbeat_interval=args.heartbeat_interval,
                    election_timeout=args.election_timeout, limits=limits, cluster_secret=args.cluster_secret,
                    fsync=args.fsync, fsync_interval=args.fsync_interval,
                    snapshot_threshold=args.snapshot_threshold,
                    cors_origins=tuple(o.strip() for o in args.cors_origins.split(",") if o.strip()),
                    fault_injection=args.enable_fault_injection,
                    max_connections=args.max_connections, request_timeout=args.request_timeout,
                    idle_timeout=args.idle_timeout)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.election_timeout < 2 * args.heartbeat_interval:
        build_parser().error("--election-timeout must be at least twice --heartbeat-interval")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .runtime.admin import JoinRefused
    from .runtime.app import DkvsNode

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    node = DkvsNode(settings_from_args(args))
    try:
        node.start()
    except (JoinRefused, TimeoutError) as exc:
        print(f"dkvs: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"dkvs: cannot start: {exc}", file=sys.stderr)
        node.storage.close()
        return 1
    print(f"dkvs node {node.node_id} listening on {node.url}", flush=True)
    # Tools that start nodes as children (tests, benchmarks, demos) set this so that a
    # node never outlives them, even when they are killed before they can clean up.
    parent = os.getppid() if os.environ.get("DKVS_EXIT_WITH_PARENT") == "1" else None
    while not stop.wait(0.5):
        if not node.host.running:
            logging.getLogger("dkvs").critical("the node stopped working; exiting")
            node.stop()
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
