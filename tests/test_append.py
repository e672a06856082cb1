"""Appends and region writes: the store's codec and target, whole chunks only, and a store
that is as it was whenever an update stops halfway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import chunkpress
import chunkpress.accessor  # noqa: F401 - registers the accessor
from chunkpress.storage import journal

CHUNKS = {"TIME": 4, "COADSY": 24, "COADSX": 92}
FILL = np.float32(-1e34)

pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata")


def coads(months=12, ny=48, nx=92, seed=0) -> xr.Dataset:
    """A COADS-like monthly SST: a smooth field with a seasonal cycle, NaN over land, the CF
    ``_FillValue`` -1e34 in its encoding, and a time axis in hours since year 1."""
    rng = np.random.default_rng(seed)
    y = np.linspace(-89, 89, ny)
    x = np.linspace(21, 379, nx)
    lat = np.deg2rad(y)[:, None]
    base = 28 * np.cos(lat) ** 2 - 1 + 2 * np.sin(np.deg2rad(x))[None, :]
    months_ = np.arange(months)
    season = 4 * np.sin(2 * np.pi * (months_ + 0.5) / 12)[:, None, None] * np.sin(lat)[None]
    sst = (base[None] + season + 0.3 * rng.standard_normal((months, ny, nx))).astype("f4")
    land = (np.sin(np.deg2rad(3 * x))[None, :] + np.cos(np.deg2rad(4 * y))[:, None]) > 1.0
    sst[:, land] = np.nan
    time_ = pd.date_range("1980-01-01", periods=months, freq="MS") + pd.Timedelta(days=14)
    ds = xr.Dataset(
        {"SST": (("TIME", "COADSY", "COADSX"), sst, {"units": "Deg C",
                                                      "long_name": "SEA SURFACE TEMPERATURE"})},
        coords={"TIME": ("TIME", time_), "COADSY": ("COADSY", y, {"units": "degrees_north"}),
                "COADSX": ("COADSX", x, {"units": "degrees_east"})})
    ds.SST.encoding = {"_FillValue": FILL, "dtype": "float32"}
    ds.TIME.encoding = {"units": "hours since 0001-01-01 00:00:00", "calendar": "standard",
                        "dtype": "float64"}
    return ds


def chunk_bytes(store, name="SST") -> int:
    """The bytes of an array's chunk objects."""
    top = os.path.join(store, name)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(top)
               for f in files if f != "zarr.json")


def snapshot(store) -> dict:
    """Every file of a store directory and its bytes."""
    out = {}
    for directory, _, files in os.walk(store):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as file:
                out[os.path.relpath(path, store)] = file.read()
    return out


def opened(store) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(store).load()


@pytest.fixture(scope="module")
def ds():
    return coads()


# --- appends -----------------------------------------------------------------------------------


def test_append_equals_one_write_and_keeps_nan_and_cf(ds, tmp_path):
    whole, parts = str(tmp_path / "whole.zarr"), str(tmp_path / "parts.zarr")
    ds.chunkpress.to_zarr(whole, tolerance=0.01, chunks=CHUNKS)
    ds.isel(TIME=slice(0, 8)).chunkpress.to_zarr(parts, tolerance=0.01, chunks=CHUNKS)
    ds.isel(TIME=slice(8, 12)).chunkpress.to_zarr(parts, append_dim="TIME")

    # no more bytes than one write of all 12 months with the same chunks (<= 5% more)
    assert chunk_bytes(parts) <= 1.05 * chunk_bytes(whole)
    back = opened(parts)
    np.testing.assert_array_equal(back.TIME.values, ds.TIME.values)
    assert back.SST.shape == ds.SST.shape
    assert np.array_equal(np.isnan(back.SST.values), np.isnan(ds.SST.values))
    assert float(np.nanmax(np.abs(back.SST.values - ds.SST.values))) <= 0.01
    # NaN in the chunks, not the CF fill value; the encoding still says -1e34
    stored = chunkpress.from_zarr(parts, path="SST").compute()
    assert np.array_equal(np.isnan(stored), np.isnan(ds.SST.values))
    assert back.SST.encoding["_FillValue"] == pytest.approx(float(FILL))
    assert chunkpress.verify(parts).empty
    # ... and round-trips to netCDF with it
    nc = str(tmp_path / "back.nc")
    back.to_netcdf(nc)
    with xr.open_dataset(nc) as again:
        assert again.SST.encoding["_FillValue"] == pytest.approx(float(FILL))
        assert np.array_equal(np.isnan(again.SST.values), np.isnan(ds.SST.values))
    with xr.open_dataset(nc, mask_and_scale=False) as raw:
        assert np.count_nonzero(raw.SST.values == FILL) == np.isnan(ds.SST.values).sum()


