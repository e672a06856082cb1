"""Stores anyone can open: only codecs that zarr and numcodecs register themselves.

A portable variable is written through zarr's own codec pipeline, so a colleague with zarr,
numcodecs and xarray (and no chunkpress) opens it. The bound asked for is met by a filter that
numcodecs ships, then a lossless stage (blosc: zstd behind a byte shuffle) and a CRC-32C:

- ``tolerance=t`` (absolute): ``numcodecs.fixedscaleoffset`` with a float ``astype``: values
  rounded to multiples of the largest power of two ``q`` with ``q / 2 <= t`` (scaling by a
  power of two is exact), an error of at most ``q / 2``; NaN stays NaN (land masks work);
- ``rel_tolerance=r`` (pointwise relative): ``numcodecs.bitround`` keeping ``k`` mantissa
  bits, ``2**-(k + 1) <= r``; zeros stay zero, signs are kept;
- both: bit rounding with ``k`` large enough that its error at the largest magnitude is
  within ``t`` too; so is ``tolerance`` alone where ``x / q`` would overflow (float16, whose
  largest value is 65504: measured).

(``portable_write`` writes a portable array; ``dataset`` a dataset's portable variables.)

The filters' arithmetic has edges (a value rounded past the largest float, a scale that
overflows), so every block is measured before the store is published (:func:`certify`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["Portable", "choose", "certify", "PortableBoundError", "portable_for",
           "portable_variable", "recorded", "certified_update"]

#: mantissa bits of each float width (what numcodecs' BitRound keeps at most)
MANTISSA = {2: 10, 4: 23, 8: 52}


class PortableBoundError(ValueError):
    """The portable codecs cannot keep the bound asked for on these values."""


@dataclass(frozen=True)
class Portable:
    """The zarr codecs of one portable variable, and what they promise."""

    filters: tuple  # zarr array-to-array codecs (fixedscaleoffset or bitround), or none
    compressors: tuple  # bytes-to-bytes codecs: blosc (zstd, shuffle), crc32c
    description: str  # e.g. "bitround keepbits=9 + blosc-zstd" (for report() and info)
    tolerance: float | None = None
    rel_tolerance: float | None = None

    def encoding(self) -> dict:
        """The variable's encoding for xarray's ``to_zarr``."""
        return {"filters": list(self.filters) or None, "compressors": list(self.compressors)}


def scale_step(tolerance: float) -> float:
    """Return the largest power of two whose half keeps ``tolerance``: the spacing of the
    values kept (numcodecs' Quantize would round to decimal digits, up to 3.3 bits finer
    than needed).

    >>> scale_step(0.01), scale_step(0.5), scale_step(3.0)
    (0.015625, 1.0, 4.0)
    """
    return 2.0 ** math.floor(math.log2(2 * tolerance))


def keepbits(dtype, rel_tolerance: float | None, tolerance: float | None = None,
             amax: float | None = None, amin: float | None = None) -> int:
    """Return the mantissa bits bit rounding keeps so that both bounds hold.

    ``amax`` is the largest finite magnitude (for ``tolerance``), ``amin`` the smallest
    nonzero one: a subnormal value has fewer significant bits than its mantissa, so the
    relative bound needs as many more kept bits as it lies below the smallest normal.

    >>> keepbits("float32", 1e-3)
    9
    >>> keepbits("float32", None, 0.01, amax=100.0)
    12
    """
    full = MANTISSA[np.dtype(dtype).itemsize]
    k = 0
    if rel_tolerance is not None:
        k = max(k, math.ceil(-math.log2(rel_tolerance)) - 1)
        tiny = float(np.finfo(dtype).tiny)
        if amin is not None and 0 < amin < tiny:
            k += math.ceil(math.log2(tiny / amin))
    if tolerance is not None and amax is not None and amax > 0:
        # the error is at most half a unit of the last kept bit at the value's binade,
        # 2**(floor(log2 |x|) - k - 1) <= 2**(floor(log2 amax) - k - 1)
        k = max(k, math.floor(math.log2(amax)) - math.floor(math.log2(tolerance)) - 1)
    # at least 1: numcodecs' BitRound at keepbits=0 turns NaN into Inf or -0.0
    return int(min(max(k, 1), full))


def choose(dtype, tolerance=None, rel_tolerance=None, amax=None, amin=None) -> Portable:
    """Return the portable codecs that keep ``tolerance`` and/or ``rel_tolerance`` on
    ``dtype`` values (``amax``, the largest finite magnitude, is needed when both are given;
    ``amin``, the smallest nonzero one, where values may be subnormal).

    Raises :class:`PortableBoundError` where numcodecs' codecs cannot keep the request.
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    dtype = np.dtype(dtype).newbyteorder("=")  # numcodecs' filters know native types only
    compressors = (BloscCodec(cname="zstd", clevel=5, shuffle="shuffle",
                              typesize=dtype.itemsize), Crc32cCodec())
    if dtype.kind != "f" or (tolerance is None and rel_tolerance is None):
        return Portable((), compressors, "blosc-zstd (exact)", 0.0, 0.0)
    if dtype.itemsize not in MANTISSA:
        raise PortableBoundError(f"{dtype}: numcodecs' filters take float16, float32 and "
                                 "float64 only; write it exact or without portable=True")
    with warnings.catch_warnings():  # "numcodecs codecs are not in the Zarr v3 spec"
        warnings.simplefilter("ignore")
        from zarr.codecs import BitRound, FixedScaleOffset

        if rel_tolerance is None and _scales(dtype, scale_step(tolerance), amax):
            # multiples of a power of two: scaling by it is exact, so the error is the
            # rounding's alone, half a step, and NaN/Inf pass through (a float astype)
            step = scale_step(tolerance)
            scale = FixedScaleOffset(offset=0, scale=1 / step, dtype=dtype.str,
                                     astype=dtype.str)
            return Portable((scale,), compressors,
                            f"fixedscaleoffset scale=1/{step:g} + blosc-zstd", tolerance, None)
        if tolerance is not None and amax is None:
            raise ValueError("portable: tolerance and rel_tolerance together need amax, the "
                             "largest finite magnitude")
        # (tolerance alone: where the scaling overflows, bit rounding keeps it at amax)
        k = keepbits(dtype, rel_tolerance, tolerance, amax, amin)
        filters = () if k == MANTISSA[dtype.itemsize] else (BitRound(keepbits=k),)
        return Portable(filters, compressors, f"bitround keepbits={k} + blosc-zstd",
                        tolerance, rel_tolerance)


