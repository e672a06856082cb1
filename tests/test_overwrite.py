"""Overwrites replace, they never destroy: local directories, zip files, the CLI.

Every fault is real: an input block that raises, a writing interpreter sent SIGKILL or SIGINT
while its chunks land in the staging directory, two writer processes, a dask worker that
writes to a disk of its own (its own mount namespace, as on another machine), the CLI killed
mid-way. After each, the previous store reads back with its previous values through every
reader, and the next write to the same path works and leaves nothing of chunkpress behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask
import dask.array as da
from dask.delayed import Delayed
import numpy as np
import pytest
import xarray as xr
import zarr

import chunkpress
from chunkpress import cli
from chunkpress.storage import IncompleteStoreError, WriterBusyError, from_zarr, to_zarr
from chunkpress.storage.publish import staging_name

from common import ROOT

SHAPE, CHUNKS, TOL = (96, 32, 32), (8, 32, 32), 1e-3
BLOCKS = 12


def field(offset=0.0) -> np.ndarray:
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    return (np.sin(0.1 * z) * np.cos(0.07 * y) + 0.01 * x + offset).astype(np.float32)


def leftovers(path) -> list:
    """What chunkpress keeps beside (and inside) a target while writing: none may remain."""
    parent = Path(path).parent
    return sorted(str(p) for p in parent.rglob("*") if ".chunkpress-" in p.name)


def read_all_ways(path, kind) -> list:
    """The values of the store at ``path`` as every reader of ``kind`` returns them."""
    if kind == "dataset":
        return [xr.open_zarr(path).t.values, from_zarr(path, path="t").compute(),
                zarr.open_array(path, path="t", mode="r")[:]]
    if kind == "zip":
        store = zarr.storage.ZipStore(path, mode="r")
        try:
            return [from_zarr(path).compute(), zarr.open_array(store, mode="r")[:]]
        finally:
            store.close()
    return [from_zarr(path).compute(), zarr.open_array(path, mode="r")[:]]


def write(values, path, kind, **kwargs):
    """Write ``values`` (an array) to ``path`` as ``kind`` (array, zip, dataset)."""
    with dask.config.set(scheduler="threads"):
        if kind == "dataset":
            ds = xr.Dataset({"t": (("z", "y", "x"), values)}, coords={"z": np.arange(96.0)})
            return ds.chunkpress.to_zarr(path, tolerance=TOL, chunks=CHUNKS, **kwargs)
        return to_zarr(values, path, tolerance=TOL, chunks=CHUNKS, **kwargs)


def assert_holds(path, kind, offset):
    for values in read_all_ways(path, kind):
        assert np.max(np.abs(values - field(offset))) <= TOL


def target(tmp_path, kind) -> Path:
    return tmp_path / ("a.zip" if kind == "zip" else "a.zarr")


KINDS = ["array", "zip", "dataset"]


@pytest.mark.parametrize("kind", KINDS)
def test_overwrite_and_mode_are_what_they_say(tmp_path, kind):
    """overwrite="no" is not False to Python's truth: any non-bool is refused, before
    anything is written; xarray's mode="w" is refused with where chunkpress says it."""
    path = target(tmp_path, kind)
    write(field(0), path, kind)
    before = read_all_ways(path, kind)
    for given in ("no", "false", 1, None):
        with pytest.raises(TypeError, match=rf"overwrite must be True or False, got {given!r}"):
            write(field(5), path, kind, overwrite=given)
    with pytest.raises(ValueError, match=r"mode='w' is xarray's.*overwrite=True"):
        write(field(5), path, kind, mode="w", overwrite=True)
    for old, now in zip(before, read_all_ways(path, kind)):
        assert np.array_equal(old, now)
    assert not leftovers(path)


# --- 1. a write that fails or is killed leaves the old store ------------------------------------


def _raise_on_block_5(block, block_info=None):
    if block_info[None]["chunk-location"][0] == 5:
        raise RuntimeError("reading block 5 failed")
    return block + 50


