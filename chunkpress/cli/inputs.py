"""Opening what the user gives: netCDF files and Zarr stores, one or several, local or remote,
lazily, with dask.

Several inputs (``a.nc b.nc``, or a glob ``'sst_*.nc'`` that the shell did not expand) are
opened one by one and put together along their record dimension: by the values of its
coordinate (``xr.combine_by_coords``), or, when it has none, in the order given along the
netCDF file's unlimited dimension. Other coordinates must agree exactly. A variable without
the record dimension is kept once where the inputs agree on it (a land mask, a grid); where
they differ (a field per file), it is put together along the record dimension like the others,
and a note says so: no input's values are dropped.

Times whose units xarray cannot decode (``hours since 0000-01-01 00:00:00`` in the COADS
climatology: there is no year 0) are kept as numbers with their units, as with
``--no-decode-times``, and a note says so: the stored values are the file's, unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import sys
import warnings

import numpy as np

from ._common import UserError

NETCDF_ENCODINGS = ("dtype", "_FillValue", "missing_value", "scale_factor", "add_offset",
                     "units", "calendar")


def is_remote(path) -> bool:
    return "://" in str(path)


def is_zarr(path) -> bool:
    text = str(path).rstrip("/")
    return text.endswith((".zarr", ".zarr.zip")) or (not is_remote(path) and (
        os.path.isdir(path) or _zip_store(path)))


def _zip_store(path) -> bool:
    """A local .zip file holding a Zarr store (``zarr.json`` at its root)."""
    import zipfile

    if not str(path).endswith(".zip") or not os.path.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "zarr.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


# --- arguments -------------------------------------------------------------------------------


def storage_option(text):
    """``KEY=VALUE``: the value read as JSON where it parses (true, 8, {"region_name": "x"}),
    else as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"must be KEY=VALUE, e.g. anon=true or endpoint_url=https://host, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def add_arguments(sub) -> None:
    """--no-decode-times, --engine, --storage-option."""
    sub.add_argument("--no-decode-times", dest="decode_times", action="store_false",
                     help="keep times as the numbers stored, with their units (what is done, "
                          "with a note, when xarray cannot decode them)")
    sub.add_argument("--engine", metavar="NAME",
                     help="the xarray backend that reads the input (netcdf4, h5netcdf, scipy, "
                          "zarr; default: chosen by xarray)")
    sub.add_argument("--storage-option", dest="storage_options", action="append",
                     type=storage_option, metavar="KEY=VALUE", default=[],
                     help="for s3://... (and other fsspec) inputs and outputs, repeatable: "
                          "key=..., secret=..., endpoint_url=..., anon=true, "
                          "client_kwargs='{\"region_name\": \"eu-west-1\"}'; a value is JSON "
                          "where it parses, else text (quote a text that looks like a number: "
                          "key='\"1234\"')")


def storage_options(args) -> dict:
    return dict(getattr(args, "storage_options", None) or [])


# --- finding and checking --------------------------------------------------------------------


def expand(patterns, storage_options=None) -> list:
    """The inputs, each glob (``'sst_*.nc'``) replaced by the paths it matches, in order."""
    paths = []
    for pattern in patterns:
        text = str(pattern)
        if not glob.has_magic(text) or (not is_remote(text) and os.path.exists(text)):
            paths.append(text)
            continue
        if is_remote(text):
            import fsspec

            with remote_errors([text], storage_options):
                _, _, found = fsspec.get_fs_token_paths(text, storage_options=storage_options)
            protocol = text.split("://", 1)[0]
            found = [f"{protocol}://{p}" for p in found]
        else:
            found = glob.glob(text)
        if not found:
            raise UserError(f"no file matches {text!r}; check the pattern (quote it so that the "
                            "shell leaves it to chunkpress)")
        paths += sorted(found)
    seen = {}
    for path in paths:
        key = path if is_remote(path) else os.path.realpath(path)
        if key in seen:
            same = "" if seen[key] == path else f" (as {seen[key]})"
            raise UserError(f"{path} is given twice{same}; give each input once")
        seen[key] = path
    return paths


def check_input(path, storage_options=None):
    if is_remote(path):
        if storage_options is None:
            return
        import fsspec

        with remote_errors([path], storage_options):
            fs, _, (where,) = fsspec.get_fs_token_paths(str(path),
                                                        storage_options=storage_options)
            if not fs.exists(where):
                raise UserError(f"{path}: no such object or store; give a netCDF file or "
                                "Zarr store that exists")
        return
    if not os.path.exists(path):
        from ..storage.publish import check_complete

        check_complete(path)  # a crash mid-swap is repaired; a write that stopped says so
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or directory; give a netCDF file or Zarr store "
                        "that exists")


