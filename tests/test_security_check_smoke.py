"""scripts/security_check.py runs (a fast subset of its attacks) and reports one line per item."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "security_check.py"


def test_a_fast_subset_passes_with_one_line_per_item():
    result = subprocess.run([sys.executable, str(SCRIPT), "--only", "tokens,read-token,internal,cors,nkvd"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[1].rstrip(":") for line in lines] == ["tokens", "read-token", "internal", "cors", "nkvd"]
    assert all(line.startswith("PASS") for line in lines), result.stdout


def test_an_unknown_item_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, str(SCRIPT), "--only", "tokens,bogus"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "bogus" in result.stderr
