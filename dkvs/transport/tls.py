"""TLS contexts of a node: the one it serves with, and the one it calls its peers with.

Built once at start-up from ``--tls-cert``, ``--tls-key``, ``--tls-ca`` and
``--tls-client-auth`` (standard :mod:`ssl` only). Why a process-wide *peer* context
(:func:`set_peer_context`): a node calls its peers from several places (the raft
transport, forwarded client requests, joins, identity call-backs, leaves); each takes the
context from here for ``https://`` URLs instead of every call site growing a parameter.
One process runs one node, so one context serves all of them; plain ``http://`` URLs never
use it.
"""

from __future__ import annotations

import ssl
import threading

__all__ = ["TlsConfig", "CLIENT_AUTH_MODES", "server_context", "client_context",
           "set_peer_context", "peer_context", "TlsError"]

CLIENT_AUTH_MODES = ("none", "optional", "required")
_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}

_lock = threading.Lock()
_peer_context: ssl.SSLContext | None = None


class TlsError(ValueError):
    """A TLS file or option is unusable; the message is one sentence for the operator."""


class TlsConfig:
    """The TLS options of a node; ``enabled`` once a certificate and key are given."""

    def __init__(self, cert: str | None = None, key: str | None = None, ca: str | None = None,
                 client_auth: str = "none") -> None:
        self.cert, self.key, self.ca, self.client_auth = cert, key, ca, client_auth

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    def check(self) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
        """(server context, peer context), or TlsError naming the flag at fault."""
        if bool(self.cert) != bool(self.key):
            raise TlsError("--tls-cert and --tls-key go together: give both or neither")
        if self.client_auth not in CLIENT_AUTH_MODES:
            raise TlsError(f"--tls-client-auth {self.client_auth!r} must be one of {', '.join(CLIENT_AUTH_MODES)}")
        if self.client_auth != "none" and not self.ca:
            raise TlsError(f"--tls-client-auth {self.client_auth} needs --tls-ca (the CA client certificates are checked against)")
        if self.ca and not self.cert:
            raise TlsError("--tls-ca needs --tls-cert and --tls-key")
        if not self.enabled:
            return None, None
        return (server_context(self.cert, self.key, self.ca, self.client_auth),
                client_context(self.ca, self.cert, self.key))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def server_context(cert: str, key: str, ca: str | None = None, client_auth: str = "none") -> ssl.SSLContext:
    """The context a node serves HTTPS with (TLS 1.2 at least)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"--tls-cert {cert!r} / --tls-key {key!r}: cannot load the certificate and key "
                       f"({_describe(exc)})") from None
    if ca:
        _load_ca(context, ca)
    context.verify_mode = _VERIFY[client_auth]
    return context


def client_context(ca: str | None = None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A context that verifies servers against ``ca`` (default: the system's CAs) and
    presents ``cert`` (a node calling its peers always does when it has a CA)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca:
        _load_ca(context, ca)
    if cert and key:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"--tls-cert {cert!r}: cannot load it ({_describe(exc)})") from None
    return context


def _load_ca(context: ssl.SSLContext, ca: str) -> None:
    try:
        context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"--tls-ca {ca!r}: cannot load the CA certificate ({_describe(exc)})") from None


def set_peer_context(context: ssl.SSLContext | None) -> None:
    """The context for this process's calls to ``https://`` peers (None: system CAs)."""
    global _peer_context
    with _lock:
        _peer_context = context


def peer_context() -> ssl.SSLContext | None:
    return _peer_context