def test_xarray_own_append_keeps_missing_cells(ds, tmp_path):
    ours, theirs = str(tmp_path / "ours.zarr"), str(tmp_path / "theirs.zarr")
    for store in (ours, theirs):
        ds.isel(TIME=slice(0, 8)).chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS)
    ds.isel(TIME=slice(8, 12)).chunkpress.to_zarr(ours, append_dim="TIME")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.isel(TIME=slice(8, 12)).to_zarr(theirs, append_dim="TIME")
    stored = chunkpress.from_zarr(theirs, path="SST").compute()  # the codec's own values
    assert np.array_equal(np.isnan(stored), np.isnan(ds.SST.values))  # not -1e34
    assert chunk_bytes(theirs) <= 1.05 * chunk_bytes(ours)
    back = opened(theirs)
    assert float(np.nanmax(np.abs(back.SST.values - ds.SST.values))) <= 0.01


def test_encode_then_append_and_conflicts_name_both(ds, tmp_path):
    store = str(tmp_path / "s.zarr")
    ds.isel(TIME=slice(0, 4)).chunkpress.to_zarr(store, "sz3", tolerance=0.05, chunks=CHUNKS)
    before = snapshot(store)
    with pytest.raises(ValueError, match=r"chunkpress\.sz3 with tolerance=0\.05.*"
                                         r"tolerance=0\.01"):
        ds.isel(TIME=slice(4, 8)).chunkpress.to_zarr(store, append_dim="TIME", tolerance=0.01)
    with pytest.raises(ValueError, match=r"chunkpress\.sz3.*codec='zfp'"):
        ds.isel(TIME=slice(4, 8)).chunkpress.encode("zfp", tolerance=0.05,
                                                    chunks=CHUNKS).to_zarr(
            store, append_dim="TIME")
    with pytest.raises(ValueError, match="append_dim='time' is not a dimension.*TIME"):
        ds.isel(TIME=slice(4, 8)).chunkpress.to_zarr(store, append_dim="time")
    assert snapshot(store) == before
    # what the store has, given again, is fine; chunks as a dict by dimension name too
    ds.isel(TIME=slice(4, 8)).chunkpress.encode("sz3", tolerance=0.05, chunks=CHUNKS).to_zarr(
        store, append_dim="TIME")
    ds.isel(TIME=slice(8, 12)).chunkpress.to_zarr(store, append_dim="TIME", codec="sz3",
                                                  verify=True)
    back = opened(store)
    assert float(np.nanmax(np.abs(back.SST.values - ds.SST.values))) <= 0.05
    np.testing.assert_array_equal(back.TIME.values, ds.TIME.values)


def test_append_inside_a_partial_chunk_is_refused(ds, tmp_path):
    store = str(tmp_path / "s.zarr")
    ds.isel(TIME=slice(0, 6)).chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS)
    before = snapshot(store)
    with pytest.raises(ValueError, match=r"6 elements along 'TIME'.*chunk \(size 4\).*"
                                         r"never decodes and re-encodes"):
        ds.isel(TIME=slice(6, 12)).chunkpress.to_zarr(store, append_dim="TIME")
    assert snapshot(store) == before


