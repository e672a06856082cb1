"""Bitwise real information content (Klöwer et al. 2021, Nature Computational Science).

The real information of bit position i is the mutual information between that bit in a value
and in its neighbour along ``axis``: with p(r, s) the share of neighbour pairs whose bits are
(r, s), I_i = sum over r, s of p(r, s) log2(p(r, s) / (p(r) p(s))). It is made of counts, and
counts add up, so the work is split in three steps the graph can spread over blocks:

- ``bitinfo_counts(block, axis=...)``: per block, an int64 array (bits, 2, 2), the pairs of
  neighbours whose bit i is (r, s). Pairs with a NaN or +-Inf are left out (a land mask
  carries no information about the field).
- ``combine_counts(counts, ...)``: their sum. Blocks cut along other axes than ``axis`` sum to
  exactly the counts of the whole; a cut across ``axis`` leaves out the pairs across it.
- ``keepbits_from_counts(counts, information=0.99)``: the fewest mantissa bits that, with the
  sign and exponent bits, hold that share of the information (``keepbits_for`` does all three
  on one array).

As in the paper: bits are numbered from the most significant (0 = sign), and the exponent is
taken in sign-and-magnitude form (its sign bit, then |e| for the unbiased exponent e), so that
values near 1 do not flip every exponent bit; zeros and subnormals take the exponent of the
smallest normal numbers (1 - bias), IEEE's scale for them. An I_i that random bits reach by
chance is set to zero: it must be above the free entropy 1 - H(p) of a fair coin seen
``pairs`` times, p = 1/2 + z / (2 sqrt(pairs)), z the normal quantile of ``confidence``
(two-sided; 0.99 by default). The tail correction that xbitinfo offers for data already
rounded or packed (information rising again in the last bits) is not made here.

The result is 0 where nothing is significant (pure noise, a constant field): the caller
decides the least precision it will accept.

Checked against xbitinfo 0.0.7 (its python implementation, run from the unpacked wheel: it
does not install beside this project, pinning numpy<2.4 and numcodecs<0.16.4) on smooth,
noisy, log-normal and sign-changing float32/float64 fields along one axis: the same keepbits at
99%, and the same information per bit, within 1e-5 bits (1e-3 in the exponent bits where
a field has exact zeros, whose exponent xbitinfo takes otherwise). On pure noise every bit is zero in
both; xbitinfo then returns keepbits of -1 to 23, this module 0.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from ._common import check_floats
from ._numba import kernel

__all__ = [
    "FORMATS",
    "bit_information",
    "bitinfo_counts",
    "combine_counts",
    "keepbits_for",
    "keepbits_from_counts",
]

_NAME = "bitinfo"
#: (exponent bits, mantissa bits) of each float type, by its width in bits
FORMATS = {16: (5, 10), 32: (8, 23), 64: (11, 52)}
_SIGNED = {2: np.dtype(np.int16), 4: np.dtype(np.int32), 8: np.dtype(np.int64)}
_BUFFER = 1024  # pairs gathered before their bits are counted (stays in L1)


def _count_bits(rows, inner, exponent_bits, mantissa_bits, ones):
    """Add the ones of each bit of (a, b, a & b) over neighbour pairs (row[j], row[j+inner]).

    ``ones`` is (4, width): rows a, b, a & b by bit from the least significant; ones[3, 0]
    counts the pairs. Bits are those of the sign-and-magnitude exponent form.
    """
    width = ones.shape[1]
    span = rows.shape[1] - inner
    exponent_mask = ((np.int64(1) << exponent_bits) - 1) << mantissa_bits
    bias = (np.int64(1) << (exponent_bits - 1)) - 1
    negative = np.int64(1) << (exponent_bits - 1)
    first = np.empty(_BUFFER, np.int64)
    second = np.empty(_BUFFER, np.int64)
    pairs = np.int64(0)
    for row in range(rows.shape[0]):
        values = rows[row]
        for start in range(0, span, _BUFFER):
            n = 0
            for j in range(start, min(start + _BUFFER, span)):
                a = np.int64(values[j])
                b = np.int64(values[j + inner])
                if (a & exponent_mask) == exponent_mask or (b & exponent_mask) == exponent_mask:
                    continue  # NaN or Inf on either side
                first[n] = a
                second[n] = b
                n += 1
            pairs += n
            for words in (first, second):  # the exponent in sign-and-magnitude form
                for i in range(n):
                    u = words[i]
                    e = max((u & exponent_mask) >> mantissa_bits, 1) - bias  # subnormal: 1-bias
                    field = e if e >= 0 else negative | -e
                    words[i] = (u & ~exponent_mask) | (field << mantissa_bits)
            for bit in range(width):  # one pass per bit: numba vectorises the sums
                count_a = np.int64(0)
                count_b = np.int64(0)
                count_ab = np.int64(0)
                for i in range(n):
                    x = (first[i] >> bit) & 1
                    y = (second[i] >> bit) & 1
                    count_a += x
                    count_b += y
                    count_ab += x & y
                ones[0, bit] += count_a
                ones[1, bit] += count_b
                ones[2, bit] += count_ab
    ones[3, 0] += pairs


_COUNTERS = {
    size: kernel(
        f"void(Array({name}, 2, 'C', readonly=True), int64, int64, int64, int64[:, ::1])"
    )(_count_bits)
    for size, name in ((2, "int16"), (4, "int32"), (8, "int64"))
}


def bitinfo_counts(data, *, axis: int = -1) -> np.ndarray:
    """Return the counts (bits, 2, 2) of bit pairs (r, s) of finite neighbours along ``axis``."""
    data = _check_data(data)
    axis = _check_axis(axis, data.ndim)
    width = 8 * data.dtype.itemsize
    exponent_bits, mantissa_bits = FORMATS[width]
    ones = np.zeros((4, width), np.int64)
    if data.shape[axis] > 1 and data.size:
        native = data.dtype.newbyteorder("=")
        words = np.ascontiguousarray(data, dtype=native).view(_SIGNED[data.dtype.itemsize])
        inner = math.prod(data.shape[axis + 1 :])
        rows = words.reshape(-1, data.shape[axis] * inner)
        _COUNTERS[data.dtype.itemsize](rows, inner, exponent_bits, mantissa_bits, ones)
    a, b, ab = ones[0, ::-1], ones[1, ::-1], ones[2, ::-1]  # most significant bit first
    counts = np.empty((width, 2, 2), np.int64)
    counts[:, 1, 1] = ab
    counts[:, 1, 0] = a - ab
    counts[:, 0, 1] = b - ab
    counts[:, 0, 0] = ones[3, 0] - a - b + ab
    return counts


def combine_counts(*counts) -> np.ndarray:
    """Return the sum of the counts of several blocks of one variable."""
    if not counts:
        raise ValueError(f"{_NAME}: combine_counts needs at least one counts array")
    first = _check_counts(counts[0])
    total = first.copy()
    for more in counts[1:]:
        more = _check_counts(more)
        if more.shape != total.shape:
            raise ValueError(
                f"{_NAME}: counts of different float widths cannot be combined: "
                f"{total.shape} and {more.shape}"
            )
        total += more
    return total


def bit_information(counts, *, confidence: float = 0.99) -> np.ndarray:
    """Return the real information (bits) of each bit position, insignificant ones set to 0."""
    counts = _check_counts(counts)
    confidence = _check_share(confidence, "confidence", closed=False)
    pairs = int(counts[0].sum())
    if pairs == 0:
        return np.zeros(counts.shape[0])
    p = counts / pairs
    first = p.sum(axis=2, keepdims=True)  # p(r)
    second = p.sum(axis=1, keepdims=True)  # p(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = p * np.log2(p / (first * second))
    information = np.where(p > 0, terms, 0.0).sum(axis=(1, 2))
    information = np.maximum(information, 0.0)  # rounding can give -1e-17
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    heads = min(1.0, 0.5 + z / (2 * math.sqrt(pairs)))
    free = 1.0 - _entropy(heads)
    information[information <= free] = 0.0
    return information


def keepbits_from_counts(counts, *, information: float = 0.99, confidence: float = 0.99) -> int:
    """Return the fewest mantissa bits holding ``information`` of the real information."""
    counts = _check_counts(counts)
    share = _check_share(information, "information", closed=True)
    bits = bit_information(counts, confidence=confidence)
    total = bits.sum()
    if total == 0:
        return 0
    exponent_bits, mantissa_bits = FORMATS[counts.shape[0]]
    held = np.cumsum(bits)
    # the first position whose running sum reaches the share; a hair of slack for rounding
    position = int(np.argmax(held >= share * total * (1 - 1e-12)))
    return int(min(max(position + 1 - (1 + exponent_bits), 0), mantissa_bits))


def keepbits_for(
    data, *, information: float = 0.99, axis: int = -1, confidence: float = 0.99
) -> int:
    """Return the fewest mantissa bits holding ``information`` of ``data``'s real information."""
    _check_share(information, "information", closed=True)
    _check_share(confidence, "confidence", closed=False)
    return keepbits_from_counts(
        bitinfo_counts(data, axis=axis), information=information, confidence=confidence
    )