def _scales(dtype, step: float, amax: float | None) -> bool:
    """Whether values up to ``amax`` (unknown: None) scale by ``1 / step`` in ``dtype`` and
    back exactly: the scale a normal number of ``dtype``, the largest quotient finite.

    >>> _scales(np.dtype("float16"), 1 / 64, 1000.0), _scales(np.dtype("float16"), 1 / 64, 1100.0)
    (True, False)
    """
    info = np.finfo(dtype)
    return amax is None or bool(float(info.tiny) <= 1 / step <= float(info.max)
                                and amax / step <= float(info.max))


def apply(block: np.ndarray, portable: Portable) -> np.ndarray:
    """Return ``block`` as a reader will get it back: the filters encoded and decoded."""
    import numcodecs

    out = np.ascontiguousarray(block, block.dtype.newbyteorder("="))
    for codec in portable.filters:  # zarr's wrapper names the numcodecs codec it runs
        config = {k: v for k, v in codec.codec_config.items() if k != "id"}
        inner = numcodecs.get_codec({"id": codec.codec_name.removeprefix("numcodecs."),
                                     **config})
        with np.errstate(over="ignore", invalid="ignore"):  # what certify is there to find
            out = np.frombuffer(inner.decode(inner.encode(out)), out.dtype)
        out = out.reshape(block.shape)
    return out


