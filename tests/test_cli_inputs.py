"""`chunkpress compress` on real inputs: several monthly netCDF files or a glob, year-0 time
units (the COADS climatology), packed int16, _FillValue -1e34, land, variables in different
units with a bound each (absolute, % of the range, per variable, from a TOML file), s3://.

Every round trip is checked value by value against the variable's own bound; every mistake is
one line on stderr, a non-zero exit, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

from chunkpress.cli import main

NY, NX = 24, 32
YEAR0 = "hours since 0000-01-01 00:00:00"


def month(i, months=4):
    """One file's worth: sea-level pressure (hPa), humidity (g/kg), packed air temperature."""
    rng = np.random.default_rng(i)
    y, x = np.meshgrid(np.linspace(-1, 1, NY), np.linspace(-1, 1, NX), indexing="ij")
    land = (x - 0.3) ** 2 + (y + 0.2) ** 2 < 0.15
    t = np.arange(months)[:, None, None] + i * months
    slp = 1013 + 15 * np.sin(3 * x + t / 5) * np.cos(2 * y) + rng.normal(0, 0.3, (months, NY, NX))
    hum = 9 + 6 * np.cos(2 * x - t / 7) * np.exp(-y ** 2) + rng.normal(0, 0.05, (months, NY, NX))
    airt = 15 + 10 * np.cos(y) - t / 10 + rng.normal(0, 0.2, (months, NY, NX))
    slp[:, land] = np.nan
    hum[:, land] = np.nan
    hours = (i * months + np.arange(months)) * 730.5 + 366.0  # mid-months of a climatology
    ds = xr.Dataset(
        {"SLP": (("TIME", "lat", "lon"), slp.astype("float32"),
                 {"units": "hPa", "long_name": "sea level pressure"}),
         "HUM": (("TIME", "lat", "lon"), hum.astype("float32"),
                 {"units": "g/kg", "long_name": "specific humidity"}),
         "AIRT": (("TIME", "lat", "lon"), airt, {"units": "degC"}),
         "land": (("lat", "lon"), land.astype("int8"))},
        coords={"TIME": ("TIME", hours, {"units": YEAR0, "time_origin": "1-JAN-0000 00:00:00"}),
                "lat": ("lat", np.linspace(-60, 60, NY), {"units": "degrees_north"}),
                "lon": ("lon", np.linspace(0, 355, NX), {"units": "degrees_east"})})
    for name in ("SLP", "HUM"):
        ds[name].encoding.update(_FillValue=np.float32(-1e34), dtype="float32")
    ds["AIRT"].encoding.update(dtype="int16", scale_factor=0.01, add_offset=15.0,
                               _FillValue=np.int16(-32767))
    return ds


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three monthly files named as an archive names them (coads_0.nc, coads_1.nc, ...)."""
    folder = tmp_path_factory.mktemp("coads")
    paths = []
    for i in range(3):
        path = folder / f"coads_{i}.nc"
        month(i).to_netcdf(path, unlimited_dims=["TIME"])
        paths.append(str(path))
    return paths


def opened(*paths):
    """What the files hold, put together (times as the numbers stored)."""
    return xr.concat([xr.open_dataset(p, decode_times=False) for p in paths], "TIME",
                     data_vars="minimal", coords="minimal", compat="override")


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse: a malformed command line
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err):
    """The one line of the error (notes aside), never a traceback."""
    lines = [line for line in err.splitlines() if not line.startswith("chunkpress: note:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def check_bound(back, orig, bound):
    """The bound held on every value; missing values missing exactly where they were."""
    back, orig = np.asarray(back, "float64"), np.asarray(orig, "float64")
    np.testing.assert_array_equal(np.isnan(back), np.isnan(orig))
    error = np.abs(back - orig)[~np.isnan(orig)]
    assert error.max() <= bound, (error.max(), bound)


def value_range(a):
    return float(np.nanmax(a) - np.nanmin(a))


def test_a_glob_of_monthly_files_with_year_zero_times(tmp_path, capsys, files):
    out = tmp_path / "out.zarr"
    pattern = os.path.join(os.path.dirname(files[0]), "coads_*.nc")
    code, stdout, err = run(capsys, "compress", pattern, out, "--tolerance", "SLP=0.05",
                            "--tolerance", "0.1%", "--workers", "2")
    assert code == 0, err
    # the undecodable times: one note, naming the units and the flag; times kept as stored
    notes = [line for line in err.splitlines() if "note" in line]
    assert len(notes) == 1 and YEAR0 in notes[0] and "--no-decode-times" in notes[0]
    expected = opened(*files)
    back = xr.open_zarr(out, decode_times=False)
    np.testing.assert_array_equal(back.TIME.values, expected.TIME.values)
    assert back.TIME.attrs["units"] == YEAR0
    check_bound(back.SLP, expected.SLP, 0.05)
    hum_bound = 0.001 * value_range(expected.HUM)
    check_bound(back.HUM, expected.HUM, hum_bound)
    assert "0.1% of" in stdout  # what the percentage became
    assert back.SLP.attrs["units"] == "hPa" and back.HUM.attrs["units"] == "g/kg"
    # packed int16 kept exact (as stored), the land mask too
    np.testing.assert_array_equal(back.AIRT.values, expected.AIRT.values)
    np.testing.assert_array_equal(back.land.values, expected.land.values)
    assert back.SLP.encoding["_FillValue"] == np.float32(-1e34)  # the CF encoding kept


def test_the_command_on_a_netcdf3_climatology(tmp_path):
    """As a person runs it: the installed command on a classic-format .cdf file, piped."""
    from test_zarr import _installed_env

    path = tmp_path / "coads_climatology.cdf"
    month(0).to_netcdf(path, format="NETCDF3_CLASSIC")
    out = tmp_path / "coads.zarr"
    result = subprocess.run([sys.executable, "-m", "chunkpress.cli", "compress", str(path),
                             str(out), "--tolerance", "SLP=0.01", "--tolerance", "1%"],
                            env=_installed_env(tmp_path), cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("\n") == 1 and "--no-decode-times" in result.stderr
    expected = opened(path)
    back = xr.open_zarr(out, decode_times=False)
    check_bound(back.SLP, expected.SLP, 0.01)
    check_bound(back.HUM, expected.HUM, 0.01 * value_range(expected.HUM))


def test_several_files_named_out_of_order_and_no_decode_times(tmp_path, capsys, files):
    out = tmp_path / "out.zarr"
    code, stdout, err = run(capsys, "compress", files[2], files[0], files[1], out,
                            "--no-decode-times", "--codec", "sz3", "--tolerance", "0.02")
    assert code == 0, err
    assert "note" not in err  # asked for: nothing to say
    expected = opened(*files)
    back = xr.open_zarr(out, decode_times=False)
    np.testing.assert_array_equal(back.TIME.values, expected.TIME.values)  # in time order
    for name in ("SLP", "HUM"):
        check_bound(back[name], expected[name], 0.02)


def test_files_without_a_time_coordinate_go_along_their_unlimited_dimension(tmp_path, capsys):
    paths = []
    for i in range(2):
        path = tmp_path / f"m{i}.nc"
        month(i).drop_vars("TIME").to_netcdf(path, unlimited_dims=["TIME"])
        paths.append(path)
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", *paths, out, "--tolerance", "0.05")
    assert code == 0, err
    back = xr.open_zarr(out, decode_times=False)
    expected = xr.concat([month(0), month(1)], "TIME", data_vars="minimal", coords="minimal",
                         compat="override")
    check_bound(back.SLP, expected.SLP, 0.05)


def test_inputs_whose_time_units_differ_are_refused_undecoded(tmp_path, capsys):
    paths = []
    for i in range(2):
        ds = month(i)
        ds.TIME.attrs["units"] = f"hours since 000{i}-01-01 00:00:00"
        paths.append(tmp_path / f"m{i}.nc")
        ds.to_netcdf(paths[-1], unlimited_dims=["TIME"])
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", *paths, out, "--tolerance", "0.05",
                       "--no-decode-times")
    assert code == 1 and len(err.splitlines()) == 1 and "units differ" in err
    assert not out.exists()


def test_codec_mode_and_quality_per_variable(tmp_path, capsys, files):
    out = tmp_path / "out.zarr"
    code, stdout, err = run(capsys, "compress", files[0], out, "--codec", "sz3",
                            "--tolerance", "0.05", "--codec", "HUM=sperr", "--mode", "HUM=psnr",
                            "--quality", "HUM=60", "--codec", "AIRT=exact")
    assert code == 0, err
    lines = {line.split()[0]: line for line in stdout.splitlines() if line.strip()}
    assert "sz3" in lines["SLP"] and "sperr" in lines["HUM"]
    expected = opened(files[0])
    back = xr.open_zarr(out, decode_times=False)
    check_bound(back.SLP, expected.SLP, 0.05)
    hum, ref = back.HUM.values.astype("float64"), expected.HUM.values.astype("float64")
    rmse = np.sqrt(np.nanmean((hum - ref) ** 2))
    # the PSNR asked for (SPERR's PSNR mode is a target: 59.8 dB for 60 here)
    assert 20 * np.log10(value_range(ref) / rmse) >= 59.5
    np.testing.assert_array_equal(np.isnan(hum), np.isnan(ref))


def test_config_file_and_the_command_line_over_it(tmp_path, capsys, files):
    config = tmp_path / "bounds.toml"
    config.write_text(textwrap.dedent("""\
        [defaults]
        codec = "sz3"
        tolerance = "0.1%"
        [variables.SLP]
        tolerance = 0.01
        [variables.HUM]
        codec = "zfp"
        tolerance = 0.5
        """))
    out = tmp_path / "out.zarr"
    code, stdout, err = run(capsys, "compress", files[0], out, "--config", config,
                            "--tolerance", "HUM=0.02")  # the command line wins
    assert code == 0, err
    lines = {line.split()[0]: line for line in stdout.splitlines() if line.strip()}
    assert "sz3" in lines["SLP"] and "zfp" in lines["HUM"]
    expected = opened(files[0])
    back = xr.open_zarr(out, decode_times=False)
    check_bound(back.SLP, expected.SLP, 0.01)
    check_bound(back.HUM, expected.HUM, 0.02)
    np.testing.assert_array_equal(back.AIRT.values, expected.AIRT.values)


def test_a_percentage_for_the_rest_and_a_lossless_codec_for_one(tmp_path, capsys, files):
    out = tmp_path / "out.zarr"
    code, stdout, err = run(capsys, "compress", files[0], out, "--codec", "SLP=floatpred+zstd",
                            "--tolerance", "0.5%")  # the bare tolerance is not SLP's
    assert code == 0, err
    expected = opened(files[0])
    back = xr.open_zarr(out, decode_times=False)
    np.testing.assert_array_equal(back.SLP.values, expected.SLP.values)
    check_bound(back.HUM, expected.HUM, 0.005 * value_range(expected.HUM))


BAD_CONFIGS = {
    "unknown key": ("[variables.SLP]\ntolerence = 0.1\n", "unknown key 'tolerence'"),
    "unknown variable": ("[variables.PRES]\ntolerance = 0.1\n", "'PRES' is not a data variable"),
    "bad value": ("[defaults]\ntolerance = \"lots\"\n", "[defaults] tolerance"),
    "negative": ("[variables.HUM]\ntolerance = -0.1\n", "> 0"),
    "percent twice": ("[defaults]\ntolerance = \"5%%\"\n", "5%%"),
    "unknown codec": ("[variables.HUM]\ncodec = \"zip\"\n", "codec must be one of"),
    "unknown table": ("[default]\ntolerance = 0.1\n", "unknown table or key 'default'"),
    "not toml": ("[defaults\n", "not valid TOML"),
    "bad mode": ("[defaults]\nmode = \"fast\"\n", "[defaults] mode"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, capsys, files, case):
    text, words = BAD_CONFIGS[case]
    config = tmp_path / "bounds.toml"
    config.write_text(text)
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", files[0], out, "--config", config, "--tolerance",
                       "0.1")
    assert code == 1, err
    assert words in one_error(err) and "bounds.toml" in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv, code, words", [
    (["--tolerance", "PRES=0.1"], 1, "'PRES' is not a data variable"),
    (["--codec", "PRES=sz3", "--tolerance", "0.1"], 1, "--codec PRES="),
    (["--tolerance", "abc"], 2, "must be a number"),
    (["--tolerance", "SLP=abc"], 2, "for SLP"),
    (["--tolerance", "5%%"], 2, "5%%"),
    (["--tolerance", "SLP=-1"], 2, "> 0"),
    (["--tolerance", "0"], 2, "> 0"),
    (["--tolerance", "150%"], 2, "at most 100%"),
    (["--tolerance", "SLP=0.1", "--tolerance", "SLP=0.2"], 2, "given twice for SLP"),
    (["--tolerance", "0.1", "--tolerance", "0.2"], 2, "given twice for the rest"),
    (["--mode", "fast", "--quality", "60"], 2, "must be one of rate, psnr, pwe"),
    (["--codec", "HUM=nope", "--tolerance", "0.1"], 1, "codec must be one of"),
    (["--tolerance", "SLP=0.1"], 1, "HUM"),  # HUM: no tolerance for it
    (["--tolerance", "0.1", "--var", "SLP", "--tolerance", "HUM=0.1"], 1, "--var HUM"),
    (["--tolerance", "0.1", "--engine", "nope"], 1, "--engine nope"),
    (["--tolerance", "0.1", "--storage-option", "anon"], 2, "KEY=VALUE"),
    (["--tolerance", "0.1", "--config", "{tmp}/missing.toml"], 1, "missing.toml: no such file"),
    # a bound no codec takes was dropped without a word: SLP came back 8 hPa off, not 0.1
    (["--codec", "bitround", "--keepbits", "5", "--tolerance", "0.1"], 1,
     "--tolerance 0.1: no variable's codec takes it (bitround takes --keepbits"),
    (["--tolerance", "0.1", "--keepbits", "5"], 1, "--keepbits 5: no variable's codec takes it"),
    (["--codec", "zfp", "--mode", "psnr", "--quality", "60"], 1, "--mode 'psnr': no variable"),
    (["--var", "PRES", "--tolerance", "0.1"], 1, "--var PRES: 'PRES' is not a variable"),
    (["--var", "lat", "--tolerance", "0.1"], 1, "--var lat: 'lat' is a coordinate"),
    (["--codec", "HUM=nope", "--tolerance", "0.1"], 1, "--codec HUM=nope: codec must be one of"),
    (["--tolerance", "0.1", "--storage-option", "anon=true"], 1,
     "--storage-option anon=...: is for s3://"),
    (["--tolerance", "0.1", "--tolerance", "AIRT=1%"], 1,
     "--tolerance AIRT=1%: 'AIRT' is packed as int16 (scale_factor/add_offset), which chunkpress "
     "keeps exact"),
    (["--tolerance", "0.1", "--var", "SLP", "--var", "land"], 1, "--var land: 'land' is stored "
     "as int8"),
])
def test_bad_bounds_are_one_line_and_nothing_is_written(tmp_path, capsys, files, argv, code,
                                                        words):
    out = tmp_path / "out.zarr"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    got, _, err = run(capsys, "compress", files[0], out, *argv)
    assert got == code, err
    assert words in one_error(err), err
    assert not out.exists()


def test_a_percentage_of_a_constant_variable_is_refused(tmp_path, capsys):
    ds = month(0)
    ds["HUM"][:] = 7.0
    path = tmp_path / "flat.nc"
    ds.to_netcdf(path)
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", path, out, "--tolerance", "1%")
    assert code == 1 and one_error(err)
    assert "HUM is constant" in err and "absolute --tolerance HUM=" in err
    assert not out.exists()


def test_a_glob_matching_nothing(tmp_path, capsys):
    code, _, err = run(capsys, "compress", tmp_path / "sst_*.nc", tmp_path / "o.zarr",
                       "--tolerance", "0.1")
    assert code == 1 and len(err.splitlines()) == 1 and "no file matches" in err


# --- verify --against: the inputs compress was given ----------------------------------------


def test_verify_against_the_monthly_files_compress_was_given(tmp_path, capsys):
    for i in range(3):
        month(i).to_netcdf(tmp_path / f"monthly_{i}.nc", unlimited_dims=["TIME"])
    store = tmp_path / "m.zarr"
    code, _, err = run(capsys, "compress", tmp_path / "monthly_*.nc", store, "--tolerance", "0.05")
    assert code == 0, err
    # a quoted glob (year-0 times: kept as numbers, with a note), the files named, or read
    # by a named engine: every decoded chunk measured, no problem
    for argv in ([tmp_path / "monthly_*.nc"],
                 [*(tmp_path / f"monthly_{i}.nc" for i in range(3)), "--no-decode-times"],
                 [tmp_path / "monthly_*.nc", "--no-decode-times", "--engine", "netcdf4"]):
        code, out, err = run(capsys, "verify", store, "--against", *argv)
        assert code == 0, err
        assert "no problem found" in out and "Traceback" not in err
    # one value of one file off by far more than the bound: the variable is named
    changed = tmp_path / "changed"
    changed.mkdir()
    for i in range(3):
        ds = month(i)
        if i == 1:
            ds["SLP"][2, 0, 0] += 1.0
        ds.to_netcdf(changed / f"monthly_{i}.nc", unlimited_dims=["TIME"])
    code, out, err = run(capsys, "verify", store, "--against", changed / "monthly_*.nc")
    assert code == 3, err
    problems = out.splitlines()[:-1]  # the last line: the summary
    assert len(problems) == 1 and problems[0].startswith("SLP:"), out
    assert "HUM" not in out and "AIRT" not in out
    # not the same data: the shapes differ, said per array, not compared
    code, out, err = run(capsys, "verify", store, "--against", tmp_path / "monthly_0.nc")
    assert code == 3 and "SLP" in out and "not compared" in out, out


def test_verify_against_inputs_it_cannot_read_is_one_line(tmp_path, capsys, files):
    store = tmp_path / "c.zarr"
    code, _, err = run(capsys, "compress", files[0], store, "--tolerance", "0.1")
    assert code == 0, err
    code, _, err = run(capsys, "verify", store, "--against", tmp_path / "nothing_*.nc")
    assert code == 1 and "no file matches" in one_error(err)
    code, _, err = run(capsys, "verify", store, "--against", tmp_path / "gone.nc")
    assert code == 1 and "no such file" in one_error(err)


def test_an_engine_that_cannot_read_the_file_is_one_line(tmp_path, capsys):
    # a netCDF 3 file, which h5netcdf (HDF5, netCDF-4 only) cannot read
    path = tmp_path / "classic.nc"
    xr.Dataset({"t": (("z", "y"), np.random.default_rng(0).random((8, 8), "float32"))}).to_netcdf(
        path, format="NETCDF3_CLASSIC", engine="netcdf4")
    code, _, err = run(capsys, "compress", path, tmp_path / "o.zarr", "--tolerance", "0.1",
                       "--engine", "h5netcdf")
    line = one_error(err)
    assert code == 1 and "--engine h5netcdf cannot read it" in line and "internal" not in line
    assert not (tmp_path / "o.zarr").exists()
    store = tmp_path / "c.zarr"
    assert run(capsys, "compress", path, store, "--tolerance", "0.1")[0] == 0
    code, _, err = run(capsys, "verify", store, "--against", path, "--engine", "h5netcdf")
    assert code == 1 and "--engine h5netcdf cannot read it" in one_error(err)


# --- s3:// (the moto server of servers.py) ---------------------------------------------------


def s3_options(s3):
    """The fixture's storage options as --storage-option flags (dicts and booleans as JSON)."""
    flags = []
    for key, value in s3.storage_options.items():
        text = value if isinstance(value, str) else json.dumps(value)
        flags += ["--storage-option", f"{key}={text}"]
    return flags


