"""xarray: the accessor, CompressedDataset, and stores plain xarray reads back."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from zarr.storage import MemoryStore

import chunkpress
import chunkpress.accessor  # noqa: F401 - registers the accessor
from chunkpress.accessor import CompressedDataset

from test_zarr import _installed_env

#: the encodings a round trip must keep
CF_KEYS = ("dtype", "_FillValue", "scale_factor", "add_offset", "units", "calendar")


def dataset(chunked=False):
    """A small, realistic dataset: fill values, packing, times, integer and 2-D coordinates."""
    rng = np.random.default_rng(0)
    shape = (6, 20, 24)
    t = (280 + np.cumsum(rng.standard_normal(shape), axis=0)).astype("float32")
    t[:, :3, :5] = np.nan  # land
    u = rng.standard_normal(shape)
    u[2, 7, 7] = np.nan
    p = (1000 + 5 * rng.standard_normal(shape)).astype("float32")
    ds = xr.Dataset(
        {
            "t": (("time", "lat", "lon"), t, {"units": "K", "long_name": "air temperature"}),
            "u": (("time", "lat", "lon"), u, {"units": "m s-1"}),
            "p": (("time", "lat", "lon"), p, {"units": "hPa"}),
            "count": (("lat", "lon"), rng.integers(0, 9, shape[1:]).astype("int32")),
        },
        coords={
            "time": pd.date_range("2000-01-01", periods=shape[0], freq="D"),
            "lat": ("lat", np.linspace(-88, 88, shape[1]), {"units": "degrees_north"}),
            "lon": ("lon", np.linspace(0, 345, shape[2]), {"units": "degrees_east"}),
            "area": (("lat", "lon"), rng.random(shape[1:])),
        },
        attrs={"title": "chunkpress test", "Conventions": "CF-1.8"},
    )
    ds.t.encoding = {"_FillValue": -9999.0, "dtype": "float32"}
    ds.p.encoding = {"scale_factor": 0.01, "add_offset": 1000.0, "dtype": "int16",
                     "_FillValue": -32768}
    ds.time.encoding = {"units": "hours since 1990-01-01", "calendar": "standard"}
    return ds.chunk({"time": 3}) if chunked else ds


def assert_like_plain_xarray(back, plain):
    """Same variables, dims, coordinates, attributes and CF encodings as xarray's own store."""
    assert set(back.variables) == set(plain.variables)
    assert set(back.coords) == set(plain.coords)
    assert back.sizes == plain.sizes and back.attrs == plain.attrs
    for name in plain.variables:
        assert back[name].dims == plain[name].dims, name
        assert back[name].attrs == plain[name].attrs, name
        assert back[name].dtype == plain[name].dtype, name
        for key in CF_KEYS:
            a, b = back[name].encoding.get(key), plain[name].encoding.get(key)
            assert (a == b) or (a is not None and b is not None and np.isnan(a) and np.isnan(b)), \
                (name, key, a, b)


@pytest.mark.parametrize("chunked", [False, True])
def test_round_trip_keeps_everything_plain_xarray_keeps(tmp_path, chunked):
    ds = dataset(chunked)
    ds.to_zarr(tmp_path / "plain.zarr", zarr_format=3, consolidated=True)
    plain = xr.open_zarr(tmp_path / "plain.zarr")
    enc = ds.chunkpress.encode(codec="zfp", tolerance={"t": 0.01, "u": 0.1})
    assert isinstance(enc, CompressedDataset)
    enc.to_zarr(str(tmp_path / "c.zarr"))
    back = xr.open_zarr(tmp_path / "c.zarr")
    assert_like_plain_xarray(back, plain)
    for name, bound in (("t", 0.01), ("u", 0.1)):
        a, b = ds[name].values, back[name].values
        assert np.array_equal(np.isnan(a), np.isnan(b)), name  # missing where they were
        assert np.nanmax(np.abs(a - b)) <= bound, name
    # kept exact: integers, packed values, coordinates
    for name in ("count", "p", "time", "lat", "area"):
        assert np.array_equal(back[name].values, plain[name].values), name


