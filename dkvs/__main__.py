"""``python -m dkvs``: start a node (see :mod:`dkvs.cli`)."""

import sys

from .cli import main

sys.exit(main())
