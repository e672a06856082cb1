"""What the chunkpress command writes, and how it says no: a compressed netCDF-4 that reads
back as the original did, .zip stores everywhere, and every error in one line."""

from __future__ import annotations

import errno
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import xarray as xr

from chunkpress.cli import EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED
from chunkpress.cli import main as _main
from chunkpress.cli.errors import describe

from common import ROOT

#: the encodings a netCDF reader acts on
ENCODINGS = ("dtype", "_FillValue", "missing_value", "scale_factor", "add_offset", "units",
             "calendar")
TOLERANCE = {"sst": 0.01, "hum": 0.01}


def climatology(path, shape=(12, 45, 90)):
    """A netCDF as they come: _FillValue -1e34 over land, sea-level pressure packed in int16
    (scale_factor/add_offset), humidity packed in float32 (float32 factors, not a power of
    two), a time axis in year-0 units of a noleap calendar, variables in different units."""
    nt, ny, nx = shape
    rng = np.random.default_rng(0)
    lat, lon = np.linspace(-89, 89, ny), np.linspace(0, 358, nx)
    y, x = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    t = np.arange(nt)[:, None, None]
    sst = (28 * np.cos(y) + 2 * np.sin(3 * x) * np.cos(t / 2)
           + rng.normal(0, 0.05, shape)).astype("float32")
    sst[:, np.sin(2 * x) * np.cos(3 * y) > 0.6] = np.nan  # land
    slp = 1013 + 10 * np.sin(2 * x) * np.cos(y) + rng.normal(0, 0.5, shape)
    hum = (12 + 5 * np.cos(y) + rng.normal(0, 0.1, shape)).astype("float32")
    ds = xr.Dataset(
        {"sst": (("time", "lat", "lon"), sst, {"units": "degC", "long_name": "sea surface "
                                               "temperature"}),
         "slp": (("time", "lat", "lon"), slp, {"units": "hPa"}),
         "hum": (("time", "lat", "lon"), hum, {"units": "g/kg"})},
        coords={"time": ("time", np.arange(nt) * 730.5,
                         {"units": "hours since 0000-01-01 00:00:00", "calendar": "noleap"}),
                "lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"})},
        attrs={"title": "a climatology"})
    ds.to_netcdf(path, format="NETCDF4", encoding={
        "sst": {"dtype": "float32", "_FillValue": np.float32(-1e34)},
        "slp": {"dtype": "int16", "scale_factor": 0.01, "add_offset": 1000.0,
                "_FillValue": np.int16(-32767)},
        "hum": {"dtype": "float32", "scale_factor": np.float32(0.1),
                "add_offset": np.float32(3.0), "_FillValue": np.float32(-1e34)}})
    return str(path)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return climatology(tmp_path_factory.mktemp("outputs") / "clim.nc")


@pytest.fixture(scope="module")
def store(tmp_path_factory, original):
    """The climatology compressed (sperr, whose errors come close to the bound), with auto's
    bookkeeping attribute on one variable."""
    path = str(tmp_path_factory.mktemp("store") / "clim.zarr")
    assert main(["compress", original, path, "--codec", "sperr", "--tolerance", "0.01"]) == 0
    return path


def main(argv) -> int:
    """The command in this process (its exit code)."""
    return _main([str(a) for a in argv])


