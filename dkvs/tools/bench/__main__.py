"""``python -m dkvs.tools.bench`` is ``scripts/bench.py``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
