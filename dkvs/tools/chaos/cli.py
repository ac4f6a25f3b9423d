"""``scripts/chaos.py``: arguments, the hard time limit, signals, printing, exit status.

The time limit is enforced twice: the runner plans to finish well inside it (the nemesis
stops early), and a ``SIGALRM`` at the limit raises :class:`TimeLimitExceeded` wherever the
run is, whose unwinding kills every node and removes the temp dir. ``SIGTERM`` and Ctrl-C
unwind the same way. While a node process is being started, or the cleanup runs, the
exception waits (:mod:`.interrupts`), so no process escapes.

Exit status: 0 pass; 1 a lost ``acks=majority`` write, a non-linearizable history or no
convergence; 2 bad arguments; 3 inconclusive (checker budget exhausted, time limit hit,
or the run could not be carried out).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence

from .faults import FAULT_KINDS
from .interrupts import deliver
from .report import format_report
from .runner import DATA_SHARES, EXIT_INCONCLUSIVE, WORKLOADS, ChaosConfig, run_chaos

__all__ = ["main", "parse_config", "TimeLimitExceeded"]


class TimeLimitExceeded(BaseException):
    """Raised by the SIGALRM handler; a BaseException so no ``except Exception`` eats it."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown fault kinds {unknown}; choose from {', '.join(FAULT_KINDS)}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/chaos.py",
        description="Run a local dkvs cluster under concurrent clients and injected faults (kills, "
                    "pauses, partitions), then check that no acknowledged acks=majority write was lost, "
                    "that the history is linearizable and that the nodes converge.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--nodes", type=int, choices=(3, 5), default=3, help="cluster size")
    add("--clients", type=_positive_int, default=5, help="concurrent client threads")
    add("--keys", type=_positive_int, default=10, help="size of the key space")
    add("--faults", type=int, default=100, help="number of fault events")
    add("--interval", type=float, default=2.0, help="seconds per fault event (fault held 40-80%% of it)")
    add("--seed", type=int, default=1, help="seeds the fault plan and the clients' operations")
    add("--fsync", choices=("always", "batch", "never"), default="always", help="the nodes' fsync policy")
    add("--time-limit", type=float, default=900.0, help="hard cap on the whole run, in seconds")
    add("--fault-kinds", type=_kinds, default=FAULT_KINDS, help=f"comma-separated subset of {','.join(FAULT_KINDS)}")
    add("--acks1-share", type=_share, default=0.2, help="fraction of puts sent with acks=1")
    add("--delete-share", type=_share, default=0.05, help="fraction of the plain operations (not cas, txn or lease) that are deletes")
    add("--put-share", type=_share, default=0.45, help="fraction of the plain operations that are puts")
    add("--op-timeout", type=float, default=1.0, help="client socket timeout and writes' timeout= (s)")
    add("--think", type=_non_negative_float, default=0.0, help="pause between a client's operations (s)")
    add("--backoff", type=_non_negative_float, default=0.05, help="pause after an unsuccessful operation (s)")
    add("--recovery", type=_non_negative_float, default=2.0, help="seconds of load after the final heal")
    add("--converge-timeout", type=float, default=30.0, help="how long to wait for convergence (s)")
    add("--checker-budget", type=_positive_int, default=1_000_000, help="checker search states per key")
    add("--workload", choices=WORKLOADS, default="register",
        help="register: put/get/delete; data: also compare-and-set, transactions and leases "
             f"(shares {', '.join(f'{k[:-6]} {v:g}' for k, v in DATA_SHARES.items())} unless given); "
             "lock: clients take turns holding dkvs.client.Lock and write a fenced key")
    add("--cas-share", type=_share, default=None, help="fraction of operations that are compare-and-sets "
        "(PUT/DELETE ?if_seq= with the seq last seen)")
    add("--txn-share", type=_share, default=None, help="fraction of operations that are transactions on a pair of keys")
    add("--lease-share", type=_share, default=None, help="fraction of operations on leased keys (grant, put "
        "with lease, keepalive, read, abandon)")
    add("--lease-keys", type=_positive_int, default=4, help="leased keys l0.. (apart from the --keys)")
    add("--lease-ttl", type=float, default=1.0, help="ttl of the clients' leases (s)")
    add("--lock-ttl", type=float, default=1.0, help="--workload lock: the lock's lease ttl (s)")
    add("--lock-pause-share", type=_share, default=0.2,
        help="--workload lock: chance a holder stalls 3 ttls before a fenced write (a simulated GC pause)")
    add("--history", metavar="PATH", help="save the history (JSON lines) here")
    add("--logs", metavar="DIR", help="save node logs, rollback files and the history here")
    add("--json", action="store_true", help="print the report as JSON on stdout (progress goes to stderr)")
    add("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def parse_config(argv: Sequence[str] | None = None) -> tuple[ChaosConfig, argparse.Namespace]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.put_share + args.delete_share > 1:
        parser.error("--put-share plus --delete-share must not exceed 1")
    defaults = DATA_SHARES if args.workload == "data" else dict.fromkeys(DATA_SHARES, 0.0)
    shares = {name: getattr(args, name) if getattr(args, name) is not None else defaults[name] for name in DATA_SHARES}
    if sum(shares.values()) > 1:
        parser.error("--cas-share plus --txn-share plus --lease-share must not exceed 1")
    if args.lease_ttl <= 0 or args.lock_ttl <= 0:
        parser.error("--lease-ttl and --lock-ttl must be > 0")
    if args.faults < 0 or args.interval <= 0 or args.time_limit <= 0:
        parser.error("--faults must be >= 0, --interval and --time-limit > 0")
    config = ChaosConfig(nodes=args.nodes, clients=args.clients, keys=args.keys, faults=args.faults,
                         interval_s=args.interval, seed=args.seed, fsync=args.fsync,
                         time_limit_s=args.time_limit, kinds=args.fault_kinds, put_share=args.put_share,
                         delete_share=args.delete_share, acks1_share=args.acks1_share,
                         op_timeout_s=args.op_timeout, think_s=args.think, backoff_s=args.backoff, recovery_s=args.recovery,
                         converge_timeout_s=args.converge_timeout, checker_budget=args.checker_budget,
                         history_path=args.history, logs_dir=args.logs, workload_name=args.workload,
                         lease_keys=args.lease_keys, lease_ttl_s=args.lease_ttl, lock_ttl_s=args.lock_ttl,
                         lock_pause_share=args.lock_pause_share, **shares)
    return config, args


def _raise_time_limit(signum, frame) -> None:
    deliver(TimeLimitExceeded)


def _raise_interrupt(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one unwinding is enough
    deliver(KeyboardInterrupt)


def main(argv: Sequence[str] | None = None) -> int:
    config, args = parse_config(argv)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    signal.signal(signal.SIGALRM, _raise_time_limit)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.setitimer(signal.ITIMER_REAL, config.time_limit_s)
    try:
        doc = run_chaos(config, say)
    except TimeLimitExceeded:
        return _abort(args, f"time limit of {config.time_limit_s:g} s exceeded; every process was stopped")
    except KeyboardInterrupt:
        return _abort(args, "interrupted; every process was stopped")
    except (OSError, RuntimeError) as exc:
        return _abort(args, f"the run could not be carried out: {exc}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    print(json.dumps(doc, indent=2) if args.json else format_report(doc), flush=True)
    return doc["exit_code"]


def _abort(args: argparse.Namespace, reason: str) -> int:
    if args.json:
        print(json.dumps({"ok": False, "exit_code": EXIT_INCONCLUSIVE, "problems": [], "error": reason}))
    else:
        print(f"RESULT: INCONCLUSIVE — {reason}", file=sys.stderr)
    return EXIT_INCONCLUSIVE
