"""xarray: ``ds.chunkpress.encode(...)`` / ``da.chunkpress.encode(...)`` and CompressedDataset.

Float data variables are compressed as they would be stored: xarray's CF encoding is applied
first (packing, ``_FillValue``, units), so that the store read back with plain
``xr.open_zarr`` has the original's attributes and encodings. Cells equal to a finite
``_FillValue`` are given to the codec as NaN, which its mask keeps exactly: missing values stay
missing whatever the tolerance. A tolerance is in the variable's own (decoded) units.
Integer variables, times and coordinates are kept exact: written by xarray as they are.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from xarray.conventions import decode_cf_variable, encode_cf_variable
from zarr.codecs import Crc32cCodec
from zarr.errors import ContainsArrayError, ContainsGroupError

from . import api, auto as _auto, store as _store
from .graph import _codecs
from .zarr import zarr_codec

__all__ = ["encode", "CompressedDataset", "ChunkpressAccessor"]

_PARAMS = ("tolerance", "rate", "precision", "mode", "quality", "level")
_DATAARRAY_NAME = "__xarray_dataarray_variable__"
#: the encodings that decide what is stored; the rest (netCDF chunking, filters) is dropped
_CF_ENCODINGS = ("dtype", "_FillValue", "missing_value", "scale_factor", "add_offset", "units",
                 "calendar")


def encode(obj, codec="zfp", *, tolerance=None, rate=None, precision=None, mode=None,
           quality=None, level=None, variables=None, chunks="auto",
           verify=False) -> CompressedDataset:
    """Return the lazy CompressedDataset of an xarray Dataset or DataArray.

    ``codec`` and each parameter are one value for every variable or a dict from variable name
    to value (``tolerance={"t": 0.01, "u": 0.1}``): a float variable missing from a dict given
    is kept exact. ``variables`` lists the variables to compress (default: every float data
    variable). Nothing is compressed until the result is computed, written or reported.
    """
    dataset, name = _as_dataset(obj)
    given = dict(zip(_PARAMS, (tolerance, rate, precision, mode, quality, level)))
    per_var = {k: v for k, v in given.items() if isinstance(v, dict)}
    if isinstance(codec, dict):
        per_var["codec"] = codec
    for values in per_var.values():
        _check_names(dataset, values, "is given a parameter")
    if variables is not None:
        variables = [variables] if isinstance(variables, str) else list(variables)
        _check_names(dataset, variables, "is to be compressed")
    candidates = variables if variables is not None else [
        n for n in dataset.data_vars if _is_float(dataset[n].variable, n)]
    entries = {}
    for var in candidates:
        if per_var and not any(var in v for v in per_var.values()):
            continue  # a dict was given and this variable is not in it: kept exact
        var_codec = codec.get(var, "zfp") if isinstance(codec, dict) else codec
        params = {k: (v.get(var) if isinstance(v, dict) else v) for k, v in given.items()}
        entry = _compress_variable(dataset, var, var_codec, params, chunks, verify,
                                   explicit=variables is not None)
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

        Where codec="auto" chose, a column ``choice`` says what and the sampled ratios why.
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
            bound = _codecs.bound(c._codec, c.params)
            choice = getattr(c, "choice", None)
            rows.append({
                "variable": name, "codec": c.codec,
                "parameters": ", ".join(f"{k}={v}" for k, v in entry.params.items()),
                "dtype": str(var.dtype), "original_bytes": raw,
                "compressed_bytes": c.nbytes, "ratio": raw / c.nbytes if c.nbytes else math.inf,
                "max_error": math.nan if max_error is None else max_error * scale,
                "error_bound": math.nan if bound is None else bound * scale,
                "choice": "" if choice is None else choice.summary(),
            })
        columns = ["variable", "codec", "parameters", "dtype", "original_bytes",
                   "compressed_bytes", "ratio", "max_error", "error_bound"]
        if any(row.get("choice") for row in rows):  # codec="auto": what it chose, and why
            columns.append("choice")
        table = pd.DataFrame(rows, columns=columns).set_index("variable")
        return table.astype({"compressed_bytes": "Int64"})

    def to_zarr(self, store, *, overwrite=False, compute=True, storage_options=None):
        """Write it to a Zarr v3 store that plain ``xr.open_zarr`` reads back.

        xarray writes the metadata, coordinates and exact variables; the compressed blocks go
        straight into the store as chunk objects, each encoded once. ``compute=False`` returns
        a ``dask.delayed`` that does the writing. A write that stops halfway leaves a store no
        reader opens (the root's ``zarr.json`` is put in place last); ``overwrite=True``
        writes it again.
        """
        opened, close = _store._open_store(store, storage_options, overwrite)
        try:
            if not overwrite:
                _store.refuse_unfinished(opened, None, storage_options)
            writes = self._write(opened, overwrite)
            # until every chunk is written no reader finds the dataset (see store.to_zarr)
            root = zarr.open_group(opened, mode="r+", zarr_format=3).store_path
            hidden = _store.hide_metadata(root)
        except BaseException:
            close()
            raise
        done = dask.delayed(_finish, pure=False)(writes, root, hidden, close)
        return done if not compute else done.compute()

    def _write(self, store, overwrite):
        placeholders = self._source.copy()
        encoding = {}
        for name, entry in self._entries.items():
            c = entry.compressed
            chunk_shape = tuple(max(1, axis[0]) for axis in c.chunks)
            source = self._source[name].variable
            placeholder = xr.Variable(source.dims, da.zeros(source.shape, dtype=source.dtype,
                                                            chunks=chunk_shape),
                                      attrs=source.attrs, encoding=source.encoding)
            placeholders[name] = placeholder
            cf = {k: v for k, v in source.encoding.items() if k in _CF_ENCODINGS}
            encoding[name] = {**cf, "serializer": zarr_codec(c.codec, c.params),
                              "compressors": [Crc32cCodec()], "filters": None,
                              "chunks": chunk_shape}
        try:
            # metadata of everything, exact in-memory data; the delayed part is not run
            placeholders.to_zarr(store, mode="w" if overwrite else "w-", compute=False,
                                 zarr_format=3, encoding=encoding, consolidated=False)
        except (ContainsArrayError, ContainsGroupError, FileExistsError):
            raise FileExistsError(f"{store} already holds a zarr store; pass overwrite=True "
                                  "to replace it") from None
        group = zarr.open_group(store, mode="r+", zarr_format=3)
        for name, entry in self._entries.items():
            choice = getattr(entry.compressed, "choice", None)
            if choice is not None:  # what codec="auto" chose and why, for `chunkpress info`
                group[name].attrs[_auto.ATTRIBUTE] = _auto.attribute(choice)
        writes = []
        exact = [n for n, v in self._source.variables.items()
                 if n not in self._entries and dask.is_dask_collection(v.data)]
        if exact:
            lazy = xr.Dataset({n: self._source.variables[n] for n in exact})
            writes.append(lazy.to_zarr(store, mode="r+", compute=False, zarr_format=3,
                                       consolidated=False))
        for name, entry in self._entries.items():
            array = group[name]
            if array.dtype != entry.compressed.dtype:
                raise ValueError(f"{name}: xarray stores it as {array.dtype}, the compressed "
                                 f"blocks are {entry.compressed.dtype}; please report this")
            writes.append(_store.write_blocks(entry.compressed, array))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # consolidated metadata is not in the v3 spec yet
            zarr.consolidate_metadata(store, zarr_format=3)
        return writes

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
        """Return the CompressedDataset (see :func:`chunkpress.xarray.encode`)."""
        return encode(self._obj, codec, **kwargs)

    def to_zarr(self, store, codec="zfp", *, overwrite=False, compute=True, **kwargs):
        """Compress and write to a Zarr v3 store in one go."""
        return encode(self._obj, codec, **kwargs).to_zarr(store, overwrite=overwrite,
                                                           compute=compute)


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


def _is_float(var: xr.Variable, name) -> bool:
    dtype = np.dtype(var.encoding.get("dtype", var.dtype))
    if "scale_factor" in var.encoding or "add_offset" in var.encoding:
        dtype = np.dtype(var.encoding.get("dtype", np.float64))
    return dtype.kind == "f" and var.dtype.kind == "f" and var.ndim >= 1 and var.size > 0


def _compress_variable(dataset, name, codec, params, chunks, verify, explicit):
    var = dataset[name].variable
    encoded = encode_cf_variable(var, name=name)
    if encoded.dtype.kind != "f" or encoded.ndim == 0 or encoded.size == 0:
        if explicit:
            raise ValueError(f"variable {name!r} is stored as {encoded.dtype} "
                             f"{encoded.shape}; only float variables of one or more "
                             "dimensions are compressed, the others are kept exact")
        return None
    data = encoded.data
    fill = encoded.attrs.get("_FillValue")
    if fill is not None and np.isfinite(fill):
        data = np.where(data == np.asarray(fill, encoded.dtype), np.asarray(np.nan, encoded.dtype),
                        data)
    scale = abs(float(encoded.attrs.get("scale_factor", 1.0))) or 1.0
    given = {k: v for k, v in params.items() if v is not None}
    stored_params = dict(given)
    if "tolerance" in stored_params and scale != 1.0:
        stored_params["tolerance"] = float(stored_params["tolerance"]) / scale
    try:
        compressed = _store.compress_for_zarr(data, codec, chunks, verify, stored_params)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"variable {name!r}: {exc}") from exc
    return _Entry(compressed, var.dims, dict(encoded.attrs), given, scale)


def _finish(writes, root, hidden, close):
    _store.reveal_metadata(root, hidden)
    close()