def _failing(ds, months):
    """``ds`` with a dask SST whose second block of months fails when it is read."""
    def read(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 1:
            raise RuntimeError("input block 1 could not be read")
        return block

    sst = da.from_array(ds.SST.values, chunks=(4, -1, -1)).map_blocks(read, dtype="f4")
    bad = ds.copy()
    bad["SST"] = xr.Variable(ds.SST.dims, sst, ds.SST.attrs, ds.SST.encoding)
    return bad.isel(TIME=slice(*months))


def test_append_that_fails_leaves_the_store_as_it_was(ds, tmp_path):
    store = str(tmp_path / "s.zarr")
    ds.isel(TIME=slice(0, 4)).chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS)
    before = snapshot(store)
    with pytest.raises(RuntimeError, match="input block 1"):
        _failing(ds, (4, 12)).chunkpress.to_zarr(store, append_dim="TIME")
    assert snapshot(store) == before  # the chunk written before the failure is gone too
    assert not os.path.exists(tmp_path / ".s.zarr.chunkpress-journal")
    ds.isel(TIME=slice(4, 12)).chunkpress.to_zarr(store, append_dim="TIME")  # not locked
    np.testing.assert_array_equal(opened(store).TIME.values, ds.TIME.values)


def _with_flags(ds):
    """``ds`` with an exact int16 variable (a quality flag), kept as it is."""
    out = ds.copy()
    flags = (np.arange(ds.SST.size) % 7).reshape(ds.SST.shape).astype("i2")
    out["FLAG"] = (ds.SST.dims, flags, {"long_name": "quality flag"})
    return out


def test_lazy_exact_variables_append_and_rewrite_regions(ds, tmp_path):
    """Variables opened lazily (``xr.open_dataset(..., chunks={})``: dask arrays), an exact
    one among them, append and rewrite regions like in-memory ones; an append whose
    compressed block fails leaves every file as it was (the exact variable's chunks too)."""
    flagged = _with_flags(ds)
    source = str(tmp_path / "month.nc")
    flagged.to_netcdf(source)
    store = str(tmp_path / "s.zarr")
    flagged.isel(TIME=slice(0, 4)).chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS)
    with xr.open_dataset(source, chunks={}) as lazy:
        assert isinstance(lazy.FLAG.data, da.Array) and isinstance(lazy.SST.data, da.Array)
        before = snapshot(store)
        failing = _failing(lazy, (4, 12))
        failing["FLAG"] = lazy.FLAG.isel(TIME=slice(4, 12))
        with pytest.raises(RuntimeError, match="input block 1"):
            failing.chunkpress.to_zarr(store, append_dim="TIME")
        assert snapshot(store) == before
        lazy.isel(TIME=slice(4, 12)).chunkpress.to_zarr(store, append_dim="TIME")
        back = opened(store)
        np.testing.assert_array_equal(back.FLAG.values, flagged.FLAG.values)
        np.testing.assert_array_equal(back.TIME.values, ds.TIME.values)
        assert float(np.nanmax(np.abs(back.SST.values - ds.SST.values))) <= 0.01
        changed = lazy.isel(TIME=slice(4, 8))
        changed["FLAG"] = changed.FLAG + 1
        changed.chunkpress.to_zarr(store, region={"TIME": slice(4, 8)})
    expected = flagged.FLAG.values.copy()
    expected[4:8] += 1
    np.testing.assert_array_equal(opened(store).FLAG.values, expected)