def cli(*argv, env=None, timeout=300):
    """The installed command in a child process, as a user runs it."""
    env = dict(os.environ if env is None else env, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "chunkpress", *map(str, argv)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line(result, code=1):
    """The child failed with ``code`` and said one line on stderr, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def same(a, b) -> bool:
    if all(np.asarray(v).dtype.kind == "f" and np.isnan(v).all() for v in (a, b)):
        return np.asarray(a).dtype == np.asarray(b).dtype
    return bool(np.all(a == b)) and np.asarray(a).dtype == np.asarray(b).dtype


def encodings(var) -> dict:
    return {k: var.encoding[k] for k in ENCODINGS if k in var.encoding}


def assert_reads_back_like(path, source, *, bound=TOLERANCE):
    """The netCDF ``path`` reads as ``source`` did: dtypes, encodings, attributes, missing
    cells; exact variables equal; compressed ones within their bound, in their own dtype."""
    with xr.open_dataset(source, decode_times=False) as a, \
            xr.open_dataset(path, decode_times=False) as b:
        assert set(a.variables) == set(b.variables) and b.attrs == a.attrs
        for name in a.variables:
            va, vb = a[name], b[name]
            assert vb.dtype == va.dtype, name
            ea, eb = encodings(va), encodings(vb)
            assert ea.keys() == eb.keys() and all(same(ea[k], eb[k]) for k in ea), (name, eb)
            if " since " in va.attrs.get("units", ""):  # xarray writes 'hours since 0000-01-01'
                assert vb.attrs.keys() == va.attrs.keys()  # for '... 00:00:00': the same times
                times = [xr.decode_cf(d[[name]])[name].values for d in (a, b)]
                assert np.array_equal(*times), name
            else:
                assert vb.attrs == va.attrs, name
            assert np.array_equal(np.isnan(va.values), np.isnan(vb.values)), name
            error = float(np.nanmax(np.abs(va.values - vb.values)))  # in the variable's dtype
            assert error <= bound.get(name, 0.0), (name, error)
        for var in [b, *b.variables.values()]:
            assert not [k for k in var.attrs if str(k).startswith("chunkpress_")]


# --- 1. decompress writes a compressed netCDF-4 that reads back like the original -----------


def test_decompress_writes_a_compressed_netcdf_that_reads_back_like_the_original(
        tmp_path, store, original, capsys):
    plain = tmp_path / "plain.nc"
    assert main(["decompress", store, plain, "--netcdf-compression", "none"]) == 0
    out = tmp_path / "back.nc"
    assert main(["decompress", store, out]) == 0
    assert "zlib level 4 + shuffle" in capsys.readouterr().out
    assert os.path.getsize(out) < 0.8 * os.path.getsize(plain)
    assert_reads_back_like(out, original)
    assert_reads_back_like(plain, original)
    with xr.open_dataset(out) as ds:
        assert ds.sst.encoding["zlib"] and ds.sst.encoding["shuffle"]
        assert ds.time.encoding["units"] == "hours since 0000-01-01"  # decoded: year 0 kept
        assert ds.time.encoding["calendar"] == "noleap"


def test_zstd_where_netcdf_has_it(tmp_path, store, original):
    import netCDF4

    out = tmp_path / "z.nc"
    code = main(["decompress", store, out, "--netcdf-compression", "zstd", "--netcdf-level",
                 "5"])
    if not getattr(netCDF4, "__has_zstandard_support__", False):
        assert code == 1  # said in one line (test below)
        return
    assert code == 0
    with xr.open_dataset(out) as ds:
        assert ds.sst.encoding.get("zstd")  # (netCDF4-python shuffles with zlib only)
    assert_reads_back_like(out, original)


def test_no_bookkeeping_attribute_leaks_into_the_netcdf(tmp_path, original):
    path = tmp_path / "auto.zarr"
    assert main(["compress", original, path, "--codec", "auto", "--tolerance", "0.01",
                 "--verify"]) == 0
    with xr.open_zarr(path) as ds:  # the store keeps what auto chose and what was measured
        assert any(k.startswith("chunkpress_") for v in ds.variables.values() for k in v.attrs)
    out = tmp_path / "auto.nc"
    assert main(["decompress", path, out]) == 0
    assert_reads_back_like(out, original)


def test_a_packed_float32_variable_comes_back_float32_within_its_bound(tmp_path):
    # values near 23, factors 0.1/3.0 in float32: reading rounds twice in float32, by up to
    # 2e-6 each; a tolerance close to that is where the bound was missed by the rounding
    rng = np.random.default_rng(1)
    values = (10 + rng.normal(0, 3, (8, 64, 64))).astype("float32")
    source = tmp_path / "q.nc"
    xr.Dataset({"q": (("t", "y", "x"), values, {"units": "g/kg"})}).to_netcdf(source, encoding={
        "q": {"dtype": "float32", "scale_factor": np.float32(0.1),
              "add_offset": np.float32(3.0)}})
    for codec, tolerance in [("sperr", 3e-5), ("zfp", 1e-5), ("sz3", 1e-5)]:
        store, out = tmp_path / f"{codec}.zarr", tmp_path / f"{codec}.nc"
        assert main(["compress", source, store, "--codec", codec, "--tolerance",
                     str(tolerance)]) == 0
        assert main(["decompress", store, out]) == 0
        assert_reads_back_like(out, source, bound={"q": tolerance})
    code = main(["compress", source, tmp_path / "fine.zarr", "--tolerance", "1e-6"])
    assert code == 1  # below what float32 tells apart there: said, not silently missed


# --- 2. outputs of the wrong kind, .zip everywhere --------------------------------------------


def test_compress_to_a_netcdf_name_is_refused_before_any_work(tmp_path, original, capsys):
    out = tmp_path / "x.nc"
    assert main(["compress", original, out, "--tolerance", "0.01"]) == 1
    _, err = capsys.readouterr()
    assert "compress writes a Zarr store" in err and "chunkpress decompress" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == []  # nothing made, not even a lock
    assert main(["decompress", original, tmp_path / "x.zarr"]) == 1
    assert "decompress writes a netCDF file" in capsys.readouterr().err


def test_zip_stores_work_everywhere(tmp_path, original, capsys):
    out = tmp_path / "out.zip"
    assert main(["compress", original, out, "--codec", "zfp", "--tolerance", "0.01"]) == 0
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None  # every entry whole
    assert main(["info", out]) == 0
    assert "sst" in capsys.readouterr().out
    assert main(["verify", out]) == 0
    assert "no problem found" in capsys.readouterr().out
    nc = tmp_path / "back.nc"
    assert main(["decompress", out, nc]) == 0
    assert_reads_back_like(nc, original)
    # a zip store as the input of compress (recompressed into a directory store)
    again_dir = tmp_path / "from-zip.zarr"
    assert main(["compress", out, again_dir, "--codec", "sz3", "--tolerance", "0.01"]) == 0
    with xr.open_dataset(original) as a, xr.open_zarr(again_dir) as b:
        assert float(abs(a.sst - b.sst).max()) <= 0.02  # two compressions, 0.01 each
        assert np.array_equal(np.isnan(a.sst.values), np.isnan(b.sst.values))
    # the accessor, from dask-backed variables (the tasks' zarr arrays are tokenized by dask)
    import chunkpress.accessor  # noqa: F401
    from zarr.storage import ZipStore

    again = tmp_path / "accessor.zip"
    with xr.open_dataset(original, chunks={"time": 4}) as ds:
        ds.chunkpress.to_zarr(again, tolerance=0.01)
    with zipfile.ZipFile(again) as z:
        assert z.testzip() is None
    with xr.open_dataset(original) as a, xr.open_zarr(ZipStore(again, mode="r")) as b:
        assert float(abs(a.sst - b.sst).max()) <= 0.01
        assert np.array_equal(a.slp.values, b.slp.values)


def test_what_auto_chose_is_shown_for_a_zip_store_too(tmp_path, original, capsys):
    """info (and compress's own table) read auto's choice from directories only: a .zip
    store showed none, and info --json said "auto": null."""
    import json

    path = tmp_path / "auto.zip"
    assert main(["compress", original, path, "--codec", "auto", "--tolerance", "0.01"]) == 0
    assert "sampled ratios" in capsys.readouterr().out
    assert main(["info", path]) == 0
    below = capsys.readouterr().out.split('what codec="auto" chose:')[1]
    assert "sst" in below and "sampled ratios" in below
    assert main(["info", path, "--json"]) == 0
    report = {v["name"]: v for v in json.loads(capsys.readouterr().out)["variables"]}
    with zipfile.ZipFile(path) as archive:
        stored = json.loads(json.loads(archive.read("sst/zarr.json"))["attributes"][
            "chunkpress_auto"])
    assert report["sst"]["auto"]["choice"] == stored and report["sst"]["codec"] == stored["codec"]


# --- 3. every user error is one line ----------------------------------------------------------


def test_a_damaged_chunk_is_named(tmp_path, store):
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(store, damaged)
    chunk = next(p for p in sorted(glob.glob(f"{damaged}/sst/c/**", recursive=True))
                 if os.path.isfile(p))
    data = bytearray(open(chunk, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(chunk, "wb").write(bytes(data))
    index = tuple(int(i) for i in os.path.relpath(chunk, f"{damaged}/sst/c").split(os.sep))
    result = cli("decompress", damaged, tmp_path / "out.nc")
    line = one_line(result)
    assert f"sst chunk {index}" in line and "checksum" in line and "chunkpress verify" in line
    assert not os.path.exists(tmp_path / "out.nc")


def test_the_netcdf_is_chunked_as_the_store(tmp_path, original):
    """Each block of the store becomes one netCDF chunk, written once: netCDF-C's own chunks
    cut across the blocks, and HDF5 decompressed and recompressed the chunks two blocks
    shared (4x slower on a 500 MB store, and 15% of the file left unused)."""
    import h5py

    path, out = tmp_path / "four.zarr", tmp_path / "four.nc"
    with xr.open_dataset(original, decode_times=False) as ds:
        ds.chunkpress.to_zarr(path, codec="zfp", tolerance=0.01, chunks={"time": 4})
    assert main(["decompress", path, out]) == 0
    stored = xr.open_zarr(path, decode_cf=False)
    with h5py.File(out, "r") as file:
        for name in ("sst", "hum", "slp"):
            assert file[name].chunks == tuple(c[0] for c in stored[name].chunks), name
        used = sum(file[name].id.get_storage_size() for name in file if name in stored)
    assert os.path.getsize(out) <= used + 64 * 1024  # no chunk written twice
    assert_reads_back_like(out, original)


@pytest.mark.parametrize("damage", ["missing", "moved"])
def test_a_missing_or_moved_chunk_is_named_not_written_as_fill(tmp_path, original, damage):
    """zarr's reader gives fill for a missing chunk and decodes a moved one at its new place
    (each CRC is good): decompress reads chunkpress arrays as from_zarr does, which checks
    both, and names the chunk instead of writing wrong numbers into the netCDF."""
    path = tmp_path / "four.zarr"
    with xr.open_dataset(original, decode_times=False) as ds:
        ds.chunkpress.to_zarr(path, codec="zfp", tolerance=0.01, chunks={"time": 4})
    first, second = path / "sst/c/0/0/0", path / "sst/c/1/0/0"
    if damage == "missing":
        first.unlink()
    else:
        swap = tmp_path / "swap"
        first.rename(swap), second.rename(first), swap.rename(second)
    line = one_line(cli("decompress", path, tmp_path / "out.nc"))
    assert "sst chunk (0, 0, 0)" in line and damage in line and "chunkpress verify" in line
    assert not os.path.exists(tmp_path / "out.nc")


@pytest.mark.parametrize("argv, words", [
    (["compress", "{src}", "{tmp}/o.zarr", "--codec", "nope", "--tolerance", "0.1"],
     "codec must be one of"),
    (["compress", "{tmp}/missing.nc", "{tmp}/o.zarr", "--tolerance", "0.1"], "no such file"),
    (["decompress", "{tmp}/missing.zarr", "{tmp}/o.nc"], "no such file"),
    (["compress", "{src}", "{src}/o.zarr", "--tolerance", "0.1"], "is a file, not a directory"),
    (["decompress", "{store}", "{tmp}/no/such/dir/o.nc"], "no such directory"),
    (["decompress", "{store}", "{tmp}", "--overwrite"], "is a directory"),
    (["decompress", "{store}", "{tmp}/o.nc", "--netcdf-compression", "none",
      "--netcdf-level", "3"], "--netcdf-level goes with"),
    (["decompress", "{src}", "{tmp}/o.nc"], "not a Zarr store"),
    (["decompress", "{store}", "s3://bucket/o.nc"], "writes a local netCDF file"),
])
def test_user_errors_are_one_line(tmp_path, original, store, argv, words):
    argv = [a.format(tmp=tmp_path, src=original, store=store) for a in argv]
    line = one_line(cli(*argv))
    assert line.startswith(f"chunkpress {argv[0]}: error: ") and words in line, line


def test_debug_shows_the_traceback(tmp_path):
    for flag in ("--debug", "--traceback"):
        result = cli("info", tmp_path / "none.zarr", flag)
        assert result.returncode == 1 and "Traceback" in result.stderr
    result = cli("--debug", "info", tmp_path / "none.zarr")
    assert "Traceback" in result.stderr


def test_an_unwritable_output_directory(tmp_path, original):
    """A read-only file system (a read-only bind mount in a mount namespace of the child's
    own): root ignores permission bits, not a read-only mount."""
    target = tmp_path / "ro"
    target.mkdir()
    line = one_line(in_mount_namespace(
        f"mount --bind -o ro {target} {target} && exec {sys.executable} -m chunkpress "
        f"compress {original} {target}/o.zarr --tolerance 0.01"))
    assert "read-only file system" in line or "permission denied" in line, line
    assert os.listdir(target) == []


def in_mount_namespace(script):
    """Run the shell ``script`` in a mount namespace of its own (skip where there is none)."""
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True)
    if shutil.which("unshare") is None or probe.returncode != 0:
        pytest.skip("no mount namespace here (unshare --mount)")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           script], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=300)


def test_decompress_onto_a_full_disk_is_one_line(tmp_path, store):
    """netCDF-C says a full disk as "NetCDF: HDF error" (a RuntimeError, no errno): a user's
    error in one line with the free space, the temporary file gone (a 64 KiB tmpfs in a mount
    namespace of the child's own)."""
    target = tmp_path / "full"
    target.mkdir()
    result = in_mount_namespace(
        f"mount -t tmpfs -o size=64k tmpfs {target} && {sys.executable} -m chunkpress "
        f"decompress {store} {target}/o.nc; code=$?; ls -A {target} | sed 's/^/left: /'; "
        "exit $code")
    line = one_line(result)
    assert line.startswith("chunkpress decompress: error: ") and "MiB left free" in line, line
    assert "is as it was" in line and "left: " not in result.stdout  # no temporary file


def test_s3_without_credentials_is_one_line(tmp_path, s3, original):
    bare = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    bare.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull,
                AWS_SHARED_CREDENTIALS_FILE=os.devnull, NO_PROXY="127.0.0.1",
                no_proxy="127.0.0.1")
    endpoint = f"endpoint_url={s3.endpoint_url}"
    line = one_line(cli("compress", original, s3.path("o.zarr"), "--tolerance", "0.01",
                        "--storage-option", endpoint, env=bare))
    assert "no credentials" in line and "--storage-option key=" in line
    assert cli("compress", original, s3.path("o.zarr"), "--tolerance", "0.01",
               env={**os.environ, **s3.env}).returncode == 0
    line = one_line(cli("decompress", s3.path("o.zarr"), tmp_path / "o.nc",
                        "--storage-option", endpoint, env=bare))
    assert "no credentials" in line
    result = cli("decompress", s3.path("o.zarr"), tmp_path / "o.nc",
                 env={**os.environ, **s3.env})
    assert result.returncode == 0, result.stderr
    assert_reads_back_like(tmp_path / "o.nc", original)


def test_the_system_and_bugs_said_in_one_line():
    """What main() makes of exceptions raised deep inside (real exception objects)."""
    from chunkpress.kernels import ChunkpressError
    from chunkpress.storage import IncompleteStoreError, WriterBusyError

    message, expected = describe(PermissionError(errno.EACCES, "Permission denied", "/x/o.nc"))
    assert expected and message == ("error: /x/o.nc: Permission denied; this user may not; "
                                    "choose a path you can write to (or read, for an input)")
    message, expected = describe(OSError(errno.ENOSPC, "No space left on device", "/x/o.nc"))
    assert expected and "disk is full" in message
    for exc in (IncompleteStoreError("o.zarr: a write stopped before it was published"),
                WriterBusyError("o.zarr: another process is writing it"),
                ChunkpressError("chunk (3, 0, 1): checksum mismatch"),
                KeyError("variable 'x' is not a data variable")):
        message, expected = describe(exc)
        assert expected and "\n" not in message and str(exc.args[0]) in message
    message, expected = describe(ZeroDivisionError("float division by zero\nmore"))
    assert not expected and message == ("internal error: ZeroDivisionError: float division by "
                                        "zero (a bug; rerun with --debug for the traceback "
                                        "and report it)")
    assert EXIT_INTERNAL_ERROR not in (0, 1, 2, 3)


# --- 4. Ctrl-C says what it leaves --------------------------------------------------------------


def big_netcdf(path):
    rng = np.random.default_rng(3)
    values = (rng.standard_normal((64, 256, 256)).cumsum(axis=2) * 0.1).astype(np.float32)
    xr.Dataset({"t": (("z", "y", "x"), values)}).to_netcdf(path)


def interrupt(argv, ready):
    """Run the command in a child, SIGINT it once ``ready()``, return (code, stderr)."""
    child = subprocess.Popen([sys.executable, "-m", "chunkpress", *map(str, argv)],
                             env=dict(os.environ, PYTHONPATH=str(ROOT)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready() and child.poll() is None:
            assert time.monotonic() < deadline, "the command never started writing"
            time.sleep(0.005)
        assert child.poll() is None, f"the command ended first: {child.stderr.read()}"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
        child.wait()
    return child.returncode, err


def staging(path):
    return [p for p in glob.glob(f"{os.path.dirname(path)}/.{os.path.basename(path)}."
                                 "chunkpress-*") if "lock" not in p]


def test_an_interrupted_run_says_what_it_left(tmp_path):
    source, out, nc = tmp_path / "big.nc", tmp_path / "o.zarr", tmp_path / "o.nc"
    big_netcdf(source)
    argv = ["compress", source, out, "--codec", "sperr", "--tolerance", "1e-5", "--workers", "1"]
    code, err = interrupt(argv, lambda: staging(out))
    assert code == EXIT_INTERRUPTED and len(err.strip().splitlines()) == 1, err
    assert f"interrupted; nothing was written to {out}" in err
    assert not os.path.exists(out)

    assert main(argv) == 0  # now a store, and an old netCDF it would replace
    nc.write_bytes(b"the old o.nc")
    code, err = interrupt(["decompress", out, nc, "--overwrite", "--workers", "1"],
                          lambda: staging(nc))
    assert code == EXIT_INTERRUPTED and len(err.strip().splitlines()) == 1, err
    assert f"interrupted; {nc} is unchanged" in err
    assert nc.read_bytes() == b"the old o.nc"


def test_decompress_adds_no_fill_value_and_keeps_attribute_types(tmp_path):
    import netCDF4

    source = tmp_path / "in.nc"
    sst = np.linspace(0, 30, 4 * 8 * 16, dtype="float32").reshape(4, 8, 16)
    sst[:, :2] = np.nan
    ds = xr.Dataset({"sst": (("time", "lat", "lon"), sst)},
                    coords={"lat": np.linspace(-80, 80, 8), "lon": np.arange(16.0)})
    ds.sst.encoding = {"_FillValue": np.float32(-1e34), "missing_value": np.float32(-1e34)}
    ds.lat.encoding = ds.lon.encoding = {"_FillValue": None}  # as many files have them
    ds.to_netcdf(source)
    store, back = tmp_path / "s.zarr", tmp_path / "back.nc"
    assert main(["compress", source, store, "--tolerance", "0.01"]) == 0
    assert main(["decompress", store, back]) == 0
    with netCDF4.Dataset(back) as nc:
        assert "_FillValue" not in nc["lat"].ncattrs()  # none was there: none is added
        missing = nc["sst"].getncattr("missing_value")
        assert missing.dtype == np.float32 and nc["sst"].getncattr("_FillValue").dtype == \
            np.float32
    with xr.open_dataset(back) as b:
        assert np.array_equal(np.isnan(b.sst.values), np.isnan(sst))
        assert np.nanmax(np.abs(b.sst.values - sst)) <= 0.01


def test_an_error_raised_while_ctrl_c_unwinds_is_said_as_the_interrupt():
    """threading raised "release unlocked lock" while a Ctrl-C unwound (seen in CI): that is
    the interrupt, said in its one line and exit code, not an internal error."""
    from chunkpress.cli import _interrupted

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("release unlocked lock")
    except RuntimeError as exc:
        assert _interrupted(exc)
    assert not _interrupted(RuntimeError("release unlocked lock"))


def test_a_missing_chunk_of_text_is_named_not_written_as_empty_strings(tmp_path):
    """from_zarr reads no text: decompress checked only numbers, and wrote '' where a text
    variable's chunk was gone (exit 0)."""
    path = tmp_path / "t.zarr"
    xr.Dataset({"x": (("y",), np.arange(4, dtype="f4")),
                "station": (("y",), np.array(["alpha", "beta", "gamma", "delta"]))}
               ).chunkpress.to_zarr(path, tolerance=0.01)
    (path / "station" / "c" / "0").unlink()
    line = one_line(cli("decompress", path, tmp_path / "out.nc"))
    assert "station chunk (0,)" in line and "missing" in line and "chunkpress verify" in line
    assert not os.path.exists(tmp_path / "out.nc")
