"""The sequential specification the checker holds every key to: a single register.

The register's state is its value, or ``ABSENT`` (``None``) when the key does not exist;
it starts absent. Every operation is a step ``(state, argument) -> new state``, or
``INVALID`` when the operation could not have returned what the client saw in that state:

=========================  ==================================  ====================
operation                  legal when                          new state
=========================  ==================================  ====================
``put v``                  always                              ``v``
``get -> r``               state == ``r``                      unchanged
``delete`` (no ``found``)  always                              ``ABSENT``
``delete`` found=true      state is present                    ``ABSENT``
``delete`` found=false     state is ``ABSENT``                 ``ABSENT`` (unchanged)
=========================  ==================================  ====================

An operation is *observing* when it leaves every state in which it is legal unchanged
(``get``, and ``delete`` with found=false). The search linearizes a legal observing
operation at once instead of branching on it; :mod:`dkvs.check.search` explains why that
loses no linearization.
"""

from __future__ import annotations

from collections.abc import Callable

from .history import Operation

__all__ = [
    "ABSENT",
    "INVALID",
    "Step",
    "argument",
    "is_observing",
    "is_write",
    "required_state",
    "step_for",
]

ABSENT = None


class _Invalid:
    """Sentinel type: a step that the register could not have taken."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID = _Invalid()

Step = Callable[[object, object], object]


def _put(state: object, written: object) -> object:
    return written


def _get(state: object, read: object) -> object:
    return state if state == read else INVALID


def _delete(state: object, found: object) -> object:
    if found is None or found == (state is not ABSENT):
        return ABSENT
    return INVALID


_STEPS: dict[str, Step] = {"put": _put, "get": _get, "delete": _delete}

# What each function passes to its step: the value written, the value read, or `found`.
_ARGUMENTS: dict[str, Callable[[Operation], object]] = {
    "put": lambda op: op.value,
    "get": lambda op: op.value,
    "delete": lambda op: op.found,
}

_OBSERVING: dict[str, Callable[[Operation], bool]] = {
    "put": lambda op: False,
    "get": lambda op: True,
    "delete": lambda op: op.found is False,
}


def step_for(op: Operation) -> Step:
    return _STEPS[op.f]


def argument(op: Operation) -> object:
    return _ARGUMENTS[op.f](op)


def is_observing(op: Operation) -> bool:
    """True when ``op`` never changes a state in which it is legal."""
    return _OBSERVING[op.f](op)


def is_write(op: Operation) -> bool:
    return op.f != "get"


def required_state(op: Operation) -> object:
    """The only state in which an observing ``op`` is legal."""
    assert is_observing(op), op
    return op.value if op.f == "get" else ABSENT
