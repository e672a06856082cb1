"""The same jobs on a distributed cluster of two single-thread worker processes."""

import pickle

import dask
import numpy as np
import pytest

import chunkpress
from chunkpress.graph import pipeline

import distributed  # noqa: E402


def smooth(shape, seed=0):
    """A smooth float32 field of range about 4 (a sum of separable waves)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape)
    for k in range(3):
        term = 1.0
        for axis, n in enumerate(shape):
            wave = np.sin(2 * np.pi * rng.uniform(0.5, 3) * np.linspace(0, 1, n) + k + axis)
            term = term * wave.reshape((-1,) + (1,) * (len(shape) - axis - 1))
        out = out + term
    return out.astype("float32")


FIELD_NAN = smooth((40, 36, 30))
FIELD_NAN[3, 4, 5] = np.nan
FIELD_NAN[20, 0, :3] = np.inf

JOBS = [
    ("zfp", {"tolerance": 1e-3}),
    ("sz3", {"tolerance": 1e-3}),
    ("sperr", {"mode": "psnr", "quality": 70}),  # the global range is computed on the cluster
    ("pcodec", {}),  # (floatpred+zstd works too, but numba compiles it anew in each worker)
]


def stored(c):
    graph = dict(c.__dask_graph__())
    return {key: getattr(graph[key], "value", graph[key]).data for key in sorted(graph)}


@pytest.mark.parametrize("codec,kwargs", JOBS, ids=[j[0] for j in JOBS])
def test_cluster_gives_the_bytes_of_the_threaded_run(client, codec, kwargs):
    x = FIELD_NAN
    with dask.config.set(scheduler="threads"):
        local = chunkpress.compress(x, codec, chunks=(8, 36, 30), verify=True,
                                    **kwargs).compute(scheduler="threads")
        expected = chunkpress.decompress(local).compute(scheduler="threads")
    c = chunkpress.compress(x, codec, chunks=(8, 36, 30), verify=True, **kwargs)
    assert c.name == local.name
    remote = c.compute()  # the default scheduler is now the client
    assert stored(remote) == stored(local)
    persisted = c.persist()
    distributed.wait(persisted)
    y = chunkpress.decompress(persisted).compute()
    assert np.array_equal(y.view("u4"), expected.view("u4"))
    assert persisted.nbytes == local.nbytes and persisted.max_error == local.max_error
    assert persisted.corrected == local.corrected


def test_persisted_blocks_stay_on_the_workers_and_pickle_small(client):
    x = smooth((64, 36, 30))
    c = chunkpress.compress(x, "zfp", tolerance=1e-3, chunks=(8, 36, 30)).persist()
    distributed.wait(c)
    futures = list(dict(c.__dask_graph__()).values())
    assert len(futures) == 8 and all(isinstance(f, distributed.Future) for f in futures)
    assert len(pickle.dumps(c)) < 8192
    who = client.who_has(futures)
    assert all(who[f.key] for f in futures)
    assert c.ratio > 1 and c.block_nbytes.shape == (8, 1, 1)


def test_auto_chunks_count_the_cluster_threads(client):
    assert pipeline.workers() == 2


def test_auto_on_the_cluster_chooses_as_the_threads_do(client):
    """codec="auto" on an ocean with land (its windows filled with their blocks' means,
    taken by tasks of their own) samples on the cluster and chooses as on local threads."""
    x = smooth((48, 64, 64), seed=3)
    x[:, 20:44, 10:30] = np.nan  # a continent: a third of each slice
    with dask.config.set(scheduler="threads"):
        local = chunkpress.compress(x, "auto", tolerance=1e-3)
        local_choice = local.choice
    remote = chunkpress.compress(x, "auto", tolerance=1e-3)
    assert remote.choice.codec == local_choice.codec
    assert remote.choice.ratios == local_choice.ratios  # the same windows, the same fill
    y = chunkpress.decompress(remote.persist()).compute()
    assert np.array_equal(np.isnan(y), np.isnan(x))
    assert np.nanmax(np.abs(y - x)) <= 1e-3
