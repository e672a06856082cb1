"""``python -m chunkpress.cli``: the command."""

import sys

from . import main

sys.exit(main())
