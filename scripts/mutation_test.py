#!/usr/bin/env python3
"""Prove the proof: apply each protocol mutant to a copy of the repo and run the CI tests.

A test suite that stays green when a safety rule is deleted proves nothing about that rule
(STYLE habit 12). This script takes the mutants of ``tests/sim/mutants.py`` (each deletes
or weakens one rule of ``dkvs/core``), applies them one at a time to a *temporary copy* of
the repository (the real tree is never written, even on Ctrl-C), runs the core tests and
the CI simulator (scenarios and random seeds) with ``pytest -x`` and records whether the
mutant was killed and by which test. It ends with exactly ``mutants: N, killed: K`` and
exits 0 only when every mutant was killed.

    python3 scripts/mutation_test.py            # all mutants (a few minutes)
    python3 scripts/mutation_test.py --quick    # the CI subset
    python3 scripts/mutation_test.py --only commit_current_epoch_only -j 2
    python3 scripts/mutation_test.py --list

Before any mutant runs, every snippet is checked against the pristine tree (each must occur
exactly once) and the unmutated tests must pass: a stale snippet or a red baseline is one
line on stderr and exit 2, never a silently meaningless result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.sim.mutants import MUTANTS, QUICK, Mutant  # noqa: E402

# The CI tests a mutant must fail, in the order they run (fast, pointed tests first, so a
# killed mutant usually costs a second or two; the random seeds come last).
CORE_TESTS = ("tests/test_internal_body_limits.py", "tests/api/test_api_fast_lane.py",
              "tests/api/test_api_fast_lane_writes.py", "tests/test_core_*.py", "tests/test_log.py", "tests/test_kvstate.py", "tests/test_driver.py")
SIM_TESTS = ("tests/sim/test_scenario*.py", "tests/sim/test_simulator.py", "tests/sim/test_random_seeds.py")
COPY_IGNORE = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", "*.pyc", "data", "build", "dist")
DEFAULT_TIMEOUT_SECONDS = 180
_RUNNING: set[subprocess.Popen] = set()  # pytest processes of this run, killed on Ctrl-C


class Usage(Exception):
    """A mistake of the caller or a stale mutant: one line on stderr, exit 2."""


@dataclass
class Outcome:
    mutant: Mutant
    killed: bool
    by: str  # first failing test id, "timeout", or "" when it survived
    seconds: float


def test_files(root: Path, sim_only: bool = False) -> list[str]:
    files: list[str] = []
    for pattern in (() if sim_only else CORE_TESTS) + SIM_TESTS:
        for path in sorted(root.glob(pattern)):
            rel = str(path.relative_to(root))
            if rel not in files:
                files.append(rel)
    return files


def patched_text(root: Path, mutant: Mutant) -> str:
    """The mutated file content; raises :class:`Usage` if a snippet is not found exactly once."""
    path = root / mutant.path
    if not path.is_file():
        raise Usage(f"mutant {mutant.name}: {mutant.path} does not exist")
    text = path.read_text(encoding="utf-8")
    for old, new in mutant.edits:
        count = text.count(old)
        if count != 1:
            first = old.strip().splitlines()[0] if old.strip() else repr(old)
            raise Usage(f"mutant {mutant.name}: snippet {first!r} found {count} times in {mutant.path} "
                        f"(expected exactly once): update tests/sim/mutants.py")
        text = text.replace(old, new)
    return text


def first_failure(output: str) -> str:
    """The first failing test of pytest's short summary. Only lines naming a test file
    count: captured log lines also start with ``ERROR `` (``ERROR dkvs.runtime:...``)."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            name = line.split(" ", 1)[1].split(" - ", 1)[0].strip()
            if " " not in name and (".py::" in name or name.endswith(".py")):
                return name
    return "?"