def certify(block: np.ndarray, portable: Portable) -> tuple[float, float]:
    """Return (max absolute error, max relative error) of ``block`` through ``portable``;
    raise :class:`PortableBoundError` if a bound is broken or a non-finite value changes."""
    block = np.asarray(block)
    if not portable.filters:
        return 0.0, 0.0
    back = apply(block, portable)
    finite = np.isfinite(block)
    if not np.array_equal(block[~finite], back[~finite], equal_nan=True) or \
            not np.isfinite(back[finite]).all():
        raise PortableBoundError(
            f"portable ({portable.description}): a value decodes as NaN/Inf where it was "
            "finite, or the reverse (a value scaled or rounded past the largest float); "
            "write it without portable=True")
    a = block[finite].astype(np.float64)
    b = back[finite].astype(np.float64)
    diff = np.abs(a - b)
    max_abs = float(diff.max()) if diff.size else 0.0
    nonzero = a != 0
    if np.any(b[~nonzero] != 0):
        raise PortableBoundError(f"portable ({portable.description}): a zero decodes "
                                 "as another value")
    max_rel = float((diff[nonzero] / np.abs(a[nonzero])).max()) if nonzero.any() else 0.0
    if portable.tolerance is not None and not max_abs <= portable.tolerance:
        raise PortableBoundError(
            f"portable ({portable.description}): max error {max_abs!r} over the tolerance "
            f"{portable.tolerance!r} on these values; write it without portable=True")
    if portable.rel_tolerance is not None and not max_rel <= portable.rel_tolerance:
        raise PortableBoundError(
            f"portable ({portable.description}): max relative error {max_rel!r} over "
            f"rel_tolerance {portable.rel_tolerance!r}; write it without portable=True")
    return max_abs, max_rel


#: the attribute that says which portable codecs keep which bound (for ``info``)
ATTRIBUTE = "chunkpress_portable"


def portable_for(x, tolerance=None, rel_tolerance=None) -> Portable:
    """Return the portable codecs for the (dask or numpy) array ``x``, checking the bounds
    and, where they are needed, measuring its largest and smallest nonzero magnitudes."""
    import dask.array as da

    from ..kernels import check_tolerance, is_real
    from ..kernels.relative import check_rel_tolerance

    if tolerance is None and rel_tolerance is None:
        raise ValueError("portable=True needs tolerance= (max absolute error) and/or "
                         "rel_tolerance= (max error relative to each value), or neither "
                         "for an exact variable; got neither")
    if tolerance is not None:
        tolerance = check_tolerance("portable", tolerance)
    if rel_tolerance is not None:
        if not is_real(rel_tolerance):  # its TypeError says what a rel_tolerance is
            check_rel_tolerance(rel_tolerance, "portable")
        rel_tolerance = check_tolerance("portable", rel_tolerance, name="rel_tolerance")
        if rel_tolerance >= 1:
            raise ValueError(f"portable: rel_tolerance must be < 1, got {rel_tolerance!r}")
    dtype = np.dtype(x.dtype)
    amax = amin = None
    # float16's largest value is 65504: 1000 hPa over a step of 1/64 (tolerance 0.01)
    # overflows it, so whether the scaling holds is measured
    if dtype.kind == "f" and (rel_tolerance is not None or dtype.itemsize == 2):
        a = abs(da.asarray(x))
        finite = da.isfinite(a) & (a != 0)
        amax, amin = da.compute(da.where(finite, a, 0).max(), da.where(finite, a, np.inf).min())
        amax, amin = float(amax), float(amin)
        amin = amin if math.isfinite(amin) else None
    return choose(dtype, tolerance, rel_tolerance, amax, amin)


# --- a variable of a dataset --------------------------------------------------------------


