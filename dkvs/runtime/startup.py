"""Start-up checks and the join: every operator mistake becomes one clear sentence.

A node that cannot start must say why in one line (``dkvs: error: ...`` on stderr, exit
status 2, no traceback) and must say it promptly: a bad value, a data dir it cannot use, an
address it cannot listen on, a cluster it cannot reach within ``--join-timeout``. Each check
here raises :class:`StartupError` with that sentence; :mod:`dkvs.cli` prints it.

The checks run before the node touches anything (no data dir lock, no listening socket):
validation of the values (:func:`validate_settings`), the listen address rule of the secure
default (:func:`check_listen_address`: beyond loopback only with a cluster secret, or with
``--insecure``), the data dir (:func:`check_data_dir`). Binding errors are translated by
:func:`listen_error`; the join is :func:`join_any`.
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import logging
import math
import os
import socket
import tempfile
import time
import urllib.parse

from ..api.auth import Authenticator, AuthFileError
from ..api.service import ACKS_LEVELS
from ..transport.auth import Signer
from ..transport.tls import TlsConfig, TlsError
from .admin import fetch_identity, post_internal
from .identity import mismatch_message

__all__ = [
    "StartupError",
    "DEFAULT_JOIN_TIMEOUT_SECONDS",
    "JOIN_SCHEMES",
    "parse_join_urls",
    "check_listen_address",
    "check_data_dir",
    "read_secret_file",
    "load_auth_file",
    "validate_settings",
    "listen_error",
    "join_any",
    "load_tls",
    "join_targets",
]

log = logging.getLogger("dkvs")

DEFAULT_JOIN_TIMEOUT_SECONDS = 10.0
DEFAULT_PORT = 7070
JOIN_SCHEMES = ("http", "https")
JOIN_ATTEMPT_TIMEOUT_SECONDS = 5.0  # one join request; the master may wait on a majority
JOIN_RETRY_MAX_DELAY_SECONDS = 1.0
FSYNC_MODES = ("always", "batch", "never")


class StartupError(Exception):
    """The node cannot start; the message is one sentence for the operator."""


# --- values -------------------------------------------------------------------------------

def parse_join_urls(text: str) -> list[str]:
    """``--join`` → the URLs to try, in order.

    Several URLs may be given, comma-separated. ``host:port`` without a scheme means
    ``http://host:port``, and a bare ``host`` means port 7070 (the default port); with an
    explicit scheme the URL is taken as written.
    """
    urls = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        url = part if "://" in part else "http://" + part
        try:
            split = urllib.parse.urlsplit(url)
            port = split.port
        except ValueError as exc:
            raise StartupError(f"--join {part!r} is not a URL: {exc}") from None
        if split.scheme not in JOIN_SCHEMES:
            raise StartupError(f"--join {part!r}: the scheme must be {' or '.join(JOIN_SCHEMES)}")
        if not split.hostname:
            raise StartupError(f"--join {part!r} names no host (e.g. http://10.0.0.5:7070)")
        if split.path not in ("", "/") or split.query or split.fragment:
            raise StartupError(f"--join {part!r}: give the node's base URL, without a path or query")
        if port is None and "://" not in part:
            url = f"{url}:{DEFAULT_PORT}"
        urls.append(url.rstrip("/"))
    if not urls:
        raise StartupError(f"--join {text!r} names no URL")
    return urls


def _is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the node on this machine (every address it names)."""
    if not host:
        return False  # "" listens on every interface
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise StartupError(f"--host {host!r} does not resolve: {exc.strerror}") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_listen_address(host: str, has_secret: bool, insecure: bool) -> None:
    """The secure default: beyond loopback, internal routes must be signed.

    Without a cluster secret anyone who reaches the port can join members, remove them and
    feed the log; on 127.0.0.1 that is only this machine's users. ``--insecure`` is the
    explicit way to accept it (a warning is logged).
    """
    if _is_loopback(host):
        return
    if has_secret:
        return
    if insecure:
        log.warning("listening on %s without a cluster secret (--insecure): anyone who can reach "
                    "this port can change the cluster's membership and data", host)
        return
    raise StartupError(f"refusing to listen on {host!r} (beyond loopback) without a cluster secret: "
                       "give --cluster-secret-file FILE (or DKVS_CLUSTER_SECRET_FILE), or --insecure "
                       "to run unprotected")


