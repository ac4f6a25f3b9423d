"""CI smoke test of the mutation test (SLOW-ISH: ~15-30 s, runs 5 mutants in subprocesses).

Runs ``scripts/mutation_test.py --quick``: five protocol mutants (the figure-8 commit rule,
the read-index round, one vote per epoch, epoch fencing, log matching) must each be killed
by the core and simulator tests. The full run (all of tests/sim/mutants.py, about ten minutes with -j 2) is
``python3 scripts/mutation_test.py``; see docs/simulation.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE_TIMEOUT_SECONDS = 600  # a hang guard only; the run takes well under a minute


def test_quick_mutants_are_all_killed():
    proc = subprocess.run([sys.executable, "scripts/mutation_test.py", "--quick", "--skip-baseline"],
                          cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_SECONDS)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines[-1] == "mutants: 5, killed: 5", proc.stdout
    assert sum("killed by" in line for line in lines) == 5


def test_a_stale_snippet_fails_loudly(tmp_path):
    # A mutant whose snippet no longer matches the code must stop the run (exit 2, one line
    # on stderr), never be reported as killed or survived.
    sys.path.insert(0, str(ROOT))
    from scripts.mutation_test import Usage, patched_text
    from tests.sim.mutants import Mutant

    stale = Mutant("stale", "dkvs/core/master.py", (("this text is not in master.py", "x"),), "none")
    try:
        patched_text(ROOT, stale)
    except Usage as problem:
        assert "found 0 times" in str(problem)
    else:
        raise AssertionError("a stale snippet was accepted")


def test_killed_by_names_the_failing_test_not_a_captured_log_line():
    """A mutant that makes the node log an ``ERROR`` line was reported as "killed by
    dkvs.runtime:executor.py:179 cannot persist ..." instead of the test that failed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mutation_test_script", ROOT / "scripts" / "mutation_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        output = ("ERROR    dkvs.runtime:executor.py:179 cannot persist: No space left on device\n"
                  "ERROR dkvs.runtime:executor.py:179 cannot persist: No space left on device\n"
                  "FAILED tests/sim/test_scenarios_durable_master.py::test_one_slave - AssertionError: x\n")
        assert module.first_failure(output) == "tests/sim/test_scenarios_durable_master.py::test_one_slave"
        assert module.first_failure("ERROR tests/test_broken.py - ImportError: y\n") == "tests/test_broken.py"
        assert module.first_failure("ERROR dkvs.x:y.py:1 boom\n") == "?"
    finally:
        sys.modules.pop(spec.name, None)
