"""The xarray accessor: ``ds.chunkpress.encode(...)`` / ``da.chunkpress.encode(...)`` and CompressedDataset.

Float data variables are compressed as they would be stored: xarray's CF encoding is applied
first (packing, ``_FillValue``, units), so that the store read back with plain
``xr.open_zarr`` has the original's attributes and encodings. Cells equal to a finite
``_FillValue`` or ``missing_value`` are given to the codec as NaN, which its mask keeps
exactly: missing values stay missing whatever the tolerance. A tolerance is in the variable's
own (decoded) units. Integer variables, times, coordinates and CF cell bounds (unless named)
are kept exact: written by xarray as they are, behind a CRC-32C.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import dask
import numpy as np
import pandas as pd
import xarray as xr
from xarray.conventions import decode_cf_variable, encode_cf_variable

from . import api
from .graph.codecs import codec_params
from .graph.information import ATTRIBUTE
from .storage import append as _append, dataset as _dataset, writer as _writer
from .storage.publish import check_write_options

__all__ = ["encode", "CompressedDataset", "ChunkpressAccessor", "compressible", "cell_bounds"]

_PARAMS = ("tolerance", "rate", "precision", "mode", "quality", "level", "rel_tolerance",
           "keepbits", "digits", "method", "information")
_DATAARRAY_NAME = "__xarray_dataarray_variable__"

def encode(obj, codec="zfp", *, tolerance=None, rate=None, precision=None, mode=None,
           quality=None, level=None, variables=None, chunks="auto",
           verify=False, rel_tolerance=None, keepbits=None, digits=None, method=None,
           information=None, **extra) -> CompressedDataset:
    """Return the lazy CompressedDataset of an xarray Dataset or DataArray.

    ``codec`` and each parameter are one value for every variable or a dict from variable name
    to value (``tolerance={"t": 0.01, "u": 0.1}``): a float variable missing from a dict given
    is kept exact. ``variables`` lists the variables to compress (default: every float data
    variable but CF cell bounds, ``lat_bnds`` named by ``lat:bounds``, unless named in a dict
    given). ``chunks``: ``"auto"``, one block shape for every variable, or a dict from
    dimension name to block extent, as xarray takes it (``{"time": 4, "lat": 48}``; a
    dimension not named is one block). Nothing is compressed until the result is computed,
    written or reported. ``information`` (``codec="bitround"``) chooses each variable's
    keepbits from its own data, once; ``report()`` shows what it chose.
    """
    dataset, name = _as_dataset(obj)
    _check_chunks(dataset, chunks)
    given = dict(zip(_PARAMS, (tolerance, rate, precision, mode, quality, level,
                               rel_tolerance, keepbits, digits, method, information)),
                 **codec_params("encode", extra))
    per_var = {k: v for k, v in given.items() if isinstance(v, dict)}
    if isinstance(codec, dict):
        per_var["codec"] = codec
    entries = {}
    for var in _selected(dataset, per_var, variables):
        var_codec = codec.get(var, "zfp") if isinstance(codec, dict) else codec
        params = {k: (v.get(var) if isinstance(v, dict) else v) for k, v in given.items()}
        named = [k for k, v in per_var.items() if v.get(var) is not None]
        entry = _compress_variable(dataset, var, var_codec, params, chunks, verify,
                                   explicit=" and ".join(named) or variables is not None)
        if entry is not None:
            entries[var] = entry
    return CompressedDataset(dataset, entries, name)


class CompressedDataset:
    """A Dataset whose float variables are compressed blocks: decode, report or write it."""

    def __init__(self, source: xr.Dataset, entries: dict, dataarray_name=None):
        self._source = source
        self._entries = dict(entries)  # name -> _Entry
        self._dataarray_name = dataarray_name

    @property
    def arrays(self) -> dict:
        """The CompressedArray of each compressed variable."""
        return {name: e.compressed for name, e in self._entries.items()}

    @property
    def variables(self) -> list:
        return list(self._source.data_vars)

    def persist(self, **kwargs) -> CompressedDataset:
        """Return it with every compressed variable's blocks in memory (compressed once)."""
        names = list(self._entries)
        persisted = dask.persist(*(self._entries[n].compressed for n in names), **kwargs)
        entries = {n: self._entries[n]._replace(compressed=c) for n, c in zip(names, persisted)}
        return CompressedDataset(self._source, entries, self._dataarray_name)

    def decode(self):
        """Return the lazy xarray Dataset (or DataArray) the compressed variables decode to."""
        out = self._source.copy()
        for name, entry in self._entries.items():
            raw = api.decompress(entry.compressed)
            stored = xr.Variable(entry.dims, raw, attrs=dict(entry.attrs))
            decoded = decode_cf_variable(name, stored)
            source = self._source[name].variable
            decoded = decoded.astype(source.dtype, copy=False)
            decoded.attrs, decoded.encoding = dict(source.attrs), dict(source.encoding)
            out[name] = decoded
        if self._dataarray_name is not None:
            array = out[self._dataarray_name]
            return array.rename(None) if self._dataarray_name == _DATAARRAY_NAME else array
        return out

    def report(self) -> pd.DataFrame:
        """One row per data variable: codec, parameters, bytes, ratio, max error, bound.

        Where codec="auto" chose, a column ``choice`` says what and the sampled ratios why;
        where a ``rel_tolerance`` was given, ``max_rel_error`` (measured, ``verify=True``) and
        ``rel_bound`` (also bit rounding's and quantization's: |x - y| <= rel_bound *
        max(|x|, smallest normal); their ``error_bound`` is NaN, having no absolute one).
        """
        rows = []
        for name in self._source.data_vars:
            var = self._source[name].variable
            entry = self._entries.get(name)
            raw = var.size * var.dtype.itemsize
            if entry is None:
                stored = np.dtype(var.encoding.get("dtype", var.dtype))
                packed = "scale_factor" in var.encoding and stored.kind in "iu"
                bound = abs(float(var.encoding["scale_factor"])) / 2 if packed else 0.0
                rows.append({"variable": name, "codec": "exact",
                             "parameters": f"stored as {stored}" if stored != var.dtype else "",
                             "dtype": str(var.dtype), "original_bytes": raw,
                             "compressed_bytes": math.nan, "ratio": math.nan,
                             "max_error": math.nan, "error_bound": bound, "choice": ""})
                continue
            c = entry.compressed
            scale = entry.scale
            max_error = c.max_error
            bound = c.error_bound
            choice = getattr(c, "choice", None)
            rel = c.max_rel_error
            rows.append({
                "variable": name, "codec": c.codec,
                "parameters": _parameters(entry),
                "dtype": str(var.dtype), "original_bytes": raw,
                "compressed_bytes": c.nbytes, "ratio": raw / c.nbytes if c.nbytes else math.inf,
                "max_error": math.nan if max_error is None else max_error * scale,
                "error_bound": math.nan if bound is None else bound * scale,
                "choice": "" if choice is None else choice.summary(),
                "max_rel_error": math.nan if rel is None else rel,
                "rel_bound": _relative_bound(entry),
            })
        columns = ["variable", "codec", "parameters", "dtype", "original_bytes",
                   "compressed_bytes", "ratio", "max_error", "error_bound"]
        if any(row.get("choice") for row in rows):  # codec="auto": what it chose, and why
            columns.append("choice")
        if any(not math.isnan(row.get("rel_bound", math.nan)) for row in rows):
            columns += ["max_rel_error", "rel_bound"]  # rel_tolerance: measured, and bound
        table = pd.DataFrame(rows, columns=columns).set_index("variable")
        return table.astype({"compressed_bytes": "Int64"})

    def to_zarr(self, store, *, overwrite=False, compute=True, storage_options=None,
                shards=None, append_dim=None, region=None):
        """Write it to a Zarr v3 store that plain ``xr.open_zarr`` reads back.

        xarray makes the metadata and writes the exact variables; the compressed blocks go
        straight into the store as chunk objects, each encoded once (``shards=``: in Zarr v3
        shards, see ``chunkpress.to_zarr``). Nothing is visible at ``store`` until every
        chunk is written: a write that stops halfway leaves no node a reader opens, and
        ``overwrite=True`` replaces an existing store only then. ``compute=False`` returns a
        ``dask.delayed`` that does the writing.

        ``append_dim="time"`` appends to the dataset in ``store`` along that dimension, and
        ``region={"time": slice(8, 12)}`` rewrites those chunks; both use the store's codec,
        target and chunks (this dataset's must agree) and need whole chunks (see
        ``chunkpress.storage.append``).
        """
        check_write_options(overwrite)
        if append_dim is not None or region is not None:
            _check_update(overwrite, shards, append_dim, region)
            options = dict(compressed={n: e.compressed for n, e in self._entries.items()},
                           codec={n: e.compressed.codec for n, e in self._entries.items()},
                           params=_entry_params(self._entries),
                           verify=any(e.compressed.verified for e in self._entries.values()),
                           compute=compute, storage_options=storage_options)
            if append_dim is not None:
                return _append.append_dataset(self._source, store, append_dim, **options)
            return _append.region_dataset(self._source, store, region, **options)
        variables = {name: _dataset.Variable(e.compressed, _dataset.codec_missing(e.attrs))
                     for name, e in self._entries.items()}
        return _dataset.write_dataset(self._source, variables, store, overwrite=overwrite,
                                      storage_options=storage_options, shards=shards,
                                      compute=compute)

    def __repr__(self) -> str:
        lines = [f"<chunkpress.CompressedDataset: {len(self._entries)} of "
                 f"{len(self._source.data_vars)} data variables compressed>"]
        for name, entry in self._entries.items():
            params = ", ".join(f"{k}={v}" for k, v in entry.params.items())
            lines.append(f"  {name}: {entry.compressed.codec} {params}".rstrip())
        return "\n".join(lines)


