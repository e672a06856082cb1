"""``python -m chunkpress``: the command; with no arguments, the demo."""

from .cli import console

console()
