"""``python -m chunkpress``: the command; with no arguments, the demo."""

import sys

from .cli import main

sys.exit(main())