@pytest.mark.parametrize("kind", KINDS)
def test_a_failing_input_block_leaves_the_old_store(tmp_path, kind):
    path = target(tmp_path, kind)
    write(field(0), path, kind)
    failing = da.from_array(field(0), chunks=CHUNKS).map_blocks(_raise_on_block_5,
                                                                dtype=np.float32)
    with pytest.raises(RuntimeError, match="block 5"):
        write(failing, path, kind, overwrite=True)
    assert_holds(path, kind, 0)
    assert leftovers(path) == []
    write(field(7), path, kind, overwrite=True)
    assert_holds(path, kind, 7)
    assert leftovers(path) == []


WRITER = """
import glob, os, sys, time
import dask, dask.array as da, numpy as np, xarray as xr
import chunkpress

path, kind, offset, delay, gate = sys.argv[1], sys.argv[2], float(sys.argv[3]), \
    float(sys.argv[4]), sys.argv[5]

def staged():
    head, name = os.path.split(os.path.abspath(path))
    files = glob.glob(os.path.join(head, f".{name}.chunkpress-staging-*", "**", "c", "**"),
                      recursive=True)
    zips = glob.glob(os.path.join(head, f".{name}.chunkpress-staging-*.zip"))
    return sum(map(os.path.isfile, files)) + 2 * sum(os.path.getsize(z) > 4096 for z in zips)

def make(block_info=None):
    (z0, z1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    time.sleep(delay)
    while gate != "-" and not os.path.exists(gate) and staged() >= 2:
        time.sleep(0.01)  # once two chunks are staged, the rest wait for the test's gate
    z, y, x = np.ogrid[z0:z1, y0:y1, x0:x1]
    return (np.sin(0.1 * z) * np.cos(0.07 * y) + 0.01 * x + offset).astype(np.float32)

values = da.map_blocks(make, chunks=((8,) * 12, (32,), (32,)), dtype=np.float32,
                       meta=np.empty((0, 0, 0), np.float32))
with dask.config.set(scheduler="threads", num_workers=2):
    if kind == "dataset":
        ds = xr.Dataset({"t": (("z", "y", "x"), values)}, coords={"z": np.arange(96.0)})
        ds.chunkpress.to_zarr(path, tolerance=1e-3, chunks=(8, 32, 32), overwrite=True)
    else:
        chunkpress.to_zarr(values, path, tolerance=1e-3, chunks=(8, 32, 32), overwrite=True)
print("written", flush=True)
"""


