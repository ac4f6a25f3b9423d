"""Transports carry core messages between nodes (see :class:`Transport`)."""

from .base import Transport

__all__ = ["Transport"]
