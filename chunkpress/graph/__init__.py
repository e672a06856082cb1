"""The graph layer: codec-aligned block plans, encode/decode tasks, the CompressedArray.

``plan`` holds pure functions of shapes and numbers; ``build`` turns a plan into dask tasks;
``_codecs`` is what this layer knows of each codec; ``compressed`` the collection;
``pipeline`` takes any array to its CompressedArray (what the layers above call).
"""

from .compressed import CompressedArray

__all__ = ["CompressedArray"]