class ChunkpressAccessor:
    """``ds.chunkpress`` / ``da.chunkpress``: holds nothing but the object, calls the API."""

    def __init__(self, obj):
        self._obj = obj

    def encode(self, codec="zfp", **kwargs) -> CompressedDataset:
        """Return the CompressedDataset (see :func:`chunkpress.accessor.encode`)."""
        return encode(self._obj, codec, **kwargs)

    def to_zarr(self, store, codec=None, *, overwrite=False, compute=True,
                storage_options=None, shards=None, append_dim=None, region=None,
                portable=False, **kwargs):
        """Compress and write to a Zarr v3 store in one go (see CompressedDataset.to_zarr).

        ``codec`` defaults to "zfp"; with ``append_dim`` or ``region`` to the store's codec,
        and a codec or parameter given must be the store's. ``portable=True`` stores the
        variables given a ``tolerance`` and/or ``rel_tolerance`` (one value, or a dict per
        variable) with codecs zarr and numcodecs register themselves, so that the store opens
        without chunkpress (see ``chunkpress.to_zarr``).
        """
        check_write_options(overwrite, kwargs.get("mode"))
        if portable:
            return _portable_to_zarr(self._obj, store, codec, kwargs, overwrite=overwrite,
                                     compute=compute, storage_options=storage_options,
                                     shards=shards, append_dim=append_dim, region=region)
        extra = codec_params("to_zarr", {k: v for k, v in kwargs.items() if k not in
                                         (*_PARAMS, "verify", "chunks", "variables")})
        if append_dim is not None or region is not None:
            _check_update(overwrite, shards, append_dim, region)
            dataset, _ = _as_dataset(self._obj)
            if kwargs.get("chunks", "auto") != "auto" or kwargs.get("variables") is not None:
                raise ValueError("an append or region write uses the store's chunks and "
                                 "compresses the variables the store compresses: drop chunks= "
                                 "and variables=")
            options = dict(codec=codec, params={k: kwargs.get(k) for k in (*_PARAMS, *extra)},
                           verify=kwargs.get("verify", False), compute=compute,
                           storage_options=storage_options)
            if append_dim is not None:
                return _append.append_dataset(dataset, store, append_dim, **options)
            return _append.region_dataset(dataset, store, region, **options)
        return encode(self._obj, "zfp" if codec is None else codec, **kwargs).to_zarr(
            store, overwrite=overwrite, compute=compute, storage_options=storage_options,
            shards=shards)


