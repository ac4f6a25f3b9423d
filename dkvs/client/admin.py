"""Operator requests to one node: what ``dkvs members|leader|backup`` send.

Why not :class:`~dkvs.client.Client`: its requests go to the master it discovers, while an
operator's request is meant for the node named (a backup is served by the node asked, from
its own state; membership changes are relayed by whichever node receives them). And these
answers are not all JSON: a backup chunk is bytes with its facts in headers.

:class:`NodeAdmin` sends each request to the first of its URLs that can be reached (a read that
fails midway is asked again, a change is not: it may have been applied), with
the admin token (``Authorization: Bearer``) and, when given the cluster secret, signed
for that node (a node with a secret and no client auth wants a signature on the routes
that change the cluster). Failures are :mod:`dkvs.errors` exceptions: ``Unavailable``
when no node could be reached, otherwise the class the answer's ``error`` code names.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from .connection import normalize_url
from .errors import Unavailable, error_from_answer

__all__ = ["NodeAdmin", "Response", "OPERATOR_ID", "RETRY_SECONDS", "RETRY_MIN_SECONDS"]

OPERATOR_ID = "operator"  # the signed sender of an operator's request (not a member)
RETRY_SECONDS = 10.0  # how long a 503 (no master known, e.g. an election) is asked again
RETRY_MIN_SECONDS = 0.1
_FAILURES = (OSError, http.client.HTTPException)


@dataclass(frozen=True)
class Response:
    """A complete answer: status, headers (lower-case names) and the body bytes."""

    status: int
    headers: dict
    body: bytes

    def json(self) -> dict:
        try:
            doc = json.loads(self.body or b"{}")
        except ValueError:
            doc = None
        return doc if isinstance(doc, dict) else {"error": "error", "message": self.body[:200].decode("latin-1")}


class NodeAdmin:
    """Requests to one node of ``urls``; not thread safe (one operator command at a time).

    ``secret``: the cluster secret, to sign requests (None: unsigned). ``timeout``: seconds
    to connect and to wait for each answer; ``retry_seconds``: how long :meth:`call` asks
    again after a 503.
    """

    def __init__(self, urls: list[str], *, token: str | None = None, secret: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        self.urls = [normalize_url(url) for url in urls]
        if not self.urls:
            raise ValueError("give at least one node URL")
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._ssl_context = ssl_context
        self._auth = {"Authorization": f"Bearer {token.strip()}"} if token else {}
        self._signer = None
        if secret:
            from ..transport.auth import Signer
            self._signer = Signer(secret, node_id=OPERATOR_ID)
        self._conn: http.client.HTTPConnection | None = None
        self.url: str | None = None  # the node answering
        self._node_id: str | None = None

    def request(self, method: str, target: str, *, timeout: float | None = None, signed: bool = False) -> Response:
        """One request to the current node (the first reachable one of ``urls``)."""
        last: Exception | None = None
        for _ in range(len(self.urls) + 1):
            conn = self._connection()  # Unavailable when no node can be reached
            headers = {"Accept": "application/json", **self._auth}
            if signed and self._signer is not None:
                headers.update(self._signer.headers(method, target, b"", to=self._target_id()))
            try:
                conn.sock.settimeout(timeout or self.timeout)
                conn.request(method, target, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except _FAILURES as exc:
                last, url = exc, self.url
                self._drop_node()
                if method == "GET":  # a read: ask again (the next node, or the same one anew)
                    continue
                raise Unavailable(f"{method} {target} to {url} failed after it was sent "
                                  f"({exc}): it may or may not have been applied; check with "
                                  "'dkvs members list' / 'dkvs leader'") from None
            if response.will_close:
                self.close()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
        raise Unavailable(f"{method} {target}: no node answered ({last})")

    def call(self, method: str, target: str, *, timeout: float | None = None, signed: bool = False) -> dict:
        """A JSON request: the answer's object, or the :mod:`dkvs.errors` exception it names.

        A 503 (no master known right now, e.g. during an election: nothing was applied) is
        asked again after its ``Retry-After`` (at least :data:`RETRY_MIN_SECONDS`) for up
        to ``retry_seconds``; then the last error is raised.
        """
        deadline = time.monotonic() + self.retry_seconds
        while True:
            answer = self.request(method, target, timeout=timeout, signed=signed)
            if answer.status < 400:
                return answer.json()
            retry_after = _seconds(answer.headers.get("retry-after"))
            error = error_from_answer(answer.status, answer.json(), retry_after, where=self.url)
            wait = max(RETRY_MIN_SECONDS, retry_after or 0.0)
            if answer.status != 503 or time.monotonic() + wait > deadline:
                raise error
            time.sleep(wait)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> NodeAdmin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- connections ----------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None:
            return self._conn
        errors = []
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout,
                                                   context=self._ssl_context)
            else:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
            try:
                conn.connect()
            except _FAILURES as exc:
                conn.close()
                errors.append(f"{url}: {exc}")
                continue
            if url != self.url:
                self._node_id = None
            self._conn, self.url = conn, url
            return conn
        raise Unavailable("no node could be reached: " + "; ".join(errors))

    def _drop_node(self) -> None:
        """The current node failed: try the others first next time."""
        self.close()
        if self.url in self.urls and len(self.urls) > 1:
            self.urls.remove(self.url)
            self.urls.append(self.url)
        self.url, self._node_id = None, None

    def _target_id(self) -> str:
        """The answering node's id, which a signature must name (from its /status)."""
        if self._node_id is None:
            conn = self._connection()
            conn.request("GET", "/status", headers={"Accept": "application/json", **self._auth})
            response = conn.getresponse()
            doc = Response(response.status, {}, response.read()).json()
            if response.status != 200:
                raise error_from_answer(response.status, doc, None, where=self.url)
            self._node_id = str(doc.get("id", ""))
        return self._node_id


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
