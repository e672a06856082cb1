"""ZFP: error-bounded or fixed-rate compression of 1-4 dimensional float blocks."""

from __future__ import annotations

import enum

import imagecodecs

from . import _lossy
from ._common import ChunkpressError, check_tolerance


class ZFP:
    available = bool(imagecodecs.ZFP.available)

    class EXEC(enum.IntEnum):
        SERIAL = 0
        OMP = 1
        CUDA = 2

    class MODE(enum.IntEnum):
        EXPERT = 0
        FIXED_RATE = 1
        FIXED_PRECISION = 2
        FIXED_ACCURACY = 3


class ZfpError(ChunkpressError):
    pass


def _certain(amax, tolerance, dtype):
    # ZFP turns a 4^d block into integers with one common exponent, keeping 30 (float32) or
    # 62 (float64) bits: below amax * 2**-30 the bound can no longer hold. With a margin of
    # 2**4 beneath that, ZFP's accuracy mode keeps it and no block needs checking.
    return amax * 2.0 ** (-26 if dtype.itemsize == 4 else -58) <= tolerance


def _encode(block, params, out=None):
    level, mode = params
    return imagecodecs.zfp_encode(block, level, mode=mode)  # never out=: ZFP overruns it


def _decode(stream, shape, dtype, params):
    return imagecodecs.zfp_decode(stream)


_SPEC = _lossy.Spec("zfp", ZfpError, (1, 2, 3, 4), _encode, _decode, _certain, trailer=True,
                    writes_into=False)


def zfp_encode(data, *, rate=None, precision=None, tolerance=None, out=None):
    """Return the ZFP stream of ``data``; give exactly one of rate, precision, tolerance."""
    given = [name for name, value in
             (("rate", rate), ("precision", precision), ("tolerance", tolerance))
             if value is not None]
    if len(given) != 1:
        raise ValueError(
            "zfp: give exactly one of rate (bits per value), precision (bit planes) "
            f"or tolerance (max absolute error), got {', '.join(given) or 'none'}"
        )
    if tolerance is not None:
        params = (check_tolerance("zfp", tolerance), "a")
    elif rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 64:
            raise ValueError(f"zfp: rate must be a number of bits per value in (0, 64], got {rate!r}")
        params = (float(rate), "r")
    else:
        if isinstance(precision, bool) or not isinstance(precision, int) or not 1 <= precision <= 64:
            raise ValueError(f"zfp: precision must be an integer in 1..64, got {precision!r}")
        params = (precision, "p")
    return _lossy.encode(_SPEC, data, params, tolerance and params[0], out)


def zfp_decode(data, shape=None, dtype=None, *, out=None):
    """Return the array in a ZFP stream (from zfp_encode or imagecodecs.zfp_encode)."""
    return _lossy.decode(_SPEC, data, shape, dtype, out)


def zfp_check(data):
    """Return True where ``data`` is a ZFP stream or a chunkpress ZFP frame."""
    head = bytes(memoryview(data).cast("B")[:8])
    if head[:4] == b"\x89CPK":
        return len(head) > 5 and head[5] == 1
    return head[:3] == b"zfp"
