"""chunkpress on a real S3-compatible server (moto, see servers.py): write, read, overwrites
that fail or are killed, two writers, foreign objects — the same guarantees as on disk."""

import json
import os
import subprocess
import sys
import textwrap
import time

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

import chunkpress
from common import failing_blocks, walk_field
from chunkpress.storage import IncompleteStoreError, WriterBusyError
from chunkpress.storage.objectstore import LOCK

TOL = 0.01
CHUNKS = (16, 16, 16)


field = walk_field  # (seed, shape=(64, 64, 32)): a smooth float32 field


def failing(x):
    return failing_blocks(x, CHUNKS)  # its block (2, 1, 1) raises


def keys(s3, prefix):
    return sorted(k[len(s3.name) + 1:] for k in s3.filesystem().find(s3.path(prefix)))


def chunk_keys(s3, prefix):
    return [k for k in keys(s3, prefix) if k.rsplit("/", 1)[-1] != "zarr.json"
            and not k.endswith(LOCK)]


def test_write_read_info_accessor_and_xarray(s3, scheduler):
    x = field()
    url = s3.url + "a.zarr"
    chunkpress.to_zarr(x, url, storage_options=s3.storage_options, tolerance=TOL,
                       chunks=CHUNKS)
    back = chunkpress.from_zarr(url, storage_options=s3.storage_options).compute()
    assert np.abs(back - x).max() <= TOL
    table = chunkpress.info(url, storage_options=s3.storage_options)
    assert table["codec"].iloc[0] == "zfp" and table["error_bound"].iloc[0] == TOL

    ds = xr.Dataset({"sst": (("t", "y", "x"), x), "n": ("t", np.arange(64, dtype="int32"))},
                    coords={"t": np.arange(64.0)}).chunk({"t": 16, "y": 16, "x": 16})
    ds_url = s3.url + "ds.zarr"
    ds.chunkpress.to_zarr(ds_url, tolerance=TOL, storage_options=s3.storage_options)
    read = xr.open_zarr(ds_url, storage_options=s3.storage_options).load()
    assert np.abs(read.sst.values - x).max() <= TOL
    np.testing.assert_array_equal(read.n.values, np.arange(64))
    sst = chunkpress.from_zarr(ds_url, path="sst", storage_options=s3.storage_options)
    np.testing.assert_array_equal(sst.compute(), read.sst.values)


def old_array(s3):
    """Write the array an overwrite will try to replace: (url, values, chunk keys, read)."""
    url = s3.url + "a.zarr"
    old = field(0)
    chunkpress.to_zarr(old, url, storage_options=s3.storage_options, tolerance=TOL,
                       chunks=CHUNKS)
    before = chunk_keys(s3, "a.zarr")
    return url, old, before, chunkpress.from_zarr(url, storage_options=s3.storage_options
                                                  ).compute()


def test_failed_overwrite_keeps_the_old_array(s3, scheduler):
    url, old, before, expected = old_array(s3)
    with pytest.raises(RuntimeError, match=r"block \(2, 1, 1\)"):
        chunkpress.to_zarr(failing(field(1)), url, storage_options=s3.storage_options,
                           tolerance=TOL, overwrite=True)
    again = chunkpress.from_zarr(url, storage_options=s3.storage_options).compute()
    np.testing.assert_array_equal(again, expected)
    plain = zarr.open_array(url, storage_options=s3.storage_options, mode="r")[...]
    assert np.abs(plain - old).max() <= TOL
    if scheduler == "threads":  # workers in other processes may still be finishing a put
        assert chunk_keys(s3, "a.zarr") == before, "the failed write left chunks behind"
    assert not any(k.endswith(LOCK) for k in keys(s3, "a.zarr"))
    # the next overwrite works and leaves only its own chunks
    new = field(2)
    chunkpress.to_zarr(new, url, storage_options=s3.storage_options, tolerance=TOL,
                       chunks=CHUNKS, overwrite=True)
    back = chunkpress.from_zarr(url, storage_options=s3.storage_options).compute()
    assert np.abs(back - new).max() <= TOL
    assert len(chunk_keys(s3, "a.zarr")) == len(before)
    assert set(chunk_keys(s3, "a.zarr")).isdisjoint(before)


def test_failed_dataset_overwrite_keeps_the_old_dataset(s3):
    url = s3.url + "ds.zarr"

    def dataset(values, data):
        return xr.Dataset({"sst": (("t", "y", "x"), data),
                           "n": ("t", da.arange(64, chunks=16, dtype="int32") + values)},
                          coords={"t": np.arange(64.0) + values})

    old = dataset(0, field(0))
    old.chunk({"t": 16, "y": 16, "x": 16}).chunkpress.to_zarr(
        url, tolerance=TOL, storage_options=s3.storage_options)
    expected = xr.open_zarr(url, storage_options=s3.storage_options).load()
    with pytest.raises(RuntimeError, match=r"block \(2, 1, 1\)"):
        dataset(100, failing(field(1))).chunkpress.to_zarr(
            url, tolerance=TOL, overwrite=True, storage_options=s3.storage_options)
    after = xr.open_zarr(url, storage_options=s3.storage_options).load()
    xr.testing.assert_identical(after, expected)
    assert np.abs(after.sst.values - field(0)).max() <= TOL
    after = xr.open_zarr(url, storage_options=s3.storage_options, consolidated=False).load()
    xr.testing.assert_identical(after, expected)


