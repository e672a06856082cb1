"""General-purpose lossless codecs of raw bytes, from imagecodecs: the end of a chain.

Each is registered as a ``"bytes"`` codec taking ``level``, checked here against the range the
library has (imagecodecs clamps a level out of range silently; chunkpress refuses it). Used
alone (``"zstd"``) or after filters (``"floatpred+zstd"``); the stream layout is the chain's
(see formats.py).
"""

from __future__ import annotations

import imagecodecs
import numpy as np

from ._common import check_integer
from .formats import ChainError
from .registry import Descriptor, Param

#: every dtype a chain ending in a bytes codec takes: the values' bytes are coded as they are
DTYPES = tuple(np.dtype(t) for t in (
    "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
    "uint64", "float16", "bool"))

#: name: (lowest level, highest level, what the level means, rank); None is each one's default
LEVELS = {
    "zstd": (1, 22, "compression level (default 3)", 1),
    "zlib": (0, 9, "compression level (default 6)", 2),
    "deflate": (0, 12, "libdeflate's compression level (default 6)", 3),
    "lz4": (1, 65537, "acceleration: higher is faster and larger (default 1)", 4),
    "lzma": (0, 9, "preset (default 6)", 5),
    "brotli": (0, 11, "quality (default 11)", 6),
    "bz2": (1, 9, "block size in 100 kB (default 9)", 7),
}


def _descriptor(name: str) -> Descriptor:
    low, high, what, rank = LEVELS[name]
    encode = getattr(imagecodecs, f"{name}_encode")
    decode = getattr(imagecodecs, f"{name}_decode")

    def check_level(level, dtype=None):
        return check_integer(name, "level", level, low, high)

    def encode_bytes(data, *, level=None):
        return encode(data, level=None if level is None else check_level(level))

    def decode_bytes(stream, nbytes):
        return decode(stream, out=max(nbytes, 1))

    return Descriptor(
        name=name, kind="bytes", encode=encode_bytes, decode=decode_bytes, error=ChainError,
        dtypes=DTYPES, params=(Param("level", check_level, f"{what}, {low}..{high}"),),
        lossless=True, available=bool(getattr(imagecodecs, name.upper()).available),
        auto=("lossless",) if name == "zstd" else (), rank=rank,
        doc=f"{name} (imagecodecs), lossless")


DESCRIPTORS = tuple(_descriptor(name) for name in LEVELS)
