"""PCODEC: lossless compression of numerical sequences (integers and floats)."""

from __future__ import annotations

import imagecodecs
import numpy as np

from . import _frame, _lossy
from ._common import ChunkpressError


class PCODEC:
    available = bool(imagecodecs.PCODEC.available)


class PcodecError(ChunkpressError):
    pass


DTYPES = tuple(np.dtype(t) for t in ("uint16", "int16", "uint32", "int32", "uint64", "int64",
                                      "float16", "float32", "float64"))


def _encode(block, level, out=None):
    return imagecodecs.pcodec_encode(block, level, out=out)


def _decode(stream, shape, dtype, params):
    return imagecodecs.pcodec_decode(stream, shape=tuple(shape), dtype=dtype)


def _refuse_bare(stream, shape, dtype):
    raise PcodecError("pcodec: not a chunkpress PCODEC frame (a bare PCODEC stream does not "
                      "say its shape and dtype)")


_SPEC = _lossy.Spec("pcodec", PcodecError, (1, 2, 3, 4, 5, 6, 7, 8), _encode, _decode,
                    own_stream=False, dtypes=DTYPES, mask=False,
                    decode_bare=_refuse_bare)


def pcodec_encode(data, *, level=None, out=None):
    """Return the framed PCODEC stream of ``data`` (lossless; ``level`` 0-12, default 8)."""
    level = 8 if level is None else level
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= 12:
        raise ValueError(f"pcodec: level must be an integer in 0..12, got {level!r}")
    return _lossy.encode(_SPEC, data, int(level), None, out)


def pcodec_decode(data, *, out=None):
    """Return the array in a pcodec_encode stream."""
    return _lossy.decode(_SPEC, data, None, None, out)


def pcodec_check(data):
    """Return True for a chunkpress PCODEC frame, False otherwise."""
    return _frame.frame_codec(data) == "pcodec"
