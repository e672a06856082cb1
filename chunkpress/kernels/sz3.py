"""SZ3: prediction-based error-bounded compression of 1-4 dimensional float blocks."""

from __future__ import annotations

import struct

import imagecodecs
import numpy as np

from . import _frame, _isolate, _lossy
from ._common import FLOAT_DTYPES, ChunkpressError, check_tolerance
from .registry import Descriptor, Param


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
    shape, dtype = tuple(shape), np.dtype(dtype)
    return _isolate.decode("sz3_decode", _guard(stream, shape, dtype), shape, dtype, Sz3Error,
                           "sz3", shape, dtype)


# SZ3's decoder trusts its input: it allocates what its header says and follows offsets in
# its payload unchecked. What can be checked without re-implementing SZ3 is checked first
# (imagecodecs 2026.3.6, SZ3 3.3.2): its configuration header (uint8 length L, magic,
# format version, dimensionality N, bit width W, the N extents packed W bits each, uint64
# value count, uint8 algorithm, uint8 bound mode, its bounds, ..., int32 block size, uint8
# prediction dimensionality) against the shape and dtype the stream is decoded to, then its
# payload: a uint64 size, then a zstd frame that must decode to exactly that size. What the
# payload holds (Huffman tables, codes, predictor data) is SZ3's alone: damaged there, a
# stream is stopped by chunkpress's CRC-32C; forged there (or bare), it can still crash SZ3,
# which is why SZ3 decodes in a decoding process (_isolate).
_MAGIC_VERSION = struct.pack("<II", 0xF342F310, 0x03030000)


def _guard(stream, shape, dtype):
    """Return an SZ3 stream after checking its header against the block, and its payload."""
    buf = memoryview(stream).cast("B")
    n = len(buf)
    if n < 30 or bytes(buf[1:9]) != _MAGIC_VERSION:
        raise Sz3Error("sz3: not an SZ3 stream (no SZ3 3.3 header) or truncated")
    length, ndim, width = buf[0], buf[9], buf[10]
    packed = (ndim * width + 7) // 8
    kept = [extent for extent in shape if extent > 1] or [1]
    if not (1 <= ndim <= 4 and 1 <= width <= 64 and 20 + packed < length <= n - 8):
        raise Sz3Error("sz3: SZ3 header damaged")
    bits = int.from_bytes(buf[11 : 11 + packed], "little")
    extents = [(bits >> (width * axis)) & ((1 << width) - 1) for axis in range(ndim)]
    count = struct.unpack_from("<Q", buf, 11 + packed)[0]
    algorithm, bound_mode = buf[19 + packed], buf[20 + packed]
    block = struct.unpack_from("<i", buf, length - 5)[0]
    # after the bounds: predictor flags (the high nibble), then five settings SZ3 3.3 always
    # writes as 0, 0, 0, 1, 0 (as imagecodecs' SZ3 leaves them)
    settings = bytes(buf[length - 11 : length - 5])
    if algorithm > 4 or bound_mode > 5 or length < 40 + packed or not 0 < block <= 4096 or (
            buf[length - 1] > 4 or settings[0] & 0x0F or settings[1:] != b"\0\0\0\1\0"):
        raise Sz3Error("sz3: SZ3 configuration damaged (algorithm, bound mode, settings or "
                       "block size)")
    size = int(np.prod(shape, dtype=np.uint64)) if shape else 1
    if extents != kept or count != size:
        raise Sz3Error(f"sz3: the stream holds {count} values of extents {extents}, not the "
                       f"block's {tuple(shape)}; the stream is damaged or of another block")
    _frame.reserve(size * 32, "sz3", Sz3Error)  # SZ3's peak: values, codes, predictions
    declared = struct.unpack_from("<Q", buf, length)[0]
    if declared == 0:
        # imagecodecs 2026.3.6 writes these in SZ3's abs_and_rel and abs_or_rel modes, and
        # SZ3 aborts the interpreter on every one of them
        raise Sz3Error("sz3: an SZ3 stream SZ3 itself cannot decode (SZ3 3.3.2 writes them in "
                       "its abs_and_rel and abs_or_rel modes), or a damaged one")
    if declared > 4 * size * dtype.itemsize + 65536:
        raise Sz3Error(f"sz3: SZ3 payload claims {declared} bytes for {size} values; "
                       "the stream is corrupt")
    try:
        payload = imagecodecs.zstd_decode(buf[length + 8 :], out=declared)
    except imagecodecs.ZstdError as exc:
        raise Sz3Error(f"sz3: SZ3 payload damaged: {exc}") from None
    if len(payload) != declared:
        raise Sz3Error(f"sz3: SZ3 payload holds {len(payload)} bytes, its header says "
                       f"{declared}; the stream is truncated or damaged")
    return buf


def _plan(block, tolerance, bound, amax):
    # SZ3 quantizes in the data's own type and stores a value exactly where the quantized one
    # would leave the bound; measured, it held everywhere but where the tolerance is within a
    # few ulps of the largest value (err/t = 1 + 4e-9 there). Those blocks are checked.
    safe = amax * 2.0 ** (-20 if block.dtype.itemsize == 4 else -48) <= tolerance
    return tolerance, not safe, False


_SPEC = _lossy.Spec("sz3", Sz3Error, (1, 2, 3, 4), _encode, _decode, _plan, own_stream=False,
                    fill="mean")


def sz3_encode(data, *, tolerance=None, out=None):
    """Return the SZ3 stream of ``data`` (framed) with max absolute error ``tolerance``."""
    if tolerance is None:
        raise ValueError("sz3: tolerance (max absolute error, > 0) is required")
    tolerance = _check_tolerance(tolerance)
    return _lossy.encode(_SPEC, data, tolerance, tolerance, out)


def sz3_decode(data, shape=None, dtype=None, *, out=None):
    """Return the array in an sz3_encode stream, or in a bare SZ3 stream given shape and dtype."""
    return _lossy.decode(_SPEC, data, shape, dtype, out)


def sz3_check(data):
    """Return True for a chunkpress SZ3 frame, None otherwise (bare SZ3 streams have no magic)."""
    framed = _frame.frame_codec(data)
    return framed == "sz3" if framed else None


# --- the registry's entry (see registry.py) --------------------------------------------


def _check_tolerance(tolerance, dtype=None):
    return check_tolerance("sz3", tolerance)


DESCRIPTOR = Descriptor(
    name="sz3", kind="array", encode=sz3_encode, decode=sz3_decode, error=Sz3Error,
    dtypes=FLOAT_DTYPES, ndims=(1, 2, 3, 4),
    params=(Param("tolerance", _check_tolerance, "max absolute error, > 0", required=True),),
    check=sz3_check, available=SZ3.available, frame_id=3, speed=160, auto=("lossy",), rank=2,
    example={"tolerance": 1e-3}, fill=_SPEC.fill,
    doc="SZ3: prediction and quantization within a max error")