def check_data_dir(path: str) -> None:
    """The data dir is a directory this process can create files in (created if missing)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise StartupError(f"--data-dir {path} is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create --data-dir {path}: {exc.strerror or exc}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StartupError(f"--data-dir {path} is not writable: {exc.strerror or exc}") from None


def read_secret_file(path: str) -> str:
    """The cluster secret from a file (one line; surrounding whitespace is dropped).

    A file keeps the secret out of ``ps`` and the environment of child processes.
    """
    try:
        with open(path, "rb") as file:
            raw = file.read(65537)
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise StartupError(f"cannot read --cluster-secret-file {path}: {exc.strerror or exc}") from None
    if len(raw) > 65536:
        raise StartupError(f"--cluster-secret-file {path} is over 64 KiB; it should hold one line")
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise StartupError(f"--cluster-secret-file {path} is not UTF-8 text") from None
    if not secret:
        raise StartupError(f"--cluster-secret-file {path} is empty")
    if mode & 0o077:
        log.warning("--cluster-secret-file %s is readable by other users (mode %o); chmod 600 it",
                    path, mode & 0o777)
    return secret


def load_auth_file(path: str | None) -> Authenticator:
    """The client tokens of ``--auth-file`` (auth off without a path); StartupError when
    the file cannot be read or is not a valid token list. Tokens never appear in messages."""
    try:
        auth = Authenticator(path)
    except AuthFileError as exc:
        raise StartupError(str(exc)) from None
    if path is not None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        if mode & 0o077:
            log.warning("--auth-file %s is readable by other users (mode %o); chmod 600 it", path, mode & 0o777)
    return auth


def _positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def validate_settings(s) -> None:
    """Check a :class:`~dkvs.runtime.app.Settings` before anything is opened or bound.

    The command line already refuses bad values naming the flag or the variable they came
    from; this is the same rule for nodes built in-process, and the cross-field checks.
    """
    if not (isinstance(s.port, int) and 0 <= s.port <= 65535):
        raise StartupError(f"--port {s.port!r} is out of range: use 0 to 65535 (0 = any free port)")
    for name, value in (("--heartbeat-interval", s.heartbeat_interval),
                        ("--election-timeout", s.election_timeout),
                        ("--fsync-interval", s.fsync_interval),
                        ("--join-timeout", s.join_timeout)):
        if not _positive(value):
            raise StartupError(f"{name} {value!r} must be a positive number of seconds")
    if s.election_timeout < 2 * s.heartbeat_interval:
        raise StartupError(f"--election-timeout ({s.election_timeout:g} s) must be at least twice "
                           f"--heartbeat-interval ({s.heartbeat_interval:g} s)")
    if s.limits.default_acks not in ACKS_LEVELS:
        raise StartupError(f"--default-acks {s.limits.default_acks!r} must be one of {', '.join(ACKS_LEVELS)}")
    if s.fsync not in FSYNC_MODES:
        raise StartupError(f"--fsync {s.fsync!r} must be one of {', '.join(FSYNC_MODES)}")
    window = getattr(s, "replication_window", 1)
    if not (isinstance(window, int) and not isinstance(window, bool) and 1 <= window <= 64):
        raise StartupError(f"--replication-window {window!r} must be a whole number of batches from 1 to 64")
    if s.join:
        parse_join_urls(s.join)
    if getattr(s, "rebuild", False) and (not (s.data_dir and s.join) or s.node_id):
        raise StartupError("--rebuild needs --data-dir and --join (the cluster to rebuild from), and no --id: "
                           "it rejoins as a new member (dkvs.runtime.recovery)")
    check_listen_address(s.host, bool(s.cluster_secret), s.insecure)
    if s.data_dir:
        check_data_dir(s.data_dir)
    if s.join and not getattr(s, "tls_cert", None) and any(url.startswith("https://") for url in parse_join_urls(s.join)):
        raise StartupError("--join gives an https:// URL: this node needs --tls-cert and --tls-key "
                           "(and --tls-ca) to talk to a TLS cluster")


def load_tls(s):
    """(server context, peer context) from the ``tls_*`` settings, (None, None) without TLS.

    Unreadable or mismatched files are a :class:`StartupError` naming the flag.
    """
    config = TlsConfig(s.tls_cert, s.tls_key, s.tls_ca, s.tls_client_auth)
    try:
        return config.check()
    except TlsError as exc:
        raise StartupError(str(exc)) from None


def listen_error(host: str, port: int, exc: OSError) -> StartupError:
    """The sentence for a failed bind of ``host:port``."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return StartupError(f"cannot listen on {where}: --host does not resolve ({exc.strerror})")
    reasons = {
        errno.EADDRINUSE: "the address is already in use (another process listens there; "
                          "stop it or choose another --port)",
        errno.EADDRNOTAVAIL: "this machine has no such address (check --host)",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
    }
    return StartupError(f"cannot listen on {where}: {reasons.get(exc.errno, exc.strerror or str(exc))}")