def test_a_failed_region_write_leaves_every_variable_as_it_was(ds, tmp_path):
    """A region write that fails leaves the region wholly old: its exact variables too (the
    flags and times, written through zarr in place, were new beside the old SST)."""
    flagged = _with_flags(ds)
    store = str(tmp_path / "s.zarr")
    flagged.chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS)
    before = snapshot(store)
    def late(block, block_info=None):  # fails once the exact variables are written
        time.sleep(0.5)
        raise RuntimeError("input block 1 could not be read")

    region = flagged.isel(TIME=slice(4, 8))
    sst = da.from_array(region.SST.values, chunks=(4, -1, -1)).map_blocks(late, dtype="f4")
    region["SST"] = xr.Variable(region.SST.dims, sst, region.SST.attrs, region.SST.encoding)
    region["FLAG"] = region.FLAG + 1
    with pytest.raises(RuntimeError, match="input block 1"):
        region.chunkpress.to_zarr(store, region={"TIME": slice(4, 8)})
    assert snapshot(store) == before
    fine = flagged.isel(TIME=slice(4, 8))
    fine["FLAG"] = fine.FLAG + 1
    fine.chunkpress.to_zarr(store, region={"TIME": slice(4, 8)})
    expected = flagged.FLAG.values.copy()
    expected[4:8] += 1
    back = opened(store)
    np.testing.assert_array_equal(back.FLAG.values, expected)
    np.testing.assert_array_equal(back.TIME.values, ds.TIME.values)
    assert set(snapshot(store)) == set(before)  # nothing staged left beside the chunks


def test_values_the_stores_encoding_cannot_hold_are_refused(ds, tmp_path):
    """An exact variable keeps the store's CF encoding: times at 12:00 in integer "days
    since" units (xarray would encode them in hours, read back as days: other dates) and
    NaN or 1e10 into an int16 flag (read back as 0) are refused, nothing written; the
    store's units written another way ("... 00:00:00") and NaT are not a change."""
    flagged = _with_flags(ds)
    flagged.TIME.encoding = {"units": "days since 1980-01-01", "calendar": "standard",
                             "dtype": "int64"}
    store = str(tmp_path / "s.zarr")
    flagged.isel(TIME=slice(0, 4)).chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS)
    before = snapshot(store)
    noon = flagged.isel(TIME=slice(4, 8))
    noon = noon.assign_coords(TIME=noon.TIME + np.timedelta64(12, "h"))
    with pytest.raises(ValueError, match=r"'TIME': its values need units 'hours since"):
        noon.chunkpress.to_zarr(store, append_dim="TIME")
    wrong = flagged.isel(TIME=slice(4, 8))
    values = wrong.FLAG.values.astype("f8")
    values[0, 0, 0], values[1, 1, 1] = np.nan, 1e10
    wrong["FLAG"] = (wrong.FLAG.dims, values)
    with pytest.raises(ValueError, match=r"'FLAG': the store keeps it as int16"):
        wrong.chunkpress.to_zarr(store, append_dim="TIME")
    lazy = wrong.chunk({"TIME": 2})  # not read yet: each block checked as it is written
    with pytest.raises(ValueError, match=r"'FLAG': the store keeps it as int16"):
        lazy.chunkpress.to_zarr(store, append_dim="TIME")
    assert snapshot(store) == before
    fine = flagged.isel(TIME=slice(4, 8))
    times = fine.TIME.values.copy()
    times[1] = np.datetime64("NaT")
    fine.assign_coords(TIME=times).chunkpress.to_zarr(store, append_dim="TIME")
    back = opened(store)
    assert np.isnat(back.TIME.values[5]) and back.TIME.values[4] == times[0]
    np.testing.assert_array_equal(back.FLAG.values, flagged.FLAG.values[:8])


def test_packed_values_out_of_the_stores_range_are_refused(ds, tmp_path):
    """A packed exact variable (int16, scale_factor 0.001) takes values within half a step
    of what it stores, and refuses 1e6 (it read back as -13.824), nothing written."""
    packed = ds.copy()
    packed["Q"] = (ds.SST.dims, np.round(ds.SST.values.astype("f8") / 40, 3))
    packed.Q.encoding = {"dtype": "int16", "scale_factor": 0.001, "_FillValue": -32768}
    store = str(tmp_path / "s.zarr")
    packed.isel(TIME=slice(0, 4)).chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS,
                                                     variables=["SST"])
    before = snapshot(store)
    wrong = packed.isel(TIME=slice(4, 8))
    values = wrong.Q.values.copy()
    values[0, 5, 5] = 1e6
    wrong["Q"] = (wrong.Q.dims, values)
    with pytest.raises(ValueError, match=r"'Q': the store keeps it as int16"):
        wrong.chunkpress.to_zarr(store, append_dim="TIME")
    assert snapshot(store) == before
    packed.isel(TIME=slice(4, 8)).chunkpress.to_zarr(store, append_dim="TIME")
    back = opened(store)
    assert np.nanmax(np.abs(back.Q.values - packed.Q.values[:8])) <= 0.0005 + 1e-9
    np.testing.assert_array_equal(np.isnan(back.Q.values), np.isnan(packed.Q.values[:8]))