def test_second_writer_is_refused(s3):
    url = s3.url + "a.zarr"
    chunkpress.to_zarr(field(0), url, storage_options=s3.storage_options, tolerance=TOL,
                       chunks=CHUNKS)
    job = chunkpress.to_zarr(field(1), url, storage_options=s3.storage_options,
                             tolerance=TOL, chunks=CHUNKS, overwrite=True, compute=False)
    with pytest.raises(WriterBusyError, match=f"another chunkpress write.*delete s3://.*{LOCK}"):
        chunkpress.to_zarr(field(2), url, storage_options=s3.storage_options,
                           tolerance=TOL, chunks=CHUNKS, overwrite=True)
    job.compute()  # the first writer is not disturbed, and its result is wholly its own
    back = chunkpress.from_zarr(url, storage_options=s3.storage_options).compute()
    assert np.abs(back - field(1)).max() <= TOL
    assert not any(k.endswith(LOCK) for k in keys(s3, "a.zarr"))


def test_overwrite_refuses_foreign_objects(s3):
    url = s3.url + "a.zarr"
    chunkpress.to_zarr(field(0), url, storage_options=s3.storage_options, tolerance=TOL,
                       chunks=CHUNKS)
    fs = s3.filesystem()
    fs.pipe(s3.path("a.zarr", "notes.txt"), b"my notes")
    with pytest.raises(FileExistsError, match="notes.txt"):
        chunkpress.to_zarr(field(1), url, storage_options=s3.storage_options,
                           tolerance=TOL, chunks=CHUNKS, overwrite=True)
    assert fs.cat(s3.path("a.zarr", "notes.txt")) == b"my notes"
    fs.pipe(s3.path("table.csv"), b"1,2\n")
    with pytest.raises(FileExistsError, match="not a Zarr store"):
        chunkpress.to_zarr(field(1), s3.url + "table.csv", storage_options=s3.storage_options,
                           tolerance=TOL, chunks=CHUNKS, overwrite=True)
    assert fs.cat(s3.path("table.csv")) == b"1,2\n"


# --- writers killed with SIGKILL --------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time
    import dask, dask.array as da, numpy as np
    import chunkpress
    url, marker, seed, overwrite = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    x = np.cumsum(np.random.default_rng(seed).standard_normal((64, 64, 32)), axis=0)
    def block(b, block_info=None):
        if tuple(block_info[0]["chunk-location"]) == (3, 3, 1):
            open(marker, "w").close()
            time.sleep(600)  # killed here
        return b
    x = da.from_array(x.astype("float32"), chunks=(16, 16, 16)).map_blocks(block, dtype="float32")
    with dask.config.set(scheduler="threads", num_workers=2):
        chunkpress.to_zarr(x, url, tolerance=0.01, chunks=(16, 16, 16), overwrite=overwrite)
""")


def kill_writer_midway(s3, tmp_path, name, seed, overwrite, written):
    """Start a writer of ``name``, SIGKILL it once ``written(keys)`` holds; return its lock."""
    marker = tmp_path / "blocked"
    env = {**os.environ, **s3.env, "CHUNKPRESS_LOCK_TTL": "2"}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, s3.url + name, str(marker),
                             str(seed), "1" if overwrite else "0"], env=env,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (marker.exists() and written(chunk_keys(s3, name))):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the writer never got halfway"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    return json.loads(s3.filesystem().cat(s3.path(name, LOCK)))


def wait_for_expiry(lock):
    time.sleep(max(0.0, lock["expires"] - time.time()) + 0.2)


def test_killed_overwrite_keeps_the_old_array(s3, tmp_path):
    url, old, before, expected = old_array(s3)
    lock = kill_writer_midway(s3, tmp_path, "a.zarr", 7, True,
                              lambda now: len(set(now) - set(before)) >= 4)
    assert len(set(chunk_keys(s3, "a.zarr")) - set(before)) >= 4  # it was halfway
    np.testing.assert_array_equal(
        chunkpress.from_zarr(url, storage_options=s3.storage_options).compute(), expected)
    assert np.abs(zarr.open_array(url, storage_options=s3.storage_options,
                                  mode="r")[...] - old).max() <= TOL
    wait_for_expiry(lock)  # the killed writer's lock expires; the next write takes it over
    new = field(3)
    chunkpress.to_zarr(new, url, storage_options=s3.storage_options, tolerance=TOL,
                       chunks=CHUNKS, overwrite=True)
    assert np.abs(chunkpress.from_zarr(url, storage_options=s3.storage_options).compute()
                  - new).max() <= TOL
    assert len(chunk_keys(s3, "a.zarr")) == len(before), "leftovers of the killed writer"
    assert not any(k.endswith(LOCK) for k in keys(s3, "a.zarr"))


def test_killed_first_write_is_seen_by_no_reader(s3, tmp_path):
    url = s3.url + "b.zarr"
    kill_writer_midway(s3, tmp_path, "b.zarr", 5, False, lambda now: len(now) >= 4)
    assert "b.zarr/zarr.json" not in keys(s3, "b.zarr")
    with pytest.raises(IncompleteStoreError, match="incomplete"):
        chunkpress.from_zarr(url, storage_options=s3.storage_options)
    with pytest.raises(IncompleteStoreError, match="incomplete"):
        chunkpress.info(url, storage_options=s3.storage_options)
    with pytest.raises(FileNotFoundError):
        zarr.open_array(url, storage_options=s3.storage_options, mode="r")
    with pytest.raises((FileNotFoundError, KeyError)):
        xr.open_zarr(url, storage_options=s3.storage_options)
