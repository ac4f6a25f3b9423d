"""Sockets the HTTP selector reads for others: the replication streams this node opened.

The selector (:mod:`dkvs.api.connections`) watches client connections; a node's replication
streams to its peers (:mod:`dkvs.transport.stream_loop`) are watched by the same thread, so
a slave's answer is read and handed to the node with no thread woken. A *watcher* has an
``fd``, an ``on_ready()`` called on the selector's thread when the socket is readable (or
writable, see :meth:`WatchedSockets.want_write`), and a ``sweep(now)`` called with the
selector's deadlines. Registration works from any thread, so only with epoll
(:attr:`WatchedSockets.usable`); a failure inside a watcher is logged and never stops the
selector.
"""

from __future__ import annotations

import logging
import threading

from .poller import OneShotPoller

__all__ = ["WatchedSockets"]

log = logging.getLogger("dkvs.http")


class WatchedSockets:
    """The watchers of one selector (its ``poller``); the selector calls :meth:`ready` and
    :meth:`sweep`, owners :meth:`watch`, :meth:`unwatch` and :meth:`want_write`."""

    def __init__(self, poller: OneShotPoller) -> None:
        self._poller = poller
        self._watchers: dict[int, object] = {}  # id -> watcher
        self._lock = threading.Lock()
        self.closed = False  # the selector has stopped: nothing more is watched

    @property
    def usable(self) -> bool:
        """Whether :meth:`watch` works from any thread (epoll); else nothing may be watched."""
        return self._poller.threadsafe_rearm

    def __len__(self) -> int:
        return len(self._watchers)

    def watch(self, watcher) -> None:
        """From any thread; :meth:`unwatch` before the socket is closed. ``OSError`` (or
        ``ValueError``) once the selector has stopped."""
        with self._lock:
            if self.closed:
                raise OSError("the selector has stopped")
            self._watchers[id(watcher)] = watcher
        try:
            self._poller.add(watcher.fd, watcher, oneshot=False)
        except (OSError, ValueError):  # stopped meanwhile (the poller is closed)
            with self._lock:
                self._watchers.pop(id(watcher), None)
            raise

    def unwatch(self, watcher) -> None:
        with self._lock:
            self._watchers.pop(id(watcher), None)
        self._poller.remove(watcher.fd)

    def want_write(self, watcher, on: bool) -> None:
        try:
            self._poller.want_write(watcher.fd, on)
        except (OSError, ValueError):  # unwatched or stopped meanwhile
            pass

    def close(self) -> None:
        with self._lock:
            self.closed = True

    # -- the selector's thread -----------------------------------------------------------------
    @staticmethod
    def ready(watcher) -> None:
        """``watcher``'s socket had an event."""
        _guarded(watcher.on_ready)

    def sweep(self, now: float) -> None:
        if self._watchers:
            with self._lock:
                watchers = list(self._watchers.values())
            for watcher in watchers:
                _guarded(watcher.sweep, now)


def _guarded(call, *args) -> None:
    """A watcher's failure must not stop the selector: it is logged (the watcher's owner
    sees the node fail)."""
    try:
        call(*args)
    except Exception:  # noqa: BLE001 - logged
        log.exception("handling a watched socket failed")
