"""Every chunk bound to its place: damaged stores are errors naming the chunk in from_zarr,
info, verify and the CLI; verify --against measures the error against the recorded bound."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec

import chunkpress
from chunkpress.cli import EXIT_PROBLEMS, main
from chunkpress.storage import codecs as cpzarr
from chunkpress.storage.verify import summary

SHAPE, CHUNKS, TOLERANCE = (64, 64, 32), (16, 16, 16), 0.01


def field(seed=0):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal(SHAPE), axis=0).astype("float32")
    x[3, 4, 5] = np.nan
    return x


def write(path, seed=0, **kwargs):
    x = field(seed)
    chunkpress.to_zarr(x, str(path), tolerance=TOLERANCE, chunks=CHUNKS, verify=True, **kwargs)
    return str(path), x


def chunk(store, index, node=""):
    return os.path.join(store, node, "c", *map(str, index))


def swap(a, b):
    data_a, data_b = open(a, "rb").read(), open(b, "rb").read()
    open(a, "wb").write(data_b)
    open(b, "wb").write(data_a)


def read_error(store, index, **kwargs):
    """from_zarr's error reading chunk ``index``, which must name it."""
    with pytest.raises(chunkpress.ZfpError) as caught:
        chunkpress.from_zarr(store, **kwargs).blocks[index].compute()
    assert f"chunk {index}" in str(caught.value)
    return str(caught.value)


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def problems_of(table) -> dict:
    return {(row.array, row.chunk): row.problem for row in table.itertuples()}


# --- damaged chunks: every reader names the chunk --------------------------------------------


def test_a_good_store_verifies_clean(tmp_path, capsys):
    store, x = write(tmp_path / "a.zarr")
    table = chunkpress.verify(store)
    assert table.empty
    totals = table.attrs["summary"]
    assert totals["chunks"] == 32 and totals["problems"] == 0
    assert totals["stored_bytes"] == sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in
                                         os.walk(os.path.join(store, "c")) for f in fs)
    assert "no problem found" in summary(table)
    code, out, _ = cli(capsys, "verify", store)
    assert code == 0 and "32 chunks" in out and "no problem found" in out
    code, out, _ = cli(capsys, "verify", store, "--json")
    report = json.loads(out)
    assert code == 0 and report["problems"] == [] and report["summary"]["chunks"] == 32
    assert report["arrays"][0]["checks"] == "crc, place"


def test_two_swapped_chunks_are_caught_everywhere(tmp_path, capsys):
    store, _ = write(tmp_path / "a.zarr")
    swap(chunk(store, (0, 0, 0)), chunk(store, (1, 2, 0)))
    message = read_error(store, (0, 0, 0))
    assert "'c/0/0/0'" in message and "written as chunk (1, 2, 0)" in message
    with pytest.raises(chunkpress.ZfpError, match=r"chunk \(1, 2, 0\)"):
        chunkpress.from_zarr(store)[16:32, 32:48, :16].compute()
    with pytest.raises(chunkpress.ZfpError, match="chunk"):
        chunkpress.from_zarr(store).compute()
    found = problems_of(chunkpress.verify(store))
    assert set(found) == {("/", (0, 0, 0)), ("/", (1, 2, 0))}
    assert "written as chunk (1, 2, 0)" in found["/", (0, 0, 0)]
    code, out, _ = cli(capsys, "verify", store)
    assert code == EXIT_PROBLEMS
    lines = out.splitlines()
    assert "chunk (0, 0, 0) (c/0/0/0)" in lines[0] and "chunk (1, 2, 0) (c/1/2/0)" in lines[1]
    assert "2 problem(s)" in lines[-1]


def test_a_chunk_copied_over_another_is_caught(tmp_path, capsys):
    store, x = write(tmp_path / "a.zarr")
    shutil.copyfile(chunk(store, (0, 1, 0)), chunk(store, (3, 1, 1)))
    read_error(store, (3, 1, 1))
    # the chunks not touched still read, with the bound held
    good = chunkpress.from_zarr(store)[:16].compute()
    assert np.nanmax(np.abs(good - x[:16])) <= TOLERANCE
    found = problems_of(chunkpress.verify(store))
    assert list(found) == [("/", (3, 1, 1))]
    assert "written as chunk (0, 1, 0)" in found["/", (3, 1, 1)]


def test_a_chunk_of_another_write_is_caught(tmp_path, capsys):
    store, _ = write(tmp_path / "a.zarr")
    other, _ = write(tmp_path / "b.zarr", seed=1)
    shutil.copyfile(chunk(other, (2, 2, 1)), chunk(store, (2, 2, 1)))
    assert "belongs to write" in read_error(store, (2, 2, 1))
    found = problems_of(chunkpress.verify(store))
    assert list(found) == [("/", (2, 2, 1))] and "another array" in found["/", (2, 2, 1)]
    # and through zarr's own reading (the codec checks the write; zarr gives no place)
    with pytest.raises(chunkpress.ZfpError, match="verify"):
        zarr.open_array(store, mode="r")[:]


