"""``python -m dkvs.tools.chaos``: the same as ``scripts/chaos.py``."""

import sys

from .cli import main

sys.exit(main())
