"""What a block costs and keeps: its figures, measured against the block it was made from.

``compress(..., verify=True)`` and ``evaluate`` decode every block where it was encoded and
measure it here: max absolute error and squared errors of the finite values, their range,
and how many values the kernel stored exactly beside the codec's stream (its patch).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..kernels import formats
from .codecs import Codec

__all__ = ["Encoded", "measure", "same_bits", "block_range", "outside_relative",
           "relative_errors"]


class Encoded(NamedTuple):
    """One compressed block and what was measured of it (NaN / -1 where not verified)."""

    data: bytes
    shape: tuple  # of the block
    max_error: float = math.nan  # of the finite values
    sse: float = math.nan  # sum of squared errors of the finite values
    count: int = -1  # finite values
    lo: float = math.nan  # finite value range of the original block
    hi: float = math.nan
    corrected: int = -1  # values stored exactly beside the codec's stream
    #: max |x - y| / |x| of the finite values (0/0 counts 0, y/0 inf), where a relative bound
    #: (``rel_tolerance``) was certified; / max(|x|, tiny) where the bound is (bit rounding's)
    max_rel_error: float = math.nan


def measure(block, decoded, data, codec: Codec, limit, rel_limit=None,
            rel_floor=False) -> Encoded:
    """Return the Encoded ``data`` with the figures of ``decoded`` against ``block``.

    ``limit`` is the max absolute error the kernel certifies (0: lossless), or None; a block
    over it, or a lossless block that does not decode bit for bit, is the codec's error.
    ``rel_limit`` (or None) is r in ``|x - y| <= r * |x|``, certified on every finite value;
    with ``rel_floor``, ``r * max(|x|, tiny)`` (a bound like bit rounding's, absolute below
    the smallest normal number ``tiny``).
    """
    original = np.asarray(block)
    if codec.lossless or (limit == 0 and original.dtype.kind != "f"):
        if not same_bits(original, decoded):
            raise codec.error(f"{codec.name}: a lossless block does not decode to its "
                              "original values")
        lo, hi = block_range(original)
        count = original.size if original.dtype.kind != "f" else int(np.isfinite(original).sum())
        return Encoded(data, original.shape, 0.0, 0.0, count, lo, hi, 0)
    if original.dtype.kind == "f":
        finite = np.isfinite(original)
        if not same_bits(original[~finite], decoded[~finite]):
            raise codec.error(f"{codec.name}: a block's NaN/Inf cells do not decode exactly")
        a = original[finite].astype(np.float64)
        b = decoded[finite].astype(np.float64)
    else:
        a = original.astype(np.float64).reshape(-1)
        b = decoded.astype(np.float64).reshape(-1)
    diff = np.abs(a - b)
    max_error = float(diff.max()) if diff.size else 0.0
    if limit is not None and not max_error <= limit:
        raise codec.error(
            f"{codec.name}: a block decodes with max error {max_error!r}, over the tolerance "
            f"{limit!r} the kernel certifies; please report this"
        )
    lo, hi = (float(a.min()), float(a.max())) if a.size else (math.inf, -math.inf)
    floor = float(np.finfo(original.dtype).tiny) if rel_floor and original.dtype.kind == "f" \
        else 0.0
    max_rel = math.nan if rel_limit is None else _relative(a, diff, codec, rel_limit, floor)
    return Encoded(data, original.shape, max_error, float(np.dot(diff, diff)), int(a.size), lo, hi,
                   corrected(data, codec), max_rel)


def _relative(a, diff, codec: Codec, rel_limit, floor=0.0) -> float:
    """Return the max relative error, after checking ``|x - y| <= rel_limit * max(|x|,
    floor)``."""
    outside = outside_relative(a, diff, rel_limit, floor)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise codec.error(
            f"{codec.name}: a block decodes {a[i]!r} with error {diff[i]!r}, over the "
            f"rel_tolerance {rel_limit!r} the kernel certifies; please report this")
    ratio = relative_errors(a, diff, floor)
    return float(ratio.max()) if ratio.size else 0.0


def outside_relative(a, diff, rel_limit, floor=0.0) -> np.ndarray:
    """Return where ``diff > rel_limit * max(|a|, floor)`` (float64 values ``a``, ``diff``
    their errors), exactly: a zero with any error is outside without a floor."""
    base = np.maximum(np.abs(a), floor)
    # r |x| rounds among float64's subnormals (up to twice r |x|): those compared scaled by
    # 2**200, exactly
    small = base < 2.0**-900
    scaled = (np.where(small, diff * 2.0**200, diff), np.where(small, base * 2.0**200, base)) \
        if small.any() else (diff, base)
    return ~(scaled[0] <= rel_limit * scaled[1])


def relative_errors(a, diff, floor=0.0) -> np.ndarray:
    """Return each error relative to what the bound is, ``max(|a|, floor)`` (a subnormal's
    error is absolute below the floor); 0 where exact, inf for a zero that is not."""
    base = np.maximum(np.abs(a), floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(diff > 0, diff / base, 0.0)


def same_bits(a, b) -> bool:
    """Whether two arrays hold the same values bit for bit (NaN payloads included)."""
    if a.shape != b.shape or a.dtype.itemsize != b.dtype.itemsize:
        return False
    if a.dtype.kind not in "fc":
        return bool(np.array_equal(a, b))
    word = np.dtype(f"u{a.dtype.itemsize}") if a.dtype.itemsize in (1, 2, 4, 8) else None
    if word is None:
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(np.ascontiguousarray(a, a.dtype.newbyteorder("=")).view(word),
                               np.ascontiguousarray(b, b.dtype.newbyteorder("=")).view(word)))


def block_range(block) -> tuple:
    """Return the (min, max) of a block's finite values; (inf, -inf) when it has none."""
    a = np.asarray(block)
    if a.size == 0:
        return math.inf, -math.inf
    if a.dtype.kind == "f":
        finite = a[np.isfinite(a)]
        if finite.size == 0:
            return math.inf, -math.inf
        return float(finite.min()), float(finite.max())
    return float(a.min()), float(a.max())


def corrected(data, codec: Codec) -> int:
    """Return how many values the kernel stored exactly beside the codec's stream."""
    streams = formats.batch_unpack(data)[1] if formats.is_batch(data) else [data]
    framed_by = codec.chain.terminal.name  # a chain's stream is its last codec's
    return int(sum(formats.patched_cells(s, framed_by, codec.error) for s in streams))