def test_a_writer_through_a_symbolic_link_waits_its_turn(ds, tmp_path):
    """One writer at a time, whatever name it gives the store: an append through a symbolic
    link to a store another writer holds is refused (each name had its own lock: two appends
    at once both succeeded, their months mixed), and the store is as it was."""
    from chunkpress.storage import WriterBusyError
    from chunkpress.storage.local import Lock

    store = tmp_path / "s.zarr"
    link = tmp_path / "link.zarr"
    ds.isel(TIME=slice(0, 4)).chunkpress.to_zarr(str(store), tolerance=0.01, chunks=CHUNKS)
    link.symlink_to(store, target_is_directory=True)
    before = snapshot(str(store))
    held = Lock(str(store))  # another writer, holding the store by its own name
    try:
        with pytest.raises(WriterBusyError, match="holds it|another chunkpress write"):
            ds.isel(TIME=slice(4, 8)).chunkpress.to_zarr(str(link), append_dim="TIME")
    finally:
        held.release()
    assert snapshot(str(store)) == before
    ds.isel(TIME=slice(4, 8)).chunkpress.to_zarr(str(link), append_dim="TIME")
    np.testing.assert_array_equal(opened(str(store)).TIME.values, ds.TIME.values[:8])


CHILD = """
import os, sys, time
sys.path.insert(0, {tests!r})
import dask.array as da, xarray as xr
import chunkpress.accessor
from test_append import coads
ds = coads()
def slow(block, block_info=None):
    if block_info[0]["chunk-location"][0] == 2:  # months 8..11, once 4..7 are in the store
        while not os.path.exists({chunk!r}):
            time.sleep(0.01)
        open({marker!r}, "w").close()
        time.sleep(60)  # killed meanwhile
    return block
sst = da.from_array(ds.SST.values, chunks=(4, -1, -1)).map_blocks(slow, dtype="f4")
ds["SST"] = xr.Variable(ds.SST.dims, sst, ds.SST.attrs, ds.SST.encoding)
ds.isel(TIME=slice(4, 12)).chunkpress.to_zarr({store!r}, append_dim="TIME")
"""


def _killed_once_writing(script: str, marker: str) -> None:
    """Run ``script`` in a child process and SIGKILL it once it has made ``marker``."""
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not os.path.exists(marker) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(marker), "the child did not start writing"
    child.send_signal(signal.SIGKILL)
    child.wait()


def test_append_killed_leaves_the_store_as_it_was(ds, tmp_path):
    store = str(tmp_path / "s.zarr")
    ds.isel(TIME=slice(0, 4)).chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS)
    old = opened(store)
    new_chunk = os.path.join(store, "SST", "c", "1", "0", "0")  # months 4..7, beyond the shape
    marker = str(tmp_path / "writing")
    _killed_once_writing(CHILD.format(tests=os.path.dirname(__file__), store=store,
                                      chunk=new_chunk, marker=marker), marker)
    back = opened(store)
    assert back.SST.shape == old.SST.shape
    np.testing.assert_array_equal(back.SST.values, old.SST.values)
    assert chunkpress.from_zarr(store, path="SST").shape == old.SST.shape
    assert chunkpress.verify(store).empty
    ds.isel(TIME=slice(4, 12)).chunkpress.to_zarr(store, append_dim="TIME")
    np.testing.assert_array_equal(opened(store).TIME.values, ds.TIME.values)


