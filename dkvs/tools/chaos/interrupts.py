"""Deferring Ctrl-C, SIGTERM and the time limit while a process is being started or reaped.

A signal handler that raises can interrupt the main thread anywhere, including between
``Popen`` and the line that records the new node: that node would outlive the run. The
CLI's handlers therefore call :func:`deliver`, which raises at once unless the main thread
is inside :func:`critical`; then the exception is kept and raised when the outermost
critical section ends. Python runs signal handlers in the main thread only, so a plain
counter is enough.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["critical", "deliver"]

_depth = 0
_pending: list[Callable[[], BaseException]] = []


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A section that a signal must not cut; a deferred exception is raised at its end."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending:
            make = _pending.pop(0)
            _pending.clear()
            raise make()


def deliver(make: Callable[[], BaseException]) -> None:
    """Called by a signal handler: raise ``make()`` now, or at the end of the critical section."""
    if _depth:
        _pending.append(make)
        return
    raise make()