def _entropy(p: float) -> float:
    """Return the entropy (bits) of a coin with heads probability ``p``."""
    return -sum(q * math.log2(q) for q in (p, 1.0 - p) if q > 0)


def _check_data(data) -> np.ndarray:
    data = check_floats(data, _NAME)
    if data.ndim == 0:
        raise ValueError(f"{_NAME}: data must have at least 1 dimension, got a 0-d array")
    return data


def _check_axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{_NAME}: axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{_NAME}: axis must be in [{-ndim}, {ndim - 1}] for a {ndim}-d "
                         f"array, got {axis}")
    return int(axis) % ndim


def _check_share(value, name: str, *, closed: bool) -> float:
    """Return ``value`` as a float in (0, 1] (``closed``) or (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{_NAME}: {name} must be a number in (0, 1{']' if closed else ')'}, "
                        f"got {value!r}")
    value = float(value)
    if not (0 < value < 1 or (closed and value == 1)):
        raise ValueError(f"{_NAME}: {name} must be in (0, 1{']' if closed else ')'}, "
                         f"got {value!r}")
    return value


def _check_counts(counts) -> np.ndarray:
    if not isinstance(counts, np.ndarray):
        raise TypeError(f"{_NAME}: counts must be a numpy array from bitinfo_counts, "
                        f"got {type(counts).__name__}")
    if counts.ndim != 3 or counts.shape[0] not in FORMATS or counts.shape[1:] != (2, 2):
        raise ValueError(f"{_NAME}: counts must have shape (16, 2, 2), (32, 2, 2) or "
                         f"(64, 2, 2), got {counts.shape}")
    if counts.dtype.kind not in "iu" or (counts < 0).any():
        raise ValueError(f"{_NAME}: counts must be non-negative integers, got {counts.dtype}")
    return counts