with warnings.catch_warnings():
    warnings.simplefilter("ignore", xr.core.extensions.AccessorRegistrationWarning)
    xr.register_dataset_accessor("chunkpress")(ChunkpressAccessor)
    xr.register_dataarray_accessor("chunkpress")(ChunkpressAccessor)


# --- helpers -------------------------------------------------------------------------------


class _Entry(NamedTuple):
    compressed: object  # CompressedArray of the CF-encoded values
    dims: tuple
    attrs: dict  # the CF-encoded attributes (_FillValue, scale_factor, units, ...)
    params: dict  # as the user gave them, in the variable's units
    scale: float  # |scale_factor|: stored units to the variable's


def _as_dataset(obj):
    if isinstance(obj, xr.Dataset):
        return obj, None
    if isinstance(obj, xr.DataArray):
        name = obj.name if obj.name is not None else _DATAARRAY_NAME
        return obj.to_dataset(name=name), name
    raise TypeError(f"encode takes an xarray Dataset or DataArray, got {type(obj).__name__}")


def _check_names(dataset, names, what):
    for name in names:
        if name not in dataset.data_vars:
            known = ", ".join(map(str, dataset.data_vars)) or "none"
            raise KeyError(f"variable {name!r} {what} but is not a data variable of the "
                           f"dataset (its data variables: {known})")