def start_writer(path, kind, offset, delay=0.0, gate="-") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path), kind,
                             str(offset), str(delay), str(gate)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until(condition, what, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def staged_chunks(path) -> int:
    """Chunk objects in the staging directories (or temporary zip files) beside ``path``."""
    count = 0
    for entry in Path(path).parent.glob(f".{Path(path).name}.chunkpress-staging-*"):
        if entry.is_dir():
            count += sum(1 for p in entry.rglob("*") if p.is_file() and "c" in p.parts[-4:])
        elif entry.stat().st_size > 4096:  # a zip file: its first chunks are in it
            count += 2
    return count


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_writer_killed_mid_write_leaves_the_old_store(tmp_path, kind, how):
    path = target(tmp_path, kind)
    write(field(0), path, kind)
    gate = tmp_path / "gate"
    child = start_writer(path, kind, 50, gate=gate)
    try:
        wait_until(lambda: staged_chunks(path) >= 2 or child.poll() is not None,
                   "the first staged chunks")
        assert child.poll() is None, f"the writer ended first: {child.stderr.read().decode()}"
        child.send_signal(how)
        child.wait(timeout=60)
    finally:
        child.kill()
        child.wait()
    assert child.returncode != 0 and b"written" not in child.stdout.read()
    assert_holds(path, kind, 0)
    write(field(7), path, kind, overwrite=True)  # stale staging removed, the lock is free
    assert_holds(path, kind, 7)
    assert leftovers(path) == []


# --- 2. overwrite=True replaces only a Zarr store ----------------------------------------------


def snapshot(directory) -> dict:
    root = Path(directory)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def netcdf(path, offset=0.0):
    ds = xr.Dataset({"t": (("z", "y", "x"), field(offset))}, coords={"z": np.arange(96.0)})
    ds.to_netcdf(path)
    return ds


def test_cli_compress_into_the_directory_holding_its_input_deletes_nothing(tmp_path,
                                                                             monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    netcdf(work / "in.nc")
    (work / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    monkeypatch.chdir(work)
    assert cli.main(["compress", "in.nc", ".", "--overwrite", "--tolerance", "0.01"]) == 1
    message = capsys.readouterr().err
    assert "in.nc" in message or "notes.txt" in message, message
    assert "not" in message and "Zarr store" in message
    assert snapshot(tmp_path) == before
    assert leftovers(work) == []
    with pytest.raises(FileExistsError, match="in.nc|notes.txt"):
        to_zarr(field(), work, tolerance=TOL, overwrite=True)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["root", "array", "chunks", "dataset variable"])
def test_a_zarr_store_holding_a_stray_file_is_not_replaced(tmp_path, where):
    path = tmp_path / "a.zarr"
    kind = "dataset" if where == "dataset variable" else "array"
    write(field(0), path, kind)
    stray = {"root": path / "README.txt", "array": path / "notes.md",
             "chunks": path / "c" / "3" / "my-notes.txt",
             "dataset variable": path / "t" / "plot.png"}[where]
    stray.write_text("the user's")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match=stray.name):
        write(field(5), path, kind, overwrite=True)
    assert snapshot(tmp_path) == before
    assert leftovers(path) == []


def test_a_symbolic_link_inside_a_store_is_not_replaced(tmp_path):
    path = tmp_path / "a.zarr"
    write(field(0), path, "dataset")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.bin").write_bytes(b"keep")
    os.symlink(elsewhere, path / "linked")
    with pytest.raises(FileExistsError, match="linked"):
        write(field(5), path, "dataset", overwrite=True)
    assert os.path.islink(path / "linked") and (elsewhere / "data.bin").read_bytes() == b"keep"
    assert_holds(path, "dataset", 0)


@pytest.mark.parametrize("name", ["a.zarr", "data.bin", "a.zip"])
def test_an_existing_plain_file_is_not_replaced(tmp_path, capsys, name):
    path = tmp_path / name
    path.write_bytes(b"not a store")
    with pytest.raises(FileExistsError, match="not a (zip file holding a )?Zarr store"):
        to_zarr(field(), path, tolerance=TOL, overwrite=True)
    source = tmp_path / "in.nc"
    netcdf(source)
    assert cli.main(["compress", str(source), str(path), "--overwrite"]) == 1
    message = capsys.readouterr().err
    assert "file" in message and "not a" in message and "already holds" not in message, message
    assert cli.main(["compress", str(source), str(path)]) == 1
    message = capsys.readouterr().err
    assert "not a" in message and "--overwrite" not in message, message
    assert path.read_bytes() == b"not a store"
    assert leftovers(path) == []


# --- 3. in-place recompression ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["array", "zip"])
def test_recompressing_a_store_onto_itself(tmp_path, kind):
    path = target(tmp_path, kind)
    write(field(0), path, kind)
    old = from_zarr(path).compute()
    with dask.config.set(scheduler="threads"):
        to_zarr(from_zarr(path), path, overwrite=True, codec="sz3", tolerance=0.01)
    new = read_all_ways(path, kind)
    for values in new:
        assert np.max(np.abs(values - old)) <= 0.01
        assert np.max(np.abs(values - field(0))) <= 0.01 + TOL
        assert not np.array_equal(values, np.zeros_like(values))
    assert chunkpress.info(path).loc[:, "codec"].tolist() == ["sz3"]
    assert leftovers(path) == []


def test_recompressing_a_dataset_onto_itself_with_the_accessor(tmp_path):
    path = tmp_path / "a.zarr"
    write(field(0), path, "dataset")
    ds = xr.open_zarr(path)
    with dask.config.set(scheduler="threads"):
        ds.chunkpress.to_zarr(path, "sz3", tolerance=0.01, overwrite=True)
    back = xr.open_zarr(path)
    assert np.max(np.abs(back.t.values - field(0))) <= 0.01 + TOL
    assert np.isfinite(back.t.values).all()
    np.testing.assert_array_equal(back.z.values, np.arange(96.0))
    assert leftovers(path) == []


def test_cli_compress_onto_its_own_input(tmp_path, capsys):
    path = tmp_path / "a.zarr"
    write(field(0), path, "dataset")
    assert cli.main(["compress", str(path), str(path), "--overwrite", "--codec", "sz3",
                     "--tolerance", "0.01"]) == 0, capsys.readouterr().err
    back = xr.open_zarr(path)
    assert np.max(np.abs(back.t.values - field(0))) <= 0.01 + TOL
    assert chunkpress.info(path).loc["t", "codec"] == "sz3"
    assert leftovers(path) == []


# --- 4. two writers -----------------------------------------------------------------------------


def writer_of_each_chunk(path, offsets) -> set:
    """The offsets (writers) whose data each chunk holds, read chunk by chunk."""
    values = from_zarr(path).compute()
    found = set()
    for z in range(0, SHAPE[0], CHUNKS[0]):
        chunk = values[z:z + CHUNKS[0]]
        owners = [o for o in offsets if np.max(np.abs(chunk - field(o)[z:z + CHUNKS[0]])) <= TOL]
        assert len(owners) == 1, f"chunk at z={z} is no writer's data"
        found.add(owners[0])
    return found


def test_a_second_writer_is_refused_while_the_first_writes(tmp_path):
    path = tmp_path / "a.zarr"
    write(field(0), path, "array")
    gate = tmp_path / "gate"
    first = start_writer(path, "array", 100, gate=gate)
    try:
        wait_until(lambda: staged_chunks(path) >= 2 or first.poll() is not None,
                   "the first writer's chunks")
        second = start_writer(path, "array", 200)
        assert second.wait(timeout=60) != 0
        error = second.stderr.read().decode()
        assert "WriterBusyError" in error and "another chunkpress write" in error, error
        assert "pid" in error  # who holds it
        gate.touch()
        assert first.wait(timeout=60) == 0, first.stderr.read().decode()
    finally:
        first.kill()
        first.wait()
    assert writer_of_each_chunk(path, (0, 100, 200)) == {100}
    assert leftovers(path) == []


def test_two_writers_at_once_leave_one_writers_store(tmp_path):
    path = tmp_path / "a.zarr"
    write(field(0), path, "array")
    writers = [start_writer(path, "array", offset, delay=0.05) for offset in (100, 200)]
    outcomes = []
    for writer in writers:
        code = writer.wait(timeout=120)
        error = writer.stderr.read().decode()
        assert code == 0 or "WriterBusyError" in error, error
        outcomes.append(code)
    assert 0 in outcomes
    assert len(writer_of_each_chunk(path, (0, 100, 200)) & {100, 200}) == 1
    assert leftovers(path) == []


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    path = tmp_path / "a.zarr"
    first = to_zarr(field(1), path, tolerance=TOL, chunks=CHUNKS, compute=False)
    with pytest.raises(WriterBusyError, match="earlier write of this process"):
        to_zarr(field(2), path, tolerance=TOL, chunks=CHUNKS, compute=False)
    with dask.config.set(scheduler="threads"):
        first.compute()
    assert_holds(path, "array", 1)
    assert leftovers(path) == []


# --- 5. a crash between the two renames of the swap ----------------------------------------------


def crash_between_renames(tmp_path, complete: bool) -> Path:
    """Leave ``a.zarr`` as a crash after the first rename of a swap would: the old store
    renamed aside, the new one staged (whole or not), nothing at the target."""
    path = tmp_path / "a.zarr"
    write(field(0), path, "dataset")
    staged = tmp_path / "elsewhere" / "a.zarr"
    write(field(9), staged, "dataset")
    document = json.loads((staged / "t" / "zarr.json").read_text())
    write_id = document["codecs"][0]["configuration"]["write"]
    if not complete:
        (staged / "zarr.json").unlink()  # the root's document is written last
    os.rename(staged, staging_name(path, "staging", write_id))
    os.rename(path, staging_name(path, "old", write_id))
    return path


OPENERS = {
    "from_zarr": lambda path: from_zarr(path, path="t").compute(),
    "info": lambda path: chunkpress.info(path),
    "cli info": lambda path: cli.main(["info", str(path)]),
    "to_zarr": lambda path: write(field(3), path, "dataset", overwrite=True),
}


@pytest.mark.parametrize("opener", list(OPENERS))
@pytest.mark.parametrize("complete", [True, False], ids=["staged whole", "staged in part"])
def test_the_next_open_repairs_a_crash_between_the_renames(tmp_path, opener, complete):
    path = crash_between_renames(tmp_path, complete)
    with pytest.warns(UserWarning, match="interrupted") if opener == "to_zarr" else \
            _nothing():
        result = OPENERS[opener](path)
    if opener == "cli info":
        assert result == 0
    expected = 3 if opener == "to_zarr" else (9 if complete else 0)
    assert_holds(path, "dataset", expected)
    if opener == "to_zarr" or complete:
        assert leftovers(path) == []
    else:  # the unfinished staging directory is left to the next write, which removes it
        write(field(4), path, "dataset", overwrite=True)
        assert leftovers(path) == []


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_crash_between_the_renames_of_a_node_write_is_repaired(tmp_path):
    path = tmp_path / "g.zarr"
    zarr.open_group(path, mode="w")
    with dask.config.set(scheduler="threads"):
        to_zarr(field(0), path, path="t", tolerance=TOL, chunks=CHUNKS)
    staged = tmp_path / "elsewhere" / "t.zarr"
    write(field(9), staged, "array")
    write_id = json.loads((staged / "zarr.json").read_text())["codecs"][0]["configuration"][
        "write"]
    os.rename(staged, staging_name(path, "staging", write_id))
    os.rename(path / "t", staging_name(path / "t", "old", write_id))
    assert np.max(np.abs(from_zarr(path, path="t").compute() - field(9))) <= TOL
    assert leftovers(path) == []


# --- 6. the publish check ----------------------------------------------------------------------


def _remove_a_staged_chunk(written, parent):
    staged = next(Path(parent).glob(".a.zarr.chunkpress-staging-*"))
    victim = sorted(p for p in staged.rglob("*") if p.is_file())[0]
    victim.unlink()
    return written


def test_a_chunk_gone_from_staging_before_publish_publishes_nothing(tmp_path):
    path = tmp_path / "a.zarr"
    write(field(0), path, "array")
    job = to_zarr(field(5), path, tolerance=TOL, chunks=CHUNKS, overwrite=True, compute=False)
    # after the writes, before the publishing
    saboteur = dask.delayed(_remove_a_staged_chunk)(Delayed(job.key, job.dask), tmp_path)
    (written, _) = dask.compute(Delayed(job.key, job.dask), saboteur, scheduler="threads")
    finish, args = job.__dask_postcompute__()  # publishing, as dask.compute ends a job
    with pytest.raises(IncompleteStoreError, match="file system every worker.*object store"):
        finish([written], *args)
    assert_holds(path, "array", 0)
    write(field(6), path, "array", overwrite=True)
    assert_holds(path, "array", 6)
    assert leftovers(path) == []


@pytest.fixture
def remote_worker(tmp_path):
    """A dask cluster whose only worker has a disk of its own at ``tmp_path / "shared"``: it
    runs in its own mount namespace with a fresh file system mounted there, as a worker on
    another machine would see the same path."""
    import distributed

    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -m (a mount namespace) to give a worker its own disk")
    shared = tmp_path / "shared"
    shared.mkdir()
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster:
        script = (f"mount -t tmpfs tmpfs {shared} && exec {sys.executable} -m "
                  f"distributed.cli.dask_worker {cluster.scheduler_address} --nthreads 1 "
                  "--no-dashboard --no-nanny")
        log = open(tmp_path / "worker.log", "wb")
        worker = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                   script], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            with distributed.Client(cluster) as client:
                client.wait_for_workers(1, timeout=60)
                yield client, shared, worker, tmp_path / "worker.log"
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            log.close()


