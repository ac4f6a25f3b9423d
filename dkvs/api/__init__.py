"""The HTTP front end: routes, validation, error answers (see :mod:`dkvs.api.server`)."""
