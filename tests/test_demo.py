"""The main job: ``chunkpress`` alone, run as a user runs it, and what its one screen says.

The command runs once in a new process (its output piped, as in a log); each test checks one
claim of the screen against the files it wrote: the sizes and ratios against the bytes on disk,
the bounds against the values read back, the land against the NaN cells, and the printed
xarray command by running it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import xarray as xr

from chunkpress.demo import BOUNDS, demo_dataset, ocean_field

from test_zarr import _installed_env


def _command(tmp_path):
    """The installed ``chunkpress`` command (else the module it runs) and its environment."""
    env = _installed_env(tmp_path)
    installed = shutil.which("chunkpress")
    return ([installed] if installed else [sys.executable, "-m", "chunkpress.cli"]), env


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    """``chunkpress`` with no arguments, on two threads' worth of machine: its stdout and the
    directory it wrote (a new temporary directory under TMPDIR)."""
    tmp = tmp_path_factory.mktemp("demo")
    command, env = _command(tmp)
    env["TMPDIR"] = str(tmp)
    result = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    made = re.search(r"^chunkpress demo \(local scheduler.*, its files in\n  (\S+)\n",
                     result.stdout, re.M)
    assert made, result.stdout
    return result.stdout, made.group(1)


def _mb(text):
    number, unit = text.split()
    return float(number) * {"MB": 1e6, "kB": 1e3}[unit]


def _tree_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _rows(stdout):
    """The size table: variable -> (bound, codec, netCDF bytes, store bytes, ratio, error)."""
    rows = {}
    pattern = (r"^(\w+) +(exact|[\d.e-]+(?: \S+)*?) +(\w+) +([\d.]+ [kM]B) +([\d.]+ [kM]B) +"
               r"([\d.]+)x +(\S+)$")
    for match in re.finditer(pattern, stdout, re.M):
        name, bound, codec, nc, zarr, ratio, error = match.groups()
        rows[name] = bound, codec, _mb(nc), _mb(zarr), float(ratio), float(error)
    return rows


def test_one_screen_of_plain_lines(screen):
    stdout, out = screen
    # as a user sees it with TMPDIR=/tmp (this test's temporary directory is longer)
    lines = stdout.replace(out, "/tmp/chunkpress-demo-abcd1234").splitlines()
    assert 15 <= len(lines) <= 40
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert "\r" not in stdout and "\x1b" not in stdout  # a log reads as it was printed


def test_the_files_are_where_it_says(screen):
    stdout, out = screen
    assert os.path.isfile(os.path.join(out, "ocean.nc"))
    assert re.search(r"^wrote ocean.zarr in [\d.]+ s$", stdout, re.M)


def test_the_ratio_is_the_bytes_on_disk_against_the_zlib_netcdf(screen):
    stdout, out = screen
    nc, store = os.path.join(out, "ocean.nc"), os.path.join(out, "ocean.zarr")
    with h5py.File(nc, "r") as f:  # what the user has today: deflate + shuffle, netCDF-4
        assert f["sst"].compression == "gzip" and f["sst"].shuffle
        assert f["slp"].dtype == np.int16 and "scale_factor" in f["slp"].attrs
        nc_vars = {n: f[n].id.get_storage_size() for n in ("sst", "wind", "slp", "land")}
    whole = re.search(r"^whole dataset.* ([\d.]+ MB) +([\d.]+ MB) +([\d.]+)x$", stdout, re.M)
    nc_bytes, zarr_bytes = os.path.getsize(nc), _tree_bytes(store)
    assert _mb(whole.group(1)) == pytest.approx(nc_bytes, abs=0.006e6)
    assert _mb(whole.group(2)) == pytest.approx(zarr_bytes, abs=0.006e6)
    assert float(whole.group(3)) == pytest.approx(nc_bytes / zarr_bytes, abs=0.051)
    rows = _rows(stdout)
    assert set(rows) == {"sst", "wind", "slp", "land"}
    for name, (_, _, nc_var, zarr_var, ratio, _) in rows.items():
        # chunk bytes, as HDF5's storage size counts the netCDF's (metadata: the whole line)
        actual = _tree_bytes(os.path.join(store, name)) - os.path.getsize(
            os.path.join(store, name, "zarr.json"))
        assert nc_var == pytest.approx(nc_vars[name], rel=0.01, abs=60)
        assert zarr_var == pytest.approx(actual, rel=0.01, abs=60)
        assert ratio == pytest.approx(nc_vars[name] / actual, abs=0.051)
    # the variables given a bound are several times smaller than in the netCDF
    assert rows["sst"][4] > 2 and rows["wind"][4] > 2
    # an exact variable names the codec that compresses it (not the CRC after it)
    for name in ("slp", "land"):
        with open(os.path.join(store, name, "zarr.json")) as f:
            names = [c["name"] for c in json.load(f)["codecs"]]
        assert rows[name][1] in names and rows[name][1] not in ("crc32c", "bytes")


def test_each_bound_holds_on_every_value_read_back(screen):
    stdout, out = screen
    rows = _rows(stdout)
    original = xr.open_dataset(os.path.join(out, "ocean.nc"))
    back = xr.open_zarr(os.path.join(out, "ocean.zarr"))
    for name, bound in BOUNDS.items():
        line = re.search(rf"^  {name} +(\S+), read back (\S+) <= (\S+) ", stdout, re.M)
        measured, again, stated = (float(v) for v in line.groups())
        assert stated == bound == float(rows[name][0].split()[0])
        assert measured <= bound and again <= bound and rows[name][5] == measured
        error = float(np.nanmax(np.abs(back[name].values - original[name].values)))
        assert error <= bound and error == pytest.approx(again, rel=1e-6)
    # variables without a bound are exact, the packed one as its producer packed it
    for name in ("slp", "land"):
        assert rows[name][0] == "exact" and rows[name][5] == 0
        assert np.array_equal(back[name].values, original[name].values, equal_nan=True)
    assert back.slp.encoding["dtype"] == np.int16 and back.slp.encoding["scale_factor"] == 0.1
    assert "no problems" in stdout


def test_land_stays_missing(screen):
    stdout, out = screen
    line = re.search(r"^land kept missing: sst has ([\d,]+) NaN in ocean.nc, ([\d,]+) in the "
                     r"store, the same cells$", stdout, re.M)
    before, after = (int(v.replace(",", "")) for v in line.groups())
    original = xr.open_dataset(os.path.join(out, "ocean.nc")).sst.isnull().values
    back = xr.open_zarr(os.path.join(out, "ocean.zarr")).sst.isnull().values
    assert before == after == original.sum() > 0
    assert np.array_equal(original, back)


def test_auto_chose_per_variable_by_the_ratios_it_shows(screen):
    stdout, out = screen
    rows = _rows(stdout)
    for name in BOUNDS:
        line = re.search(rf"^  {name} +(.*) \(on \d+% of values\) -> (\S+)$", stdout, re.M)
        ratios = dict(pair.rsplit(" ", 1) for pair in line.group(1).split(", "))
        chosen = line.group(2)
        assert {"zfp", "sz3", "sperr"} <= set(ratios)
        assert chosen == max(ratios, key=lambda k: float(ratios[k])) == rows[name][1]
        with open(os.path.join(out, "ocean.zarr", name, "zarr.json")) as f:
            codecs = json.load(f)["codecs"]
        assert any(c["name"] == f"chunkpress.{chosen}" for c in codecs), codecs


def test_the_printed_xarray_command_opens_the_store(screen, tmp_path):
    stdout, out = screen
    lines = stdout.splitlines()
    code = lines[lines.index("open it in plain xarray:") + 1:]
    assert [line.strip() for line in code] == [
        "import xarray as xr", f'xr.open_zarr("{out}/ocean.zarr")']
    _, env = _command(tmp_path)  # a new process, in another directory
    program = "; ".join(line.strip() for line in code[:-1]) + f"; print({code[-1].strip()})"
    result = subprocess.run([sys.executable, "-c", program], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ("sst", "wind", "slp", "land"):
        assert re.search(rf"^    {name} +\(", result.stdout, re.M), result.stdout


def test_a_second_run_into_the_same_directory_is_refused_in_one_line(screen, tmp_path):
    _, out = screen
    command, env = _command(tmp_path)
    for argv, words in (([ "demo", "--out", out], "--overwrite"),
                        (["demo", "--out", os.path.join(out, "ocean.nc")], "is a file")):
        result = subprocess.run(command + argv, env=env, cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr


def test_the_built_in_data_keeps_its_other_callers():
    sst = ocean_field((4, 48, 96))  # tests and benchmarks of auto and evaluate
    assert sst.dtype == np.float32 and 0.2 < np.isnan(sst).mean() < 0.4
    ds = demo_dataset((4, 36, 72))  # the CLI's tests write it as netCDF
    assert {"sst", "wind", "slp", "land"} <= set(ds.data_vars)
    assert ds.slp.encoding["dtype"] == "int16" and ds.wind.dtype == np.float32
    assert float(ds.wind.min()) >= 0 and 950 < float(ds.slp.mean()) < 1070
