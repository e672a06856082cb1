"""Faults a user meets at scale: workers that die mid-job, writers killed halfway through a store.

Every fault here is real: a worker process of a LocalCluster is sent SIGKILL while its tasks
run, a writing interpreter is sent SIGKILL while chunk objects land on disk. The job must then
give the bytes a run without the fault gives, and a half-written store must never read as
whole.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import concurrent.futures

import cloudpickle
import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

import chunkpress
from chunkpress import cli
from chunkpress.storage import IncompleteStoreError, from_zarr, integrity, to_zarr

import distributed  # noqa: E402

from common import ROOT

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers run make_block

SHAPE, CHUNKS = (96, 32, 32), (8, 32, 32)


def make_block(delay, block_info=None):
    """A smooth block from its place in the array, after ``delay`` seconds of 'reading'."""
    time.sleep(delay)
    (z0, z1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    z, y, x = np.ogrid[z0:z1, y0:y1, x0:x1]
    block = np.sin(0.1 * z) * np.cos(0.07 * y) + 0.01 * x
    return block.astype(np.float32)


def slow_field(delay):
    """The (96, 32, 32) field in 12 blocks, each taking ``delay`` seconds to make."""
    return da.map_blocks(make_block, delay, chunks=tuple(
        tuple(c for _ in range(n // c)) for n, c in zip(SHAPE, CHUNKS)), dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32))


def chunk_files(path) -> dict:
    root = Path(path)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "c").rglob("*"))
            if p.is_file()}


def staged(path, variable="") -> dict:
    """The chunk files a write of ``path`` has put in its staging directory so far."""
    root = Path(path)
    found = {}
    for staging in root.parent.glob(f".{root.name}.chunkpress-staging-*"):
        found.update(chunk_files(staging / variable) if (staging / variable / "c").exists()
                     else {})
    return found


def streams(path) -> dict:
    """Each chunk's codec stream (without the place record naming the write), by place."""
    array = zarr.open_array(path, mode="r")
    write = array.serializer.write
    return {name: bytes(integrity.split(integrity.unseal(data), write, 3)[0])
            for name, data in chunk_files(path).items()}