REGION_KILLED = """
import os, sys, time
sys.path.insert(0, {tests!r})
import dask.array as da, xarray as xr
import chunkpress.accessor
from test_append import coads
ds = coads().isel(TIME=slice(4, 12))
def slow(block, block_info=None):
    if block_info[0]["chunk-location"][0] == 1:  # months 8..11, once 4..7 are staged
        while not any(".partial" in f for _, _, fs in os.walk({store!r}) for f in fs):
            time.sleep(0.01)
        open({marker!r}, "w").close()
        time.sleep(60)  # killed meanwhile
    return block + 1
sst = da.from_array(ds.SST.values, chunks=(4, -1, -1)).map_blocks(slow, dtype="f4")
ds["SST"] = xr.Variable(ds.SST.dims, sst, ds.SST.attrs, ds.SST.encoding)
ds.chunkpress.to_zarr({store!r}, region={{"TIME": slice(4, 12)}})
"""


@pytest.mark.parametrize("through", ["its name", "a symbolic link"])
def test_region_write_killed_leaves_old_values_and_its_staged_chunks_go(ds, tmp_path, through):
    """A region write killed after staging some chunks: the store reads as it was, and the
    next write removes the staged chunks the dead one left inside the store (also when the
    dead one wrote through a symbolic link to it)."""
    store = str(tmp_path / "s.zarr")
    ds.chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS)
    old = opened(store)
    marker = str(tmp_path / "writing")
    given = store
    if through == "a symbolic link":
        given = str(tmp_path / "link.zarr")
        os.symlink(store, given, target_is_directory=True)
    _killed_once_writing(REGION_KILLED.format(tests=os.path.dirname(__file__), store=given,
                                              marker=marker), marker)
    assert any(".partial" in name for name in snapshot(store))  # what the dead writer staged
    np.testing.assert_array_equal(opened(store).SST.values, old.SST.values)
    assert chunkpress.verify(store).empty
    ds.isel(TIME=slice(0, 4)).chunkpress.to_zarr(store, region={"TIME": slice(0, 4)})
    assert not [name for name in snapshot(store) if ".partial" in name]
    assert not [e for e in os.listdir(tmp_path) if "chunkpress-staged" in e]
    np.testing.assert_array_equal(opened(store).SST.values, old.SST.values)


READER_LOOP = """
import os, sys
from chunkpress.storage.publish import check_complete
while not os.path.exists({stop!r}):
    check_complete({store!r})  # what every chunkpress reader does first
"""


def test_appends_publish_whole_while_a_reader_opens_the_store(ds, tmp_path):
    """A reader opening the store while appends publish leaves their journals to them: a
    reader carrying out a live writer's journal raced it rename by rename, and the writer
    that lost aborted while the reader published its half (steps of NaN, times of fill)."""
    store = str(tmp_path / "s.zarr")
    stop = str(tmp_path / "stop")
    months = coads(months=96, ny=12, nx=16)
    months.isel(TIME=slice(0, 2)).chunkpress.to_zarr(store, tolerance=0.01,
                                                     chunks={"TIME": 2, "COADSY": 12,
                                                             "COADSX": 16})
    reader = subprocess.Popen([sys.executable, "-c",
                               READER_LOOP.format(stop=stop, store=store)])
    try:
        time.sleep(1.0)  # the reader is looping
        for start in range(2, 96, 2):
            months.isel(TIME=slice(start, start + 2)).chunkpress.to_zarr(store,
                                                                         append_dim="TIME")
    finally:
        open(stop, "w").close()
        reader.wait(timeout=60)
    assert reader.returncode == 0
    back = opened(store)
    np.testing.assert_array_equal(back.TIME.values, months.TIME.values)
    assert float(np.nanmax(np.abs(back.SST.values - months.SST.values))) <= 0.01
    np.testing.assert_array_equal(np.isnan(back.SST.values), np.isnan(months.SST.values))
    assert chunkpress.verify(store).empty


