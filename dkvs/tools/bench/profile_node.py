"""Run one dkvs node with every thread profiled, by CPU time; write the merged stats at exit.

``python -m cProfile -m dkvs`` sees only the main thread, but a node works in other
threads: one per HTTP connection, the node thread, the sender threads. This wraps
``threading.Thread.run`` so each thread gets its own ``cProfile.Profile`` timed by
``time.thread_time`` (CPU time of that thread: waiting in ``recv``, on a lock or for the GIL
does not count), and merges them all with ``pstats.Stats.add`` when the node exits
(SIGTERM / Ctrl-C). The profiler slows call-heavy code more than the rest: read shares,
not absolute times.

    python -m dkvs.tools.bench.profile_node -o /tmp/node.prof -- --port 7070
    python scripts/bench.py --url http://127.0.0.1:7070 --workload put --duration 8
    kill -TERM <node pid>
    python -m dkvs.tools.bench.profile_node --show /tmp/node.prof
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import pstats
import runpy
import sys
import threading
import time

__all__ = ["main", "show"]


def _profile_everything(out_path: str) -> cProfile.Profile:
    profiles: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def run(self) -> None:
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()

    def dump() -> None:
        merged = None
        for profile in profiles:
            profile.create_stats()
            if profile.stats:
                merged = pstats.Stats(profile) if merged is None else merged.add(profile)
        if merged is not None:
            merged.dump_stats(out_path)
            print(f"profile written to {out_path}", file=sys.stderr)

    threading.Thread.run = run
    atexit.register(dump)
    main_profile = cProfile.Profile(time.thread_time)
    profiles.append(main_profile)
    return main_profile


def show(path: str, limit: int = 30) -> None:
    """Print the top entries by own CPU time, then by cumulative time."""
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="/tmp/dkvs-node.prof")
    parser.add_argument("--show", metavar="PROF", help="print a profile written earlier and exit")
    parser.add_argument("node_args", nargs=argparse.REMAINDER, help="-- then the flags of python -m dkvs")
    args = parser.parse_args(argv)
    if args.show:
        show(args.show)
        return 0
    node_args = args.node_args[1:] if args.node_args[:1] == ["--"] else args.node_args
    main_profile = _profile_everything(args.output)
    sys.argv = ["dkvs", *node_args]
    main_profile.enable()
    try:
        runpy.run_module("dkvs", run_name="__main__", alter_sys=True)
    finally:
        main_profile.disable()
    return 0


if __name__ == "__main__":
    sys.exit(main())