def test_a_deleted_chunk_is_an_error_not_fill(tmp_path, capsys):
    store, _ = write(tmp_path / "a.zarr")
    os.remove(chunk(store, (1, 1, 1)))
    assert "is missing" in read_error(store, (1, 1, 1))
    assert chunkpress.info(store).loc["/", "missing_chunks"] == 1
    found = problems_of(chunkpress.verify(store))
    assert list(found) == [("/", (1, 1, 1))] and "missing" in found["/", (1, 1, 1)]
    code, out, _ = cli(capsys, "info", store)
    assert code == 0 and "1 chunk object(s) missing" in out and "chunkpress verify" in out
    code, out, _ = cli(capsys, "verify", store)
    assert code == EXIT_PROBLEMS and "chunk (1, 1, 1) (c/1/1/1): missing" in out


def test_a_truncated_chunk_is_caught(tmp_path, capsys):
    store, _ = write(tmp_path / "a.zarr")
    path = chunk(store, (2, 3, 0))
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    assert "damaged" in read_error(store, (2, 3, 0))
    found = problems_of(chunkpress.verify(store))
    assert list(found) == [("/", (2, 3, 0))] and "checksum" in found["/", (2, 3, 0)]
    code, out, _ = cli(capsys, "verify", store)
    assert code == EXIT_PROBLEMS and "chunk (2, 3, 0)" in out


def test_damage_in_a_dataset_names_the_array(tmp_path, capsys):
    x = field()
    ds = xr.Dataset({"t": (("z", "y", "x"), x), "u": (("z", "y", "x"), 2 * x)},
                    coords={"z": np.arange(SHAPE[0])})
    store = str(tmp_path / "d.zarr")
    ds.chunkpress.to_zarr(store, tolerance=TOLERANCE, chunks=CHUNKS)
    swap(chunk(store, (0, 0, 0), "u"), chunk(store, (0, 0, 1), "u"))
    read_error(store, (0, 0, 0), path="u")
    table = chunkpress.verify(store)
    assert set(problems_of(table)) == {("u", (0, 0, 0)), ("u", (0, 0, 1))}
    arrays = table.attrs["arrays"].set_index("array")
    assert arrays.loc["t", "chunks"] == arrays.loc["u", "chunks"] == 32
    assert arrays.loc["z", "checks"] == "crc only"  # an exact coordinate: its checksums
    code, out, _ = cli(capsys, "verify", store)
    assert code == EXIT_PROBLEMS and "u: chunk (0, 0, 0) (u/c/0/0/0)" in out


