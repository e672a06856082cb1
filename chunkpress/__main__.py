"""``python -m chunkpress``: the main job on built-in data."""

from .demo import main

main()
