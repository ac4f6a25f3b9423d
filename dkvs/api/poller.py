"""Readiness of many sockets, each armed for *one* event at a time (epoll's ``EPOLLONESHOT``).

The selector thread (:mod:`dkvs.api.connections`) hands a connection to a worker when a
request is buffered; while the worker owns it the socket must not wake the selector (its
next bytes are the worker's to read). One-shot registration gives that for free: an event
disarms the socket, and the worker re-arms it when it gives the connection back — with
epoll directly from the worker's thread (``epoll_ctl`` is thread safe), which saves a
wake-up of the selector per request. Where epoll is missing, :mod:`selectors` emulates it
(unregister on event, register to re-arm) and re-arming must happen on the polling thread
(``threadsafe_rearm`` is False; the caller then queues the connection back instead).
"""

from __future__ import annotations

import select
import selectors

__all__ = ["OneShotPoller"]


class OneShotPoller:
    """``add(fd, data, oneshot)``, ``rearm(fd)``, ``disarm(fd)``, ``want_write(fd, on)``, ``remove(fd)``,
    ``poll(timeout) -> [data]``.

    Takes file descriptor numbers: remove a socket *before* closing it.
    """

    def __init__(self, use_epoll: bool | None = None) -> None:
        if use_epoll is None:
            use_epoll = hasattr(select, "epoll")
        self.threadsafe_rearm = use_epoll
        self._data: dict[int, object] = {}
        if use_epoll:
            self._epoll = select.epoll()
            self._selector = None
        else:
            self._epoll = None
            self._selector = selectors.DefaultSelector()
            self._oneshot: set[int] = set()

    def add(self, fd: int, data, oneshot: bool = True) -> None:
        self._data[fd] = data
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN | (select.EPOLLONESHOT if oneshot else 0))
        else:
            self._selector.register(fd, selectors.EVENT_READ, data)
            if oneshot:
                self._oneshot.add(fd)

    def rearm(self, fd: int) -> None:
        """Watch ``fd`` for its next event (with epoll: from any thread)."""
        if self._epoll is not None:
            self._epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
        elif fd not in self._selector.get_map():
            self._selector.register(fd, selectors.EVENT_READ, self._data[fd])

    def disarm(self, fd: int) -> None:
        """Stop watching ``fd`` for now (the poll thread only)."""
        if self._epoll is not None:
            self._epoll.modify(fd, select.EPOLLONESHOT)  # no event bits: nothing can fire
        elif fd in self._selector.get_map():
            self._selector.unregister(fd)

    def want_write(self, fd: int, on: bool) -> None:
        """Watch a socket added with ``oneshot=False`` for writability too (``on``) or not
        (epoll only; from any thread)."""
        self._epoll.modify(fd, select.EPOLLIN | (select.EPOLLOUT if on else 0))

    def remove(self, fd: int) -> None:
        if self._data.pop(fd, None) is None:
            return
        try:
            if self._epoll is not None:
                self._epoll.unregister(fd)
            else:
                self._oneshot.discard(fd)
                if fd in self._selector.get_map():
                    self._selector.unregister(fd)
        except (OSError, ValueError, KeyError):
            pass

    def poll(self, timeout: float) -> list:
        if self._epoll is not None:
            data = self._data
            return [data[fd] for fd, _ in self._epoll.poll(timeout) if fd in data]
        ready = []
        for key, _ in self._selector.select(timeout):
            if key.fd in self._oneshot:
                self._selector.unregister(key.fd)
            ready.append(key.data)
        return ready

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        else:
            self._selector.close()
