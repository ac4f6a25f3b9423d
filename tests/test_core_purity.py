"""The protocol core is pure: no clocks, sockets, threads or randomness of its own.

That is what lets the simulator replay any run from its seed and lets the same core run in
production and in tests (DESIGN §2). The check parses every module of ``dkvs/core`` with
``ast`` (nothing is imported or executed) and looks at every import, wherever it appears.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "dkvs" / "core"

FORBIDDEN = frozenset({
    "socket", "threading", "time", "random", "http", "urllib", "select", "asyncio",
    # the same capabilities by other names
    "selectors", "subprocess", "multiprocessing", "concurrent", "secrets", "datetime", "_thread",
})


def impure_imports(source: str, filename: str = "<core module>") -> list[str]:
    """Every forbidden import in ``source``, as ``"line N: module"``; also imports that
    leave ``dkvs.core`` (they could bring I/O in through the back door) and dynamic imports."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                found.append(f"line {node.lineno}: relative import outside dkvs.core ({'.' * node.level}{node.module or ''})")
                continue
            if node.level == 1:
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
            elif top == "dkvs" and not (name == "dkvs.core" or name.startswith("dkvs.core.")):
                found.append(f"line {node.lineno}: {name} (outside dkvs.core)")
    return found


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


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