def test_a_damaged_chunk_of_an_exact_variable_is_an_error_not_other_numbers(tmp_path, capsys):
    # a variable kept exact (packed integers) carries a CRC-32C too: every reader refuses it
    x = field()
    ds = xr.Dataset({"t": (("z", "y", "x"), x),
                     "p": (("z", "y", "x"), np.nan_to_num(x * 10).astype("int16"))})
    store = str(tmp_path / "d.zarr")
    ds.chunkpress.to_zarr(store, tolerance=TOLERANCE, chunks=CHUNKS, variables=["t"])
    target = sorted(p for p in (tmp_path / "d.zarr" / "p" / "c").rglob("*") if p.is_file())[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x10
    target.write_bytes(bytes(data))
    table = chunkpress.verify(store)
    assert list(table.array) == ["p"] and "checksum" in table.problem[0]
    with pytest.raises(ValueError, match="checksum"):
        xr.open_zarr(store).p.values
    code, out, _ = cli(capsys, "verify", store)
    assert code == EXIT_PROBLEMS and out.startswith("p: chunk")


def test_a_chunk_copied_from_another_variable_of_the_dataset_is_caught(tmp_path, capsys):
    # the two arrays of one write have their own write identifiers: the same grid index of
    # another variable is not this chunk
    x = field()
    ds = xr.Dataset({"t": (("z", "y", "x"), x), "u": (("z", "y", "x"), 2 * x)})
    store = str(tmp_path / "d.zarr")
    ds.chunkpress.to_zarr(store, tolerance=TOLERANCE, chunks=CHUNKS)
    shutil.copyfile(chunk(store, (1, 2, 0), "t"), chunk(store, (1, 2, 0), "u"))
    assert "another array" in read_error(store, (1, 2, 0), path="u")
    assert set(problems_of(chunkpress.verify(store))) == {("u", (1, 2, 0))}
    with pytest.raises(chunkpress.ZfpError, match="another array"):
        zarr.open_array(store, path="u", mode="r")[:]  # zarr's own reader: the codec checks it


# --- an interrupted dataset write hides every array ------------------------------------------


_INTERRUPTED = """
import os, time, sys
import dask, dask.array as da, numpy as np, xarray as xr
import chunkpress

store, marker = sys.argv[1], sys.argv[2]

def block(b, block_info=None):
    if block_info[None]["chunk-location"] == (3, 3, 1):  # the last block never finishes
        open(marker, "w").close()
        time.sleep(600)
    return b

x = da.ones((64, 64, 32), chunks=(16, 16, 16), dtype="float32")
t = x.map_blocks(block, dtype="float32")
ds = xr.Dataset({"t": (("z", "y", "x"), t), "u": (("z", "y", "x"), x * 2)})
with dask.config.set(scheduler="threads", num_workers=2):
    ds.chunkpress.to_zarr(store, tolerance=0.01, chunks=(16, 16, 16))
"""


def test_an_interrupted_dataset_write_hides_every_array(tmp_path, capsys):
    store, marker = str(tmp_path / "d.zarr"), str(tmp_path / "started")
    script = tmp_path / "write.py"
    script.write_text(textwrap.dedent(_INTERRUPTED))
    writer = subprocess.Popen([sys.executable, str(script), store, marker])
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(marker):
            assert writer.poll() is None and time.monotonic() < deadline, "writer stopped"
            time.sleep(0.05)
        time.sleep(0.5)  # let the other tasks write their chunks
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    written = [f for d, _, fs in os.walk(tmp_path) for f in fs if "/c/" in os.path.join(d, f)]
    assert written, "the writer wrote no chunk before it was killed"
    for name in ("t", "u"):
        with pytest.raises(FileNotFoundError):
            chunkpress.from_zarr(store, path=name)
        with pytest.raises(FileNotFoundError):
            zarr.open_array(store, path=name, mode="r")
    with pytest.raises(FileNotFoundError):
        xr.open_zarr(store)
    table = chunkpress.verify(store)
    assert len(table) == 1 and "incomplete" in table.problem[0]
    code, out, _ = cli(capsys, "verify", store)
    assert code == EXIT_PROBLEMS and "incomplete" in out


# --- the bound claimed, the error measured ---------------------------------------------------


def _claim(store, node, tolerance):
    """Edit an array's zarr.json (and the root's consolidated copy) to claim ``tolerance``."""
    for path in filter(os.path.exists, [os.path.join(store, node, "zarr.json"),
                                        os.path.join(store, "zarr.json")]):
        doc = json.load(open(path))
        codecs = doc["codecs"] if "codecs" in doc else \
            doc["consolidated_metadata"]["metadata"][node]["codecs"]
        codecs[0]["configuration"]["tolerance"] = tolerance
        json.dump(doc, open(path, "w"))


def test_an_edited_tolerance_shows_in_info_and_fails_verify_against(tmp_path, capsys):
    x = field()
    ds = xr.Dataset({"t": (("z", "y", "x"), x)})
    original = str(tmp_path / "original.nc")
    ds.to_netcdf(original)
    store = str(tmp_path / "d.zarr")
    ds.chunkpress.to_zarr(store, tolerance=TOLERANCE, chunks=CHUNKS, verify=True)
    row = chunkpress.info(store).loc["t"]
    assert row.error_bound == TOLERANCE and 0 < row.measured_error <= TOLERANCE
    assert chunkpress.verify(store, against=ds).empty
    measured = row.measured_error

    _claim(store, "t", 1e-5)
    row = chunkpress.info(store).loc["t"]
    assert row.error_bound == 1e-5 and row.measured_error == measured
    code, out, _ = cli(capsys, "info", store)
    assert "claimed" in out and "measured" in out  # the two columns (headers may wrap)
    assert "claimed bound: the max error the metadata (zarr.json) claims" in out
    assert "t: the measured error" in out and "exceeds the claimed bound 1e-05" in out

    assert chunkpress.verify(store).empty  # the chunks themselves are intact
    for against in (ds, original):
        table = chunkpress.verify(store, against=against)
        assert len(table) == 1 and table.array[0] == "t" and table.chunk[0] is not None
        assert "exceeds the bound 1e-05" in table.problem[0]
        arrays = table.attrs["arrays"].set_index("array")
        assert arrays.loc["t", "max_error"] == pytest.approx(measured, rel=1e-6)
    code, out, _ = cli(capsys, "verify", store, "--against", original)
    assert code == EXIT_PROBLEMS and "t: chunk" in out and "exceeds the bound 1e-05" in out


def test_verify_against_a_packed_variable_compares_decoded_units(tmp_path):
    x = field() * 100 + 2000
    ds = xr.Dataset({"t": (("z", "y", "x"), x.astype("float32"))})
    ds.t.encoding = {"scale_factor": 0.5, "add_offset": 2000.0, "dtype": "float32",
                     "_FillValue": -9999.0}
    store = str(tmp_path / "d.zarr")
    ds.chunkpress.to_zarr(store, tolerance=0.05, chunks=CHUNKS)
    table = chunkpress.verify(store, against=ds)
    assert table.empty
    arrays = table.attrs["arrays"].set_index("array")
    # the recorded bound is the user's, less what float32 rounding of the packed values
    # takes (the codec works on the stored values): never more than asked
    bound = arrays.loc["t", "error_bound"]
    assert 0.045 < bound <= 0.05
    assert 0 < arrays.loc["t", "max_error"] <= bound
    # a value changed in the original: the store no longer matches it
    changed = ds.copy(deep=True)
    changed.t[40, 20, 20] += 1.0
    table = chunkpress.verify(store, against=changed)
    assert list(problems_of(table)) == [("t", (2, 1, 1))]


def test_verify_against_an_array_and_a_chunk_swapped(tmp_path):
    store, x = write(tmp_path / "a.zarr")
    table = chunkpress.verify(store, against=x)
    assert table.empty and table.attrs["arrays"].max_error[0] <= TOLERANCE
    swap(chunk(store, (0, 0, 0)), chunk(store, (0, 0, 1)))
    table = chunkpress.verify(store, against=x)  # the place fails; nothing decoded there
    assert set(problems_of(table)) == {("/", (0, 0, 0)), ("/", (0, 0, 1))}
    with pytest.raises(TypeError, match="against"):
        chunkpress.verify(store, against=[1, 2, 3])


# --- stores written by zarr or xarray: checksums only ----------------------------------------


def test_a_store_zarr_wrote_is_checked_by_checksum_only(tmp_path, capsys):
    x = field()
    store = str(tmp_path / "z.zarr")
    array = zarr.create_array(store, shape=SHAPE, chunks=CHUNKS, dtype="float32",
                              serializer=cpzarr.ZfpCodec(tolerance=TOLERANCE),
                              compressors=[Crc32cCodec()], fill_value=0.0)
    array[:] = x
    array[:16, :16, :16] = 0.0  # a chunk of fill: zarr does not write it
    written = array[:]
    table = chunkpress.verify(store)
    assert table.empty
    arrays = table.attrs["arrays"]
    assert arrays.checks[0] == "crc only" and arrays.absent_chunks[0] == 1
    assert "checksums only" in summary(table)
    # a chunk swapped passes the checksum (a place record is what catches it), not --against
    swap(chunk(store, (1, 0, 0)), chunk(store, (2, 0, 0)))
    assert chunkpress.verify(store).empty
    found = problems_of(chunkpress.verify(store, against=written))
    assert set(found) == {("/", (1, 0, 0))} and "exceeds the bound" in found["/", (1, 0, 0)]
    path = chunk(store, (3, 0, 0))
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 1
    open(path, "wb").write(bytes(data))
    found = problems_of(chunkpress.verify(store))
    assert list(found) == [("/", (3, 0, 0))] and "checksum" in found["/", (3, 0, 0)]


def test_xarray_append_across_the_edge_chunkpress_wrote_is_not_damage(tmp_path):
    """xarray's own append rewrites the chunk across the old edge; zarr leaves it out where it
    became all fill. That chunk is not missing; a chunk inside the old extent still is."""
    import xarray as xr

    import chunkpress.accessor  # noqa: F401 - the accessor

    def made(t0, n):
        return xr.Dataset({"x": (("time", "y"), np.random.default_rng(t0).random((n, 8))
                                 .astype("f4")),
                           "flag": (("time", "y"), np.zeros((n, 8), "i2"))},
                          coords={"time": np.arange(t0, t0 + n)})

    path = tmp_path / "s.zarr"
    ds = made(0, 10)
    ds["flag"].encoding["chunks"] = (4, 8)
    ds.chunkpress.to_zarr(path, tolerance=0.01)
    made(10, 3).to_zarr(path, append_dim="time")  # chunk (2, 0) of zeros left out by zarr
    assert not (path / "flag" / "c" / "2" / "0").exists()
    assert len(chunkpress.verify(path)) == 0
    assert int(chunkpress.from_zarr(path, "flag").compute().sum()) == 0
    (path / "flag" / "c" / "0" / "0").unlink()  # inside what chunkpress wrote: damage
    problems = chunkpress.verify(path)
    assert list(problems["chunk"]) == [(0, 0)]