def test_s3_in_and_out(tmp_path, capsys, s3, files):
    # a local file to the bucket, then from the bucket (netCDF and Zarr) to disk
    url = s3.path("coads.zarr")
    code, _, err = run(capsys, "compress", files[0], url, "--tolerance", "0.05",
                       *s3_options(s3))
    assert code == 0, err
    expected = opened(files[0])
    back = xr.open_zarr(url, storage_options=s3.storage_options, decode_times=False)
    check_bound(back.SLP, expected.SLP, 0.05)
    code, _, err = run(capsys, "compress", files[0], url, "--tolerance", "0.05",
                       *s3_options(s3))  # it is there now: refused, one line
    assert code == 1 and "--overwrite" in one_error(err)

    s3.filesystem().put(files[1], s3.path("in/coads_1.nc"))
    s3.filesystem().put(files[2], s3.path("in/coads_2.nc"))
    out = tmp_path / "from_s3.zarr"
    code, _, err = run(capsys, "compress", s3.path("in/coads_*.nc"), out, "--tolerance",
                       "0.05", "--no-decode-times", *s3_options(s3))
    assert code == 0, err
    back = xr.open_zarr(out, decode_times=False)
    assert back.sizes["TIME"] == 8
    both = opened(files[1], files[2])
    check_bound(back.HUM, both.HUM, 0.05)

    again = tmp_path / "again.zarr"
    code, _, err = run(capsys, "compress", url, again, "--codec", "sz3", "--tolerance", "0.05",
                       *s3_options(s3))
    assert code == 0, err
    first = xr.open_zarr(url, storage_options=s3.storage_options, decode_times=False)
    check_bound(xr.open_zarr(again, decode_times=False).SLP, first.SLP, 0.05)