def test_chunks_written_on_a_workers_own_disk_are_an_error_not_a_store(remote_worker):
    import distributed

    client, shared, worker, log = remote_worker
    path = shared / "a.zarr"
    with dask.config.set(scheduler="threads"):
        write(field(0), path, "array")
    job = to_zarr(da.from_array(field(5), chunks=CHUNKS), path, tolerance=TOL, chunks=CHUNKS,
                  overwrite=True, compute=False)
    future = client.compute(job.writes)
    try:  # bounded: a worker that died would leave the job waiting for another forever
        distributed.wait(future, timeout=120)
    except distributed.TimeoutError:
        job.abort()
        raise AssertionError(f"the worker did not finish the writes (alive: "
                             f"{worker.poll() is None}); its log: {log.read_text()[-2000:]}")
    # the worker finds no staging directory on its disk (or this process none of the chunks)
    with pytest.raises(IncompleteStoreError, match="file system every worker.*object store"):
        try:
            results = future.result()
        except BaseException:
            job.abort()
            raise
        job.finish(results)
    with dask.config.set(scheduler="threads"):  # read here: the worker sees its own disk
        assert_holds(path, "array", 0)
    assert leftovers(path) == []


# --- 7. the CLI ---------------------------------------------------------------------------------

BIG = (64, 256, 256)  # 16 MiB: sperr on one thread takes seconds, time to kill it mid-way