def check_remote_output(path, overwrite, storage_options=None):
    """Refuse, before any work, an s3://... OUT that exists (without --overwrite)."""
    if not is_remote(path) or overwrite:
        return
    import fsspec

    with remote_errors([path], storage_options):
        fs, _, (where,) = fsspec.get_fs_token_paths(str(path), storage_options=storage_options)
        if fs.exists(where):
            raise UserError(f"{path} exists; choose another name or pass --overwrite")


# --- opening ---------------------------------------------------------------------------------


class _TimeUnits(Exception):
    """xarray cannot decode the times of an input (raised inside this module only)."""


def open(path, xr, *, decode_times=True, engine=None, storage_options=None):
    """Open anything xarray opens (netCDF, Zarr), lazily, as dask arrays."""
    try:
        return _open_one(path, xr, decode_times, engine, storage_options)
    except _TimeUnits as exc:
        raise UserError(f"{path}: {exc}; pass --no-decode-times to keep the times as "
                        "numbers with their units") from None


def _check_store(path, storage_options) -> None:
    """A Zarr input is checked whole first (chunkpress's verify: checksums, places, chunks
    missing; no decoding): xarray reads a missing chunk as fill and a moved one at its new
    place, which the new store would then hold as data, and verify clean."""
    import zarr

    from ..storage.publish import IncompleteStoreError
    from ..storage.reader import read_store
    from ..storage.verify import verify

    try:
        opened = read_store(str(path), storage_options or None)
        try:
            if zarr.open_group(opened, mode="r").metadata.zarr_format != 3:
                return  # a Zarr v2 store (written by others): chunkpress never wrote it
        finally:
            if not isinstance(opened, str):  # a zip file or an object store's client
                opened.close()
        problems = verify(path, storage_options=storage_options or None)
    except (FileNotFoundError, IncompleteStoreError, zarr.errors.NodeNotFoundError,
            zarr.errors.ContainsArrayError):
        return  # said as xarray opens it (a write that stopped halfway: check_complete)
    if len(problems):
        first = problems.iloc[0]
        raise UserError(f"{path}: {len(problems)} damaged or missing chunk(s), the first "
                        f"{first['array']} chunk {first['chunk']}: {first['problem']}; nothing "
                        f"written (`chunkpress verify {path}` lists them). Restore the store "
                        "from a copy first")


def _open_one(path, xr, decode_times, engine, storage_options):
    zarr = engine == "zarr" or (engine is None and is_zarr(path))
    if not zarr and engine is None and is_remote(path):
        zarr = _remote_directory(path, storage_options)  # a store by another name (.zip)
    options = {"decode_times": decode_times}
    try:
        with remote_errors([path], storage_options):
            if zarr:
                _check_store(path, storage_options)
                if not is_remote(path) and str(path).endswith(".zip"):
                    from ..storage.reader import read_store

                    path = read_store(path)  # a read-only zip store
                with warnings.catch_warnings():  # a store without consolidated metadata
                    warnings.filterwarnings("ignore", "Failed to open Zarr store with "
                                            "consolidated metadata", RuntimeWarning)
                    dataset = xr.open_zarr(path, storage_options=storage_options or None,
                                           **options)
                return _without_codecs(dataset)
            if is_remote(path):
                import fsspec

                # the file object stays open as long as the dataset reads from it
                handle = fsspec.open(str(path), "rb", **(storage_options or {})).open()
                return xr.open_dataset(handle, chunks={}, engine=engine, **options)
            with warnings.catch_warnings():  # said once, by _one_fill_value
                warnings.filterwarnings("ignore", ".* has multiple fill values")
                return xr.open_dataset(path, chunks={}, engine=engine, **options)
    except (OSError, ValueError, TypeError) as exc:
        if isinstance(exc, TypeError) and engine is None:
            raise  # a bug, not the input
        if isinstance(exc, FileNotFoundError):
            if zarr and not is_remote(path):
                from ..storage.publish import check_complete

                check_complete(path, None, None)  # a write that stopped halfway says so
                if os.path.exists(path):  # zarr finds no zarr.json (nor .zgroup) in it
                    raise UserError(_not_a_store(path, engine)) from exc
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if decode_times and "decode" in message and "time" in message:
            raise _TimeUnits(message.split(". Try opening", 1)[0]) from exc
        if engine is not None and "engine" in message:
            raise UserError(f"--engine {engine}: {message}") from exc
        if engine == "netcdf4" and is_remote(path) and not zarr:  # netCDF-C opens paths only
            raise UserError(f"{path}: --engine netcdf4 reads local files only; leave --engine "
                            "out, or give h5netcdf (netCDF-4) or scipy (netCDF 3) for a file "
                            "on an object store") from exc
        if engine is not None:  # e.g. scipy (netCDF 3 only) on a netCDF-4 file
            raise UserError(f"{path}: --engine {engine} cannot read it ({message}); leave "
                            "--engine out to let xarray choose, or name one that reads this "
                            "format (netcdf4 or h5netcdf for netCDF-4)") from exc
        raise UserError(f"{path}: xarray cannot open it ({message}); give a netCDF file "
                        "(with h5netcdf or netCDF4 installed) or a Zarr store") from exc


