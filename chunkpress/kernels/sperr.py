"""SPERR: wavelet-based compression of 2-D and 3-D float blocks, by rate, PSNR or error bound."""

from __future__ import annotations

import enum
import struct

import imagecodecs
import numpy as np

from . import _frame, _lossy
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
    if block.ndim == 3 and 1 in block.shape:  # SPERR aborts on these: code them as 2-D
        block = block.reshape(_as_2d(block.shape))
    return imagecodecs.sperr_encode(block, level, _NATIVE_MODE[mode], numthreads=1, out=out)


def _decode(stream, shape, dtype, params):
    decoded = imagecodecs.sperr_decode(stream, numthreads=1)
    if shape is not None and decoded.shape != tuple(shape) and decoded.size == np.prod(shape):
        decoded = decoded.reshape(shape)  # a 3-D block with a unit extent, coded as 2-D
    return decoded


def _as_2d(shape):
    kept = [extent for extent in shape if extent != 1]
    return tuple(([1, 1] + kept)[-2:]) if len(kept) < 2 else tuple(kept)


def _own_shape(shape):
    return len(shape) == 2 or 1 not in shape


def _plan(block, params, tolerance, amax):
    # SPERR crashes the interpreter on some blocks (measured, imagecodecs 2026.3.6 / SPERR
    # 0.8.4): magnitudes near 1e30, a tolerance 2**-40 of the largest magnitude or below
    # 1e-290 (and a 3-D block with an extent of 1, which _encode codes as 2-D). Those blocks
    # are stored losslessly instead.
    # In its point-wise mode SPERR rounds its double result to the data's type, slipping by
    # under half an ulp: asking for the tolerance less one ulp of the largest value keeps it.
    mode, level = params
    if not amax < 2.0**80:
        return params, False, True
    if mode != "pwe":
        return params, False, False
    ulp = float(np.spacing(block.dtype.type(amax)))
    if level < 2.0**-40 * amax or level < 1e-290 or level <= 4 * ulp:
        return params, False, True
    return (mode, level - ulp), False, False


def _guard_bare(stream):
    """Refuse a SPERR stream whose header is damaged, which is truncated or claims too much.

    SPERR's decoder trusts its input and aborts the interpreter on a bad header or a short
    stream. The layout checked (imagecodecs 2026.3.6, SPERR 0.8): byte 0 the version (0),
    byte 1 flags (0x40 3-D, 0x20 float32, 0x10 3-D in chunks); 2-D: uint32 x, y extents and
    at least 17 bytes of SPECK stream; 3-D: uint32 x, y, z, for chunks uint16 chunk extents,
    then one uint32 length per chunk, which must add up to the rest of the stream.
    """
    n = len(stream)
    head = bytes(stream[:20])
    if n < 18 or head[0] != 0 or head[1] & ~0x70 or (head[1] & 0x10 and not head[1] & 0x40):
        raise SperrError("sperr: not a SPERR stream (unknown header) or truncated")
    itemsize = 4 if head[1] & 0x20 else 8
    if not head[1] & 0x40:
        extents = struct.unpack_from("<2I", head, 2)
        if n < 27 or 0 in extents:
            raise SperrError(f"sperr: SPERR 2-D stream truncated or damaged ({n} bytes)")
        _check_size(extents, itemsize, n)
        return stream
    extents = struct.unpack_from("<3I", head, 2)
    if 0 in extents:
        raise SperrError("sperr: SPERR 3-D header damaged (zero extent)")
    _check_size(extents, itemsize, n)
    pos, chunks = 14, 1
    if head[1] & 0x10:
        chunk = struct.unpack_from("<3H", head, 14)
        if 0 in chunk:
            raise SperrError("sperr: SPERR 3-D header damaged (zero chunk extent)")
        for extent, size in zip(extents, chunk):
            chunks *= -(-extent // size)
        pos = 20
    if pos + 4 * chunks > n:
        raise SperrError(f"sperr: SPERR stream truncated ({n} bytes)")
    lengths = np.frombuffer(stream, "<u4", chunks, pos)
    if pos + 4 * chunks + int(lengths.sum(dtype=np.uint64)) != n:
        raise SperrError(f"sperr: SPERR stream truncated or extended: {n} bytes, its header "
                         f"says {pos + 4 * chunks + int(lengths.sum(dtype=np.uint64))}")
    return stream


def _check_size(extents, itemsize, n):
    size = itemsize
    for extent in extents:
        size *= extent
    if size > _frame.MAX_BLOCK_BYTES:
        raise SperrError(f"sperr: the header claims a {size}-byte array, more than a block "
                         f"may hold; the {n}-byte stream is corrupt")


_SPEC = _lossy.Spec("sperr", SperrError, (2, 3), _encode, _decode, _plan, check_bare=_guard_bare,
                    own_shape=_own_shape)


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
    """Return True for a chunkpress SPERR frame or a SPERR stream whose header adds up."""
    framed = _frame.frame_codec(data)
    if framed:
        return framed == "sperr"
    try:
        _guard_bare(memoryview(data).cast("B"))
    except SperrError:
        return None  # SPERR streams have no magic: not recognised is not "not SPERR"
    return True
