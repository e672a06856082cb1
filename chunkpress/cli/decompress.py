"""``chunkpress decompress STORE OUT.nc``: a Zarr store back into a compressed netCDF-4 file.

The store is read without decoding (``decode_cf=False``), chunkpress arrays as ``from_zarr``
reads them (a missing or moved chunk is an error, not fill): each variable goes into the netCDF
as the store holds it (dtype, ``_FillValue``, ``scale_factor``/``add_offset``, ``units``,
``calendar``), so the file reads back as the store does, with no second rounding of packed
values and times kept as their numbers and units. chunkpress's own attributes
(``chunkpress_*``) stay behind. Zarr keeps attributes as JSON, which loses the type of a
``scale_factor``/``add_offset``: chunkpress records it beside them (``reader.PACKING``), and
they are written with it, so a variable packed with float32 factors reads back as float32,
one with float64 factors as float64 (xarray's rule). A store without the record: where both
are exactly float32 values they are written as float32.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ._common import UserError, add_scheduler, check_output, scheduler
from .inputs import check_input, remote_errors, storage_option, storage_options
from .progress import run

HELP = "decompress a Zarr store into a compressed netCDF-4 file"

#: the netCDF-4 compressions --netcdf-compression offers; zstd needs netCDF-C's plugin
COMPRESSIONS = ("zlib", "zstd", "none")
DEFAULT_LEVEL = {"zlib": 4, "zstd": 3}


def add_arguments(sub) -> None:
    sub.add_argument("input", metavar="STORE", help="a Zarr store: a directory, a .zip file "
                     "or s3://...")
    sub.add_argument("output", metavar="OUT.nc")
    sub.add_argument("--netcdf-compression", choices=COMPRESSIONS, default="zlib",
                     help="how the netCDF-4 variables are compressed (default: zlib, with "
                          "shuffle; zstd where netCDF-C has its plugin; none: uncompressed)")
    sub.add_argument("--netcdf-level", type=int, metavar="N",
                     help="the compression level (zlib 1-9, default 4; zstd 1-22, default 3)")
    sub.add_argument("--storage-option", dest="storage_options", action="append",
                     type=storage_option, metavar="KEY=VALUE", default=[],
                     help="for an s3://... store, repeatable: key=..., secret=..., "
                          "endpoint_url=..., anon=true")
    sub.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_scheduler(sub)


def main(args) -> int:
    from ..storage.publish import replacing_file

    options = storage_options(args)
    level = _level(args.netcdf_compression, args.netcdf_level)
    encoding_of = _compression(args.netcdf_compression, level)
    check_input(args.input, options or None)
    if "://" in str(args.output):  # it was written to ./s3:/bucket/... and said "wrote s3://"
        raise UserError(f"{args.output}: decompress writes a local netCDF file; give a local "
                        "path, then copy the file where it goes (e.g. aws s3 cp)")
    check_output(args.output, args.overwrite, kind="file")
    with remote_errors([args.input]), scheduler(args):
        ds = netcdf_dataset(_open_store(args.input, options))
        # a variable without a _FillValue gets none (xarray would give floats NaN)
        encoding = {name: {**encoding_of(var),
                           **({} if "_FillValue" in var.attrs else {"_FillValue": None})}
                    for name, var in ds.variables.items()}
        with replacing_file(args.output) as temporary:  # OUT is replaced once whole
            try:
                run(ds.to_netcdf(temporary, format="NETCDF4", engine="netcdf4",
                                 encoding=encoding, compute=False), "writing")
            except (ValueError, OSError, RuntimeError) as exc:
                raise _damaged(args.input, options, exc) or _not_written(args.output, exc) \
                    or exc
    size = os.path.getsize(args.output)
    how = {"zlib": f"zlib level {level} + shuffle", "zstd": f"zstd level {level}",
           "none": "uncompressed"}[args.netcdf_compression]
    print(f"wrote {args.output} ({size / 2**20:.1f} MiB, netCDF-4, {how})")
    return 0


def _open_store(path, options):
    """The store's variables as it holds them (not decoded), lazily."""
    import xarray as xr

    store = path
    if "://" not in str(path) and str(path).endswith(".zip"):
        from ..storage.reader import read_store

        store = read_store(path)
    try:
        return _checked(xr.open_zarr(store, decode_cf=False, storage_options=options or None),
                        store, options, path)
    except (OSError, ValueError, KeyError) as exc:
        local = "://" not in str(path)
        if isinstance(exc, PermissionError) or (isinstance(exc, FileNotFoundError) and not (
                local and os.path.exists(path))):
            raise
        from ..storage.publish import check_complete

        if local and os.path.isdir(path):
            check_complete(path, None, None)  # a write that stopped halfway says so
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: not a Zarr store zarr can open ({message}); give the "
                        "store chunkpress compress wrote") from exc


