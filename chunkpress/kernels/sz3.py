"""SZ3: prediction-based error-bounded compression of 1-4 dimensional float blocks."""

from __future__ import annotations

import imagecodecs

from . import _frame, _lossy
from ._common import ChunkpressError, check_tolerance


class SZ3:
    available = bool(imagecodecs.SZ3.available)


class Sz3Error(ChunkpressError):
    pass


def _encode(block, tolerance, out=None):
    return imagecodecs.sz3_encode(block, mode="abs", abs=tolerance, out=out)


def _decode(stream, shape, dtype, params):
    if shape is None or dtype is None:
        raise ValueError(
            "sz3: this stream is SZ3's own, without a chunkpress frame: give shape and dtype"
        )
    return imagecodecs.sz3_decode(stream, tuple(shape), dtype)


def _plan(block, tolerance, bound, amax):
    # SZ3 quantizes in the data's own type and stores a value exactly where the quantized one
    # would leave the bound; measured, it held everywhere but where the tolerance is within a
    # few ulps of the largest value (err/t = 1 + 4e-9 there). Those blocks are checked.
    safe = amax * 2.0 ** (-20 if block.dtype.itemsize == 4 else -48) <= tolerance
    return tolerance, not safe, False


_SPEC = _lossy.Spec("sz3", Sz3Error, (1, 2, 3, 4), _encode, _decode, _plan, own_stream=False)


def sz3_encode(data, *, tolerance=None, out=None):
    """Return the SZ3 stream of ``data`` (framed) with max absolute error ``tolerance``."""
    if tolerance is None:
        raise ValueError("sz3: tolerance (max absolute error, > 0) is required")
    tolerance = check_tolerance("sz3", tolerance)
    return _lossy.encode(_SPEC, data, tolerance, tolerance, out)


def sz3_decode(data, shape=None, dtype=None, *, out=None):
    """Return the array in an sz3_encode stream, or in a bare SZ3 stream given shape and dtype."""
    return _lossy.decode(_SPEC, data, shape, dtype, out)


def sz3_check(data):
    """Return True for a chunkpress SZ3 frame, None otherwise (bare SZ3 streams have no magic)."""
    framed = _frame.frame_codec(data)
    return framed == "sz3" if framed else None
