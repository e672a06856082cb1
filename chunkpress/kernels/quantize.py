"""netCDF-4 quantization (BitGroom, Granular BitRound, BitRound) through imagecodecs.

Descriptor facts (for the registry): name ``quantize``; kind filter (array in, array of the
same shape and dtype out, to be followed by a lossless stage such as zstd or pcodec);
dtypes float32, float64 (either byte order; the result has the dtype of ``data``); any
ndim, 0-d included; no block alignment; parameters ``method`` (one of ``METHODS``, default
``"bitgroom"`` as in netCDF4-python) and ``digits`` (an int in ``digit_range(method, dtype)``),
both checked by ``check_quantize``; lossless=False; decoding is the identity.

The work is ``imagecodecs.quantize_encode`` (netCDF-C's own code), and every finite value is
what it returns, with these exceptions so that no data is lost:
- NaN and +-Inf pass unchanged, NaN payloads included (imagecodecs' "granularbr" turns them
  into -0.0 or 0.0, "bitgroom" turns an infinity at an odd index into NaN, "bitround" a
  signalling NaN into Inf).
- A finite value that the method would round to +-Inf (near the largest float: "granularbr"
  and "bitround" round float32 3.4e38 up to Inf) is kept exactly as it is.

``digits`` is the number of significant decimal digits for "bitgroom" and "granularbr", of
mantissa bits for "bitround" (netCDF's NSD and NSB). The ranges are netCDF-C's
(``nc_def_var_quantize``: 1..7 and 1..15 decimal digits, 1..23 and 1..52 bits), except float32
BitGroom and Granular BitRound stop at 6: at 7 imagecodecs returns garbage (BitGroom needs
ceil(7 log2 10) + 1 = 25 bits, more than float32 has; measured: NaN and values off by 1.0).
float16 is refused: imagecodecs would read it as float64 (past the end of the buffer).
"""

from __future__ import annotations

import math

import imagecodecs
import numpy as np

from ._common import ChunkpressError, check_integer, filter_identity, filter_output
from ._numba import kernel
from .registry import Descriptor, Param

__all__ = [
    "METHODS",
    "QUANTIZE",
    "QuantizeError",
    "check_quantize",
    "digit_range",
    "quantize_check",
    "quantize_decode",
    "quantize_encode",
]

_CODEC = "quantize"
METHODS = ("bitgroom", "granularbr", "bitround")
_DIGITS = {
    ("bitgroom", 4): 6, ("granularbr", 4): 6, ("bitround", 4): 23,
    ("bitgroom", 8): 15, ("granularbr", 8): 15, ("bitround", 8): 52,
}
_DTYPES = (np.dtype("float32"), np.dtype("float64"))
_WORDS = {4: np.dtype(np.uint32), 8: np.dtype(np.uint64)}


class QUANTIZE:
    """QUANTIZE codec constants."""

    available = bool(getattr(imagecodecs, "QUANTIZE", None) and imagecodecs.QUANTIZE.available)


class QuantizeError(ChunkpressError):
    """Quantization failed."""


def _keep_non_finite(source, result, exponent_mask):
    """Put back each source word that is not finite or whose result is not finite."""
    for i in range(source.size):
        if (source[i] & exponent_mask) == exponent_mask or (
            result[i] & exponent_mask
        ) == exponent_mask:
            result[i] = source[i]


_RESTORERS = {
    size: kernel(f"void(Array({name}, 1, 'C', readonly=True), {name}[::1], {name})")(
        _keep_non_finite
    )
    for size, name in ((4, "uint32"), (8, "uint64"))
}


def digit_range(method: str, dtype) -> range:
    """Return the digits ``method`` takes for ``dtype`` (float32 or float64)."""
    return range(1, _DIGITS[method, np.dtype(dtype).itemsize] + 1)


def check_quantize(method, digits, dtype) -> tuple[str, int]:
    """Return (method, digits) after checking them for ``dtype``; raise TypeError/ValueError."""
    method = _method(method)
    allowed = digit_range(method, dtype)
    what = "mantissa bits" if method == "bitround" else "significant decimal digits"
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)):
        raise TypeError(
            f"{_CODEC}: digits must be an integer ({what}) in {allowed.start}..{allowed.stop - 1} "
            f"for {method} on {np.dtype(dtype)}, got {digits!r}"
        )
    if digits not in allowed:
        raise ValueError(
            f"{_CODEC}: digits must be in {allowed.start}..{allowed.stop - 1} ({what}) for "
            f"{method} on {np.dtype(dtype)}, got {digits}"
        )
    return method, int(digits)