def big_netcdf(path, offset):
    rng = np.random.default_rng(int(offset))
    values = (rng.standard_normal(BIG).cumsum(axis=2) * 0.1 + offset).astype(np.float32)
    xr.Dataset({"t": (("z", "y", "x"), values)}).to_netcdf(path)


def run_cli_and_kill(args, ready):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-m", "chunkpress", *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: ready() or child.poll() is not None, "the CLI to write")
        assert child.poll() is None, f"the CLI ended first: {child.stderr.read().decode()}"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.wait()


def test_cli_compress_killed_mid_way_leaves_the_old_store(tmp_path):
    first, source, out = tmp_path / "first.nc", tmp_path / "in.nc", tmp_path / "out.zarr"
    big_netcdf(first, 0)
    assert cli.main(["compress", str(first), str(out), "--codec", "zfp", "--tolerance",
                     "0.01"]) == 0
    old = xr.open_zarr(out).t.values
    big_netcdf(source, 40)
    run_cli_and_kill(["compress", str(source), str(out), "--overwrite", "--codec", "sperr",
                      "--tolerance", "1e-4", "--workers", "1"],
                     lambda: staged_chunks(out) >= 1)
    np.testing.assert_array_equal(xr.open_zarr(out).t.values, old)
    assert cli.main(["compress", str(source), str(out), "--overwrite", "--tolerance",
                     "0.01"]) == 0
    assert np.max(np.abs(xr.open_zarr(out).t.values - xr.open_dataset(source).t.values)) <= 0.01
    assert leftovers(out) == []