def _checked(ds, store, options, path):
    """``ds`` with each chunkpress array read by ``from_zarr``, which checks every chunk's
    place and finds a missing one an error (zarr's reader gives fill there)."""
    import dask.array as da
    import xarray as xr

    from ..kernels import ChunkpressError
    from ..storage.reader import chunk_key, from_zarr, layout, missing_chunks, open_array, packing

    arrays = {}  # each array opened once: (zarr array, how chunkpress reads it)
    gone = []  # the exact arrays' chunks missing (text too, which from_zarr does not read)
    for name in ds.variables:
        array = open_array(store, name, options or None)
        arrays[name] = array, layout(array)
        gone += [f"{name} chunk {tuple(int(i) for i in index)}: missing (object "
                 f"{chunk_key(array, arrays[name][1], index)!r})"
                 for index in missing_chunks(*arrays[name])]
    if gone:
        raise UserError(f"{path}: {'; '.join(gone[:3])}{'; ...' if len(gone) > 3 else ''} "
                        f"({len(gone)} chunk(s) in all): chunkpress wrote every chunk of these "
                        "arrays, so the store is damaged; nothing written (`chunkpress verify` "
                        "lists them). Restore the store from a copy, or recompress from the "
                        "original")
    for name, var in ds.variables.items():
        array, read = arrays[name]
        for key, dtype in packing(array.metadata).items():  # the factors' types, recorded
            if key in var.attrs:
                var.attrs[key] = dtype.type(var.attrs[key])
        # a chunkpress array, or an exact one chunkpress wrote every chunk of: none missing
        if not (read.ours or (read.written is not None and array.dtype.kind in "biufc")):
            continue
        data = from_zarr(array)  # its dtype as zarr's ('<f4'), the netCDF's native: one
        if isinstance(var, xr.IndexVariable):  # read already (by zarr): its chunks checked
            try:
                data.compute()
            except ChunkpressError as exc:
                raise UserError(f"{path}: {name}: {exc}; nothing written. Restore the store "
                                "from a copy, or recompress from the original") from None
            continue
        native = np.empty((0,) * data.ndim, data.dtype.newbyteorder("="))  # warning less
        var.data = da.Array(data.dask, data.name, data.chunks, meta=native)
    return ds


def netcdf_dataset(ds):
    """``ds`` (not decoded) as the netCDF will hold it: attributes typed, bookkeeping gone."""
    from ..storage.dataset import codec_missing

    ds = ds.copy()
    ds.attrs = _public(ds.attrs)
    for name, var in ds.variables.items():
        attrs = _public(var.attrs)
        fill = attrs.get("_FillValue")
        if fill is not None and var.dtype.kind in "iuf":
            attrs["_FillValue"] = np.asarray(fill, var.dtype)[()]  # netCDF: the variable's type
        missing = codec_missing(attrs) if var.dtype.kind == "f" else None
        if missing is not None:
            # the codecs keep missing cells as NaN; the file holds its fill value (or, with
            # none, its missing_value) there, as the original did
            var.data = var.fillna(np.asarray(missing, var.dtype)).data
        if var.dtype.kind in "iuf":  # JSON kept their values, not their type: the variable's
            for key in _TYPED_LIKE_DATA:
                if key in attrs and isinstance(attrs[key], (int, float, list)):
                    try:
                        attrs[key] = np.asarray(attrs[key], var.dtype)[()] if not isinstance(
                            attrs[key], list) else np.asarray(attrs[key], var.dtype)
                    except (TypeError, ValueError, OverflowError):
                        pass
        factors = [k for k in ("scale_factor", "add_offset") if k in attrs]
        # a store that records no type (written before chunkpress recorded them): float32
        # where both are exactly float32 values
        if factors and all(type(attrs[k]) is float and _is_float32(attrs[k])
                           for k in factors):
            for key in factors:
                attrs[key] = np.float32(attrs[key])
        var.attrs = attrs
        var.encoding = {}
    return ds


