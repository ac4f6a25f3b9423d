"""The node's thread switch interval (issue 15) is set where a node runs, not on import."""

import subprocess
import sys


def test_importing_the_cli_leaves_the_switch_interval_alone():
    code = ("import sys; before = sys.getswitchinterval(); import dkvs.cli, dkvs.runtime.app; "
            "print(sys.getswitchinterval() == before, dkvs.cli.NODE_SWITCH_INTERVAL_SECONDS > before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True"], out.stderr