def _check_chunks(dataset, chunks) -> None:
    """A dict of chunks names dimensions of the dataset (xarray's way)."""
    if isinstance(chunks, dict):
        known = list(dataset.dims)
        for dim in chunks:
            if dim not in dataset.dims:
                raise ValueError(f"chunks: {dim!r} is not a dimension of the dataset (its "
                                 f"dimensions: {', '.join(map(str, known))})")


def _variable_chunks(chunks, dims):
    """The chunks of one variable: a dict by dimension name becomes one by axis."""
    if isinstance(chunks, dict):
        return {axis: chunks[dim] for axis, dim in enumerate(dims) if dim in chunks}
    return chunks


def _portable_to_zarr(obj, store, codec, kwargs, *, shards, append_dim, region, **options):
    """ChunkpressAccessor.to_zarr(portable=True): each variable's portable codecs, then the
    dataset written (``chunkpress.storage.portable``)."""
    from .storage.portable import portable_for

    if codec is not None:
        raise ValueError(f"portable=True chooses numcodecs' codecs for the bound; drop "
                         f"codec={codec!r} (or drop portable=True)")
    if shards is not None or append_dim is not None or region is not None:
        raise ValueError("portable=True writes a whole new store: drop shards, append_dim "
                         "and region")
    unknown = set(kwargs) - {"tolerance", "rel_tolerance", "variables", "verify"}
    if unknown:
        raise TypeError(f"to_zarr(portable=True) takes tolerance, rel_tolerance and "
                        f"variables; got unexpected arguments {sorted(unknown)}")
    dataset, _ = _as_dataset(obj)
    bounds = {k: kwargs.get(k) for k in ("tolerance", "rel_tolerance")}
    per_var = {k: v for k, v in bounds.items() if isinstance(v, dict)}
    chosen = {}
    for name in _selected(dataset, per_var, kwargs.get("variables")):
        var = dataset[name].variable
        if "scale_factor" in var.encoding or "add_offset" in var.encoding:
            named = [k for k, v in per_var.items() if name in v]
            if named or kwargs.get("variables") is not None:
                raise ValueError(
                    f"variable {name!r} is packed (scale_factor/add_offset): portable=True "
                    "keeps it as stored, exact, and would not compress it to the bound; drop "
                    f"it from {' and '.join(named) or 'variables'}")
            continue  # packed by its producer: kept as stored
        given = {k: (v.get(name) if isinstance(v, dict) else v) for k, v in bounds.items()}
        if all(v is None for v in given.values()):
            continue
        stored = var.encoding.get("dtype")  # the codecs are for the values' own dtype
        if stored is not None and np.dtype(stored).newbyteorder("=") != \
                var.dtype.newbyteorder("="):
            raise ValueError(f"variable {name!r}: its encoding stores it as {np.dtype(stored)}, "
                             f"its values are {var.dtype}: portable=True chooses and certifies "
                             "its codecs for the values as they are; give them as "
                             f"{np.dtype(stored)} (astype), or drop 'dtype' from its encoding")
        try:
            chosen[name] = portable_for(var.data, **given)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"variable {name!r}: {exc}") from exc
    return _dataset.write_dataset(dataset, {}, store, portable=chosen, **options)


