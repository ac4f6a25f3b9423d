"""The protocol core and the node driver are pure: no clocks, sockets, threads or randomness.

That is what lets the simulator replay any run from its seed and lets the same core run in
production and in tests (DESIGN §2). The check parses every module of ``dkvs/core`` and
``dkvs/driver`` with ``ast`` (nothing is imported or executed) and looks at every import,
wherever it appears. The core may import only itself; the driver only itself and the core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "dkvs" / "core"
DRIVER = CORE.parent / "driver"

FORBIDDEN = frozenset({
    "socket", "threading", "time", "random", "http", "urllib", "select", "asyncio",
    # the same capabilities by other names
    "selectors", "subprocess", "multiprocessing", "concurrent", "secrets", "datetime", "_thread",
})


def impure_imports(source: str, filename: str = "<core module>", allowed: tuple[str, ...] = ("core",)) -> list[str]:
    """Every forbidden import in ``source``, as ``"line N: module"``; also imports that
    leave the ``allowed`` dkvs packages (they could bring I/O in through the back door) and
    dynamic imports. The module's own package is ``allowed[0]``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                continue
            if node.level == 2 and (node.module or "").split(".")[0] in allowed:
                continue
            if node.level > 1:
                found.append(f"line {node.lineno}: relative import outside {allowed} ({'.' * node.level}{node.module or ''})")
                continue
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append(f"line {node.lineno}: __import__()")
            continue
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in FORBIDDEN or top == "importlib":
                found.append(f"line {node.lineno}: {name}")
            elif top == "dkvs" and (name.split(".") + [""])[1] not in allowed:
                found.append(f"line {node.lineno}: {name} (outside {allowed})")
    return found


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def driver_modules() -> list[Path]:
    return sorted(DRIVER.rglob("*.py"))


def test_core_has_modules():
    # Guards the test itself: an empty glob would make the purity check pass vacuously.
    names = {path.name for path in core_modules()}
    assert {"node.py", "election.py", "master.py", "slave.py", "log.py"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_module_is_pure(path):
    # Proves this module cannot read a clock, open a socket, start a thread or draw
    # randomness except through what its caller injects.
    problems = impure_imports(path.read_text(encoding="utf-8"), str(path))
    assert not problems, f"{path.relative_to(CORE.parents[1])} imports: {', '.join(problems)}"


def test_driver_has_modules():
    names = {path.name for path in driver_modules()}
    assert {"driver.py", "ready.py", "requests.py", "inflight.py", "narrator.py"} <= names


@pytest.mark.parametrize("path", driver_modules(), ids=lambda p: p.name)
def test_driver_module_is_pure(path):
    # Proves the driver, which makes every decision of the node, is as replayable as the core.
    problems = impure_imports(path.read_text(encoding="utf-8"), str(path), allowed=("driver", "core"))
    assert not problems, f"{path.relative_to(CORE.parents[1])} imports: {', '.join(problems)}"


def test_driver_may_not_import_the_runtime():
    assert impure_imports("from ..runtime import host", allowed=("driver", "core"))
    assert impure_imports("from dkvs.storage import file", allowed=("driver", "core"))
    assert not impure_imports("from ..core.node import Node", allowed=("driver", "core"))


@pytest.mark.parametrize("snippet", [
    "import time",
    "import random as r",
    "from socket import socket",
    "import http.client",
    "from urllib.request import urlopen",
    "def f():\n    import threading",
    "import asyncio, select",
    "from ..runtime import host",
    "from dkvs.transport import http",
    "__import__('time')",
    "import importlib",
])
def test_checker_catches_impure_imports(snippet):
    # Proves the checker is not blind: each of these would make the core impure.
    assert impure_imports(snippet)


def test_checker_allows_pure_imports():
    source = "from __future__ import annotations\nimport bisect\nfrom collections import deque\n" \
             "from .log import Entry\nfrom dkvs.core.quorum import majority\n"
    assert impure_imports(source) == []