def quantize_encode(data, *, digits, method="bitgroom", out=None) -> np.ndarray:
    """Return ``data`` quantized by netCDF's ``method`` to ``digits``; NaN/Inf kept."""
    if not isinstance(data, np.ndarray):
        raise TypeError(f"{_CODEC}: data must be a numpy array, got {type(data).__name__}")
    native = data.dtype.newbyteorder("=")
    if native not in _DTYPES:
        raise ValueError(
            f"{_CODEC}: data dtype must be float32 or float64 (either byte order), got {data.dtype}"
        )
    method, digits = check_quantize(method, digits, native)
    result = filter_output(out, data, _CODEC)
    if data.size == 0:
        return result
    source = np.ascontiguousarray(data, dtype=native)
    direct = (
        result.flags.c_contiguous and result.dtype.isnative and result.flags.aligned
        and not np.may_share_memory(result, source)  # the input is read again afterwards
    )
    target = result if direct else np.empty(data.shape, native)
    try:
        imagecodecs.quantize_encode(source, method, digits, out=target)
    except imagecodecs.QuantizeError as exc:
        raise QuantizeError(f"{_CODEC}: {method} at digits={digits} failed: {exc}") from exc
    word = _WORDS[native.itemsize]
    exponent_mask = word.type({4: 0x7F800000, 8: 0x7FF0000000000000}[native.itemsize])
    _RESTORERS[native.itemsize](
        source.reshape(-1).view(word), target.reshape(-1).view(word), exponent_mask
    )
    if not direct:
        # an integer cast swaps the bytes where needed and keeps every NaN payload
        result.view(result.dtype.str.replace("f", "u"))[...] = target.view(word)
    return result


def quantize_decode(data, *, out=None) -> np.ndarray:
    """Return the quantized floats as they are (a filter's decoding is the identity)."""
    if not isinstance(data, np.ndarray):
        raise TypeError(f"{_CODEC}: data must be a numpy array, got {type(data).__name__}")
    if data.dtype.newbyteorder("=") not in _DTYPES:
        raise ValueError(f"{_CODEC}: data dtype must be float32 or float64, got {data.dtype}")
    return filter_identity(data, out, _CODEC)


def quantize_check(data) -> bool:
    """Return False: quantized floats are plain floats, not a recognisable stream."""
    return False


# --- the registry's entry (see registry.py) --------------------------------------------


def _method(method, dtype=None) -> str:
    if not isinstance(method, str):
        raise TypeError(f"{_CODEC}: method must be one of {', '.join(METHODS)}, got {method!r}")
    if method not in METHODS:
        raise ValueError(f"{_CODEC}: method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def _digits(digits, dtype=None) -> int:
    """digits in the widest range of any method for ``dtype`` (float64 where unknown); the
    range of the method given is checked by the target, with both."""
    dtype = np.float64 if dtype is None else dtype
    return check_integer(_CODEC, "digits", digits, 1, max(digit_range(m, dtype)[-1]
                                                           for m in METHODS))


def _target(given: dict, dtype=None) -> dict:
    """{"digits": n, "method": m}: each checked alone (the error names it), then together."""
    for name, check in (("method", _method), ("digits", _digits)):
        if name in given:
            check(given[name], dtype)
    if "digits" not in given:
        raise ValueError(f"{_CODEC}: digits (significant decimal digits, or mantissa bits with "
                         "method='bitround') is required")
    method, digits = check_quantize(given.get("method", "bitgroom"), given["digits"],
                                    np.float64 if dtype is None else dtype)
    return {"digits": digits, "method": method}


def _relative(target):
    """The max relative error each method keeps (None for Granular BitRound).

    BitRound keeps ``digits`` bits, rounded: half a unit in the last one. BitGroom keeps
    ceil(digits log2 10) + 1 bits and shaves or sets the rest: less than a unit in the last
    one. Granular BitRound keeps bits by each value's decimal exponent; measured above its
    nominal 0.5 10**(1 - digits) near the smallest normal numbers, it claims no bound.
    """
    digits, method = int(target["digits"]), target.get("method", "bitgroom")
    if method == "bitround":
        return 2.0 ** -(digits + 1)
    if method == "bitgroom":
        return 2.0 ** -(math.ceil(digits * math.log2(10)) + 1)
    return None


DESCRIPTOR = Descriptor(
    name="quantize", kind="filter", encode=quantize_encode, decode=quantize_decode,
    error=QuantizeError, dtypes=_DTYPES,
    params=(Param("method", _method, f"one of {', '.join(METHODS)} (default bitgroom)"),
            Param("digits", _digits, "significant decimal digits, 1..6 (float32) or 1..15 "
                  "(float64); mantissa bits with method='bitround'", required=True)),
    target=_target, relative=_relative, terminal="zstd", available=QUANTIZE.available,
    recognised="none", rank=3, example={"digits": 3, "method": "bitgroom"},
    doc="netCDF-4 quantization (BitGroom, Granular BitRound, BitRound); NaN/Inf kept")