def test_decode_and_report(tmp_path):
    ds = dataset()
    enc = ds.chunkpress.encode(tolerance=0.05, verify=True)
    decoded = enc.decode()
    assert isinstance(decoded, xr.Dataset) and set(decoded.variables) == set(ds.variables)
    for name in ("t", "u"):
        assert decoded[name].dtype == ds[name].dtype
        assert decoded[name].attrs == ds[name].attrs
        assert np.array_equal(np.isnan(decoded[name].values), np.isnan(ds[name].values))
        assert np.nanmax(np.abs(decoded[name].values - ds[name].values)) <= 0.05
    report = enc.report()
    assert list(report.index) == list(ds.data_vars)
    row = report.loc["t"]
    assert (row.codec, row.parameters, row.error_bound) == ("zfp", "tolerance=0.05", 0.05)
    assert row.original_bytes == ds.t.nbytes
    assert row.ratio == pytest.approx(ds.t.nbytes / row.compressed_bytes)
    measured = float(np.nanmax(np.abs(decoded.t.values - ds.t.values)))
    assert row.max_error == pytest.approx(measured)
    assert report.loc["count", "codec"] == "exact"
    assert report.loc["p", "parameters"] == "stored as int16"


def test_auto_chooses_per_variable_reports_and_records_the_choice(tmp_path):
    ds = dataset()
    enc = ds.chunkpress.encode("auto", tolerance={"t": 0.05, "u": 0.01}, verify=True)
    report = enc.report()
    for name, bound in (("t", 0.05), ("u", 0.01)):
        choice = enc.arrays[name].choice
        assert report.loc[name, "codec"] in (choice.codec, "auto")
        assert report.loc[name, "choice"] == choice.summary()
        assert "sampled ratios" in report.loc[name, "choice"]
        assert report.loc[name, "max_error"] <= bound == report.loc[name, "error_bound"]
    assert report.loc["count", "codec"] == "exact" and report.loc["count", "choice"] == ""
    enc.to_zarr(str(tmp_path / "a.zarr"))
    back = xr.open_zarr(tmp_path / "a.zarr")
    assert np.array_equal(np.isnan(back.t.values), np.isnan(ds.t.values))
    assert np.nanmax(np.abs(back.t.values - ds.t.values)) <= 0.05
    assert np.nanmax(np.abs(back.u.values - ds.u.values)) <= 0.01
    recorded = json.loads(back.t.attrs["chunkpress_auto"])  # for `chunkpress info`
    assert recorded["codec"] == enc.arrays["t"].choice.codec
    assert set(recorded["sampled_ratios"]) == {"zfp", "sz3", "sperr", "lerc"}


def test_per_variable_codec_and_dataarray():
    ds = dataset()
    enc = ds.chunkpress.encode(codec={"t": "sz3", "u": "zfp"}, tolerance={"t": 0.1, "u": 0.2})
    assert {k: v.codec for k, v in enc.arrays.items()} == {"t": "sz3", "u": "zfp"}
    enc = ds.t.chunkpress.encode(tolerance=0.1)
    array = enc.decode()
    assert isinstance(array, xr.DataArray) and array.name == "t"
    assert np.nanmax(np.abs(array.values - ds.t.values)) <= 0.1


def test_variables_listed_are_compressed_others_kept_exact():
    enc = dataset().chunkpress.encode(tolerance=0.1, variables=["u"])
    assert list(enc.arrays) == ["u"]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"tolerance": {"nope": 0.1}}, KeyError, "nope"),
    ({"tolerance": 0.1, "variables": ["nope"]}, KeyError, "nope"),
    ({"tolerance": 0.1, "variables": ["count"]}, ValueError, "int32"),
    ({"tolerance": -1.0}, ValueError, "tolerance"),
    ({"codec": "nope", "tolerance": 0.1}, ValueError, "codec"),
])
def test_user_errors_name_the_variable_and_the_fix(kwargs, error, match):
    with pytest.raises(error, match=match):
        dataset().chunkpress.encode(**kwargs)


def test_accessor_holds_no_state_and_encode_is_lazy(monkeypatch):
    ds = dataset(chunked=True)
    assert vars(ds.chunkpress) == {"_obj": ds}
    calls = []
    monkeypatch.setattr(chunkpress.graph.dispatch, "encode", lambda *a, **k: calls.append(1))
    ds.chunkpress.encode(tolerance=0.1)
    assert calls == []


def test_compute_false_and_memory_store():
    ds = dataset(chunked=True)
    store = MemoryStore()
    delayed = ds.chunkpress.to_zarr(store, tolerance=0.1, compute=False)
    dask.compute(delayed)
    back = xr.open_zarr(store)
    assert np.nanmax(np.abs(back.t.values - ds.t.values)) <= 0.1
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ds.chunkpress.to_zarr(store, tolerance=0.1)
    ds.chunkpress.to_zarr(store, tolerance=0.5, overwrite=True)