KILLED_BETWEEN_PUTS = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import chunkpress.accessor
from chunkpress.storage import journal
from test_append import coads
install = journal._install
def install_then_die(where, key, data):
    install(where, key, data)
    if key == "SST/zarr.json":  # the first document after the journal
        os.kill(os.getpid(), signal.SIGKILL)
journal._install = install_then_die
coads().isel(TIME=slice(4, 8)).chunkpress.to_zarr({store!r}, append_dim="TIME")
"""


def test_crash_between_metadata_puts_is_finished_by_the_next_reader(ds, tmp_path):
    store = str(tmp_path / "s.zarr")
    ds.isel(TIME=slice(0, 4)).chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS)
    script = KILLED_BETWEEN_PUTS.format(tests=os.path.dirname(__file__), store=store)
    result = subprocess.run([sys.executable, "-c", script])
    assert result.returncode == -signal.SIGKILL
    assert os.path.exists(tmp_path / ".s.zarr.chunkpress-journal")
    # xarray reads the root's consolidated metadata, written last: the old dataset, whole
    assert opened(store).sizes["TIME"] == 4
    # chunkpress's readers finish the append first: the new dataset, whole
    assert chunkpress.from_zarr(store, path="TIME").shape == (8,)
    assert not os.path.exists(tmp_path / ".s.zarr.chunkpress-journal")
    back = opened(store)
    np.testing.assert_array_equal(back.TIME.values, ds.TIME.values[:8])
    assert float(np.nanmax(np.abs(back.SST.values - ds.SST.values[:8]))) <= 0.01


def test_storage_options_go_with_urls_only(ds, tmp_path):
    local = str(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="storage_options go with a URL.*local path"):
        ds.chunkpress.to_zarr(local, tolerance=0.01, storage_options={"anon": True})
    with pytest.raises(ValueError, match="storage_options go with a URL.*local path"):
        chunkpress.to_zarr(ds.SST.values, local, tolerance=0.01, storage_options={})
    assert not os.path.exists(local)
    ds.isel(TIME=slice(0, 4)).chunkpress.to_zarr(local, tolerance=0.01, chunks=CHUNKS)
    with pytest.raises(ValueError, match="storage_options go with a URL.*local path"):
        ds.isel(TIME=slice(4, 8)).chunkpress.to_zarr(local, append_dim="TIME",
                                                     storage_options={"anon": True})
    memory = zarr.storage.MemoryStore()
    ds.isel(TIME=slice(0, 4)).chunkpress.to_zarr(memory, tolerance=0.01, chunks=CHUNKS)
    with pytest.raises(ValueError, match="storage_options go with a URL"):
        ds.isel(TIME=slice(4, 8)).chunkpress.to_zarr(memory, append_dim="TIME",
                                                     storage_options={"anon": True})
    ds.isel(TIME=slice(4, 8)).chunkpress.to_zarr(memory, append_dim="TIME")  # a memory store
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = xr.open_zarr(memory).load()
    assert float(np.nanmax(np.abs(back.SST.values - ds.SST.values[:8]))) <= 0.01


# --- regions ------------------------------------------------------------------------------


def test_dataset_region_rewrites_those_chunks_only(ds, tmp_path):
    store = str(tmp_path / "s.zarr")
    ds.chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS)
    before = snapshot(store)
    warmer = ds.isel(TIME=slice(4, 8)).copy()
    warmer["SST"] = warmer.SST + 1
    warmer.chunkpress.to_zarr(store, region={"TIME": slice(4, 8)})
    after = snapshot(store)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed and all(k.startswith(os.path.join("SST", "c", "1")) or
                           k.startswith("TIME") for k in changed)
    assert set(after) == set(before)  # no staged file left
    back = opened(store)
    expected = ds.SST.values.copy()
    expected[4:8] += 1
    assert float(np.nanmax(np.abs(back.SST.values - expected))) <= 0.01
    np.testing.assert_array_equal(back.TIME.values, ds.TIME.values)
    with pytest.raises(ValueError, match=r"region 5:8 along 'TIME'.*chunk size is 4.*e\.g\. 4:8"):
        ds.isel(TIME=slice(5, 8)).chunkpress.to_zarr(store, region={"TIME": slice(5, 8)})


def test_array_region_aligned_failed_and_misaligned(tmp_path):
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.standard_normal((32, 64, 64)), axis=2).astype("f4")
    store = str(tmp_path / "a.zarr")
    chunkpress.to_zarr(x, store, tolerance=0.01, chunks=(8, 32, 32))
    y = x[8:16] * 2
    chunkpress.to_zarr(y, store, region=(slice(8, 16), slice(None), slice(None)))
    expected = x.copy()
    expected[8:16] = y
    back = chunkpress.from_zarr(store).compute()
    assert np.max(np.abs(back - expected)) <= 0.01
    before = snapshot(store)
    with pytest.raises(ValueError, match=r"tolerance=0\.01.*tolerance=0\.1"):
        chunkpress.to_zarr(y, store, region=(slice(8, 16), slice(None), slice(None)),
                           tolerance=0.1)
    with pytest.raises(ValueError, match=r"region 4:12 along axis 0 .*chunk size is 8.*0:16"):
        chunkpress.to_zarr(x[4:12], store, region=(slice(4, 12), slice(None), slice(None)))

    def read(block, block_info=None):
        if block_info[0]["chunk-location"][1] == 1:
            raise RuntimeError("input block could not be read")
        return block

    failing = da.from_array(x[16:32] + 5, chunks=(8, 32, 32)).map_blocks(read, dtype="f4")
    with pytest.raises(RuntimeError, match="input block"):
        chunkpress.to_zarr(failing, store, region=(slice(16, 32), slice(None), slice(None)))
    assert snapshot(store) == before  # old chunks, and no staged file left


# --- chunks= by dimension name ---------------------------------------------------------------


def test_chunks_by_dimension_name(ds):
    encoded = ds.chunkpress.encode("zfp", tolerance=0.01, chunks={"TIME": 4, "COADSY": 24})
    assert encoded.arrays["SST"].chunks == ((4, 4, 4), (24, 24), (92,))
    with pytest.raises(ValueError, match="'time' is not a dimension.*TIME, COADSY, COADSX"):
        ds.chunkpress.encode("zfp", tolerance=0.01, chunks={"time": 4})


def test_journal_left_by_a_replaced_store_is_ignored(ds, tmp_path):
    """A journal whose documents no longer match the store (it was overwritten meanwhile)
    changes nothing."""
    store = str(tmp_path / "s.zarr")
    ds.isel(TIME=slice(0, 4)).chunkpress.to_zarr(store, tolerance=0.01, chunks=CHUNKS)
    stale = {"write": "0" * 16, "renames": [], "documents": [
        {"key": "SST/zarr.json", "old": "0" * 64, "new": json.dumps({"bogus": True})}]}
    with open(tmp_path / ".s.zarr.chunkpress-journal", "w") as file:
        json.dump(stale, file)
    before = snapshot(store)
    assert journal.finish_pending(store) is None
    assert snapshot(store) == before
    assert not os.path.exists(tmp_path / ".s.zarr.chunkpress-journal")


# --- last: the module's cluster stays the default scheduler after it ---------------------------


def test_append_on_a_cluster(ds, tmp_path, client):
    store = str(tmp_path / "s.zarr")
    ds.isel(TIME=slice(0, 8)).chunk({"TIME": 4}).chunkpress.to_zarr(store, tolerance=0.01,
                                                                     chunks=CHUNKS)
    ds.isel(TIME=slice(8, 12)).chunk({"TIME": 4}).chunkpress.to_zarr(store, append_dim="TIME")
    back = opened(store)
    assert float(np.nanmax(np.abs(back.SST.values - ds.SST.values))) <= 0.01
    assert chunkpress.verify(store).empty