# --- the join -----------------------------------------------------------------------------

def _candidates(url: str) -> tuple[list[str], str | None]:
    """The URLs to try for ``url``: itself, or one per address when its host name resolves
    to several (tried in turn). Returns (urls, reason) — reason set when none."""
    split = urllib.parse.urlsplit(url)
    host = split.hostname
    try:
        ipaddress.ip_address(host)
        return [url], None
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, split.port or 80, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [], f"{host} does not resolve ({exc.strerror})"
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if len(addresses) <= 1:
        return [url], None
    port = split.port or 80
    return [f"{split.scheme}://{f'[{a}]' if ':' in a else a}:{port}" for a in addresses], None


def _same_node(a: str, b: str) -> bool:
    """Whether two base URLs name the same listening address (host names compared as
    written, plus loopback aliases: a node must not send its join to itself)."""
    x, y = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
    if x.port != y.port:
        return False
    loopback = {"127.0.0.1", "localhost", "::1"}
    return x.hostname == y.hostname or (x.hostname in loopback and y.hostname in loopback)


def join_targets(urls: list[str], my_url: str, known_peers: list[str]) -> list[str]:
    """The URLs to send a join to: ``--join`` without this node's own URL, then the peers
    its data dir knows.

    The first node of a cluster restarted with the command line of the others
    (``--join`` to the first node's URL) would otherwise ask *itself*: it has no master
    (a node that left on SIGTERM hears from none), answers 503, and retries in silence
    until ``--join-timeout`` while the cluster has a healthy master (issue 12).
    """
    own = [url for url in urls if _same_node(url, my_url)]
    targets = [url for url in urls if url not in own]
    targets += [url for url in known_peers if url not in targets and not _same_node(url, my_url)]
    if own:
        if not targets:
            raise StartupError(f"--join {own[0]} is this node's own URL: give the URL of another member")
        log.info("--join %s is this node's own URL; joining through %s instead", own[0], ", ".join(targets))
    return targets


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "no answer in time"
    if isinstance(reason, socket.gaierror):
        return f"does not resolve ({reason.strerror})"
    return str(reason) or type(reason).__name__


def _check_cluster(candidate: str, signer: Signer, timeout: float, known: list[str] | None = None) -> None:
    """Before a join: refuse a cluster other than the one this data dir belongs to.

    Asks the node for its identity (a read: nothing changes anywhere). A node that cannot
    be asked is left to the join attempt, which the master checks again. A data dir that
    holds state but no cluster id (``known`` is then the member URLs it lists) is checked
    by :func:`_check_lineage` instead: nobody else can.
    """
    mine = signer.cluster_id
    if mine is None:
        if known is not None:
            _check_lineage(candidate, signer, timeout, known)
        return
    try:
        identity = fetch_identity(candidate, "", signer, timeout=timeout)
    except (OSError, ValueError, http.client.HTTPException):
        return
    theirs = identity.get("cluster_id")
    if isinstance(theirs, str) and theirs and theirs != mine:
        raise StartupError(mismatch_message(mine, theirs[:64], candidate))


