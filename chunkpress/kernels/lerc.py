"""LERC: limited-error raster compression of 1-3 dimensional blocks; tolerance 0 is lossless."""

from __future__ import annotations

import imagecodecs
import numpy as np

from . import _frame, _lossy
from ._common import ChunkpressError, check_tolerance


class LERC:
    available = bool(imagecodecs.LERC.available)


class LercError(ChunkpressError):
    pass


DTYPES = tuple(np.dtype(t) for t in
               ("int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64"))


def _encode(block, params, out=None):
    tolerance, version = params
    return imagecodecs.lerc_encode(block, tolerance, version=version, out=out)


def _decode(stream, shape, dtype, params):
    decoded = imagecodecs.lerc_decode(stream)
    if shape is not None and decoded.size == np.prod(shape):
        decoded = decoded.reshape(shape)  # a 1-D block comes back as one row
    return decoded


def _plan(block, params, tolerance, amax):
    # LERC quantizes in double and rounds the result to the data's type: measured, that
    # rounding slips past the bound by under half an ulp of the value. Asking LERC for the
    # tolerance less one ulp of the largest value keeps it; where the tolerance is too close
    # to an ulp for that, the block is decoded and checked.
    tolerance, version = params
    if block.dtype.kind != "f" or tolerance == 0:
        return params, False, False
    ulp = float(np.spacing(block.dtype.type(amax)))
    if tolerance > 4 * ulp:
        return (tolerance - ulp, version), False, False
    return params, True, False


def _own_shape(shape):
    # LERC decodes a 1-D blob as one row and drops a last extent of 1 from a 3-D one:
    # those blocks go in a frame, which keeps their shape
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] > 1)


_SPEC = _lossy.Spec("lerc", LercError, (1, 2, 3), _encode, _decode, _plan, dtypes=DTYPES,
                    own_shape=_own_shape)


def lerc_encode(data, *, tolerance=None, version=None, out=None):
    """Return the LERC blob of ``data`` with max absolute error ``tolerance`` (0: lossless)."""
    tolerance = 0.0 if tolerance is None else check_tolerance("lerc", tolerance, allow_zero=True)
    if version is not None and version not in (2, 3, 4):
        raise ValueError(f"lerc: version must be 2, 3 or 4, got {version!r}")
    return _lossy.encode(_SPEC, data, (tolerance, version), tolerance, out)


def lerc_decode(data, *, out=None):
    """Return the array in a LERC blob (from lerc_encode or imagecodecs.lerc_encode)."""
    return _lossy.decode(_SPEC, data, None, None, out)


def lerc_check(data):
    """Return True where ``data`` is a LERC blob or a chunkpress LERC frame."""
    framed = _frame.frame_codec(data)
    return framed == "lerc" if framed else bytes(memoryview(data).cast("B")[:6]) == b"Lerc2 "
