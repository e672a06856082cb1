"""Bit rounding: keep ``keepbits`` mantissa bits of each float, round to nearest, ties to even.

Descriptor facts (for the registry): name ``bitround``; kind filter (array in, array of the
same shape and dtype out, to be followed by a lossless stage such as zstd or pcodec);
dtypes float16, float32, float64 (either byte order; the result has the dtype of ``data``);
any ndim, 0-d included; no block alignment; parameter ``keepbits``, an int in
``0..MANTISSA_BITS[dtype]`` (10, 23, 52), checked by ``check_keepbits``; lossless=False
(lossless at ``keepbits == MANTISSA_BITS``); decoding is the identity.

Bound: every finite normal value x is returned as y with |x - y| <= 2**-(keepbits+1) * 2**e,
e = floor(log2|x|), so |x - y| <= 2**-(keepbits+1) * |x|. Subnormals are rounded at the same
bit position as the smallest normal numbers: their error is at most 2**(emin-keepbits-1)
(absolute), not relative to |x|. Signs are kept and zeros stay zeros.

Bit for bit the rounding of numcodecs' ``BitRound`` (and Klöwer et al. 2021), with two
deliberate differences, both to never lose data:
- NaN and +-Inf pass unchanged, NaN payloads included (``BitRound`` can carry a NaN's payload
  into the sign bit or drop it: NaN becomes -0.0 at keepbits=0, a signalling NaN becomes Inf).
- A finite value that would round up past the largest finite number (within half a unit in the
  last kept bit of 2**(emax+1), e.g. float32 above 3.4027e38 at keepbits=10) is kept exactly
  as it is, where ``BitRound`` returns +-Inf. Keeping it meets the bound with no error; its
  trailing bits stay set, which costs nothing measurable (no real data lives there).
"""

from __future__ import annotations

import numpy as np

from ._common import ChunkpressError, check_floats, filter_identity, filter_output
from ._numba import kernel
from .registry import Descriptor, Param

__all__ = [
    "BITROUND",
    "BitroundError",
    "MANTISSA_BITS",
    "bitround_check",
    "bitround_decode",
    "bitround_encode",
    "check_keepbits",
]

_CODEC = "bitround"
#: explicit mantissa bits of each float type, the largest keepbits (no rounding)
MANTISSA_BITS = {np.dtype("float16"): 10, np.dtype("float32"): 23, np.dtype("float64"): 52}
_WORDS = {2: np.dtype(np.uint16), 4: np.dtype(np.uint32), 8: np.dtype(np.uint64)}


class BITROUND:
    """BITROUND codec constants."""

    available = True


class BitroundError(ChunkpressError):
    """Bit rounding failed."""


def _round_words(words, out, drop, half, keep_mask, exponent_mask):
    """Round each float word to ``drop`` fewer bits; keep non-finite words and overflows."""
    one = words.dtype.type(1)
    for i in range(words.size):
        u = words[i]
        # adding half a unit less one, plus the last kept bit, carries exactly when the
        # dropped part is above half, or half with an odd last kept bit: ties to even
        r = (u + (((u >> drop) & one) + half)) & keep_mask
        if (u & exponent_mask) == exponent_mask or (r & exponent_mask) == exponent_mask:
            r = u  # NaN/Inf stay as they are; a finite value never becomes Inf
        out[i] = r


# one kernel per word size: the first call compiles only what it needs
_ROUNDERS = {
    size: kernel(
        f"void(Array({name}, 1, 'C', readonly=True), {name}[::1], {name}, {name}, {name}, {name})"
    )(_round_words)
    for size, name in ((2, "uint16"), (4, "uint32"), (8, "uint64"))
}


def check_keepbits(keepbits, dtype) -> int:
    """Return ``keepbits`` as an int after checking it is an integer in 0..mantissa bits."""
    dtype = np.dtype(dtype).newbyteorder("=")
    most = MANTISSA_BITS[dtype]
    if isinstance(keepbits, bool) or not isinstance(keepbits, (int, np.integer)):
        raise TypeError(
            f"{_CODEC}: keepbits must be an integer in 0..{most} for {dtype}, got {keepbits!r}"
        )
    if not 0 <= keepbits <= most:
        raise ValueError(
            f"{_CODEC}: keepbits must be in 0..{most} for {dtype} (its mantissa bits), "
            f"got {keepbits}"
        )
    return int(keepbits)


def bitround_encode(data, *, keepbits, out=None) -> np.ndarray:
    """Return ``data`` with ``keepbits`` mantissa bits kept, rounded to nearest, ties to even."""
    data = check_floats(data, _CODEC)
    keepbits = check_keepbits(keepbits, data.dtype)
    result = filter_output(out, data, _CODEC)
    if data.size == 0:
        return result
    native = data.dtype.newbyteorder("=")
    word = _WORDS[data.dtype.itemsize]
    source = data if data.dtype.isnative else data.astype(native)
    words = np.ascontiguousarray(source).reshape(-1).view(word)
    direct = result.flags.c_contiguous and result.flags.aligned and result.dtype.isnative
    target = result.reshape(-1).view(word) if direct else np.empty(words.size, word)
    if np.may_share_memory(words, target) and words.ctypes.data != target.ctypes.data:
        words = words.copy()  # out overlaps data shifted: read the input before writing
    drop = MANTISSA_BITS[native] - keepbits
    if drop == 0:
        target[...] = words  # nothing to drop: the values as they are, NaN payloads included
    else:
        width = 8 * data.dtype.itemsize
        keep_mask = ((1 << width) - 1) >> drop << drop
        exponent_mask = ((1 << (width - 1)) - 1) ^ ((1 << MANTISSA_BITS[native]) - 1)
        t = word.type
        _ROUNDERS[data.dtype.itemsize](
            words, target, t(drop), t((1 << (drop - 1)) - 1), t(keep_mask), t(exponent_mask)
        )
    if not direct:
        # an integer cast swaps the bytes where needed and keeps every NaN payload
        result.view(result.dtype.str.replace("f", "u"))[...] = target.reshape(data.shape)
    return result


def bitround_decode(data, *, out=None) -> np.ndarray:
    """Return the rounded floats as they are (a filter's decoding is the identity)."""
    return filter_identity(check_floats(data, _CODEC), out, _CODEC)


def bitround_check(data) -> bool:
    """Return False: rounded floats are plain floats, not a recognisable stream."""
    return False


# --- the registry's entry (see registry.py) --------------------------------------------


def _keepbits(keepbits, dtype=None) -> int:
    """keepbits for ``dtype``; where it is unknown (a Zarr configuration), for any float width."""
    return check_keepbits(keepbits, np.float64 if dtype is None else dtype)


def _relative(target) -> float:
    """Half a unit in the last kept bit, relative to the value (see the module's docstring)."""
    return 2.0 ** -(int(target["keepbits"]) + 1)


DESCRIPTOR = Descriptor(
    name="bitround", kind="filter", encode=bitround_encode, decode=bitround_decode,
    error=BitroundError, dtypes=tuple(MANTISSA_BITS),
    params=(Param("keepbits", _keepbits, "mantissa bits kept: 0..10 (float16), 0..23 "
                  "(float32), 0..52 (float64)", required=True),),
    relative=_relative, terminal="zstd", recognised="none", rank=2,
    example={"keepbits": 10},
    doc="bit rounding: keepbits mantissa bits, round to nearest, ties to even; NaN/Inf kept")
