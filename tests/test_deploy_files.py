"""The deployment files (deploy/) cannot run here (no Docker, no Kubernetes): check them.

They are parsed — YAML by a tiny block-style parser sufficient for these files (no PyYAML:
the project is stdlib only) — and their structure is checked, and every ``dkvs`` flag and
``DKVS_*`` variable they use must exist in :data:`dkvs.cli.FLAGS`, so renaming a flag
breaks this test instead of a production deployment.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dkvs.cli import FLAGS

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
FLAG_NAMES = {flag.name for flag in FLAGS}
ENV_NAMES = {flag.env for flag in FLAGS}


# -- a tiny YAML subset: block mappings and lists, flow lists, "|" block scalars ----------------

def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if ch in "\"'" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _scalar(text: str):
    text = text.strip()
    if text.startswith("[") or text.startswith("{"):
        return json.loads(re.sub(r"(?<=[\[,{])\s*([A-Za-z_][\w.-]*)\s*(?=[,\]])", r'"\1"', text))
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"true": True, "false": False, "null": None, "": None}.get(text, text)


def parse_yaml(text: str) -> list:
    """Documents of ``text`` (``---`` separated) as dicts/lists/scalars."""
    docs = []
    for chunk in re.split(r"^---\s*$", text, flags=re.M):
        lines = []
        raw_lines = chunk.splitlines()
        i = 0
        while i < len(raw_lines):
            raw = raw_lines[i]
            line = _strip_comment(raw)
            i += 1
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            if line.endswith("|"):  # block scalar: the more-indented lines that follow
                block = []
                while i < len(raw_lines) and (not raw_lines[i].strip() or
                                              len(raw_lines[i]) - len(raw_lines[i].lstrip()) > indent):
                    block.append(raw_lines[i].strip())
                    i += 1
                lines.append((indent, line[:-1].strip(), "\n".join(block).strip() + "\n"))
            else:
                lines.append((indent, line.strip(), None))
        if lines:
            value, _ = _block(lines, 0, lines[0][0])
            docs.append(value)
    return docs


_KEY = re.compile(r"^([^:]+):(?:\s+(.*)|$)")  # "key: value" or "key:"; "a:/b" is a scalar


def _block(lines, pos: int, indent: int):
    if lines[pos][1].startswith("- ") or lines[pos][1] == "-":
        return _list(lines, pos, indent)
    return _mapping(lines, pos, indent)


def _mapping(lines, pos: int, indent: int):
    result = {}
    while pos < len(lines) and lines[pos][0] == indent and not lines[pos][1].startswith("-"):
        _, text, block = lines[pos]
        match = _KEY.match(text)
        assert match, f"not a mapping line: {text!r}"
        key, rest = _scalar(match.group(1)), match.group(2)
        pos += 1
        if block is not None:
            result[key] = block
        elif rest and rest.strip():
            result[key] = _scalar(rest)
        elif pos < len(lines) and (lines[pos][0] > indent or
                                   (lines[pos][0] == indent and lines[pos][1].startswith("- "))):
            result[key], pos = _block(lines, pos, lines[pos][0])
        else:
            result[key] = None
    return result, pos


def _list(lines, pos: int, indent: int):
    result = []
    while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("-"):
        _, text, block = lines[pos]
        item = text[1:].strip()
        if block is not None and not item.rstrip(":").count(":"):
            result.append(block)
            pos += 1
        elif _KEY.match(item) and not item.startswith(("\"", "'", "[")):
            # "- key: value" opens a mapping whose other keys sit at indent + 2
            sub = [(indent + 2, item, block)]
            pos += 1
            while pos < len(lines) and lines[pos][0] > indent:
                sub.append(lines[pos])
                pos += 1
            value, _ = _mapping(sub, 0, indent + 2)
            result.append(value)
        else:
            result.append(_scalar(item))
            pos += 1
    return result, pos


def test_the_tiny_parser_reads_what_these_files_use():
    text = "a: 1\nb:\n  - x\n  - k: v\n    j: [\"p\", \"q\"]\nc: |\n  line one\n  line two\nd: {}\n---\ne: 'f' # c\n"
    assert parse_yaml(text) == [{"a": 1, "b": ["x", {"k": "v", "j": ["p", "q"]}], "c": "line one\nline two\n",
                                 "d": {}}, {"e": "f"}]


# -- what the files must say -------------------------------------------------------------------

def _flags_in(words) -> set[str]:
    return {w.split("=", 1)[0] for w in words if isinstance(w, str) and w.startswith("--")}


def _env_names_in(text: str) -> set[str]:
    return set(re.findall(r"\bDKVS_[A-Z0-9_]+", text))


def _all_text() -> str:
    return "\n".join(p.read_text() for p in sorted(DEPLOY.rglob("*")) if p.is_file())


def test_every_dkvs_env_variable_used_exists():
    used = _env_names_in(_all_text())
    assert used, "the deploy files configure dkvs through DKVS_* variables"
    assert used <= ENV_NAMES, f"unknown variables: {sorted(used - ENV_NAMES)}"


def test_dockerfile_slim_non_root_volume_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    kinds = [i[0] for i in instructions]
    base = next(arg for kind, arg in instructions if kind == "FROM")
    assert re.fullmatch(r"python:3\.\d+-slim", base.strip()), base
    assert "apt-get" not in text and "pip install" not in text  # nothing else installed
    assert kinds.index("USER") > kinds.index("RUN")  # runs as the user it created
    user = next(arg for kind, arg in instructions if kind == "USER").strip()
    assert user not in ("root", "0")
    assert '"/data"' in next(arg for kind, arg in instructions if kind == "VOLUME")
    health = text[text.index("HEALTHCHECK"):]
    assert "urllib.request" in health and "/health" in health and "curl" not in health
    entry = json.loads(next(arg for kind, arg in instructions if kind == "ENTRYPOINT"))
    assert entry == ["python", "-m", "dkvs"]


def test_compose_three_nodes_with_a_file_secret():
    (doc,) = parse_yaml((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert sorted(services) == ["n1", "n2", "n3"]
    assert doc["secrets"]["cluster_secret"]["file"]
    joins = 0
    for name, service in services.items():
        command = service["command"]
        assert _flags_in(command) <= FLAG_NAMES, sorted(_flags_in(command) - FLAG_NAMES)
        assert command[command.index("--id") + 1] == name
        assert command[command.index("--advertise-url") + 1] == f"http://{name}:7070"
        secret_path = command[command.index("--cluster-secret-file") + 1]
        assert secret_path == "/run/secrets/cluster_secret" and service["secrets"] == ["cluster_secret"]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert any(v.endswith(":/data") for v in service["volumes"])
        joins += "--join" in command
    assert joins == 2  # one node starts the cluster, the others join it


def _k8s() -> dict:
    docs = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in parse_yaml(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_kubernetes_statefulset_service_pdb_secret():
    docs = _k8s()
    assert {"StatefulSet", "Service", "PodDisruptionBudget", "Secret"} <= docs.keys()
    service, sts, pdb = docs["Service"], docs["StatefulSet"], docs["PodDisruptionBudget"]
    assert service["spec"]["clusterIP"] == "None"  # headless
    assert service["spec"]["publishNotReadyAddresses"] is True
    name = service["metadata"]["name"]
    assert sts["spec"]["serviceName"] == name and sts["spec"]["replicas"] == 3
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"] == labels == service["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] == 1
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DKVS_ID"]["value"] == "$(POD_NAME)"
    assert env["DKVS_ADVERTISE_URL"]["value"] == f"http://$(POD_NAME).{name}.$(POD_NAMESPACE).svc.cluster.local:7070"
    script = "\n".join(container["args"])
    assert f'DKVS_JOIN="http://{name}.${{POD_NAMESPACE}}.svc.cluster.local:7070"' in script  # the headless name
    assert "exec python -m dkvs" in script
    assert set(env) & ENV_NAMES <= ENV_NAMES and _env_names_in(script) <= ENV_NAMES
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secret_volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
    assert secret_volume["secret"]["secretName"] == docs["Secret"]["metadata"]["name"]
    assert env["DKVS_CLUSTER_SECRET_FILE"]["value"].startswith(mounts["secrets"] + "/")
    assert env["DKVS_AUTH_FILE"]["value"].startswith(mounts["secrets"] + "/")
    secret_keys = set(docs["Secret"]["stringData"])
    for var in ("DKVS_CLUSTER_SECRET_FILE", "DKVS_AUTH_FILE"):
        assert env[var]["value"].rsplit("/", 1)[1] in secret_keys
    assert mounts["data"] == env["DKVS_DATA_DIR"]["value"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


@pytest.mark.parametrize("path", sorted(p.name for p in DEPLOY.rglob("*") if p.is_file()))
def test_no_real_secret_is_committed(path):
    text = next(DEPLOY.rglob(path)).read_text()
    for token in re.findall(r'"token":\s*"([^"]*)"', text):
        assert token.startswith("REPLACE"), f"{path} holds a token that looks real"