@pytest.fixture
def no_credentials(monkeypatch):
    """No AWS credentials anywhere this process could find them (nor the EC2 metadata)."""
    for key in list(os.environ):
        if key.startswith("AWS_") or key.startswith("FSSPEC_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


def test_s3_without_credentials_is_one_line(tmp_path, capsys, s3, files, no_credentials):
    endpoint = f"endpoint_url={s3.endpoint_url}"
    code, _, err = run(capsys, "compress", files[0], s3.path("o.zarr"), "--tolerance", "0.1",
                       "--storage-option", endpoint)
    assert code == 1 and one_error(err), err
    assert "no credentials" in err and "--storage-option key=" in err
    assert not s3.filesystem().exists(s3.path("o.zarr"))
    code, _, err = run(capsys, "compress", s3.path("in.zarr"), tmp_path / "o.zarr",
                       "--tolerance", "0.1", "--storage-option", endpoint)
    assert code == 1 and len(err.splitlines()) == 1 and "no credentials" in err, err
    assert not (tmp_path / "o.zarr").exists()


def test_s3_unreachable_or_missing_is_one_line(tmp_path, capsys, s3, files):
    options = ["--storage-option", "key=testing", "--storage-option", "secret=testing",
               "--storage-option", 'config_kwargs={"retries": {"max_attempts": 1}}']
    code, _, err = run(capsys, "compress", "s3://nowhere/in.zarr", tmp_path / "o.zarr",
                       "--tolerance", "0.1", "--storage-option", "endpoint_url=http://127.0.0.1:9",
                       *options)
    assert code == 1 and one_error(err), err
    assert "cannot reach" in err and "endpoint_url" in err
    code, _, err = run(capsys, "compress", s3.path("none.zarr"), tmp_path / "o.zarr",
                       "--tolerance", "0.1", *s3_options(s3))
    assert code == 1 and len(err.splitlines()) == 1 and "no such object" in err, err
    assert not (tmp_path / "o.zarr").exists()


def test_info_and_verify_of_an_s3_store_take_storage_options(tmp_path, capsys, s3, files,
                                                             no_credentials):
    url = s3.path("coads.zarr")
    code, _, err = run(capsys, "compress", files[0], url, "--tolerance", "0.05",
                       *s3_options(s3))
    assert code == 0, err
    endpoint = f"endpoint_url={s3.endpoint_url}"
    for command in ("info", "verify"):  # the error says to give --storage-option: it is taken
        code, _, err = run(capsys, command, url, "--storage-option", endpoint)
        assert code == 1 and "--storage-option key=" in one_error(err), err
    code, out, err = run(capsys, "info", url, *s3_options(s3))
    assert code == 0, err
    assert "SLP" in out and "zfp" in out and "tolerance=0.05" in out
    code, out, err = run(capsys, "verify", url, *s3_options(s3))
    assert code == 0 and "no problem found" in out, err
    # the original on S3 too, read with the same options
    s3.filesystem().put(files[0], s3.path("in/coads_0.nc"))
    code, out, err = run(capsys, "verify", url, "--against", s3.path("in/coads_*.nc"),
                         *s3_options(s3))
    assert code == 0 and "no problem found" in out, err
    changed = month(0)
    changed["HUM"][1, 0, 0] += 1.0
    changed.to_netcdf(tmp_path / "changed.nc", unlimited_dims=["TIME"])
    code, out, err = run(capsys, "verify", url, "--against", tmp_path / "changed.nc",
                         *s3_options(s3))
    assert code == 3 and out.startswith("HUM:") and "SLP" not in out, out


def test_a_tolerance_for_lossless_codecs_only_holds_as_it_is(tmp_path, capsys, files):
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", files[0], out, "--codec", "floatpred+zstd",
                       "--tolerance", "0.1")
    assert code == 0, err
    back, expected = xr.open_zarr(out, decode_times=False), opened(files[0])
    check_bound(back.SLP, expected.SLP, 0.0)