def portable_variable(var, chosen: Portable):
    """Return the xarray Variable ``var`` as a portable write stores it: its values certified
    (now, or by each dask task), NaN as its fill value, the portable codecs as its encoding."""
    import dask
    import xarray as xr

    from .missing import missing_as_nan

    # raw values (opened with mask_and_scale=False): the cells a missing_value or _FillValue
    # attribute marks become NaN, which the attribute dropped below no longer would mark
    data = missing_as_nan(var.data, var.attrs)
    if not data.dtype.isnative:  # (numcodecs' filters know native types only)
        data = data.astype(data.dtype.newbyteorder("="))
    # the filters are made for the values' dtype (native) and the bound certified on them: the
    # array stores that dtype (an encoding's '>f4' made values read back wrong; another
    # dtype is refused by the accessor, as it made arrays zarr could not read back)
    if dask.is_dask_collection(data):
        data = data.map_blocks(_certified, chosen, dtype=var.dtype)
    else:
        data = np.asarray(data)
        certify(data, chosen)
    dropped = ("compressors", "compressor", "filters", "serializer", "_FillValue", "dtype")
    if var.dtype.kind == "f":  # missing cells are NaN, as marked by the _FillValue below
        dropped += ("missing_value",)
    encoding = {k: v for k, v in var.encoding.items() if k not in dropped}
    encoding.update(chosen.encoding())
    if var.dtype.kind == "f":
        # a fill value (or missing_value) through the filter could change: no longer missing
        encoding["_FillValue"] = np.nan
    attrs = {k: v for k, v in var.attrs.items() if k not in dropped}
    attrs[ATTRIBUTE] = {"codecs": chosen.description,
                        **{n: getattr(chosen, n) for n in ("tolerance", "rel_tolerance")
                           if getattr(chosen, n)}}
    return xr.Variable(var.dims, data, attrs=attrs, encoding=encoding)


def _certified(block, chosen, where=None):
    try:
        certify(block, chosen)
    except PortableBoundError as exc:
        if where is None:
            raise
        raise PortableBoundError(f"{where}: {exc.args[0].rsplit('; write it', 1)[0]}. An "
                                 "append or region write keeps the store's codecs and bound: "
                                 "write a new store") from None
    return block


# --- an update (append, region) of a portable array ----------------------------------------


def recorded(document: dict) -> Portable | None:
    """The portable codecs and bounds an array's ``zarr.json`` records, or None where it was
    not written portable."""
    entry = (document.get("attributes") or {}).get(ATTRIBUTE)
    if not isinstance(entry, dict):
        return None
    from zarr.abc.codec import ArrayArrayCodec
    from zarr.registry import get_codec_class

    with warnings.catch_warnings():  # "numcodecs codecs are not in the Zarr v3 spec"
        warnings.simplefilter("ignore")
        codecs = [get_codec_class(c["name"]).from_dict(c) for c in document.get("codecs", ())]
    filters = tuple(c for c in codecs if isinstance(c, ArrayArrayCodec))
    bounds = {n: float(entry[n]) if isinstance(entry.get(n), (int, float)) else None
              for n in ("tolerance", "rel_tolerance")}
    return Portable(filters, (), str(entry.get("codecs", "")), **bounds)


def certified_update(data, document: dict, name: str, codec=None, given=None):
    """``data`` (numpy: certified now; dask: by each task) for an update of the array whose
    ``zarr.json`` is ``document``: where it was written portable, new values must keep its
    bound through its filters too (1e37 through a scale of 64 is Inf, 1e-42 through bit
    rounding 0), or the update fails before it is published.

    ``codec`` and ``given`` (the update's codec and parameters, a value or a dict by variable
    each) must be the store's, as for a chunkpress array: a bound given that differs is an
    error naming both, never a bound silently not kept."""
    import dask

    chosen = recorded(document)
    if chosen is None or not chosen.filters:
        return data  # not portable, or exact
    where = repr(name)
    _check_given(chosen, where, codec.get(name) if isinstance(codec, dict) else codec,
                 {k: v.get(name) if isinstance(v, dict) else v for k, v in (given or {}).items()})
    if dask.is_dask_collection(data):
        return data.map_blocks(_certified, chosen, where, dtype=data.dtype)
    return _certified(np.asarray(data), chosen, where)


def _check_given(chosen: Portable, where: str, codec, given: dict) -> None:
    """A codec or bound given for an update of a portable array: the store's, or an error."""
    from ..kernels import is_real

    held = ", ".join(f"{n}={getattr(chosen, n)!r}" for n in ("tolerance", "rel_tolerance")
                     if getattr(chosen, n) is not None)
    for key, value in [("codec", codec), *given.items()]:
        if value is None or (key in ("tolerance", "rel_tolerance") and is_real(value)
                             and float(value) == getattr(chosen, key)):
            continue
        raise ValueError(f"{where}: the store's array is portable ({chosen.description}, "
                         f"{held}); given {key}={value!r}. An append or region write keeps "
                         "the store's codecs and bound: drop the argument, or write a new "
                         "store")

