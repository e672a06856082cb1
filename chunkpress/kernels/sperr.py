"""SPERR: wavelet-based compression of 2-D and 3-D float blocks, by rate, PSNR or error bound."""

from __future__ import annotations

import enum

import imagecodecs
import numpy as np

from . import _lossy
from ._common import ChunkpressError, check_tolerance


class SPERR:
    available = bool(imagecodecs.SPERR.available)

    class MODE(str, enum.Enum):
        RATE = "rate"
        PSNR = "psnr"
        PWE = "pwe"


class SperrError(ChunkpressError):
    pass


_NATIVE_MODE = {"rate": "bpp", "psnr": "psnr", "pwe": "pwe"}


def _encode(block, params, out=None):
    mode, level = params
    return imagecodecs.sperr_encode(block, level, _NATIVE_MODE[mode], numthreads=1, out=out)


def _decode(stream, shape, dtype, params):
    return imagecodecs.sperr_decode(stream, numthreads=1)


def _plan(block, params, tolerance, amax):
    # SPERR crashes the interpreter on some blocks (measured, imagecodecs 2026.3.6 / SPERR
    # 0.8.4): a 3-D block with an extent of 1, magnitudes near 1e30, a tolerance 2**-40 of
    # the largest magnitude or below 1e-290. Those blocks are stored losslessly instead.
    # In its point-wise mode SPERR rounds its double result to the data's type, slipping by
    # under half an ulp: asking for the tolerance less one ulp of the largest value keeps it.
    mode, level = params
    if (block.ndim == 3 and 1 in block.shape) or not amax < 2.0**80:
        return params, False, True
    if mode != "pwe":
        return params, False, False
    ulp = float(np.spacing(block.dtype.type(amax)))
    if level < 2.0**-40 * amax or level < 1e-290 or level <= 4 * ulp:
        return params, False, True
    return (mode, level - ulp), False, False


_SPEC = _lossy.Spec("sperr", SperrError, (2, 3), _encode, _decode, _plan)


def sperr_encode(data, *, mode=None, quality=None, tolerance=None, out=None):
    """Return the SPERR stream of ``data``.

    ``mode`` is 'rate' (``quality`` bits per value), 'psnr' (``quality`` dB) or 'pwe' (point-wise
    error: ``tolerance``, or ``quality``); ``tolerance`` alone means 'pwe'.
    """
    if isinstance(mode, SPERR.MODE):
        mode = mode.value
    if mode is None:
        if tolerance is None:
            raise ValueError("sperr: give tolerance (point-wise error) or mode with quality")
        mode = "pwe"
    if mode not in _NATIVE_MODE:
        raise ValueError(f"sperr: mode must be one of 'rate', 'psnr', 'pwe', got {mode!r}")
    if mode == "pwe":
        if (tolerance is None) == (quality is None):
            raise ValueError("sperr: mode 'pwe' takes tolerance (or quality), exactly one of them")
        level = check_tolerance("sperr", tolerance if tolerance is not None else quality)
        bound = level
    else:
        if tolerance is not None:
            raise ValueError(f"sperr: tolerance is for mode 'pwe', not {mode!r}; give quality")
        limit = (0, 64) if mode == "rate" else (0, 400)
        if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not (
            limit[0] < quality <= limit[1]
        ):
            what = "bits per value in (0, 64]" if mode == "rate" else "dB in (0, 400]"
            raise ValueError(f"sperr: quality for mode {mode!r} must be {what}, got {quality!r}")
        level, bound = float(quality), None
    return _lossy.encode(_SPEC, data, (mode, level), bound, out)


def sperr_decode(data, *, out=None):
    """Return the array in a SPERR stream (from sperr_encode or imagecodecs.sperr_encode)."""
    return _lossy.decode(_SPEC, data, None, None, out)


def sperr_check(data):
    """Return True for a chunkpress SPERR frame, None otherwise (SPERR streams have no magic)."""
    head = bytes(memoryview(data).cast("B")[:6])
    return True if head[:4] == b"\x89CPK" and len(head) > 5 and head[5] == 2 else None