def test_inputs_that_cannot_be_put_together_say_why(tmp_path, capsys, files):
    out = tmp_path / "out.zarr"
    shifted = month(1)
    shifted["lon"] = shifted.lon + 1.0
    shifted.to_netcdf(tmp_path / "shifted.nc", unlimited_dims=["TIME"])
    folder = tmp_path / "monthly"
    folder.mkdir()
    fewer = month(1).drop_vars("HUM")
    fewer.to_netcdf(tmp_path / "fewer.nc", unlimited_dims=["TIME"])
    month(2).isel(TIME=slice(0, 0)).to_netcdf(tmp_path / "empty.nc", unlimited_dims=["TIME"])
    other_units = month(1)
    other_units["HUM"].attrs["units"] = "kg/kg"  # the store would say g/kg of every value
    other_units.to_netcdf(tmp_path / "units.nc", unlimited_dims=["TIME"])
    cases = [([files[0], tmp_path / "shifted.nc"], "their coordinate 'lon' differs"),
             ([files[0], tmp_path / "units.nc"], "HUM: its units differ between the inputs ("
              f"{files[0]}: 'g/kg', {tmp_path / 'units.nc'}: 'kg/kg')"),
             ([files[0], tmp_path / "empty.nc"], "empty.nc holds no TIME records"),
             ([files[0], tmp_path / "fewer.nc"], f"HUM is in {files[0]} but not in"),
             ([files[0], files[1], files[0]], f"{files[0]} is given twice"),
             ([folder], "a directory that is not a Zarr store")]
    for inputs, words in cases:
        code, _, err = run(capsys, "compress", *inputs, out, "--tolerance", "0.1",
                           "--no-decode-times")
        assert code == 1 and words in one_error(err), err
        assert not out.exists()