def _selected(dataset, per_var: dict, variables) -> list:
    """The variables to compress: ``variables`` if given (else every compressible data
    variable but CF cell bounds not named in a per-variable dict), less those missing from
    every per-variable dict given (kept exact)."""
    for values in per_var.values():
        _check_names(dataset, values, "is given a parameter")
    if variables is not None:
        variables = [variables] if isinstance(variables, str) else list(variables)
        _check_names(dataset, variables, "is to be compressed")
        for key, values in per_var.items():  # a setting for a variable left out: no effect
            left = [n for n in values if n not in variables]
            if left:
                raise ValueError(f"{key} names {left[0]!r}, which is not among variables="
                                 f"{variables!r}: add it to variables, or drop it from {key}")
    if variables is None:
        named = {n for values in per_var.values() for n in values}
        cells = cell_bounds(dataset)
        variables = [n for n in dataset.data_vars if n in named or (
            compressible(dataset[n].variable) and n not in cells)]
    return [n for n in variables if not per_var or any(n in v for v in per_var.values())]


def _check_update(overwrite, shards, append_dim, region) -> None:
    if append_dim is not None and region is not None:
        raise ValueError("give append_dim or region, not both")
    if overwrite:
        raise ValueError("overwrite=True replaces a store; append_dim and region add to or "
                         "rewrite part of one: give one or the other")
    if shards is not None:
        raise ValueError("an append or region write uses the store's shards: drop shards=")


def _parameters(entry) -> str:
    """The parameters as given, then those chosen from them (keepbits from information)."""
    chosen = entry.compressed.attributes.get(ATTRIBUTE) or {}
    shown = {**entry.params, **{k: v for k, v in chosen.items()
                                if k not in entry.params and k != "relative_bound"}}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def _relative_bound(entry) -> float:
    """The relative bound on the variable's own values (rel_tolerance, bit rounding), or NaN
    (none, exact, or a packed variable's offset in between)."""
    bound = entry.compressed.relative_bound
    if not bound or float(entry.attrs.get("add_offset", 0.0)) != 0.0:
        return math.nan
    return float(bound)


def _entry_params(entries) -> dict:
    """The parameters each entry was compressed with, per variable, in the variable's units."""
    out = {}
    for name, entry in entries.items():
        for key, value in entry.params.items():
            out.setdefault(key, {})[name] = value
    return out


def cell_bounds(dataset: xr.Dataset) -> set:
    """The data variables that are CF cell bounds of another variable (``lat:bounds =
    "lat_bnds"``, or ``time:climatology``): kept exact unless named, as the coordinates are
    (rounded, a cell's edge would no longer meet its neighbour's)."""
    names = set()
    for var in dataset.variables.values():
        for key in ("bounds", "climatology"):
            name = var.attrs.get(key, var.encoding.get(key))
            if isinstance(name, str) and name in dataset.data_vars:
                names.add(name)
    return names


