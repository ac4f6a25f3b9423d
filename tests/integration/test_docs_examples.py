"""The examples of README.md and docs/ run as written, against a live 3-node cluster.

Issue 12: the README's ``Client`` block raised ``KeyNotFound`` on a fresh cluster, its
``watch`` replayed history and never returned, ``replicas: 3`` was shown where 2 came back.

Convention: a fenced block tagged ``python`` is meant to run, and the blocks of one file run
in order in one namespace, with the documented URLs (``http://127.0.0.1:7070`` ...) pointed
at the test cluster. A ``print(...)`` whose line ends with a comment (or is followed by a
comment-only line) must print what the comment shows; seqs and epochs may differ (only
their type is checked), and ``replicas`` may be higher than shown (a replica can ack before
the master answers). Fragments that are not meant to run are tagged ``py``. The
``python3 -m dkvs`` command lines of shell blocks must parse.
"""

from __future__ import annotations

import ast
import builtins
import io
import re
import shlex
import sys
from pathlib import Path

import pytest

from dkvs.client import cli as client_cli
from dkvs.cli import build_parser, resolve

from .procs import ProcessGroup, request, status, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOC_URLS = ("http://127.0.0.1:7070", "http://127.0.0.1:7071", "http://127.0.0.1:7072")
RUNNABLE = ("README.md", "docs/client.md")
SHELL = ("README.md", "docs/operations.md", "docs/security.md")
TYPE_ONLY = {"seq", "epoch", "last_seq", "index"}


def blocks(doc: str, tag: str) -> list[tuple[int, str]]:
    """(first line number, code) of each block fenced with exactly ```tag."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    found = []
    for match in re.finditer(rf"^```{tag}\n(.*?)^```", text, re.S | re.M):
        found.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return found


def _value(text: str):
    """A shown or printed value as data: a literal, or ``Name(field=value, ...)``."""
    tree = ast.parse(text.strip(), mode="eval").body
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name):
        return tree.func.id, {k.arg: ast.literal_eval(k.value) for k in tree.keywords}
    return ast.literal_eval(tree)


def same(shown, printed, name: str = "") -> bool:
    if name in TYPE_ONLY:
        return type(shown) is type(printed)
    if name == "replicas":
        return isinstance(printed, int) and printed >= shown
    if isinstance(shown, dict) and isinstance(printed, dict):
        return shown.keys() == printed.keys() and all(same(shown[k], printed[k], k) for k in shown)
    if isinstance(shown, (list, tuple)) and isinstance(printed, (list, tuple)):
        return len(shown) == len(printed) and all(same(a, b, name) for a, b in zip(shown, printed))
    return shown == printed


def matches(shown: str, printed: str) -> bool:
    try:
        return same(_value(shown), _value(printed))
    except (SyntaxError, ValueError):
        return shown.strip() == printed.strip()


def expectations(code: str) -> dict[int, str]:
    """Line number in the block → the output its print(...) shows in a comment."""
    lines = code.splitlines()
    shown = {}
    for number, line in enumerate(lines, 1):
        statement, _, comment = line.partition("  # ")
        if not statement.strip().startswith("print("):
            continue
        if comment:
            shown[number] = comment
        elif number < len(lines) and lines[number].lstrip().startswith("# "):
            shown[number] = lines[number].lstrip()[2:]
    return shown


@pytest.fixture(scope="module")
def cluster():
    group = ProcessGroup()
    try:
        yield group.cluster(3)
    finally:
        group.close()


@pytest.mark.parametrize("doc", RUNNABLE)
def test_python_examples_run_and_print_what_they_show(cluster, doc):
    namespace: dict = {"__name__": "__doc_example__"}
    for first_line, code in blocks(doc, "python"):
        for documented, live in zip(DOC_URLS, (n.url for n in cluster)):
            code = code.replace(documented, live)
        printed: dict[int, list[str]] = {}

        def record(*args, sep=" ", end="\n", file=None, flush=False):
            if file not in (None, sys.stdout):
                return builtins.print(*args, sep=sep, end=end, file=file, flush=flush)
            buffer = io.StringIO()
            builtins.print(*args, sep=sep, end="", file=buffer)
            printed.setdefault(sys._getframe(1).f_lineno, []).append(buffer.getvalue())

        namespace["print"] = record
        try:
            exec(compile(code, f"{doc}:{first_line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"the example at {doc} line {first_line} raised {exc!r}") from exc
        for number, shown in expectations(code).items():
            outputs = printed.get(number)
            where = f"{doc} line {first_line + number - 1}"
            assert outputs, f"{where}: the print never ran"
            assert matches(shown, outputs[0]), f"{where}: shows {shown!r}, prints {outputs[0]!r}"
    client = namespace.get("client") or namespace.get("db")
    if client is not None:
        client.close()


@pytest.mark.parametrize("doc", SHELL)
def test_documented_command_lines_parse(doc):
    commands = 0
    for _, code in blocks(doc, "sh"):
        for line in code.splitlines():
            words_of_line = shlex.split(line, comments=True)
            parts, part = [], []
            for word in words_of_line + ["&&"]:  # a line may chain commands with && or ;
                if word in ("&&", ";"):
                    parts.append(part)
                    part = []
                else:
                    part.append(word)
            for words in parts:
                if words[:3] != ["python3", "-m", "dkvs"]:
                    continue
                if words[3:4] and words[3] in client_cli.COMMANDS:  # the command-line client
                    client_cli._parser().parse_args(words[3:])  # raises on a bad argument
                else:  # starting a node
                    resolve(build_parser().parse_args(words[3:]), {})  # raises on a bad flag
                commands += 1
    assert commands or doc == "docs/security.md"


def test_the_documented_remove_of_a_dead_member_works_on_the_master():
    with ProcessGroup() as group:
        nodes = group.cluster(3)
        master_url = status(nodes[0].url)["master"]["url"]
        victim = next(n for n in nodes if n.url != master_url)
        victim.kill()
        wait_until(lambda: any(m["id"] == victim.id and m["alive"] is False
                               for m in status(master_url)["members"]), 60, what="the member seen dead")
        code, body = request("POST", f"{master_url}/internal/remove?id={victim.id}")
        assert (code, body) == (200, {"removed": victim.id})
        assert victim.id not in {m["id"] for m in status(master_url)["members"]}


def test_ci_runs_exactly_the_readme_test_command():
    opening = blocks("README.md", "sh")[0][1].splitlines()
    assert opening[0].startswith("python3 -m dkvs ")  # the README opens with the two commands
    test_command = opening[1].split("   # ")[0].strip()
    assert "python3 -m pytest" in test_command and "--break-system-packages" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()