def test_s3_an_option_the_file_system_does_not_take_is_one_line(tmp_path, capsys, s3, files):
    for overwrite in ([], ["--overwrite"]):
        code, _, err = run(capsys, "compress", files[0], s3.path("o.zarr"), "--tolerance",
                           "0.1", *s3_options(s3), "--storage-option", "regoin=eu", *overwrite)
        assert code == 1 and "--storage-option regoin=" in one_error(err), err
        assert not s3.filesystem().exists(s3.path("o.zarr"))


def test_a_variable_without_the_record_dimension_that_differs_is_kept_from_every_input(
        tmp_path, capsys, files):
    # each monthly file has its own field without TIME (a month's maximum): the first file's
    # used to stand for all, the others' values dropped without a word
    paths = []
    for i in range(2):
        ds = month(i)
        ds["peak"] = ds.SLP.max("TIME") + i  # differs between the files
        ds.to_netcdf(tmp_path / f"m_{i}.nc", unlimited_dims=["TIME"])
        paths.append(tmp_path / f"m_{i}.nc")
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", *paths, out, "--tolerance", "0.05",
                       "--no-decode-times")
    assert code == 0, err
    assert "peak differ between the inputs" in err
    back = xr.open_zarr(out, decode_times=False)
    assert back.peak.dims == ("TIME", "lat", "lon") and back.land.dims == ("lat", "lon")
    for i, path in enumerate(paths):
        records = slice(4 * i, 4 * i + 4)
        own = xr.open_dataset(path, decode_times=False)
        for record in range(4):
            check_bound(back.peak.isel(TIME=records)[record], own.peak, 0.05)
        np.testing.assert_array_equal(back.land, own.land)