def test_cli_decompress_killed_mid_way_leaves_the_old_file(tmp_path):
    source, store, out = tmp_path / "in.nc", tmp_path / "s.zarr", tmp_path / "out.nc"
    big_netcdf(source, 0)
    assert cli.main(["compress", str(source), str(store), "--codec", "sperr", "--tolerance",
                     "1e-4"]) == 0
    out.write_bytes(b"the old out.nc")

    def temporary_written():
        return any(p.stat().st_size > 0 for p in tmp_path.glob(".out.nc.chunkpress-*"))

    run_cli_and_kill(["decompress", str(store), str(out), "--overwrite", "--workers", "1"],
                     temporary_written)
    assert out.read_bytes() == b"the old out.nc"
    assert cli.main(["decompress", str(store), str(out), "--overwrite"]) == 0
    back = xr.open_dataset(out)
    assert np.max(np.abs(back.t.values - xr.open_dataset(source).t.values)) <= 1e-4
    back.close()
    assert leftovers(out) == []


def test_cli_decompress_refuses_a_directory_and_an_existing_file(tmp_path, capsys):
    source, store = tmp_path / "in.nc", tmp_path / "s.zarr"
    netcdf(source)
    assert cli.main(["compress", str(source), str(store), "--tolerance", "0.01"]) == 0
    capsys.readouterr()
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "x").write_text("mine")
    assert cli.main(["decompress", str(store), str(directory), "--overwrite"]) == 1
    assert "directory" in capsys.readouterr().err
    assert (directory / "x").read_text() == "mine"
    (tmp_path / "o.nc").write_text("old")
    assert cli.main(["decompress", str(store), str(tmp_path / "o.nc")]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "o.nc").read_text() == "old"