def compressible(var: xr.Variable) -> bool:
    """Whether :func:`encode` compresses ``var`` when ``variables`` is not given: floats of one
    or more dimensions, stored as floats (a variable packed into integers is kept exact)."""
    dtype = np.dtype(var.encoding.get("dtype", var.dtype))
    if "scale_factor" in var.encoding or "add_offset" in var.encoding:
        dtype = np.dtype(var.encoding.get("dtype", np.float64))
    return dtype.kind == "f" and var.dtype.kind == "f" and var.ndim >= 1 and var.size > 0


def _compress_variable(dataset, name, codec, params, chunks, verify, explicit):
    var = dataset[name].variable
    encoded = encode_cf_variable(var, name=name)
    if var.dtype.kind == encoded.dtype.kind == "f" and encoded.dtype.itemsize < \
            var.dtype.itemsize and not {"scale_factor", "add_offset"} & set(encoded.attrs):
        # xarray casts, unchecked: 1e39 would be Inf, 1e8 + 0.5 off a tolerance of 0.01
        # (packed values are measured for it: _stored_tolerance)
        raise ValueError(f"variable {name!r}: its values are {var.dtype}, its encoding stores "
                         f"{encoded.dtype}; give them as {encoded.dtype} (astype), or drop "
                         "'dtype' from its encoding")
    if encoded.dtype.kind != "f" or encoded.ndim == 0 or encoded.size == 0:
        if explicit:  # named in variables, or given a setting (which would do nothing)
            where = explicit if isinstance(explicit, str) else "variables"
            raise ValueError(f"variable {name!r} is stored as {encoded.dtype} "
                             f"{encoded.shape}; only float variables of one or more "
                             "dimensions are compressed, the others are kept exact: drop it "
                             f"from {where}")
        return None
    data = _dataset.missing_as_nan(encoded.data, encoded.attrs)
    scale = abs(float(encoded.attrs.get("scale_factor", 1.0))) or 1.0
    given = {k: v for k, v in params.items() if v is not None}
    stored_params = dict(given)
    if "rel_tolerance" in given and ("scale_factor" in encoded.attrs
                                     or "add_offset" in encoded.attrs):
        raise ValueError(f"variable {name!r} is packed (scale_factor/add_offset): a "
                         "rel_tolerance on its stored values would not bound its decoded "
                         "ones; give tolerance, or drop the packing from its encoding")
    if "tolerance" in stored_params and ("scale_factor" in encoded.attrs
                                         or "add_offset" in encoded.attrs):
        stored_params["tolerance"] = _stored_tolerance(name, var, encoded.attrs,
                                                       float(stored_params["tolerance"]), scale)
    try:
        compressed = _writer.compress_for_zarr(data, codec, _variable_chunks(chunks, var.dims),
                                               verify, stored_params)
    except (ValueError, TypeError) as exc:
        axes = f" (axes {', '.join(f'{i}: {d}' for i, d in enumerate(var.dims))})" \
            if isinstance(chunks, dict) else ""
        raise type(exc)(f"variable {name!r}{axes}: {exc}") from exc
    return _Entry(compressed, var.dims, dict(encoded.attrs), given, scale)


def _stored_tolerance(name, var, attrs, tolerance, scale) -> float:
    """The tolerance in stored units of a packed float variable. Reading it computes stored *
    scale + offset in the variable's dtype, rounding twice: up to a spacing of its largest
    value each time, which the codec must leave (measured in one pass over the data)."""
    offset = abs(float(attrs.get("add_offset", 0.0)))
    largest = float(np.abs(var).max(skipna=True).values)
    largest = largest if np.isfinite(largest) else 0.0  # nothing but missing cells
    rounding = 2 * float(np.spacing(var.dtype.type(largest + offset)))
    if tolerance <= rounding:
        raise ValueError(f"variable {name!r}: tolerance {tolerance:g} is within what "
                         f"{var.dtype} rounds its values to ({rounding:g} near {largest:g}); "
                         f"give a tolerance above {rounding:g}")
    return (tolerance - rounding) / scale
