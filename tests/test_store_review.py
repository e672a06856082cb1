"""What a break-it review of the store layer found: missing cells marked by a missing_value,
deleted chunks of exact variables, verify against an original with times, a zip's temporary
file on a full disk. Real netCDF files and zarr stores on disk, the command as a user runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import chunkpress
from chunkpress.cli import EXIT_PROBLEMS, main
from chunkpress.storage.reader import MissingChunkError

from test_cli_outputs import in_mount_namespace, one_line

TOLERANCE = 0.01
MISSING = -999


def smooth(times=8, ny=20, nx=24):
    y, x = np.meshgrid(np.linspace(0, 3, ny), np.linspace(0, 3, nx), indexing="ij")
    return np.stack([np.sin(x + k) * np.cos(y) * 10 + 280 for k in range(times)])


def netcdf_with_missing_value(path, kind="float"):
    """A netCDF variable ``v`` whose missing cells ([:, :5, :5]) are marked by a
    ``missing_value`` of -999 and no ``_FillValue``: float32, int16 packed with
    scale_factor/add_offset, or plain int16."""
    with netCDF4.Dataset(path, "w") as nc:
        for dim, n in (("time", 8), ("y", 20), ("x", 24)):
            nc.createDimension(dim, n)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t[:] = np.arange(8)
        dtype = "f4" if kind == "float" else "i2"
        v = nc.createVariable("v", dtype, ("time", "y", "x"), fill_value=False)
        v.set_auto_maskandscale(False)
        v.missing_value = np.array(MISSING, dtype)
        field = smooth()
        if kind == "packed":
            v.scale_factor, v.add_offset = np.float32(0.01), np.float32(280.0)
            raw = np.round((field - 280) / 0.01).astype(dtype)
        else:
            raw = (np.round(field) if kind == "int" else field).astype(dtype)
        raw[:, :5, :5] = MISSING
        v[:] = raw
    return str(path)


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# --- 1. cells marked missing by a missing_value stay missing --------------------------------


@pytest.mark.parametrize("how", ["accessor", "command"])
def test_missing_value_cells_stay_missing_through_every_reader(tmp_path, capsys, how):
    original = netcdf_with_missing_value(tmp_path / "mv.nc")
    store = tmp_path / "mv.zarr"
    ds = xr.open_dataset(original)
    missing = ds.v.isnull().values
    assert missing.sum() == 8 * 25
    if how == "accessor":
        ds.chunkpress.to_zarr(str(store), codec="zfp", tolerance=TOLERANCE, verify=True)
    else:
        assert cli(capsys, "compress", original, store, "--tolerance", TOLERANCE)[0] == 0
    back = xr.open_zarr(store)
    assert np.array_equal(back.v.isnull().values, missing)  # the same cells, no more, no less
    assert float(np.abs(back.v - ds.v).max()) <= TOLERANCE
    raw = chunkpress.from_zarr(str(store), "v").compute()
    assert np.array_equal(np.isnan(raw), missing)
    # decompressed: the file marks them as the original did, -999 exactly, no _FillValue
    assert cli(capsys, "decompress", store, tmp_path / "out.nc")[0] == 0
    with netCDF4.Dataset(tmp_path / "out.nc") as nc:
        v = nc["v"]
        v.set_auto_maskandscale(False)
        assert "_FillValue" not in v.ncattrs() and v.getncattr("missing_value") == MISSING
        values = v[:]
    assert np.array_equal(values == MISSING, missing)
    assert np.array_equal(xr.open_dataset(tmp_path / "out.nc").v.isnull().values, missing)
    code, out, _ = cli(capsys, "verify", store, "--against", original)
    assert code == 0, out


def test_missing_value_cells_stay_missing_in_appends(tmp_path):
    """chunkpress's append and xarray's own (which writes -999 where NaN is) alike."""
    ds = xr.open_dataset(netcdf_with_missing_value(tmp_path / "mv.nc"))
    store = str(tmp_path / "mv.zarr")
    ds.isel(time=slice(0, 4)).chunkpress.to_zarr(store, tolerance=TOLERANCE,
                                                 chunks={"time": 4})
    ds.isel(time=slice(4, 8)).chunkpress.to_zarr(store, append_dim="time")
    back = xr.open_zarr(store)
    assert np.array_equal(back.v.isnull().values, ds.v.isnull().values)
    plain = tmp_path / "plain.zarr"
    ds.isel(time=slice(0, 4)).chunkpress.to_zarr(str(plain), tolerance=TOLERANCE,
                                                 chunks={"time": 4})
    ds.isel(time=slice(4, 8)).to_zarr(plain, append_dim="time")  # -999 where NaN is
    back = xr.open_zarr(plain)
    assert np.array_equal(back.v.isnull().values, ds.v.isnull().values)
    assert float(np.abs(back.v - ds.v).max()) <= TOLERANCE


def test_a_missing_value_given_as_an_attribute(tmp_path, capsys):
    """Opened with mask_and_scale=False, the missing_value is an attribute and the cells hold
    -999: they are missing too, and the netCDF written back has no _FillValue NaN beside it
    (xarray would refuse to write that file again)."""
    original = netcdf_with_missing_value(tmp_path / "mv.nc")
    store = tmp_path / "mv.zarr"
    xr.open_dataset(original, mask_and_scale=False).chunkpress.to_zarr(str(store),
                                                                       tolerance=TOLERANCE)
    missing = xr.open_dataset(original).v.isnull().values
    assert np.array_equal(xr.open_zarr(store).v.isnull().values, missing)
    assert cli(capsys, "decompress", store, tmp_path / "out.nc")[0] == 0
    back = xr.open_dataset(tmp_path / "out.nc")
    assert np.array_equal(back.v.isnull().values, missing)
    back.to_netcdf(tmp_path / "again.nc")
    assert np.array_equal(xr.open_dataset(tmp_path / "again.nc").v.isnull().values, missing)


def test_missing_value_cells_stay_missing_in_a_portable_store(tmp_path, capsys):
    """portable=True: zarr's and numcodecs' codecs, NaN as the fill value; the missing_value
    beside it was refused by xarray ("conflicting _FillValue (nan) and missing_value")."""
    original = netcdf_with_missing_value(tmp_path / "mv.nc")
    store = tmp_path / "mv.zarr"
    assert cli(capsys, "compress", original, store, "--portable", "--tolerance", TOLERANCE)[0] \
        == 0
    ds, back = xr.open_dataset(original), xr.open_zarr(store)
    assert np.array_equal(back.v.isnull().values, ds.v.isnull().values)
    assert float(np.abs(back.v - ds.v).max()) <= TOLERANCE


@pytest.mark.parametrize("kind", ["packed", "int"])
def test_integers_with_a_missing_value_are_kept_exact(tmp_path, capsys, kind):
    original = netcdf_with_missing_value(tmp_path / "mv.nc", kind)
    store = tmp_path / "mv.zarr"
    assert cli(capsys, "compress", original, store, "--tolerance", TOLERANCE)[0] == 0
    ds, back = xr.open_dataset(original), xr.open_zarr(store)
    assert np.array_equal(back.v.isnull().values, ds.v.isnull().values)
    raw = xr.open_zarr(store, mask_and_scale=False).v.values
    assert raw.dtype == np.int16
    assert np.array_equal(raw, xr.open_dataset(original, mask_and_scale=False).v.values)


# --- 2. a deleted chunk of an exact variable is an error, never fill ------------------------


def packed_netcdf(path, calendar="noleap"):
    """An int16 SLP packed with scale_factor/add_offset, one time per netCDF chunk, beside a
    float T, with a time in ``calendar``."""
    with netCDF4.Dataset(path, "w") as nc:
        for dim, n in (("time", 12), ("lat", 30), ("lon", 40)):
            nc.createDimension(dim, n)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 2001-01-01", calendar
        t[:] = np.arange(12) * 30.0
        nc.createVariable("lat", "f4", ("lat",))[:] = np.linspace(-60, 60, 30)
        nc.createVariable("lon", "f4", ("lon",))[:] = np.linspace(0, 351, 40)
        slp = nc.createVariable("SLP", "i2", ("time", "lat", "lon"), chunksizes=(1, 30, 40),
                                fill_value=np.int16(-32767))
        slp.scale_factor, slp.add_offset = np.float32(0.1), np.float32(1000.0)
        slp[:] = smooth(12, 30, 40) * 3 + 160
        nc.createVariable("T", "f4", ("time", "lat", "lon"))[:] = smooth(12, 30, 40)
    return str(path)


def test_a_deleted_chunk_of_an_exact_variable_is_an_error(tmp_path, capsys):
    original = packed_netcdf(tmp_path / "packed.nc")
    store = tmp_path / "p.zarr"
    assert cli(capsys, "compress", original, store, "--tolerance", TOLERANCE)[0] == 0
    code, out, _ = cli(capsys, "verify", store)
    assert code == 0 and "4 exact array(s) (lossless, chunkpress's): chunks present" in out
    step = zarr.open_array(store, path="SLP").chunks[0]
    index = (9 // step, 0, 0)  # the chunk of time 9
    os.remove(os.path.join(store, "SLP", "c", *map(str, index)))
    code, out, _ = cli(capsys, "verify", store)
    assert code == EXIT_PROBLEMS
    assert f"SLP: chunk {index}" in out and "missing" in out
    with pytest.raises(MissingChunkError, match=rf"chunk \({index[0]}, 0, 0\).*SLP is missing"):
        chunkpress.from_zarr(str(store), "SLP").compute()
    if index[0]:  # the chunks before it read as they are
        before = index[0] * step
        assert chunkpress.from_zarr(str(store), "SLP")[:before].compute().shape == \
            (before, 30, 40)
    code, _, err = cli(capsys, "decompress", store, tmp_path / "o.nc")
    assert code == 1 and f"SLP chunk {index}: missing" in err
    assert not (tmp_path / "o.nc").exists()
    assert chunkpress.info(str(store)).loc["SLP", "missing_chunks"] == 1
    # plain xarray still opens the store (where it reads the fill value: its own rule)
    assert xr.open_zarr(store).SLP.shape == (12, 30, 40)
    # a coordinate too, read by the decompressing command before anything is written
    os.remove(store / "lat" / "c" / "0")
    code, _, err = cli(capsys, "decompress", store, tmp_path / "o.nc")
    assert code == 1 and "lat" in err and "missing" in err


def test_chunks_of_fill_values_of_exact_variables_are_written(tmp_path):
    """zarr leaves out a chunk holding only the fill value (write_empty_chunks): chunkpress
    writes it, so that one absent is known to be missing."""
    flags = np.zeros((8, 10), "int16")
    flags[4:] = 3
    ds = xr.Dataset({"flag": (("t", "y"), flags), "x": (("t", "y"), smooth(8, 10, 1)[..., 0])})
    ds.flag.encoding = {"_FillValue": np.int16(0), "chunks": (4, 10)}
    store = tmp_path / "f.zarr"
    ds.chunkpress.to_zarr(str(store), tolerance=TOLERANCE, chunks={"t": 4})
    assert (store / "flag" / "c" / "0" / "0").exists()
    assert len(chunkpress.verify(str(store))) == 0
    os.remove(store / "flag" / "c" / "0" / "0")
    assert list(chunkpress.verify(str(store)).chunk) == [(0, 0)]


def test_appended_chunks_of_exact_variables_are_checked_too(tmp_path):
    ds = xr.open_dataset(packed_netcdf(tmp_path / "packed.nc"), decode_times=False)
    store = str(tmp_path / "p.zarr")
    ds.isel(time=slice(0, 8)).chunkpress.to_zarr(store, tolerance=TOLERANCE,
                                                 chunks={"time": 4})
    ds.isel(time=slice(8, 12)).chunkpress.to_zarr(store, append_dim="time")
    assert len(chunkpress.verify(store)) == 0
    assert np.array_equal(xr.open_zarr(store, mask_and_scale=False).SLP.values,
                          xr.open_dataset(tmp_path / "packed.nc", mask_and_scale=False).SLP)
    last = (11 // zarr.open_array(store, path="SLP").chunks[0], 0, 0)  # the appended times
    os.remove(os.path.join(store, "SLP", "c", *map(str, last)))
    assert [(r.array, r.chunk) for r in chunkpress.verify(store).itertuples()] == \
        [("SLP", last)]
    # xarray's own append leaves out chunks of fill (zarr's rule): they are not missing
    plain = tmp_path / "x.zarr"
    ds.isel(time=slice(0, 8)).chunkpress.to_zarr(str(plain), tolerance=TOLERANCE,
                                                 chunks={"time": 4})
    more = ds.isel(time=slice(8, 12)).copy(deep=True)
    more["SLP"][:] = 1000.0  # stored as 0: zarr's fill value
    more.to_zarr(plain, append_dim="time")
    assert not (plain / "SLP" / "c" / str(last[0]) / "0" / "0").exists()
    assert len(chunkpress.verify(str(plain))) == 0


# --- 3, 4. verify --against compares times as times -------------------------------------------


@pytest.mark.parametrize("calendar", ["noleap", "standard"])
def test_verify_against_the_original_compares_times_as_times(tmp_path, capsys, calendar):
    original = packed_netcdf(tmp_path / "packed.nc", calendar)
    store = tmp_path / "p.zarr"
    assert cli(capsys, "compress", original, store, "--tolerance", TOLERANCE)[0] == 0
    code, out, err = cli(capsys, "verify", store, "--against", original, "--json")
    assert code == 0, err
    arrays = {a["array"]: a for a in json.loads(out)["arrays"]}
    assert arrays["time"]["max_error"] == 0.0
    assert arrays["T"]["max_error"] <= TOLERANCE
    # a day off in the original: an error of one (day, the store's units)
    shifted = xr.open_dataset(original)
    shifted["time"] = shifted.indexes["time"] + pd.Timedelta(days=1)
    table = chunkpress.verify(str(store), against=shifted)
    assert table.attrs["arrays"].set_index("array").loc["time", "max_error"] == 1.0


# --- 5. a zip output on a full disk leaves nothing behind ----------------------------------


def test_a_zip_output_on_a_full_disk_leaves_no_temporary_file(tmp_path):
    original = packed_netcdf(tmp_path / "packed.nc")
    target = tmp_path / "full"
    target.mkdir()
    result = in_mount_namespace(
        f"mount -t tmpfs -o size=32k tmpfs {target} && {sys.executable} -m chunkpress "
        f"compress {original} {target}/o.zip --codec zstd; code=$?; "
        f"ls -A {target} | sed 's/^/left: /'; exit $code")
    line = one_line(result)
    assert "no space left" in line.lower(), line
    assert "left: " not in result.stdout, result.stdout  # neither o.zip nor its staging file


# --- 6. the packing factors' types come back ------------------------------------------------


@pytest.mark.parametrize("factor", ["f4", "f8"])
def test_decompress_gives_back_the_packing_factors_types(tmp_path, capsys, factor):
    """float64 factors 0.5 / 1e7 are float32 values too, but decode int16 to float64: as
    float32 they would be a whole step off (1e7 + 0.5 is no float32)."""
    original = tmp_path / "p.nc"
    scale, offset = (np.float64(0.5), np.float64(1e7)) if factor == "f8" else \
        (np.float32(0.01), np.float32(280.0))
    with netCDF4.Dataset(original, "w") as nc:
        nc.createDimension("t", 8)
        nc.createDimension("x", 16)
        v = nc.createVariable("v", "i2", ("t", "x"))
        v.scale_factor, v.add_offset = scale, offset
        v[:] = offset + scale * np.arange(128).reshape(8, 16)
    store = tmp_path / "p.zarr"
    assert cli(capsys, "compress", original, store, "--tolerance", TOLERANCE)[0] == 0
    assert cli(capsys, "decompress", store, tmp_path / "out.nc")[0] == 0
    with netCDF4.Dataset(tmp_path / "out.nc") as nc:
        assert nc["v"].scale_factor.dtype == np.dtype(factor)
        assert nc["v"].add_offset.dtype == np.dtype(factor)
    a, b = xr.open_dataset(original).v, xr.open_dataset(tmp_path / "out.nc").v
    assert b.dtype == a.dtype == np.dtype(factor)
    assert np.array_equal(a.values, b.values)


def test_a_deleted_chunk_of_an_exact_variable_on_s3_is_an_error(tmp_path, s3):
    ds = xr.open_dataset(packed_netcdf(tmp_path / "packed.nc"), decode_times=False)
    url = s3.url + "p.zarr"
    ds.chunkpress.to_zarr(url, tolerance=TOLERANCE, storage_options=s3.storage_options)
    assert len(chunkpress.verify(url, storage_options=s3.storage_options)) == 0
    assert chunkpress.from_zarr(url, "SLP", storage_options=s3.storage_options).compute() \
        .shape == (12, 30, 40)
    s3.filesystem().rm(s3.path("p.zarr", "SLP", "c", "0", "0", "0"))
    table = chunkpress.verify(url, storage_options=s3.storage_options)
    assert [(r.array, r.chunk) for r in table.itertuples()] == [("SLP", (0, 0, 0))]
    with pytest.raises(MissingChunkError, match=r"chunk \(0, 0, 0\).*is missing"):
        chunkpress.from_zarr(url, "SLP", storage_options=s3.storage_options).compute()


HOLD_AS_READER = """
import os, sys, time
from chunkpress.storage.local import Lock
lock = Lock({store!r}, reader=True)  # as a reader finishing a dead writer's journal holds it
open({held!r}, "w").close()
time.sleep(1.0)
lock.release()
"""


def test_a_writer_waits_for_a_reader_holding_the_lock(tmp_path):
    """A reader that saw a live writer's journal just before it went took the store's lock
    for an instant: the writer's next append was refused (WriterBusyError, holder
    'unknown'). A writer now waits for a reader; a writer is still refused at once."""
    ds = xr.open_dataset(packed_netcdf(tmp_path / "packed.nc"), decode_times=False)
    store = str(tmp_path / "p.zarr")
    ds.isel(time=slice(0, 8)).chunkpress.to_zarr(store, tolerance=TOLERANCE,
                                                 chunks={"time": 4})
    held = str(tmp_path / "held")
    reader = subprocess.Popen([sys.executable, "-c",
                               HOLD_AS_READER.format(store=store, held=held)])
    try:
        while not os.path.exists(held):
            assert reader.poll() is None, "the reader could not take the lock"
            time.sleep(0.01)
        ds.isel(time=slice(8, 12)).chunkpress.to_zarr(store, append_dim="time")
    finally:
        reader.wait(timeout=60)
    assert reader.returncode == 0
    assert xr.open_zarr(store).sizes["time"] == 12 and len(chunkpress.verify(store)) == 0
    job = ds.chunkpress.to_zarr(store, tolerance=TOLERANCE, overwrite=True, compute=False)
    try:
        with pytest.raises(chunkpress.WriterBusyError, match="earlier write of this process holds it"):
            ds.isel(time=slice(0, 4)).chunkpress.to_zarr(store, region={"time": slice(0, 4)})
    finally:
        job.abort()


# --- a second review: what the first write's encoding holds, checksums of text, input codecs,
# --- cell bounds --------------------------------------------------------------------------


def era_netcdf(path):
    """An ERA5-like int16 t2m packed with scale_factor/add_offset chosen for its own range
    (every int16 value used), beside a float u10."""
    field = smooth()
    low, high = field.min(), field.max()
    with netCDF4.Dataset(path, "w") as nc:
        for dim, n in (("time", 8), ("y", 20), ("x", 24)):
            nc.createDimension(dim, n)
        t2m = nc.createVariable("t2m", "i2", ("time", "y", "x"), fill_value=np.int16(-32767))
        t2m.scale_factor = (high - low) / (2 ** 16 - 2)
        t2m.add_offset = (high + low) / 2
        t2m[:] = field
        nc.createVariable("u10", "f4", ("time", "y", "x"))[:] = field - 280
    return str(path)


def nothing_written(tmp_path, name):
    """No store at ``name`` and nothing beside it but the netCDF inputs (no staging left)."""
    return sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".nc")) == []


@pytest.mark.parametrize("lazy", [False, True])
def test_packed_values_out_of_their_range_are_refused_on_the_first_write(tmp_path, lazy):
    """+50 K on a t2m packed for its range wrapped around int16 (read back ~50 K off, with a
    reported bound of half a step): an error naming it and what the packing holds, nothing
    written; lazily opened, the task writing the block refuses it, nothing published."""
    original = era_netcdf(tmp_path / "era.nc")
    ds = xr.open_dataset(original, chunks={"time": 2}) if lazy else \
        xr.open_dataset(original).load()
    warm = ds.copy()
    warm["t2m"] = ds.t2m + 50
    warm.t2m.encoding = dict(ds.t2m.encoding)
    store = tmp_path / "wrap.zarr"
    with pytest.raises(ValueError, match=r"'t2m': its encoding stores it as int16 \(packed "
                       r"with .*values from 270[.0-9]* to 290"):
        warm.chunkpress.to_zarr(str(store), tolerance=TOLERANCE)
    assert nothing_written(tmp_path, "wrap.zarr")
    # values it holds are written, read back within half a step
    ds.chunkpress.to_zarr(str(store), tolerance=TOLERANCE)
    step = float(ds.t2m.encoding["scale_factor"])
    back = xr.open_zarr(store).t2m.values
    assert np.nanmax(np.abs(back - ds.t2m.values)) <= step / 2 * (1 + 1e-6)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(ds.t2m.values))


def test_nan_into_integers_without_a_fill_value_is_refused_on_the_first_write(tmp_path):
    """NaN in a variable stored as int16 without a _FillValue was cast (to 0 or -32768)."""
    ds = xr.open_dataset(era_netcdf(tmp_path / "era.nc")).load()
    flag = np.arange(8.0)
    flag[3] = np.nan
    ds["flag"] = ("time", flag)
    ds.flag.encoding = {"dtype": "int16"}
    with pytest.raises(ValueError, match=r"'flag': its encoding stores it as int16 \(integers "
                       r"from -32768 to 32767\).*NaN without a _FillValue"):
        ds.chunkpress.to_zarr(str(tmp_path / "f.zarr"), tolerance=TOLERANCE)
    assert nothing_written(tmp_path, "f.zarr")
    ds.flag.encoding = {"dtype": "int16", "_FillValue": np.int16(-1)}
    ds.chunkpress.to_zarr(str(tmp_path / "f.zarr"), tolerance=TOLERANCE)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "f.zarr").flag.values, flag)


def stations(path):
    """A dataset with text: a station coordinate (fixed-length unicode), names (Python
    strings) and codes (bytes), beside a float field."""
    ds = xr.Dataset({"v": (("station", "t"), smooth(1, 3, 40)[0])},
                    coords={"station": ["st0", "st1", "st2"]})
    ds["name"] = ("station", np.array(["alpha", "beta", "gamma"], dtype=object))
    ds["code"] = ("station", np.array([b"a1", b"b2", b"c3"]))
    ds.chunkpress.to_zarr(str(path), tolerance=TOLERANCE)
    return ds


def forge(path, change):
    """Rewrite the chunk object at ``path`` (zstd, then its CRC-32C) with its text changed by
    ``change`` (bytes -> bytes), well-formed zstd, its old CRC kept."""
    from numcodecs import Zstd

    raw = path.read_bytes()
    plain = Zstd().decode(raw[:-4])
    changed = change(bytes(plain))
    assert changed != bytes(plain)
    path.write_bytes(Zstd().encode(changed) + raw[-4:])


@pytest.mark.parametrize("name", ["station", "name", "code"])
def test_damaged_text_is_an_error_to_every_reader(tmp_path, capsys, name):
    """Text variables had zstd without a CRC-32C: a chunk rewritten with 'st0' changed read
    back through xr.open_zarr as 'Xt0' and verify found no problem."""
    store = tmp_path / "txt.zarr"
    ds = stations(store)
    back = xr.open_zarr(store).load()
    for var in ("station", "name", "code"):
        assert list(back[var].values) == list(ds[var].values)
    assert cli(capsys, "verify", store)[0] == 0
    first = {"station": b"s", "name": b"a", "code": b"a"}[name]
    forge(store / name / "c" / "0", lambda plain: plain.replace(first, b"X", 1))
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        xr.open_zarr(store)[name].load()
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        zarr.open_array(store, path=name)[:]
    code, out, _ = cli(capsys, "verify", store)
    assert code == EXIT_PROBLEMS and f"{name}: chunk (0,)" in out


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_an_input_stores_codecs_do_not_decide_the_outputs(tmp_path, zarr_format):
    """A Zarr v2 input written by plain xarray (numcodecs' Blosc in its encoding) failed with
    "Expected a BytesBytesCodec"; a v3 input's zstd replaced chunkpress's codecs of the exact
    variables, CRC-32C included: damage then read back as other values."""
    ds = xr.Dataset({"T": (("time", "y", "x"), smooth()),
                     "count": (("time", "y", "x"), np.arange(8 * 20 * 24, dtype="i4")
                               .reshape(8, 20, 24))},
                    coords={"time": np.arange(8.0)})
    plain = tmp_path / "plain.zarr"
    ds.to_zarr(plain, zarr_format=zarr_format)
    out = tmp_path / "o.zarr"
    xr.open_zarr(plain).chunkpress.to_zarr(str(out), tolerance=TOLERANCE)
    back = xr.open_zarr(out).load()
    np.testing.assert_array_equal(back["count"].values, ds["count"].values)
    np.testing.assert_array_equal(back.time.values, ds.time.values)
    assert np.abs(back.T.values - ds.T.values).max() <= TOLERANCE
    info = chunkpress.info(str(out))
    for name in ("count", "time"):
        assert info.loc[name, "codec"].endswith("+crc32c")
        chunk = out / name / "c" / ("0/0/0" if name == "count" else "0")
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0x40
        chunk.write_bytes(bytes(data))
        with pytest.raises(Exception, match="(?i)checksum|crc"):
            zarr.open_array(out, path=name)[:]
    assert sorted(chunkpress.verify(str(out)).array) == ["count", "time"]


def test_a_variable_kept_exact_from_a_chunkpress_input_is_exact(tmp_path):
    """A chunkpress store read back with xr.open_zarr has the chunkpress codec (and another
    write's identifier) as the serializer in its encoding: kept exact, it is written exact."""
    first = tmp_path / "first.zarr"
    xr.Dataset({"T": (("time", "y", "x"), smooth())}).chunkpress.to_zarr(
        str(first), tolerance=TOLERANCE)
    source = xr.open_zarr(first)
    out = tmp_path / "o.zarr"
    source.chunkpress.to_zarr(str(out), tolerance={})  # no variable named: all kept exact
    assert chunkpress.info(str(out)).loc["T", "codec"] == "blosc+crc32c"
    assert np.array_equal(xr.open_zarr(out).T.values, source.T.values)
    assert len(chunkpress.verify(str(out))) == 0


@pytest.mark.parametrize("key", ["bounds", "climatology"])
def test_cell_bounds_are_kept_exact_by_the_accessor_unless_named(tmp_path, key):
    """The command kept CF cell bounds exact, the accessor compressed them like a field: a
    cell's edge then no longer met its neighbour's."""
    edges = np.linspace(-60, 60, 21) + np.random.default_rng(3).normal(0, 1e-3, 21)
    bounds = np.stack([edges[:-1], edges[1:]], 1)  # cell i's upper edge is cell i+1's lower
    ds = xr.Dataset({"T": (("time", "lat", "x"), smooth())},
                    coords={"lat": (edges[:-1] + edges[1:]) / 2, "time": np.arange(8.0)})
    ds["lat_bnds"] = (("lat", "nv"), bounds)
    ds["lat"].attrs[key] = "lat_bnds"
    out = tmp_path / "o.zarr"
    report = ds.chunkpress.encode(tolerance=0.1).report()
    assert report.loc["lat_bnds", "codec"] == "exact" and report.loc["T", "codec"] == "zfp"
    ds.chunkpress.to_zarr(str(out), tolerance=0.1)
    back = xr.open_zarr(out).load()
    np.testing.assert_array_equal(back.lat_bnds.values, bounds)
    np.testing.assert_array_equal(back.lat_bnds.values[1:, 0], back.lat_bnds.values[:-1, 1])
    assert np.abs(back["T"].values - ds["T"].values).max() <= 0.1
    # named in a per-variable dict (or in variables=): compressed, to its own bound
    again = tmp_path / "again.zarr"
    ds.chunkpress.to_zarr(str(again), tolerance={"T": 0.1, "lat_bnds": 0.01})
    assert chunkpress.info(str(again)).loc["lat_bnds", "codec"] == "zfp"
    assert np.abs(xr.open_zarr(again).lat_bnds.values - bounds).max() <= 0.01
    assert ds.chunkpress.encode(tolerance=0.1, variables=["T", "lat_bnds"]).report().loc[
        "lat_bnds", "codec"] == "zfp"


@pytest.mark.parametrize("calendar", ["standard", "noleap"])
def test_cftime_times_in_integer_units_are_written_and_appended(tmp_path, calendar):
    """The check of what an exact variable's encoding holds compares times as cftime objects
    where they are given so: a standard calendar's decoded to datetime64 were called other
    values."""
    times = xr.date_range("2000-01-01", periods=8, freq="D", calendar=calendar,
                          use_cftime=True)
    ds = xr.Dataset({"T": (("time", "y", "x"), smooth())}, coords={"time": times})
    ds.time.encoding = {"units": "days since 2000-01-01", "calendar": calendar,
                        "dtype": "int32"}
    store = str(tmp_path / "cf.zarr")
    ds.isel(time=slice(0, 4)).chunkpress.to_zarr(store, tolerance=TOLERANCE,
                                                 chunks={"time": 4})
    ds.isel(time=slice(4, 8)).chunk({"time": 2}).chunkpress.to_zarr(store, append_dim="time")
    back = xr.open_zarr(store, decode_times=False)
    np.testing.assert_array_equal(back.time.values, np.arange(8))
    assert back.time.dtype == np.int32


# --- shards that hold one chunk each (an append or region write wrote a bare chunk) ----------


def one_chunk_shards(t0, times=8):
    rng = np.random.default_rng(t0)
    return xr.Dataset({"x": (("time", "y"), smooth(times, 8, 1)[:, :, 0].astype("f4")
                             + rng.random((times, 8)).astype("f4"))},
                      coords={"time": np.arange(t0, t0 + times)})


@pytest.mark.parametrize("shards", [(8, 8), "auto"])
def test_an_update_of_shards_holding_one_chunk_each_reads_back(tmp_path, shards):
    store = str(tmp_path / "one.zarr")
    first, more = one_chunk_shards(0), one_chunk_shards(8)
    first.chunkpress.to_zarr(store, tolerance=TOLERANCE, shards=shards, chunks={"time": 8})
    sharding = zarr.open_array(store, path="x").metadata.codecs[0]
    assert type(sharding).__name__ == "ShardingCodec"
    assert tuple(sharding.chunk_shape) == zarr.open_array(store, path="x").shards  # one a shard
    more.chunkpress.to_zarr(store, append_dim="time")
    both = xr.concat([first, more], "time")["x"].values
    assert np.abs(chunkpress.from_zarr(store, "x").compute() - both).max() <= TOLERANCE
    with xr.open_zarr(store) as back:
        assert np.abs(back["x"].values - both).max() <= TOLERANCE
    # a region write replaces a shard that held good data, and it reads back as the new
    changed = more.copy(deep=True)
    changed["x"] = changed["x"] + 5
    changed.chunkpress.to_zarr(store, region={"time": slice(8, 16)})
    both[8:] += 5
    assert np.abs(chunkpress.from_zarr(store, "x").compute() - both).max() <= TOLERANCE
    with xr.open_zarr(store) as back:
        assert np.abs(back["x"].values - both).max() <= TOLERANCE


# --- raw packed values (mask_and_scale=False): written as they are, appended alike -----------


@pytest.mark.parametrize("lazy", [False, True])
def test_raw_packed_values_are_written_and_appended_as_they_are(tmp_path, lazy):
    path = netcdf_with_missing_value(tmp_path / "packed.nc", kind="packed")
    store = str(tmp_path / "raw.zarr")
    with xr.open_dataset(path, mask_and_scale=False) as raw, xr.open_dataset(path) as decoded:
        raw = raw.chunk({"time": 4}) if lazy else raw.load()
        assert raw["v"].dtype == np.int16 and "scale_factor" in raw["v"].attrs
        raw.isel(time=slice(0, 4)).chunkpress.to_zarr(store, tolerance=TOLERANCE)
        raw.isel(time=slice(4, 8)).chunkpress.to_zarr(store, append_dim="time")
        with xr.open_zarr(store, mask_and_scale=False) as back:
            assert back["v"].dtype == np.int16
            np.testing.assert_array_equal(back["v"].values, raw["v"].values)
        with xr.open_zarr(store) as back:
            # the factors as float64 attributes: float32's rounding apart
            np.testing.assert_allclose(back["v"].values, decoded["v"].values, rtol=1e-6)
            assert np.isnan(back["v"].values[:, :5, :5]).all()


# --- NaT into int32 times without a _FillValue, from dask (written as the epoch) -------------


def times_with_nat(kind, t0=0):
    x = np.random.default_rng(t0).random(8).astype("f4")
    if kind == "datetime":
        values = pd.date_range("2000-01-01", periods=16).values[t0:t0 + 8].copy()
        values[3] = np.datetime64("NaT")
        encoding = {"dtype": "int32", "units": "days since 2000-01-01"}
    else:
        values = (np.arange(t0, t0 + 8) * np.timedelta64(1, "D")).astype("m8[ns]")
        values[3] = np.timedelta64("NaT")
        encoding = {"dtype": "int32", "units": "days"}
    ds = xr.Dataset({"x": (("t",), x), "tv": (("t",), values)},
                    coords={"t": np.arange(t0, t0 + 8)})
    ds["tv"].encoding.update(encoding)
    return ds


@pytest.mark.parametrize("kind", ["datetime", "timedelta"])
@pytest.mark.parametrize("lazy", [False, True])
def test_nat_into_int32_times_without_a_fill_value_is_refused(tmp_path, kind, lazy):
    """xarray's lazy encoding declares int32 but its blocks hold int64 (NaT: -2**63), checked
    before zarr cast them, where NaT wrapped to 0: read back as the epoch, not NaT."""
    ds = times_with_nat(kind)
    ds = ds.chunk({"t": 4}) if lazy else ds
    refused = r"'tv': its encoding stores it as int32.*NaN without a _FillValue"
    with pytest.raises(ValueError, match=refused):
        ds.chunkpress.to_zarr(str(tmp_path / "nat.zarr"), tolerance=TOLERANCE)
    assert nothing_written(tmp_path, "nat.zarr")
    # and into a store of such times, an append of NaT from dask
    store = str(tmp_path / "ok.zarr")
    good = times_with_nat(kind)
    good["tv"] = good["tv"].fillna(good["tv"].values[2])
    good["tv"].encoding.update(times_with_nat(kind)["tv"].encoding)
    good.chunkpress.to_zarr(store, tolerance=TOLERANCE)
    more = times_with_nat(kind, 8)
    more = more.chunk({"t": 4}) if lazy else more
    with pytest.raises(ValueError, match=r"'tv': the store keeps it as int32"):
        more.chunkpress.to_zarr(store, append_dim="t")
    with xr.open_zarr(store) as back:
        assert back.sizes["t"] == 8 and back["tv"].encoding["dtype"] == np.int32
        np.testing.assert_array_equal(back["tv"].values, good["tv"].values)


# --- portable=True of raw values (mask_and_scale=False): missing cells stay missing ----------


@pytest.mark.parametrize("lazy", [False, True])
def test_portable_raw_values_keep_their_missing_cells_missing(tmp_path, lazy):
    """The missing_value attribute was dropped, its -999 cells left as data: -999.0 read back."""
    path = netcdf_with_missing_value(tmp_path / "m.nc")
    store = str(tmp_path / "portable.zarr")
    with xr.open_dataset(path, mask_and_scale=False) as raw, xr.open_dataset(path) as decoded:
        raw = raw.chunk({"time": 4}) if lazy else raw.load()
        assert "missing_value" in raw["v"].attrs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numcodecs codecs are not in the v3 spec
            raw.chunkpress.to_zarr(store, tolerance=TOLERANCE, portable=True)
        with xr.open_zarr(store) as back:
            values = back["v"].values
        want = decoded["v"].values
        np.testing.assert_array_equal(np.isnan(values), np.isnan(want))
        assert np.isnan(values[:, :5, :5]).all()
        assert np.nanmax(np.abs(values - want)) <= TOLERANCE
