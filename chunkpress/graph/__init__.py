"""The graph layer: codec-aligned block plans, encode/decode tasks, the CompressedArray.

``plan`` holds pure functions of shapes and numbers; ``build`` turns a plan into dask tasks;
``codecs`` is what this layer knows of each codec (read from the kernels' registry);
``blocks`` encodes and decodes one block, ``measure`` measures it, ``dispatch`` does both for
any codec, codec="auto" included (with ``sample``, its trials); ``compressed`` the
collection; ``pipeline`` takes any array to its CompressedArray (what the layers above call).
"""

from .compressed import CompressedArray

__all__ = ["CompressedArray"]
