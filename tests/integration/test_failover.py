"""Automatic failover with real processes (issue #4's "done when"), via the failover demo.

The demo starts 3 CLI nodes with --heartbeat-interval 0.05 --election-timeout 0.5, writes
with acks=majority, SIGKILLs the master, restarts it with --join, and exits non-zero if any
acknowledged write is missing from any node. Here we also check its figures.
"""

import re
import subprocess
import sys

from dkvs.tools.local_cluster import _PACKAGE_ROOT


def test_master_sigkill_elects_a_new_master_and_loses_no_acknowledged_write():
    result = subprocess.run([sys.executable, f"{_PACKAGE_ROOT}/scripts/failover_demo.py"],
                            capture_output=True, text=True, timeout=600)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # How fast is a benchmark's claim (scripts/failover_bench.py), not a correctness test's.
    assert re.search(r"first acknowledged write [\d.]+ s after the kill", out), out
    epochs = [int(e) for e in re.findall(r"epoch (\d+)", out)]
    assert epochs[0] < max(epochs), out  # the survivors moved to a higher epoch
    assert re.search(r"is back as a slave", out), out
    assert "0 acknowledged writes missing" in out
    roles = re.findall(r"^  \w [0-9a-f]+: (\w+)\s+epoch (\d+)", out, re.M)
    assert sorted(r for r, _ in roles) == ["master", "slave", "slave"] and len({e for _, e in roles}) == 1, out