#: what a Zarr input's encoding says of its own codecs: not the user's choice for the output
ZARR_CODECS = ("compressors", "compressor", "filters", "serializer", "shards")


def _without_codecs(dataset):
    """The dataset with its variables' codecs forgotten: a Zarr v2 input's (numcodecs' Blosc)
    cannot be written to Zarr v3, and a v3 input's (zstd without a CRC) would stand in for the
    CRC-checked codecs chunkpress gives a variable it keeps exact."""
    for var in dataset.variables.values():
        for key in ZARR_CODECS:
            var.encoding.pop(key, None)
    return dataset


def _remote_directory(path, storage_options) -> bool:
    """Whether a URL names a prefix (a Zarr store), not an object (a netCDF file)."""
    import fsspec

    with remote_errors([path], storage_options):
        fs, _, (where,) = fsspec.get_fs_token_paths(str(path),
                                                    storage_options=storage_options)
        return fs.isdir(where)


def _not_a_store(path, engine) -> str:
    if engine == "zarr" and not os.path.isdir(path):
        return (f"{path}: --engine zarr cannot read it (not a Zarr store); leave --engine out "
                "to let xarray choose")
    return (f"{path}: a directory that is not a Zarr store (no zarr.json in it); give a Zarr "
            f"store, or the netCDF files in it (a quoted glob such as "
            f"'{os.path.join(str(path), '*.nc')}')")


def open_inputs(paths, *, decode_times=True, engine=None, storage_options=None, note=None):
    """Open one input, or several put together along their record dimension."""
    import xarray as xr

    note = note or (lambda text: print(f"chunkpress: note: {text}", file=sys.stderr))
    try:
        datasets = [_open_one(p, xr, decode_times, engine, storage_options) for p in paths]
    except _TimeUnits as exc:
        note(f"{exc}; times are kept as the numbers stored, with their units (as with "
             "--no-decode-times; open the result with decode_times=False)")
        decode_times = False
        datasets = [_open_one(p, xr, False, engine, storage_options) for p in paths]
    _one_fill_value(datasets, note)
    if len(datasets) == 1:
        return datasets[0]
    return _combine(xr, list(paths), datasets, decode_times, note)


def _one_fill_value(datasets, note) -> None:
    """A variable with a ``missing_value`` other than its ``_FillValue`` (CF allows both; xarray
    reads both as missing) keeps its ``_FillValue`` only: xarray writes no variable with both.
    Its values are unchanged; what was missing stays missing."""
    import numpy as np

    said = set()
    for dataset in datasets:
        for name, var in dataset.variables.items():
            fill, missing = var.encoding.get("_FillValue"), var.encoding.get("missing_value")
            if fill is None or missing is None:
                continue
            values = np.asarray(missing, dtype="float64").ravel()
            if np.all((values == float(fill)) | (np.isnan(values) & np.isnan(float(fill)))):
                continue
            del var.encoding["missing_value"]
            if name not in said:
                said.add(name)
                shown = " ".join(f"{v:g}" for v in values)
                note(f"{name}: its missing_value {shown} differs from its _FillValue "
                     f"{float(fill):g}; both are read as missing and stored as _FillValue")


def _record_dim(datasets):
    """The netCDF unlimited dimension of the first input, else a 'time' one, else None."""
    first = datasets[0]
    unlimited = sorted(first.encoding.get("unlimited_dims") or ())
    if unlimited:
        return unlimited[0]
    return next((d for d in first.dims if str(d).lower() in ("time", "t")), None)


