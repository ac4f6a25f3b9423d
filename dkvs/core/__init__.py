"""The dkvs protocol as a pure state machine: no sockets, threads, clocks or randomness.

Inputs go in through :meth:`Node.step` (a message), :meth:`Node.tick` (one unit of
logical time) and the ``propose_*`` methods (client requests); each returns the list of
:mod:`effects <dkvs.core.effects>` the host must carry out, in phase order.
"""
