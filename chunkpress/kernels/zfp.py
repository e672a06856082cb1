"""ZFP: error-bounded or fixed-rate compression of 1-4 dimensional float blocks."""

from __future__ import annotations

import enum
import math
import mmap
import threading

import imagecodecs
import numpy as np

from . import _frame, _lossy
from ._common import (FLOAT_DTYPES, ChunkpressError, check_integer, check_number,
                      check_tolerance)
from .registry import Descriptor, Param


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
        # without a bound there is no patch: a block within 16x of the largest float (whose
        # values zfp's transform can carry past it, decoding finite values as ±inf) is
        # stored losslessly instead
        return params, False, amax > float(np.finfo(block.dtype).max) / 16
    if block.dtype.itemsize == 4:
        safe = amax <= 2.0**23 * tolerance and tolerance >= 2.0**-90
    else:
        safe = amax <= 2.0**52 * tolerance and tolerance >= 2.0**-950
    return params, not safe, False


_TYPES = {0: "int32", 1: "int64", 2: "float32", 3: "float64"}
_EXTENT_BITS = {1: 48, 2: 24, 3: 16, 4: 12}


def _guard(stream, writable=False):
    """Return (a ZFP stream made safe for zfp's decoder, where the stream's own bytes end).

    zfp's decoder trusts its input: a forged size field allocates terabytes, and a header or
    bit that sends it past the end of the stream reads memory it does not own. The header is
    checked (zfp 1.0, least significant bit first: 32 bits of magic; 52 bits of field
    metadata: 2 bits type, 2 bits ndim - 1, the extents - 1, slowest axis first; the mode,
    12 bits, or 64 when those are all ones) and the stream is given zeros behind it, as many
    as the most any block can read past where the stream says it ends. With ``writable``
    the caller may write into the zeros (else they are this thread's, kept for its next call).
    """
    if len(stream) < 16 or bytes(stream[:4]) != b"zfp\x05":
        raise ZfpError("zfp: not a ZFP stream (no 'zfp' version-5 header) or truncated")
    if len(stream) % 8:
        raise ZfpError(f"zfp: stream truncated ({len(stream)} bytes, not whole 64-bit words)")
    header = int.from_bytes(bytes(stream[:24]), "little")
    meta = (header >> 32) & ((1 << 52) - 1)
    ndim = ((meta >> 2) & 3) + 1
    bits = _EXTENT_BITS[ndim]
    itemsize = np.dtype(_TYPES[meta & 3]).itemsize
    size, blocks = itemsize, 1
    for axis in range(ndim):
        extent = ((meta >> (4 + bits * axis)) & ((1 << bits) - 1)) + 1
        size *= extent
        blocks *= -(-extent // 4)
    # every block takes at least minbits (zfp pads it) and reads at most maxbits, and at
    # most 2 * 4**ndim + 1 bits per bit plane (values and group tests) of itemsize * 8 planes
    mode = (header >> 84) & 0xFFF
    if mode < 0xFFF:
        header_bits = 96
        minbits = maxbits = mode + 1 if mode < 2048 else 1  # short modes: fixed rate, or not
        if mode >= 2048:
            maxbits = 1 << 15
    else:
        header_bits, mode = 148, (header >> 84) & ((1 << 64) - 1)
        minbits, maxbits = ((mode >> 12) & 0x7FFF) + 1, ((mode >> 27) & 0x7FFF) + 1
    reads = min(maxbits, itemsize * 8 * (2 * 4**ndim + 1) + 64)
    if size > _frame.MAX_BLOCK_BYTES or blocks * max(minbits, 1) > 8 * len(stream) - header_bits:
        raise ZfpError(f"zfp: the header claims a {size}-byte array, more than the "
                       f"{len(stream)}-byte stream can hold; the stream is corrupt")
    return _padded(stream, blocks * reads // 8 + 64, writable), len(stream)


#: streams up to this size are padded in a buffer each thread keeps (larger ones: a new one)
SCRATCH_BYTES = 1 << 25
_scratch = threading.local()


def _padded(stream, pad: int, writable: bool) -> np.ndarray:
    """Return the bytes of ``stream`` followed by ``pad`` zero bytes.

    The padding is mostly never read (zfp reads past a stream's end only when it is damaged
    or forged) and is often larger than the stream (2 MB behind a 1 MiB chunk's), so it is
    not cleared for each stream: each thread keeps a buffer whose zeros zfp only reads, and
    copies the stream in just before them. Fresh pages would cost a page fault each, and
    calloc clears reused memory; either costs more than decoding a well compressed chunk.
    """
    size = len(stream)
    if writable or size > SCRATCH_BYTES:
        padded = _zeros(size + pad)
        padded[:size] = np.frombuffer(stream, np.uint8)
        return padded
    room, zeros = getattr(_scratch, "shape", (0, 0))
    if room < size or zeros < pad:
        room, zeros = max(size, min(2 * room, SCRATCH_BYTES)), max(pad, zeros)
        _scratch.buffer, _scratch.shape = _zeros(room + zeros), (room, zeros)
    padded = _scratch.buffer[room - size : room + pad]
    padded[:size] = np.frombuffer(stream, np.uint8)
    return padded


def _zeros(nbytes):
    """Return ``nbytes`` zero bytes, writable; pages never touched cost nothing (a fresh
    anonymous mapping is zero without being written; calloc may clear reused memory)."""
    if nbytes < 1 << 18:
        return np.zeros(nbytes, np.uint8)
    private = {"flags": mmap.MAP_PRIVATE} if hasattr(mmap, "MAP_PRIVATE") else {}
    return np.frombuffer(mmap.mmap(-1, nbytes, **private), np.uint8)


def _encode(block, params, out=None):
    level, mode = params
    if out is not None and len(out) < _capacity(block, params):
        raise ValueError(f"zfp: out holds {len(out)} bytes, fewer than the "
                         f"{_capacity(block, params)} the stream may need")
    return imagecodecs.zfp_encode(block, level, mode=mode, out=out)


def _capacity(block, params):
    """Return the most bytes zfp can write for ``block``: its own worst case, with a margin.

    zfp writes into the buffer it is given without checking its end, so a buffer must hold
    whatever zfp may write. zfp 1.0 (zfp_stream_maximum_size) bounds a block of 4**ndim values
    of p-bit type by 1 + (8 or 11) exponent bits + 4**ndim - 1 group bits + 4**ndim * p bits,
    in fixed-rate mode by its rate (<= 64 bits a value, rounded); 148 header bits; whole
    64-bit words. Counted here: 4**ndim * (max(p, rate) + 1) + 64 bits a block, and 64 bytes.
    """
    level, mode = params
    values = 4**block.ndim
    bits = 8 * block.dtype.itemsize
    if mode == "r":
        bits = max(bits, math.ceil(level))
    blocks = 1
    for extent in block.shape:
        blocks *= -(-max(extent, 1) // 4)
    return blocks * (values * (bits + 1) + 64) // 8 + 64


def _decode(stream, shape, dtype, params):
    return imagecodecs.zfp_decode(_guard(stream)[0])


def _decode_bare(data, shape, dtype):
    """Decode ZFP's own stream: with chunkpress's trailer, or as imagecodecs writes it.

    A stream the trailer vouches for is decoded once. Any other (imagecodecs', or
    chunkpress's with its trailer cut off) has no checksum; what can be caught is a stream
    cut short: zfp then reads past its end (it reads no bit it did not write), so it is
    decoded again with ones instead of zeros behind it, and decoding differently means
    bytes it needed were missing.
    """
    stream, vouched = _frame.strip_trailer(data, "zfp", ZfpError)
    padded, end = _guard(stream, writable=not vouched)
    decoded = imagecodecs.zfp_decode(padded)
    if not vouched:
        padded[end:] = 0xFF
        if not _same(decoded, imagecodecs.zfp_decode(padded)):
            raise ZfpError(f"zfp: stream truncated: the {end}-byte stream ends before its "
                           "last block does")
    return decoded


def _same(a, b):
    return a.shape == b.shape and np.array_equal(a.reshape(-1).view(np.uint8),
                                                 b.reshape(-1).view(np.uint8))


_SPEC = _lossy.Spec("zfp", ZfpError, (1, 2, 3, 4), _encode, _decode, _plan, fill="mean",
                    seal=_frame.add_trailer, capacity=_capacity, decode_bare=_decode_bare,
                    strided=True)


def zfp_encode(data, *, rate=None, precision=None, tolerance=None, out=None):
    """Return the ZFP stream of ``data``; give exactly one of rate, precision, tolerance."""
    params = _params(rate, precision, tolerance)  # the checks: at the end of the module
    return _lossy.encode(_SPEC, data, params, tolerance and params[0], out)


def zfp_decode(data, shape=None, dtype=None, *, out=None):
    """Return the array in a ZFP stream (from zfp_encode or imagecodecs.zfp_encode)."""
    return _lossy.decode(_SPEC, data, shape, dtype, out)


def zfp_check(data):
    """Return True where ``data`` is a ZFP stream or a chunkpress ZFP frame."""
    framed = _frame.frame_codec(data)
    return framed == "zfp" if framed else bytes(memoryview(data).cast("B")[:4]) == b"zfp\x05"


# --- the registry's entry (see registry.py): the one place these parameters are checked -----


def _check_rate(rate, dtype=None):
    return check_number("zfp", "rate", rate, 0, 64, "bits per value")


def _check_precision(precision, dtype=None):
    return check_integer("zfp", "precision", precision, 1, 64)


def _check_tolerance(tolerance, dtype=None):
    return check_tolerance("zfp", tolerance)


def _params(rate, precision, tolerance):
    """Return zfp's (level, mode) for exactly one of rate, precision, tolerance."""
    given = [name for name, value in
             (("rate", rate), ("precision", precision), ("tolerance", tolerance))
             if value is not None]
    if len(given) != 1:
        raise ValueError(
            "zfp: give exactly one of rate (bits per value), precision (bit planes) "
            f"or tolerance (max absolute error), got {', '.join(given) or 'none'}"
        )
    if tolerance is not None:
        return _check_tolerance(tolerance), "a"
    if rate is not None:
        return _check_rate(rate), "r"
    return _check_precision(precision), "p"


def _target(given, dtype=None):
    _params(given.get("rate"), given.get("precision"), given.get("tolerance"))
    return dict(given)


DESCRIPTOR = Descriptor(
    name="zfp", kind="array", encode=zfp_encode, decode=zfp_decode, error=ZfpError,
    dtypes=FLOAT_DTYPES, ndims=(1, 2, 3, 4),
    params=(Param("tolerance", _check_tolerance, "max absolute error, > 0"),
            Param("rate", _check_rate, "bits per value, (0, 64]"),
            Param("precision", _check_precision, "bit planes kept, 1..64")),
    check=zfp_check, available=ZFP.available, frame_id=1, align=4, prefer=4, target=_target,
    speed=150, auto=("lossy",), rank=1, example={"tolerance": 1e-3}, fill=_SPEC.fill,
    doc="ZFP: transform coding of 4^d blocks; any chunking gives whole-array values")