def _check_lineage(candidate: str, signer: Signer, timeout: float, known: list[str]) -> None:
    """A data dir made before cluster ids, with state, joins only its own cluster: ``candidate``
    must be at an address the data dir lists as a member, or share a cluster id with one.

    Else it would adopt the id and meet a log contradicting its own: the node dies and a
    dead extra member stays behind (issue 12). OSError: not asked (retried)."""
    if any(_same_node(candidate, url) for url in known):
        return
    theirs = fetch_identity(candidate, "", signer, timeout=timeout).get("cluster_id")
    for url in known if theirs else ():  # two clusters without ids cannot be told apart
        try:
            if fetch_identity(url, "", signer, timeout=timeout).get("cluster_id") == theirs:
                return
        except (OSError, ValueError, http.client.HTTPException):
            continue
    listed = ", ".join(known) if known else "none but itself"
    raise StartupError(f"this data dir (made before cluster ids) holds a cluster whose members ({listed}) are "
                       f"not in the cluster at {candidate} ({theirs}): to join that cluster start with an empty "
                       "--data-dir, or --join a member of this data dir's cluster")


def join_any(urls: list[str], node_id: str, my_url: str, signer: Signer,
             timeout_seconds: float = DEFAULT_JOIN_TIMEOUT_SECONDS, known: list[str] | None = None,
             learner: bool = False) -> dict:
    """Ask the cluster reachable at any of ``urls`` to add this node; return its answer.

    URLs (and the addresses of a host name) are tried in turn, round after round, while the
    cluster is unreachable or has no master (503/504), until ``timeout_seconds`` have passed:
    then :class:`StartupError` lists every URL tried with its last failure. Any other refusal
    (a taken id, a wrong secret, not a dkvs node) ends the join at once. ``known``: the
    member URLs of a data dir that holds state but no cluster id (:func:`_check_lineage`).
    """
    deadline = time.monotonic() + timeout_seconds
    last: dict[str, str] = {url: "not tried" for url in urls}
    delay = 0.1
    warned = False
    while True:
        for url in urls:
            candidates, reason = _candidates(url)
            if reason:
                last[url] = reason
            for candidate in candidates:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    _check_cluster(candidate, signer, min(remaining, JOIN_ATTEMPT_TIMEOUT_SECONDS), known)
                    body = {"id": node_id, "url": my_url, **({"learner": True} if learner else {})}
                    if signer.cluster_id:
                        body["cluster_id"] = signer.cluster_id
                    status, answer = post_internal(candidate, "join", body, signer,
                                                   timeout=min(remaining, JOIN_ATTEMPT_TIMEOUT_SECONDS))
                except (OSError, http.client.HTTPException) as exc:
                    last[url] = _describe(exc)
                    continue
                except ValueError:
                    last[url] = "the answer is not JSON: is it a dkvs node?"
                    continue
                if status == 200:
                    return answer
                message = answer.get("message", answer) if isinstance(answer, dict) else answer
                if status not in (503, 504):
                    raise StartupError(f"the cluster at {candidate} refused this node: {status} {message}")
                last[url] = f"{status} {message}"
        if time.monotonic() + delay >= deadline:
            tried = "; ".join(f"{url} ({why})" for url, why in last.items())
            raise StartupError(f"could not join a cluster within {timeout_seconds:g} s (--join-timeout); "
                               f"tried {tried}")
        if not warned:
            warned = True
            log.warning("cannot join yet (%s); retrying for up to %g s",
                        "; ".join(f"{u}: {w}" for u, w in last.items()), timeout_seconds)
        time.sleep(delay)
        delay = min(delay * 2, JOIN_RETRY_MAX_DELAY_SECONDS)