NEW_PROCESS = """
import xarray as xr
ds = xr.open_zarr({path!r})
print(ds.t.encoding["serializer"].to_dict()["name"])
print(float(ds.t.isel(time=1, lat=10, lon=12)))
"""


def test_open_zarr_in_a_new_process_without_importing_chunkpress(tmp_path):
    ds = dataset()
    path = str(tmp_path / "c.zarr")
    ds.chunkpress.to_zarr(path, tolerance=0.01)
    script = textwrap.dedent(NEW_PROCESS.format(path=path, out=str(tmp_path / "x.nc")))
    result = subprocess.run([sys.executable, "-c", script], env=_installed_env(tmp_path),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    name, value = result.stdout.split()
    assert name == "chunkpress.zfp"
    assert abs(float(value) - float(ds.t[1, 10, 12])) <= 0.01


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_variable_made_in_memory_keeps_its_dtype(tmp_path, dtype):
    # no encoding from a file: the store must still hold the variable's own dtype
    values = np.linspace(0, 1, 8 * 6 * 4, dtype=dtype).reshape(8, 6, 4)
    for data in (values, dask.array.from_array(values, chunks=(4, 6, 4))):
        ds = xr.Dataset({"t": (("z", "y", "x"), data)})
        path = tmp_path / f"{type(data).__name__}.zarr"
        ds.chunkpress.encode(tolerance=1e-3, chunks=(4, 4, 4)).to_zarr(path)
        back = xr.open_zarr(path).t
        assert back.dtype == dtype
        assert np.max(np.abs(back.values - values)) <= 1e-3


@pytest.mark.parametrize("calendar", ["standard", "noleap"])
def test_a_damaged_time_chunk_is_an_error_not_other_dates(tmp_path, calendar):
    """Times kept exact (datetime64, or cftime for a model's noleap calendar) carry a CRC-32C
    like every exact variable: a flipped bit in their chunk is an error in every reader, and
    verify names it, where it read back as other dates."""
    ds = dataset()
    if calendar == "noleap":
        ds = ds.assign_coords(time=xr.date_range("2000-01-01", periods=ds.sizes["time"],
                                                 freq="D", calendar="noleap",
                                                 use_cftime=True))
        ds.time.encoding = {"units": "days since 1850-01-01", "calendar": "noleap"}
    path = tmp_path / "s.zarr"
    ds.chunkpress.to_zarr(path, tolerance=0.01)
    names = [c["name"] for c in json.loads((path / "time" / "zarr.json").read_text())["codecs"]]
    assert names[-1] == "crc32c", names
    chunk = path / "time" / "c" / "0"
    good = chunk.read_bytes()
    for offset in range(0, len(good), max(1, len(good) // 12)):
        damaged = bytearray(good)
        damaged[offset] ^= 0x10
        chunk.write_bytes(bytes(damaged))
        with pytest.raises(Exception, match="(?i)checksum|crc"):
            xr.open_zarr(path).time.load()
        problems = chunkpress.verify(str(path))
        assert list(problems["array"]) == ["time"], problems
    chunk.write_bytes(good)
    assert list(xr.open_zarr(path).indexes["time"]) == list(ds.indexes["time"])


def test_text_read_from_a_zarr_input_is_checksummed(tmp_path):
    """A Zarr input's strings come as numpy's StringDType: stored again, they carry the CRC-32C
    like any text variable, so a damaged chunk is an error, not other strings."""
    import json

    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    xr.Dataset({"x": (("y",), np.random.default_rng(0).random(16).astype("f4")),
                "s": (("y",), np.array([f"st{i}" for i in range(16)], dtype=object))}
               ).to_zarr(src, zarr_format=2)
    xr.open_zarr(src).chunkpress.to_zarr(out, tolerance=0.01)
    with open(out / "s" / "zarr.json") as f:
        assert json.load(f)["codecs"][-1]["name"] == "crc32c"
    assert list(xr.open_zarr(out).s.values) == [f"st{i}" for i in range(16)]
    chunk = out / "s" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[18] ^= 1
    chunk.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        xr.open_zarr(out).s.values
    assert len(chunkpress.verify(out)) == 1  # the damaged chunk, named