def test_inputs_that_hold_the_same_records_are_refused(tmp_path, capsys, files):
    # a month corrected and downloaded again beside a file holding it: one input's values for
    # the records both hold were kept and the other's dropped without a word
    corrected = month(0)
    corrected["SLP"] = corrected.SLP + 1.0
    longer = xr.concat([corrected, month(1)], "TIME", data_vars="minimal")
    longer.to_netcdf(tmp_path / "longer.nc", unlimited_dims=["TIME"])
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", files[0], tmp_path / "longer.nc", out,
                       "--tolerance", "0.1", "--no-decode-times")
    assert code == 1, err
    assert f"{files[0]} and {tmp_path / 'longer.nc'} both hold TIME 366.0" in one_error(err)
    assert not out.exists()


def test_a_percentage_is_of_the_finite_values_range(tmp_path, capsys):
    values = np.random.default_rng(2).random((4, 16, 16)).astype("float32")
    values[0, 0, 0], values[1, 1, 1], values[2, 2, 2] = np.inf, -np.inf, np.nan
    path, out = tmp_path / "inf.nc", tmp_path / "out.zarr"
    xr.Dataset({"v": (("t", "y", "x"), values)}).to_netcdf(path)
    code, printed, err = run(capsys, "compress", path, out, "--tolerance", "1%")
    assert code == 0, err  # was: "v has no finite values"
    back = xr.open_zarr(out).v.values
    finite = np.isfinite(values)
    np.testing.assert_array_equal(back[~finite], values[~finite])
    span = float(values[finite].max() - values[finite].min())
    assert np.abs(back[finite] - values[finite]).max() <= 0.01 * span
    assert f"(1% of {span:.4g})" in printed


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_zarr_store_written_by_xarray_is_an_input(tmp_path, capsys, files, zarr_format):
    # v2: its numcodecs Blosc went into the v3 output ("internal error", exit 4); v3: its zstd
    # without a CRC stood in for the CRC-checked codecs of the variables kept exact
    source = tmp_path / "in.zarr"
    xr.open_dataset(files[0], decode_times=False).to_zarr(source, zarr_format=zarr_format,
                                                          consolidated=False)
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", source, out, "--tolerance", "0.05")
    assert code == 0, err
    assert "consolidated" not in err
    import zarr

    group = zarr.open_group(str(out), mode="r")
    for name in ("AIRT", "land", "TIME", "lat"):  # kept exact: a damaged chunk is an error
        assert "crc32c" in [type(c).__name__.lower().replace("codec", "")
                            for c in group[name].metadata.codecs], name
    back, expected = xr.open_zarr(out, decode_times=False), opened(files[0])
    check_bound(back.SLP, expected.SLP, 0.05)
    np.testing.assert_array_equal(back.AIRT, expected.AIRT)