#: CF attributes in the (stored) type of their variable
_TYPED_LIKE_DATA = ("missing_value", "valid_min", "valid_max", "valid_range", "flag_values",
                    "flag_masks")


def _public(attrs) -> dict:
    return {k: v for k, v in attrs.items() if not str(k).startswith("chunkpress_")}


def _is_float32(value) -> bool:
    try:
        return float(np.float32(value)) == float(value)
    except (TypeError, ValueError):
        return False


def _level(kind, level):
    """The compression level: given (checked) or the default of ``kind``."""
    if level is None:
        return DEFAULT_LEVEL.get(kind)
    if kind == "none":
        raise UserError("--netcdf-level goes with --netcdf-compression zlib or zstd")
    low, high = (1, 9) if kind == "zlib" else (1, 22)
    if not low <= level <= high:
        raise UserError(f"--netcdf-level for {kind} must be {low} to {high}, got {level}")
    return level


def _compression(kind, level):
    """The netCDF4 encoding of a variable for ``--netcdf-compression``."""
    if kind == "zstd":
        _check_zstd()

    def encoding(var):
        if kind == "none" or var.ndim == 0 or var.size == 0 or var.dtype.kind not in "iuf":
            return {}
        # netCDF chunks as the store's: each block written once, whole (netCDF-C's own
        # choice cut across them, and HDF5 decompressed and recompressed chunks it shared)
        shape = tuple(c[0] for c in var.chunks) if var.chunks else None
        fits = shape and math.prod(shape) * var.dtype.itemsize < 2**31  # HDF5: < 4 GiB
        chunks = {"chunksizes": shape} if fits else {}
        if kind == "zlib":
            return {"zlib": True, "complevel": level, "shuffle": True, **chunks}
        # netCDF4-python applies shuffle with zlib only (nc_def_var_deflate)
        return {"compression": "zstd", "complevel": level, **chunks}

    return encoding


def _check_zstd() -> None:
    try:
        import netCDF4
    except ImportError:
        raise UserError("--netcdf-compression zstd needs the netCDF4 package; use zlib") \
            from None
    if not getattr(netCDF4, "__has_zstandard_support__", False):
        raise UserError("--netcdf-compression zstd: this netCDF4 (netCDF-C "
                        f"{netCDF4.__netcdf4libversion__}) has no zstd plugin; use zlib")


def _not_written(output, exc):
    """netCDF-C's failure to write (a full disk says "NetCDF: HDF error", no errno) as one line
    with the free space where OUT goes; None for other errors (bugs stay bugs)."""
    if not (isinstance(exc, RuntimeError) and str(exc).startswith("NetCDF:")):
        return None
    directory = os.path.dirname(os.path.abspath(output))
    free = os.statvfs(directory)
    free = free.f_bavail * free.f_frsize
    return UserError(f"{output}: the netCDF library could not write it ({str(exc).strip()}) "
                     f"with {free / 2**20:.1f} MiB left free in {directory}: if the disk is "
                     f"full, free space or choose another place; {output} is as it was")


def _damaged(path, options, exc):
    """A read that failed on damaged bytes, as one line naming the variable and chunk (found
    by verify, which reads every chunk once); None when verify finds nothing."""
    from ..storage.verify import verify

    try:
        problems = verify(path, storage_options=options or None)
    except Exception:  # noqa: BLE001 - the store cannot be checked: the read's error stands
        return None
    if not len(problems):
        return None
    first = problems.iloc[0]
    where = f"{first['array']} chunk {tuple(first['chunk'])}" if first["chunk"] is not None \
        else first["array"]
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return UserError(f"{path}: {where}: {first['problem']}{more}; nothing written. Run "
                     f"`chunkpress verify {path}` to list them, and recompress from the "
                     "original or restore the store from a copy")
