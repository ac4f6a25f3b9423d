"""``scripts/read_index_bench.py`` runs end to end and refuses bad arguments cleanly.

The smoke run starts a one-node cluster and one second of consistent GETs: it proves the
tool runs and prints its figures without errors, not how fast anything is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "read_index_bench.py"
SMOKE_TIMEOUT_SECONDS = 600  # a liveness limit: start-up on a busy box can take minutes


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=SMOKE_TIMEOUT_SECONDS)


def test_a_smoke_run_prints_figures_for_each_client_count():
    done = run("--smoke", "--nodes", "1", "--clients", "1,2", "--keys", "5")
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    rows = [line.split() for line in done.stdout.splitlines() if line[:1] != "#" and "ops/s" not in line]
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(float(row[1]) > 0 and row[6] == "0" for row in rows)  # ops/s, errors


def test_bad_arguments_are_one_line_and_exit_2():
    done = run("--clients", "one")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("read_index_bench.py: error:")