def wait_until(condition, what, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# --- workers that die ----------------------------------------------------------------------


def kill_one_worker(client):
    pids = client.run(os.getpid)
    os.kill(sorted(pids.values())[0], signal.SIGKILL)


def test_a_worker_killed_during_persist_changes_no_byte(client):
    expected = chunkpress.compress(slow_field(0.0), "zfp", tolerance=1e-3, chunks=CHUNKS).compute(
        scheduler="threads")
    c = chunkpress.compress(slow_field(0.3), "zfp", tolerance=1e-3, chunks=CHUNKS).persist()
    futures = list(dict(c.__dask_graph__()).values())
    wait_until(lambda: sum(f.done() for f in futures) >= 2, "the first blocks")
    assert not all(f.done() for f in futures), "the job ended before the fault"
    kill_one_worker(client)
    distributed.wait(futures, timeout=120)
    got = c.compute()
    assert [b.data for b in dask.compute(*got.blocks.to_delayed().flat)] == \
        [b.data for b in dask.compute(*expected.blocks.to_delayed().flat, scheduler="sync")]


def test_a_worker_killed_during_to_zarr_changes_no_byte(client, tmp_path):
    with dask.config.set(scheduler="threads"):
        to_zarr(slow_field(0.0), tmp_path / "clean.zarr", tolerance=1e-3, chunks=CHUNKS)
    path = tmp_path / "fault.zarr"
    job = to_zarr(slow_field(0.3), path, tolerance=1e-3, chunks=CHUNKS, compute=False)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # on the cluster: the default client
        done = pool.submit(job.compute)
        wait_until(lambda: len(staged(path)) >= 2, "the first chunks")
        assert not done.done(), "the job ended before the fault"
        kill_one_worker(client)
        done.result(timeout=120)
    assert streams(path) == streams(tmp_path / "clean.zarr")
    np.testing.assert_array_equal(from_zarr(path).compute(),
                                  from_zarr(tmp_path / "clean.zarr").compute())


# --- writers killed halfway ----------------------------------------------------------------

WRITER = """
import sys, time
import dask.array as da, numpy as np, xarray as xr
import chunkpress

def make(block_info=None):
    time.sleep(0.2)
    (z0, z1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    z, y, x = np.ogrid[z0:z1, y0:y1, x0:x1]
    return (np.sin(0.1 * z) * np.cos(0.07 * y) + 0.01 * x).astype(np.float32)

field = da.map_blocks(make, chunks=((8,) * 12, (32,), (32,)), dtype=np.float32,
                      meta=np.empty((0, 0, 0), np.float32))
if sys.argv[2] == "array":
    chunkpress.to_zarr(field, sys.argv[1], tolerance=1e-3, chunks=(8, 32, 32))
else:
    ds = xr.Dataset({"t": (("z", "y", "x"), field)}, coords={"z": np.arange(96.0)})
    ds.chunkpress.encode(tolerance=1e-3, chunks=(8, 32, 32)).to_zarr(sys.argv[1])
"""


def kill_writer_halfway(path, kind, variable=""):
    """Start a writer of ``kind`` in a child interpreter and SIGKILL it mid-write."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), DASK_SCHEDULER="threads",
               DASK_NUM_WORKERS="2")
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path), kind],
                             env=env, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(staged(path, variable)) >= 2 or child.poll() is not None,
                   "the first chunks")
        assert child.poll() is None, f"the writer ended first: {child.stderr.read().decode()}"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.wait()
    return staged(path, variable)


def test_a_store_whose_writer_was_killed_is_never_read_as_whole(tmp_path):
    path = tmp_path / "a.zarr"
    written = kill_writer_halfway(path, "array")
    assert 2 <= len(written) < 12
    assert not path.exists()  # the chunks went to the staging directory beside it
    with pytest.raises(IncompleteStoreError, match="incomplete.*overwrite=True"):
        from_zarr(path)
    with pytest.raises(FileNotFoundError):  # plain zarr finds no array: no fill values
        zarr.open_array(path, mode="r")
    with dask.config.set(scheduler="threads"):
        # the dead writer's lock is gone with it; its staging directory is removed
        to_zarr(slow_field(0.0), path, tolerance=1e-3, chunks=CHUNKS)
        y = from_zarr(path).compute()
    assert not list(path.parent.glob(".a.zarr.chunkpress-*"))
    assert np.max(np.abs(y - slow_field(0.0).compute())) <= 1e-3
    assert np.array_equal(zarr.open_array(path, mode="r")[:], y)
    assert not any(".partial" in name for name in chunk_files(path))


def test_a_dataset_whose_writer_was_killed_is_never_read_as_whole(tmp_path, capsys):
    path = tmp_path / "ds.zarr"
    kill_writer_halfway(path, "dataset", "t")
    with pytest.raises(FileNotFoundError):
        xr.open_zarr(path)
    with pytest.raises(IncompleteStoreError):
        chunkpress.info(path)
    for command in (["info", str(path)], ["decompress", str(path), str(tmp_path / "o.nc")]):
        assert cli.main(command) == cli.EXIT_USER_ERROR
        message = capsys.readouterr().err
        assert "incomplete" in message and "overwrite" in message and len(message.splitlines()) == 1
    field = slow_field(0.0)
    ds = xr.Dataset({"t": (("z", "y", "x"), field)}, coords={"z": np.arange(96.0)})
    with dask.config.set(scheduler="threads"):
        ds.chunkpress.encode(tolerance=1e-3, chunks=CHUNKS).to_zarr(path, overwrite=True)
    back = xr.open_zarr(path)
    assert np.max(np.abs(back.t.values - field.compute())) <= 1e-3
    np.testing.assert_array_equal(back.z.values, np.arange(96.0))


def test_a_chunk_object_cut_short_is_an_error_naming_it(tmp_path):
    # what a half-written object would look like, had it not been written then renamed
    path = tmp_path / "a.zarr"
    with dask.config.set(scheduler="threads"):
        to_zarr(slow_field(0.0), path, tolerance=1e-3, chunks=CHUNKS)
    target = path / "c" / "5" / "0" / "0"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(chunkpress.ZfpError, match=r"chunk \(5, 0, 0\)"):
        from_zarr(path).compute(scheduler="sync")
    with pytest.raises(Exception, match="crc32c|checksum|[Cc]hunk"):
        zarr.open_array(path, mode="r")[40:48]
