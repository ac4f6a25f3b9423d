"""A server-side TLS connection that looks like the plain socket the selector and workers use.

Why an adapter: the selector reads with ``recv(n, MSG_DONTWAIT)`` on blocking sockets and
workers wait with ``SO_RCVTIMEO`` (see :mod:`dkvs.api.connection`); an ``ssl.SSLSocket``
takes no recv flags, and a blocking SSL read retries on ``EAGAIN`` forever. So:

* the handshake is done without blocking in the selector, on the first readable events
  (it is bounded by ``--request-timeout`` like a request head; a client speaking plain
  HTTP fails it and is closed);
* ``MSG_DONTWAIT`` switches the socket to non-blocking for that one call, and the SSL
  "want read/write" errors become ``BlockingIOError``, which the callers already handle;
* decrypted bytes OpenSSL still holds (``pending()``) are drained at once, since epoll
  cannot see them;
* ``SO_RCVTIMEO`` is refused, so workers never hot-wait on a TLS connection (it goes back
  to the selector after each answer).
"""

from __future__ import annotations

import socket
import ssl

__all__ = ["TlsSocket"]

_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


class TlsSocket:
    """``recv``, ``send``, ``sendall``, ``settimeout``, ``setsockopt``, ``shutdown``, ``close``."""

    __slots__ = ("_ssl", "_ready")

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self._ssl = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self._ready = False

    def fileno(self) -> int:
        return self._ssl.fileno()

    def getpeercert(self):
        return self._ssl.getpeercert() if self._ready else None

    def recv(self, size: int, flags: int = 0) -> bytes:
        nonblocking = bool(flags & socket.MSG_DONTWAIT)
        ssl_sock = self._ssl
        if nonblocking:
            timeout = ssl_sock.gettimeout()
            ssl_sock.setblocking(False)
        try:
            if not self._ready:
                ssl_sock.do_handshake()
                self._ready = True
            data = ssl_sock.recv(size)
            while data and ssl_sock.pending():
                data += ssl_sock.recv(size)
            return data
        except _WOULD_BLOCK:
            raise BlockingIOError("TLS: no complete record yet") from None
        finally:
            if nonblocking:
                ssl_sock.settimeout(timeout)

    def send(self, data, flags: int = 0) -> int:
        if not self._ready:
            raise OSError("TLS handshake not done: nothing can be sent")
        nonblocking = bool(flags & socket.MSG_DONTWAIT)
        ssl_sock = self._ssl
        if nonblocking:
            timeout = ssl_sock.gettimeout()
            ssl_sock.setblocking(False)
        try:
            return ssl_sock.send(data)
        except _WOULD_BLOCK:
            raise BlockingIOError("TLS: the send buffer is full") from None
        finally:
            if nonblocking:
                ssl_sock.settimeout(timeout)

    def sendall(self, data) -> None:
        self._ssl.sendall(data)

    def settimeout(self, timeout) -> None:
        self._ssl.settimeout(timeout)

    def gettimeout(self):
        return self._ssl.gettimeout()

    def setsockopt(self, level: int, option: int, value) -> None:
        if level == socket.SOL_SOCKET and option == socket.SO_RCVTIMEO:
            raise OSError("SO_RCVTIMEO is not used on TLS connections")
        self._ssl.setsockopt(level, option, value)

    def getpeername(self):
        return self._ssl.getpeername()

    def shutdown(self, how: int) -> None:
        self._ssl.shutdown(how)

    def close(self) -> None:
        self._ssl.close()