# --- found in review: paths, a dropped job, one array of a dataset -----------------------


def test_a_path_that_leaves_the_store_is_refused_before_anything_is_written(tmp_path):
    project = tmp_path / "project"
    to_zarr(field(), str(project / "other.zarr"), tolerance=0.01)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for bad in ("../other.zarr", "a/../../other.zarr", "./x"):
        with pytest.raises(ValueError, match="'.' or '..'"):
            to_zarr(field(1.0), str(project / "s.zarr"), path=bad, overwrite=True,
                    tolerance=0.01)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    np.testing.assert_allclose(from_zarr(str(project / "other.zarr")).compute(), field(),
                               atol=0.01)


def test_the_working_directory_and_the_inside_of_an_array_are_refused(tmp_path, monkeypatch):
    store = str(tmp_path / "s.zarr")
    to_zarr(field(), store, tolerance=0.01)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="current directory"):
        to_zarr(field(), ".", tolerance=0.01, overwrite=True)
    with pytest.raises((ValueError, FileExistsError), match="current directory|not write"):
        to_zarr(field(), str(tmp_path.parent), tolerance=0.01, overwrite=True)
    with pytest.raises(ValueError, match="inside the Zarr array"):
        to_zarr(field(), os.path.join(store, "inner.zarr"), tolerance=0.01)
    assert sorted(os.listdir(store)) == ["c", "zarr.json"] and os.path.isdir(tmp_path)


def test_a_write_dropped_without_running_lets_go_of_its_lock(tmp_path):
    import gc

    path = str(tmp_path / "a.zarr")
    job = to_zarr(field(), path, tolerance=0.01, compute=False)
    with pytest.raises(WriterBusyError, match="earlier write of this process.*abort"):
        to_zarr(field(), path, tolerance=0.01)
    del job
    gc.collect()
    to_zarr(field(2.0), path, tolerance=0.01)  # its lock is gone, its staging removed
    np.testing.assert_allclose(from_zarr(path).compute(), field(2.0), atol=0.01)
    assert leftovers(path) == []


@pytest.mark.parametrize("where", ["directory", "memory"])
def test_one_array_of_a_dataset_replaced_keeps_the_dataset_readable(tmp_path, where):
    ds = xr.Dataset({"t": (("z", "y", "x"), field()), "u": (("z", "y", "x"), field(5.0))},
                    coords={"z": np.arange(field().shape[0])})
    ds.t.attrs["units"] = "K"
    store = str(tmp_path / "d.zarr") if where == "directory" else \
        f"memory://chunkpress-replace/{tmp_path.name}.zarr"
    ds.chunkpress.to_zarr(store, tolerance=0.01)
    to_zarr(field(1.0), store, path="t", tolerance=0.001, overwrite=True)
    back = xr.open_zarr(store)  # the root's consolidated metadata names the new array
    assert back.t.dims == ("z", "y", "x") and back.t.attrs["units"] == "K"
    assert np.max(np.abs(back.t.values - field(1.0))) <= 0.001
    assert np.max(np.abs(back.u.values - field(5.0))) <= 0.01  # its sibling as it was
    assert chunkpress.verify(store).empty