def run_tests(tree: Path, timeout: float, sim_only: bool = False) -> tuple[int | None, str]:
    """Run the CI tests in ``tree``; returns (exit code or None on timeout, output)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider",
           *test_files(tree, sim_only)]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    _RUNNING.add(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, _ = proc.communicate()
        return None, out
    except BaseException:
        _kill(proc)
        raise
    finally:
        _RUNNING.discard(proc)


def _kill(proc: subprocess.Popen) -> None:
    """Stop one pytest we started, with its children (it runs in its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def copy_tree(source: Path, dest: Path) -> Path:
    tree = dest / "repo"
    shutil.copytree(source, tree, ignore=COPY_IGNORE)
    return tree


def run_mutant(mutant: Mutant, pristine: Path, workdir: Path, timeout: float, sim_only: bool) -> Outcome:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-", dir=workdir) as tmp:
        tree = copy_tree(pristine, Path(tmp))
        (tree / mutant.path).write_text(patched_text(pristine, mutant), encoding="utf-8")
        code, out = run_tests(tree, timeout, sim_only)
    seconds = time.monotonic() - start
    if code is None:
        return Outcome(mutant, True, f"timeout after {timeout:.0f} s", seconds)
    if code == 0:
        return Outcome(mutant, False, "", seconds)
    if code != 1:  # 2: interrupted / collection error, 3+: pytest itself failed
        tail = "\n".join(out.strip().splitlines()[-15:])
        raise Usage(f"mutant {mutant.name}: pytest exited with {code} (not a test failure):\n{tail}")
    return Outcome(mutant, True, first_failure(out), seconds)


def line_for(o: Outcome) -> str:
    verdict = f"killed by {o.by}" if o.killed else "SURVIVED"
    return f"{o.mutant.name:34} {verdict}  ({o.seconds:.1f} s)"


def select(args) -> list[Mutant]:
    by_name = {m.name: m for m in MUTANTS}
    if len(by_name) != len(MUTANTS):
        raise Usage("two mutants share a name in tests/sim/mutants.py")
    if args.only:
        unknown = [n for n in args.only if n not in by_name]
        if unknown:
            raise Usage(f"unknown mutant(s): {', '.join(unknown)} (see --list)")
        return [by_name[n] for n in args.only]
    if args.quick:
        return [by_name[n] for n in QUICK]
    return list(MUTANTS)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this mutant (repeatable)")
    parser.add_argument("--quick", action="store_true", help=f"the CI subset ({len(QUICK)} mutants)")
    parser.add_argument("--list", action="store_true", help="list the mutants and the rule each breaks")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutants run in parallel (default 1)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                        help=f"seconds per mutant before it counts as killed by a hang "
                             f"(default {DEFAULT_TIMEOUT_SECONDS})")
    parser.add_argument("--sim-only", action="store_true",
                        help="run only tests/sim (not the core rule tests): how much the simulator proves alone")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="do not first check that the unmutated tests pass")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.timeout <= 0:
        parser.error("-j must be >= 1 and --timeout > 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        mutants = select(args)
        for mutant in MUTANTS:  # every snippet, not only the selected ones: none may rot
            patched_text(ROOT, mutant)
        if args.list:
            for m in MUTANTS:
                print(f"{m.name:34} {m.path:24} {m.rule}")
            return 0
        with tempfile.TemporaryDirectory(prefix="dkvs-mutation-") as work:
            workdir = Path(work)
            # One snapshot of the tree for the whole run: edits made meanwhile cannot leak in.
            pristine = copy_tree(ROOT, workdir)
            if not args.skip_baseline:
                start = time.monotonic()
                with tempfile.TemporaryDirectory(dir=workdir) as tmp:
                    code, out = run_tests(copy_tree(pristine, Path(tmp)), args.timeout, args.sim_only)
                if code != 0:
                    raise Usage(f"the unmutated tests do not pass (exit {code}); first failure: "
                                f"{first_failure(out or '')}")
                print(f"{'baseline (no mutant)':34} passes  ({time.monotonic() - start:.1f} s)", flush=True)
            outcomes = []
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                futures = [pool.submit(run_mutant, m, pristine, workdir, args.timeout, args.sim_only)
                           for m in mutants]
                try:
                    for future in futures:
                        outcome = future.result()
                        outcomes.append(outcome)
                        print(line_for(outcome), flush=True)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    for proc in list(_RUNNING):
                        _kill(proc)
                    raise
    except Usage as problem:
        print(f"mutation_test: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mutation_test: interrupted (the repository was not modified)", file=sys.stderr)
        return 130
    killed = sum(o.killed for o in outcomes)
    print(f"mutants: {len(outcomes)}, killed: {killed}")
    return 0 if killed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
