"""The threaded host around the pure core: one thread owns the node (see :mod:`.host`)."""
