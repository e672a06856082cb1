"""chunkpress into a real Icechunk repository: writes go into the session's transaction, the
user commits; a failed write leaves nothing of itself in the session."""

import dask
import dask.array as da
import icechunk
import numpy as np
import pytest
import xarray as xr
import zarr

import chunkpress
from common import failing_blocks, walk_field

TOL = 0.01
CHUNKS = (16, 16, 16)


field = walk_field  # (seed, shape=(64, 64, 32)): a smooth float32 field


def failing(x):
    return failing_blocks(x, CHUNKS)  # its block (2, 1, 1) raises


def dataset(x, offset=0):
    return xr.Dataset({"sst": (("t", "y", "x"), x),
                       "n": ("t", da.arange(64, chunks=16, dtype="int32") + offset)},
                      coords={"t": np.arange(64.0) + offset})


def test_write_commit_read(icechunk_repo, scheduler):
    x = field()
    session = icechunk_repo.writable_session("main")
    chunkpress.to_zarr(x, session.store, path="sst", tolerance=TOL, chunks=CHUNKS)
    session.commit("sst")
    read = icechunk_repo.readonly_session("main").store
    back = chunkpress.from_zarr(read, path="sst").compute()
    assert np.abs(back - x).max() <= TOL
    np.testing.assert_array_equal(zarr.open_array(read, path="sst", mode="r")[...], back)
    assert chunkpress.info(read).loc["sst", "error_bound"] == TOL

    session = icechunk_repo.writable_session("main")
    ds = dataset(x).chunk({"t": 16, "y": 16, "x": 16})
    ds.chunkpress.to_zarr(session.store, tolerance=TOL, overwrite=True)
    session.commit("dataset")
    opened = xr.open_zarr(icechunk_repo.readonly_session("main").store).load()
    assert np.abs(opened.sst.values - x).max() <= TOL
    np.testing.assert_array_equal(opened.n.values, np.arange(64))
    np.testing.assert_array_equal(opened.t.values, np.arange(64.0))
    read = icechunk_repo.readonly_session("main").store
    np.testing.assert_array_equal(chunkpress.from_zarr(read, path="sst").compute(),
                                  opened.sst.values)


def test_failed_write_leaves_the_session_clean(icechunk_repo, scheduler):
    session = icechunk_repo.writable_session("main")
    with pytest.raises(RuntimeError, match=r"block \(2, 1, 1\)"):
        chunkpress.to_zarr(failing(field(1)), session.store, path="sst", tolerance=TOL)
    assert not session.has_uncommitted_changes
    with pytest.raises(icechunk.IcechunkError, match="no changes"):
        session.commit("nothing")
    session = icechunk_repo.writable_session("main")
    with pytest.raises(RuntimeError, match=r"block \(2, 1, 1\)"):
        dataset(failing(field(1))).chunkpress.to_zarr(session.store, tolerance=TOL)
    assert not session.has_uncommitted_changes


def test_failed_overwrite_keeps_the_committed_array(icechunk_repo, scheduler):
    old = field(0)
    session = icechunk_repo.writable_session("main")
    chunkpress.to_zarr(old, session.store, path="sst", tolerance=TOL, chunks=CHUNKS)
    session.commit("old")
    expected = chunkpress.from_zarr(icechunk_repo.readonly_session("main").store,
                                    path="sst").compute()
    session = icechunk_repo.writable_session("main")
    with pytest.raises(RuntimeError, match=r"block \(2, 1, 1\)"):
        chunkpress.to_zarr(failing(field(1)), session.store, path="sst", tolerance=TOL,
                           overwrite=True)
    assert not session.has_uncommitted_changes
    # (a writable session does not pickle: read it here, with zarr)
    np.testing.assert_array_equal(zarr.open_array(session.store, path="sst", mode="r")[...],
                                  expected)
    np.testing.assert_array_equal(
        chunkpress.from_zarr(icechunk_repo.readonly_session("main").store,
                             path="sst").compute(), expected)
    # the overwrite that succeeds replaces it, once committed
    new = field(2)
    chunkpress.to_zarr(new, session.store, path="sst", tolerance=TOL, chunks=(32, 32, 32),
                       overwrite=True)
    session.commit("new")
    back = chunkpress.from_zarr(icechunk_repo.readonly_session("main").store, path="sst")
    assert back.chunksize == (32, 32, 32) and np.abs(back.compute() - new).max() <= TOL