def _combine(xr, paths, datasets, decode_times, note=None):
    record = _record_dim(datasets)
    if not decode_times and record is not None:
        differ = _units_differ(paths, datasets, record)
        if differ:
            raise UserError(f"the inputs' {record} units differ ({differ}), so their times as "
                            "numbers cannot be put together; convert the files to one unit "
                            "first")
    # "different": a variable without the record dimension is compared across the inputs
    # (its values read once) and kept once where they agree, put together where they differ;
    # "override" would keep the first input's and drop the others' without a word
    options = dict(data_vars="different", coords="different", compat="equals", join="exact",
                   combine_attrs="override")
    empty = next((p for p, d in zip(paths, datasets) if d.sizes.get(record, 1) == 0), None)
    if empty is not None:
        raise UserError(f"{empty} holds no {record} records (an empty file); leave it out of "
                        "the inputs")
    for name in datasets[0].variables:
        differ = _units_differ(paths, datasets, name)
        if differ:
            raise UserError(f"{name}: its units differ between the inputs ({differ}); one store "
                            "would say one of them for all its values: convert the files to "
                            "one unit first")
    overlap = _overlap(paths, datasets, record)
    if overlap:  # xarray would keep one input's values for the records both hold, silently
        raise UserError(f"{len(paths)} inputs ({paths[0]} ... {paths[-1]}) cannot be put "
                        f"together along {record}: {overlap}")
    try:
        if record is not None and all(record in d.coords for d in datasets):
            combined = xr.combine_by_coords(datasets, **options)
        elif record is None:
            raise ValueError("they have no record dimension (no unlimited dimension, no "
                             "'time') to put them together along")
        else:
            combined = xr.combine_nested(datasets, concat_dim=record, **options)
    except ValueError as exc:
        message = str(exc).splitlines()[0]
        differ = _differing(paths, datasets, record)
        if differ:
            message = differ
        raise UserError(f"{len(paths)} inputs ({paths[0]} ... {paths[-1]}) cannot be put "
                        f"together along {record or 'a record dimension'}: {message}") from exc
    grown = [str(n) for n, v in combined.variables.items()
             if record in v.dims and n in datasets[0].variables
             and record not in datasets[0][n].dims]
    if grown and note is not None:
        note(f"{', '.join(grown)} differ between the inputs and have no {record} dimension: "
             f"each is stored along {record}, one value per record of its input")
    unpacked = _unpack_differing(combined, datasets)
    if unpacked and note is not None:
        note(f"{', '.join(unpacked)}: packed differently in each input (scale_factor, "
             "add_offset or dtype, as ERA5's files are): stored as floats, compressed to the "
             "bound given like the others")
    return combined


#: how a netCDF variable is packed: the first input's would stand for every input's
PACKING = ("dtype", "scale_factor", "add_offset", "_FillValue", "missing_value")


def _unpack_differing(combined, datasets) -> list:
    """The variables whose packing differs between the inputs, their packing forgotten: put
    together, a variable keeps the first input's encoding, and the values of an input packed
    for another range (ERA5 packs each file for its own) would be packed again with it and
    wrap around in int16, read back tens of kelvin off with no error said."""
    unpacked = []
    for name, var in combined.variables.items():
        encodings = [d[name].encoding for d in datasets if name in d.variables]
        packed = any("scale_factor" in e or "add_offset" in e
                     or np.dtype(e.get("dtype", "f8")).kind in "iu" for e in encodings)
        keys = PACKING if packed else ("dtype",)  # a float's fill: NaN, whichever it was
        packings = {tuple(repr(np.asarray(e.get(k)).tolist()) for k in keys) for e in encodings}
        if len(packings) < 2 or var.dtype.kind != "f":
            continue
        for key in PACKING:
            var.encoding.pop(key, None)
        unpacked.append(str(name))
    return unpacked


def _units_differ(paths, datasets, name) -> str | None:
    """``a.nc: 'K', b.nc: 'degC'``: the first input whose ``name`` has other units than the
    first's, or None."""
    units = [(p, d[name].attrs.get("units")) for p, d in zip(paths, datasets)
             if name in d.variables]
    other = next(((p, u) for p, u in units if u != units[0][1]), None)
    if other is None:
        return None
    return f"{units[0][0]}: {units[0][1]!r}, {other[0]}: {other[1]!r}"