def test_s3_a_store_is_read_by_any_name_and_a_zip_is_written_locally(tmp_path, capsys, s3,
                                                                     files):
    # a store named without .zarr was opened as a netCDF file ("xarray cannot open it"); a
    # .zip output on S3 became a directory named .zip, which compress then could not read
    import zarr

    xr.open_dataset(files[0], decode_times=False).to_zarr(
        zarr.storage.FsspecStore.from_url(s3.path("monthly"),
                                          storage_options=s3.storage_options),
        consolidated=False)
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", s3.path("monthly"), out, "--tolerance", "0.05",
                       *s3_options(s3))
    assert code == 0, err
    check_bound(xr.open_zarr(out, decode_times=False).SLP, opened(files[0]).SLP, 0.05)
    code, _, err = run(capsys, "compress", files[0], s3.path("out.zip"), "--tolerance", "0.05",
                       *s3_options(s3))
    assert code == 1 and "a .zip store is written on a local path only" in one_error(err)
    assert not s3.filesystem().exists(s3.path("out.zip"))
    code, _, err = run(capsys, "compress", files[0], "nosuch://bucket/o.zarr", "--tolerance",
                       "0.05")
    assert code == 1 and "Protocol not known: nosuch" in one_error(err), err


def test_portable_with_a_codec_from_the_config_file_names_the_file(tmp_path, capsys, files):
    config = tmp_path / "bounds.toml"
    config.write_text('[defaults]\ncodec = "sz3"\ntolerance = 0.1\n')
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", files[0], out, "--config", config, "--portable")
    assert code == 1 and f"drop codec from {config}" in one_error(err), err
    assert not out.exists()


def test_cell_bounds_are_kept_exact_unless_named(tmp_path, capsys):
    # lat_bnds was compressed like a field: rounded, a cell's edge no longer met its
    # neighbour's (regridding tools check that they do)
    lat = np.linspace(-60, 60, NY)
    edges = np.stack([lat - 2.5, lat + 2.5], 1) + np.random.default_rng(3).normal(0, 1e-3, (NY, 1))
    ds = month(0).assign(lat_bnds=(("lat", "nv"), edges))
    ds["lat"].attrs["bounds"] = "lat_bnds"
    path, out = tmp_path / "in.nc", tmp_path / "out.zarr"
    ds.to_netcdf(path, unlimited_dims=["TIME"])
    code, _, err = run(capsys, "compress", path, out, "--tolerance", "0.1")
    assert code == 0, err
    back = xr.open_zarr(out, decode_times=False)
    np.testing.assert_array_equal(back.lat_bnds, edges)
    check_bound(back.SLP, ds.SLP, 0.1)
    again = tmp_path / "again.zarr"
    code, _, err = run(capsys, "compress", path, again, "--tolerance", "0.1", "--tolerance",
                       "lat_bnds=0.01")
    assert code == 0, err
    check_bound(xr.open_zarr(again, decode_times=False).lat_bnds, edges, 0.01)


def test_a_mistake_on_year_zero_files_is_the_only_line(tmp_path, capsys, files):
    # the note on the undecodable times came first, making every mistake two lines
    code, _, err = run(capsys, "compress", files[0], tmp_path / "o.zarr", "--tolerance",
                       "PRES=0.1")
    assert code == 1 and len(err.splitlines()) == 1 and "'PRES'" in err, err


def test_s3_netcdf4_engine_on_a_remote_file_says_which_engines_read_it(tmp_path, capsys, s3,
                                                                      files):
    # it said to name "netcdf4 or h5netcdf", netcdf4 being the one that had just failed
    s3.filesystem().put(files[0], s3.path("in.nc"))
    code, _, err = run(capsys, "compress", s3.path("in.nc"), tmp_path / "o.zarr",
                       "--tolerance", "0.1", "--engine", "netcdf4", *s3_options(s3))
    assert code == 1 and "--engine netcdf4 reads local files only" in one_error(err), err
    code, _, err = run(capsys, "compress", s3.path("in.nc"), tmp_path / "o.zarr",
                       "--tolerance", "0.1", "--engine", "h5netcdf", *s3_options(s3))
    assert code == 0, err


def test_a_missing_value_other_than_the_fill_value(tmp_path, capsys):
    # CF allows both; xarray writes no variable with both: "conflicting _FillValue and
    # missing_value. Cannot encode data." (exit 1, nothing the user could change but the file)
    import netCDF4

    path, out = tmp_path / "two.nc", tmp_path / "out.zarr"
    values = np.random.default_rng(0).random((5, 20)).astype("float32")
    values[0, :3], values[1, :3] = -999.0, -1e34
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", None)
        nc.createDimension("y", 20)
        var = nc.createVariable("v", "f4", ("time", "y"), fill_value=np.float32(-1e34))
        var.missing_value = np.float32(-999.0)
        var.set_auto_maskandscale(False)
        var[:] = values
    code, _, err = run(capsys, "compress", path, out, "--tolerance", "0.01")
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.strip()]
    assert len(notes) == 1 and "missing_value -999 differs from its _FillValue -1e+34" in notes[0]
    import warnings

    with warnings.catch_warnings():  # xarray's "multiple fill values": what is tested here
        warnings.simplefilter("ignore")
        expected = xr.open_dataset(path).v
    check_bound(xr.open_zarr(out).v, expected, 0.01)  # both sentinels missing, where they were