def test_session_with_changes(icechunk_repo, client):
    """A session holding the user's uncommitted changes: written directly (local scheduler;
    refused on a cluster); a failed write takes away only what it created; replacing an
    existing node there is refused."""
    session = icechunk_repo.writable_session("main")
    zarr.create_array(session.store, name="mine", shape=(4,), dtype="int16")[:] = [1, 2, 3, 4]
    with pytest.raises(ValueError, match="uncommitted changes.*commit"):
        chunkpress.to_zarr(field(1), session.store, path="sst", tolerance=TOL)
    with dask.config.set(scheduler="threads"):
        write_into_session_with_changes(icechunk_repo, session)


def write_into_session_with_changes(icechunk_repo, session):
    with pytest.raises(RuntimeError, match=r"block \(2, 1, 1\)"):
        chunkpress.to_zarr(failing(field(1)), session.store, path="sst", tolerance=TOL)
    assert sorted(zarr.open_group(session.store, mode="r").array_keys()) == ["mine"]
    np.testing.assert_array_equal(zarr.open_array(session.store, path="mine")[...],
                                  [1, 2, 3, 4])
    x = field(3)
    chunkpress.to_zarr(x, session.store, path="sst", tolerance=TOL, chunks=CHUNKS)
    with pytest.raises(ValueError, match="uncommitted changes"):
        chunkpress.to_zarr(x, session.store, path="sst", tolerance=TOL, overwrite=True)
    session.commit("both")
    read = icechunk_repo.readonly_session("main").store
    assert np.abs(chunkpress.from_zarr(read, path="sst").compute() - x).max() <= TOL
    np.testing.assert_array_equal(zarr.open_array(read, path="mine")[...], [1, 2, 3, 4])


def test_existing_node_needs_overwrite(icechunk_repo):
    session = icechunk_repo.writable_session("main")
    chunkpress.to_zarr(field(0), session.store, path="sst", tolerance=TOL, chunks=CHUNKS)
    session.commit("one")
    session = icechunk_repo.writable_session("main")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        chunkpress.to_zarr(field(1), session.store, path="sst", tolerance=TOL)
    assert not session.has_uncommitted_changes


def test_append_in_a_session_and_a_failed_one_commits_nothing_new(icechunk_repo, scheduler):
    """Month by month into a repository: an append extends the arrays in the session (Icechunk
    refuses a chunk beyond an array's shape: every append failed), the user commits; an
    append whose block fails raises its own error and a commit after it holds the old values."""
    x = field(2)
    session = icechunk_repo.writable_session("main")
    dataset(x).isel(t=slice(0, 32)).chunkpress.to_zarr(
        session.store, tolerance=TOL, chunks={"t": 16, "y": 16, "x": 16})
    session.commit("first half")
    session = icechunk_repo.writable_session("main")
    if scheduler == "cluster":  # a writable session does not go to the workers
        with pytest.raises(ValueError, match=r"runs on this process's threads.*scheduler="):
            dataset(x).isel(t=slice(32, 64)).chunkpress.to_zarr(session.store,
                                                               append_dim="t")
        assert not session.has_uncommitted_changes
        return
    bad = dataset(x).isel(t=slice(32, 64))
    bad["sst"] = (bad.sst.dims, failing(x)[32:])
    with pytest.raises(RuntimeError, match=r"block \(2, 1, 1\)"):
        bad.chunkpress.to_zarr(session.store, append_dim="t")
    if session.has_uncommitted_changes:  # the arrays' documents put back as they were
        session.commit("after a failed append")
    kept = xr.open_zarr(icechunk_repo.readonly_session("main").store).load()
    assert kept.sizes["t"] == 32 and np.abs(kept.sst.values - x[:32]).max() <= TOL
    session = icechunk_repo.writable_session("main")
    dataset(x).isel(t=slice(32, 64)).chunkpress.to_zarr(session.store, append_dim="t")
    session.commit("second half")
    read = icechunk_repo.readonly_session("main").store
    opened = xr.open_zarr(read).load()
    assert np.abs(opened.sst.values - x).max() <= TOL
    np.testing.assert_array_equal(opened.n.values, np.arange(64))
    np.testing.assert_array_equal(opened.t.values, np.arange(64.0))
    assert np.abs(chunkpress.from_zarr(read, path="sst").compute() - x).max() <= TOL