def _overlap(paths, datasets, record) -> str | None:
    """Two inputs on the same grid that hold the same record (a month downloaded twice, a file
    and a longer one holding it), said in words; None if each record is in one input only.
    Inputs on other grids (tiles of a map) may hold the same records: xarray puts them side
    by side."""
    if record is None or not all(record in d.coords for d in datasets):
        return None
    seen = {}
    for path, dataset in zip(paths, datasets):
        grid = tuple((str(n), str(i.dtype), tuple(np.asarray(i).ravel().tolist()))
                     for n, i in sorted(dataset.indexes.items(), key=lambda x: str(x[0]))
                     if n != record)
        for value in dataset[record].values.tolist():
            if seen.get((grid, value), path) != path:
                return (f"{seen[grid, value]} and {path} both hold {record} {value}; each "
                        "record must be in one input only")
            seen[grid, value] = path
    return None


def _differing(paths, datasets, record) -> str | None:
    """Which coordinate off the record dimension two inputs disagree on, said in words (what
    xarray's own message names is where it gave up, often the record dimension)."""
    first = datasets[0]
    for path, other in zip(paths[1:], datasets[1:]):
        for a, b, x, y in ((paths[0], path, first, other), (path, paths[0], other, first)):
            only = [str(n) for n in x.data_vars if n not in y.data_vars]
            if only:
                return (f"{only[0]} is in {a} but not in {b}; the inputs must hold the same "
                        "variables")
    for name, coord in first.coords.items():
        if record in coord.dims:
            continue
        for path, other in zip(paths[1:], datasets[1:]):
            if name not in other.coords:
                return f"{path} has no coordinate {name!r} ({paths[0]} has)"
            if not coord.variable.equals(other[name].variable):
                return (f"their coordinate {name!r} differs ({paths[0]} and {path}); the "
                        f"inputs must share every coordinate but {record}")
    return None


# --- remote stores ---------------------------------------------------------------------------


def _remote_exceptions() -> tuple:
    kinds = [PermissionError, FileNotFoundError, ConnectionError, TimeoutError]
    try:
        from botocore import exceptions as boto
    except ImportError:  # pragma: no cover - s3fs brings botocore
        return tuple(kinds)
    return tuple(kinds) + (boto.NoCredentialsError, boto.PartialCredentialsError,
                           boto.EndpointConnectionError, boto.ConnectTimeoutError)


@contextlib.contextmanager
def remote_errors(paths, options=None):
    """Turn what an object store answers (no credentials, no endpoint, no access, no bucket)
    into one line that says what to give; and a --storage-option (of ``options``) that its
    file system does not take."""
    remote = [str(p) for p in paths if is_remote(p)]
    if not remote:
        yield
        return
    where = remote[0].split("://", 1)[0] + "://" + remote[0].split("://", 1)[1].split("/", 1)[0]
    try:
        yield
    except UserError:
        raise
    except TypeError as exc:
        unknown = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
        if unknown is None or unknown.group(1) not in (options or {}):
            raise
        raise UserError(f"--storage-option {unknown.group(1)}=...: not an option the "
                        f"{where.split('://', 1)[0]}:// file system takes ({_line(exc)}); see "
                        "its documentation (s3fs: key, secret, token, anon, endpoint_url, "
                        "client_kwargs, config_kwargs, ...)") from exc
    except ImportError as exc:  # fsspec's: a protocol whose package is not installed
        raise UserError(f"{where}: {_line(exc)}") from exc
    except ValueError as exc:
        if not str(exc).startswith("Protocol not known"):
            raise
        raise UserError(f"{where}: {_line(exc)}; give a local path or a URL of a file system "
                        "fsspec knows (s3://, gs://, ...)") from exc
    except _remote_exceptions() as exc:
        name = type(exc).__name__
        text = _line(exc)
        if "Credentials" in name:
            raise UserError(f"{where}: no credentials ({text}); give --storage-option key=... "
                            "--storage-option secret=... (or set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY), or anon=true for a public bucket") from exc
        if isinstance(exc, PermissionError):
            raise UserError(f"{where}: access denied ({text}); check the credentials given "
                            "with --storage-option key=/secret= and their rights") from exc
        if isinstance(exc, FileNotFoundError):
            if exc.filename:
                raise
            raise UserError(f"{where}: {text}; check the bucket and path") from exc
        raise UserError(f"{where}: cannot reach the object store ({text}); check "
                        "--storage-option endpoint_url=... and the network") from exc


def _line(exc) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
