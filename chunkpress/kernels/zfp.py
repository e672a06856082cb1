"""ZFP: error-bounded or fixed-rate compression of 1-4 dimensional float blocks."""

from __future__ import annotations

import enum

import imagecodecs
import numpy as np

from . import _frame, _lossy
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


def _plan(block, params, tolerance, amax):
    # Measured with imagecodecs 2026.3.6 (zfp 1.0.1): fixed-accuracy mode keeps the bound
    # while the largest magnitude is within 2**24 (float32) or 2**56 (float64) tolerances and
    # the tolerance is above 2**-95 (2**-959), below which zfp's scaling underflows. With a
    # margin, blocks inside those limits are trusted; any other block is decoded and checked.
    if tolerance is None:
        return params, False, False
    if block.dtype.itemsize == 4:
        safe = amax <= 2.0**23 * tolerance and tolerance >= 2.0**-90
    else:
        safe = amax <= 2.0**52 * tolerance and tolerance >= 2.0**-950
    return params, not safe, False


_TYPES = {0: "int32", 1: "int64", 2: "float32", 3: "float64"}
_EXTENT_BITS = {1: 48, 2: 24, 3: 16, 4: 12}


def _guard_bare(stream):
    """Return a bare ZFP stream (no chunkpress trailer) made safe for zfp's decoder.

    zfp's decoder trusts its input: a forged size field allocates terabytes, and a header or
    bit that sends it past the end of the stream reads memory it does not own. The header is
    checked (32 bits of magic, 52 bits of field metadata: 2 bits type, 2 bits ndim - 1, then
    the extents - 1, slowest axis first) and the stream is given zeros behind it, as many as
    the most any block can read, so that a damaged stream decodes to wrong numbers at worst:
    a stream without chunkpress's checksum cannot be told from a good one.
    """
    if len(stream) < 12 or bytes(stream[:4]) != b"zfp\x05":
        raise ZfpError("zfp: not a ZFP stream (no 'zfp' version-5 header) or truncated")
    if len(stream) % 8:
        raise ZfpError(f"zfp: stream truncated ({len(stream)} bytes, not whole 64-bit words)")
    meta = (int.from_bytes(bytes(stream[:16]), "little") >> 32) & ((1 << 52) - 1)
    ndim = ((meta >> 2) & 3) + 1
    bits = _EXTENT_BITS[ndim]
    itemsize = np.dtype(_TYPES[meta & 3]).itemsize
    size, blocks = itemsize, 1
    for axis in range(ndim):
        extent = ((meta >> (4 + bits * axis)) & ((1 << bits) - 1)) + 1
        size *= extent
        blocks *= -(-extent // 4)
    if size > _frame.MAX_BLOCK_BYTES or blocks > 8 * len(stream):
        # every 4**ndim block of a zfp stream takes at least one bit
        raise ZfpError(f"zfp: the header claims a {size}-byte array, more than the "
                       f"{len(stream)}-byte stream can hold; the stream is corrupt")
    # a block holds at most 4**ndim values of itemsize * 8 + 2 bits and a few flags
    most = blocks * (4**ndim * (itemsize * 8 + 2) + 64) // 8 + 64
    padded = np.zeros(len(stream) + most, np.uint8)
    padded[: len(stream)] = np.frombuffer(stream, np.uint8)
    return padded


def _encode(block, params, out=None):
    level, mode = params
    return imagecodecs.zfp_encode(block, level, mode=mode)  # never out=: ZFP overruns it


def _decode(stream, shape, dtype, params):
    return imagecodecs.zfp_decode(stream)


_SPEC = _lossy.Spec("zfp", ZfpError, (1, 2, 3, 4), _encode, _decode, _plan, trailer=True,
                    writes_into=False, check_bare=_guard_bare)


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
    framed = _frame.frame_codec(data)
    return framed == "zfp" if framed else bytes(memoryview(data).cast("B")[:4]) == b"zfp\x05"