def test_inputs_packed_each_for_its_own_range(tmp_path, capsys):
    # ERA5's files pack int16 with a scale_factor/add_offset of their own: put together, the
    # second file's values were packed again with the first's, wrapped around in int16 and
    # read back 40 K off, with "error bound 0" in the report
    rng = np.random.default_rng(7)
    paths = []
    for i, (low, high) in enumerate([(250.0, 260.0), (290.0, 320.0)]):
        t2m = low + (high - low) * rng.random((3, NY, NX))
        ds = xr.Dataset({"t2m": (("time", "lat", "lon"), t2m, {"units": "K"})},
                        coords={"time": ("time", np.arange(3.0) + 3 * i,
                                         {"units": "hours since 1900-01-01"})})
        paths.append(tmp_path / f"era_{i}.nc")
        ds.to_netcdf(paths[-1], unlimited_dims=["time"], encoding={"t2m": {
            "dtype": "int16", "scale_factor": (high - low) / 65534, "add_offset": (high + low) / 2,
            "_FillValue": np.int16(-32767)}})
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", *paths, out, "--tolerance", "0.01")
    assert code == 0, err
    expected = xr.concat([xr.open_dataset(p) for p in paths], "time")
    check_bound(xr.open_zarr(out).t2m, expected.t2m, 0.01)
    assert "t2m: packed differently in each input" in err


def test_tiles_of_a_map_holding_the_same_records_go_side_by_side(tmp_path, capsys, files):
    # the same records on other grids are not a record given twice
    east = month(0)
    east["lon"] = east.lon + 360.0
    east.to_netcdf(tmp_path / "east.nc", unlimited_dims=["TIME"])
    out = tmp_path / "out.zarr"
    code, _, err = run(capsys, "compress", files[0], tmp_path / "east.nc", out, "--tolerance",
                       "0.1", "--no-decode-times")
    assert code == 0 and "note" not in err, err
    back = xr.open_zarr(out, decode_times=False)
    assert back.sizes == {"TIME": 4, "lat": NY, "lon": 2 * NX}
    check_bound(back.SLP.isel(lon=slice(NX, None)), east.SLP, 0.1)


@pytest.mark.parametrize("given", [["--codec", "sperr"], ["--codec", "series=sperr"],
                                   ["--config", "{config}"]])
def test_a_codec_that_does_not_fit_a_variable_names_it_and_the_way_out(tmp_path, capsys,
                                                                       given):
    """SPERR takes 2-d and 3-d fields: a 1-d series under it is an error saying where the
    codec was given and what to give the series instead, and that way out works."""
    rng = np.random.default_rng(0)
    ds = xr.Dataset({"field": (("time", "y", "x"), rng.random((4, 20, 30)).astype("f4")),
                     "series": (("time",), rng.random(4).astype("f4"))},
                    coords={"time": np.arange(4)})
    ds.to_netcdf(tmp_path / "s.nc")
    config = tmp_path / "c.toml"
    config.write_text('[defaults]\ncodec = "sperr"\n')
    given = [g.format(config=config) for g in given]
    out = tmp_path / "s.zarr"
    code, _, err = run(capsys, "compress", tmp_path / "s.nc", out, *given, "--tolerance", "0.01")
    line = one_error(err)
    assert code == 1 and not out.exists()
    assert "'series'" in line and "2 to 3 dimensions" in line, line
    assert ("c.toml: [defaults]" if "--config" in given else " ".join(given)) in line, line
    assert "--codec series=zfp" in line
    kept = [] if given[-1].startswith("series=") else given  # the field's codec stays
    code, _, err = run(capsys, "compress", tmp_path / "s.nc", out, *kept, "--codec",
                       "series=zfp", "--tolerance", "0.01")
    assert code == 0, err
    back = xr.open_zarr(out)
    assert float(abs(back.series - ds.series).max()) <= 0.01
    assert float(abs(back.field - ds.field).max()) <= 0.01


def test_variables_kept_exact_are_not_stored_a_record_a_chunk(tmp_path, capsys):
    """netCDF gives its record dimension chunks of one record: an hourly flag variable kept
    exact was stored as one tiny object per hour (and zstd on 120 bytes barely compresses)."""
    rng = np.random.default_rng(0)
    n = 2000
    ds = xr.Dataset({"t2m": (("time", "y", "x"), (280 + rng.random((n, 10, 12))).astype("f4")),
                     "flag": (("time", "y", "x"), rng.integers(0, 3, (n, 10, 12)).astype("i1"))},
                    coords={"time": np.arange(n, dtype="f8")})
    ds.to_netcdf(tmp_path / "hourly.nc", unlimited_dims=["time"])
    out = tmp_path / "h.zarr"
    code, _, err = run(capsys, "compress", tmp_path / "hourly.nc", out, "--tolerance", "0.01")
    assert code == 0, err
    objects = [f for _, _, files in os.walk(out / "flag") for f in files if f != "zarr.json"]
    assert len(objects) == 1, len(objects)  # 234 KB: one chunk, not 2000
    back = xr.open_zarr(out)
    np.testing.assert_array_equal(back.flag.values, ds.flag.values)
    assert back.flag.dtype == np.int8
    assert float(abs(back.t2m - ds.t2m).max()) <= 0.01


@pytest.mark.parametrize("gone", ["x/c/0/0", "n/c/0/0"])
def test_a_damaged_zarr_input_is_refused_not_laundered(tmp_path, capsys, gone):
    """xarray reads a chunk missing from a chunkpress store as fill: compressed again, the new
    store held the fill as data and verified clean. The input is checked first."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    xr.Dataset({"x": (("t", "y"), np.random.default_rng(0).random((8, 8)).astype("f4")),
                "n": (("t", "y"), np.arange(64, dtype="i2").reshape(8, 8))}
               ).chunkpress.to_zarr(src, tolerance=0.01)
    (src / gone).unlink()
    code, _, err = run(capsys, "compress", src, out, "--tolerance", "0.01")
    line = one_error(err)
    assert code == 1 and not out.exists()
    assert "missing" in line and "chunkpress verify" in line and gone[0] in line, line
