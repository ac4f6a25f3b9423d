"""A throw-away CA and node certificates made with the ``openssl`` binary, for tests and checks.

The commands are those docs/security.md shows (EC P-256 keys, a CA, node certificates
with ``subjectAltName`` for 127.0.0.1 and localhost, usable as server and client
certificates), run into a directory the caller owns (a temporary one: keys are never
kept). Also one-request HTTPS helpers that verify against that CA.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .local_cluster import http_call

__all__ = ["TestCA", "make_ca", "openssl_available", "https_call"]

OPENSSL_TIMEOUT_SECONDS = 30.0


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=OPENSSL_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()[-300:]}")


@dataclass
class TestCA:
    """Paths of a CA made in ``directory``; :meth:`node` makes one node's certificate."""

    __test__ = False  # not a pytest class
    directory: Path
    cert: Path
    key: Path

    def node(self, name: str, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> tuple[Path, Path]:
        """(certificate, key) for ``name``, valid for ``hosts`` (IP addresses or DNS names)."""
        d = self.directory
        key, csr, cert, ext = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt", d / f"{name}.ext"
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key.name, "-out", csr.name, "-subj", f"/CN={name}", cwd=d)
        names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts)
        ext.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth,clientAuth\n")
        _run("x509", "-req", "-in", csr.name, "-CA", self.cert.name, "-CAkey", self.key.name,
             "-CAcreateserial", "-days", "2", "-out", cert.name, "-extfile", ext.name, cwd=d)
        return cert, key

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


def make_ca(directory: str | Path) -> TestCA:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=dkvs test CA", cwd=d)
    return TestCA(d, d / "ca.crt", d / "ca.key")


def https_call(url: str, method: str, path: str, body: bytes | None = None, *, context: ssl.SSLContext | None,
               timeout: float = 3.0, headers: dict | None = None) -> tuple[int, dict]:
    """One request on a fresh connection (HTTPS for https URLs); (status, JSON body). Raises OSError."""
    return http_call(url, method, path, body, timeout=timeout, headers=headers, context=context)
