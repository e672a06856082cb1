"""Zarr v3 shards: chunkpress writes each shard whole in one task; from_zarr reads sharded
stores (its own, zarr's, xarray's) inner chunk by inner chunk, bit for bit as zarr does."""

from __future__ import annotations

import math
import os
import shutil

import dask
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec
from zarr.storage import LocalStore, WrapperStore

import chunkpress
import chunkpress.cli
from chunkpress.storage import integrity
from chunkpress.storage import codecs as cpzarr

SHAPE, CHUNKS, SHARDS, TOLERANCE = (64, 64, 32), (16, 16, 16), (32, 32, 32), 0.01
INNER = math.prod(s // c for s, c in zip(SHARDS, CHUNKS))  # inner chunks per shard


def field(seed=0):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal(SHAPE), axis=0).astype("float32")
    x[3, 4, 5] = np.nan
    return x


def shard_files(store, node=""):
    root = os.path.join(store, node, "c")
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
                  for f in fs)


def write_tasks(job) -> int:
    return sum(1 for key in dict(job.__dask_graph__()) if isinstance(key, tuple)
               and key[0].startswith("chunkpress-write-"))


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


class CountingStore(WrapperStore):
    """A real store (wrapping a LocalStore) that records every get and the bytes it returns."""

    def __init__(self, store):
        super().__init__(store)
        self.gets = []

    async def get(self, key, prototype, byte_range=None):
        buffer = await self._store.get(key, prototype, byte_range)
        self.gets.append((key, byte_range, 0 if buffer is None else len(buffer)))
        return buffer


# --- writing -------------------------------------------------------------------------------


@pytest.mark.parametrize("shards, shard_shape", [
    (SHARDS, SHARDS), ({"chunks": (2, 2, 2)}, SHARDS), ({"chunks": (4, 1, 2)}, (64, 16, 32)),
    ("auto", (16, 32, 32)),  # 2 workers: 8 shards of 64 KiB (four per worker)
], ids=["elements", "chunks", "chunks-uneven", "auto"])
def test_to_zarr_writes_one_task_per_shard_readable_by_zarr(tmp_path, shards, shard_shape):
    x = field()
    store = str(tmp_path / "a.zarr")
    with dask.config.set(scheduler="threads", num_workers=2):
        job = chunkpress.to_zarr(x, store, tolerance=TOLERANCE, chunks=CHUNKS, shards=shards,
                                 compute=False)
    count = math.prod(math.ceil(n / s) for n, s in zip(SHAPE, shard_shape))
    assert write_tasks(job) == count
    job.compute()
    array = zarr.open_array(store, mode="r")
    assert array.shards == shard_shape and array.chunks == CHUNKS
    assert len(shard_files(store)) == count
    plain = array[:]
    finite = np.isfinite(x)
    assert np.array_equal(np.isfinite(plain), finite)
    assert np.max(np.abs(plain[finite] - x[finite])) <= TOLERANCE
    assert same_bits(chunkpress.from_zarr(store).compute(), plain)
    assert chunkpress.verify(store).empty


def test_bad_shards_are_refused_before_anything_runs(tmp_path):
    x = field()
    store = str(tmp_path / "a.zarr")
    for shards, error, words in [((24, 32, 32), ValueError, "multiple of the chunk shape"),
                                 ("big", ValueError, "'auto'"),
                                 ({"per": 2}, ValueError, "'chunks'"),
                                 ((32, 32), ValueError, "tuple of 3"),
                                 ({"chunks": "x"}, ValueError, "shards\\['chunks'\\]")]:
        with pytest.raises(error, match=words):
            chunkpress.to_zarr(x, store, tolerance=TOLERANCE, chunks=CHUNKS, shards=shards)
        assert not os.path.exists(store)


def test_the_accessor_writes_shards_that_xarray_reads(tmp_path):
    x = field()
    ds = xr.Dataset({"t": (("z", "y", "x"), x), "u": (("z", "y", "x"), 2 * x)},
                    coords={"z": np.arange(SHAPE[0])})
    store = str(tmp_path / "d.zarr")
    job = ds.chunkpress.to_zarr(store, tolerance=TOLERANCE, chunks=CHUNKS, shards=SHARDS,
                                compute=False)
    assert write_tasks(job) == 2 * 4  # two variables of 4 shards each
    job.compute()
    assert len(shard_files(store, "t")) == len(shard_files(store, "u")) == 4
    back = xr.open_zarr(store)
    assert back.t.encoding["shards"] == SHARDS
    for name in ("t", "u"):
        assert same_bits(chunkpress.from_zarr(store, path=name).compute(), back[name].values)
    assert np.nanmax(np.abs(back.t.values - x)) <= TOLERANCE
    table = chunkpress.verify(store, against=ds)
    # 32 chunks of each variable, and the coordinate z (exact: its CRC checked)
    assert table.empty and table.attrs["summary"]["chunks"] == 2 * 32 + 1


# --- reading stores zarr and xarray wrote -----------------------------------------------------


def _zarr_sharded(store, compressors):
    kwargs = {} if compressors == "default" else {"compressors": compressors}
    array = zarr.create_array(store, shape=SHAPE, chunks=CHUNKS, shards=SHARDS,
                              dtype="float32", serializer=cpzarr.ZfpCodec(tolerance=TOLERANCE),
                              fill_value=0.0, **kwargs)
    array[:] = field()
    array[:16, :16, :16] = 0.0  # an inner chunk of fill: zarr leaves it out of its shard
    return array


SELECTIONS = [(slice(5, 40), slice(3, 9), slice(None)), (slice(0, 16), slice(0, 16), 0),
              (slice(None), 40, slice(17, 31))]


@pytest.mark.parametrize("compressors", [[Crc32cCodec()], None, "default"],
                         ids=["crc32c", "none", "zarr-default"])
def test_from_zarr_reads_shards_zarr_wrote(tmp_path, compressors):
    store = str(tmp_path / "z.zarr")
    _zarr_sharded(store, compressors)
    expected = zarr.open_array(store, mode="r")
    lazy = chunkpress.from_zarr(store)
    assert same_bits(lazy.compute(), expected[:])
    for selection in SELECTIONS:
        assert same_bits(lazy[selection].compute(), expected[selection])
    table = chunkpress.verify(store)
    assert table.empty  # the inner chunk zarr left out is fill, not a problem
    checks = table.attrs["arrays"].checks[0]
    assert checks == ("crc only" if compressors == [Crc32cCodec()] else "none")


def test_from_zarr_reads_shards_xarray_wrote(tmp_path):
    x = field()
    ds = xr.Dataset({"t": (("z", "y", "x"), x)})
    ds.t.encoding = {"chunks": CHUNKS, "shards": SHARDS, "compressors": [Crc32cCodec()],
                     "serializer": cpzarr.ZfpCodec(tolerance=TOLERANCE)}
    store = str(tmp_path / "x.zarr")
    ds.to_zarr(store, zarr_format=3, consolidated=False)
    back = xr.open_zarr(store, consolidated=False).t
    lazy = chunkpress.from_zarr(store, path="t")
    assert same_bits(lazy.compute(), back.values)
    for selection in SELECTIONS:
        assert same_bits(lazy[selection].compute(), back[selection].values)
    assert np.nanmax(np.abs(lazy.compute() - x)) <= TOLERANCE


@pytest.mark.parametrize("writer", ["chunkpress", "zarr"])
def test_a_selection_reads_only_the_inner_chunks_it_touches(tmp_path, writer):
    store = str(tmp_path / "a.zarr")
    if writer == "chunkpress":
        chunkpress.to_zarr(field(), store, tolerance=TOLERANCE, chunks=CHUNKS, shards=SHARDS)
    else:
        _zarr_sharded(store, [Crc32cCodec()])
    counting = CountingStore(LocalStore(store, read_only=True))
    lazy = chunkpress.from_zarr(counting)
    expected = zarr.open_array(store, mode="r")
    # inner chunks (1, 0, 0) and (1, 0, 1): in shard (0, 0, 0)
    selection = (slice(20, 30), slice(2, 9), slice(None))
    counting.gets.clear()
    assert same_bits(lazy[selection].compute(scheduler="threads"), expected[selection])
    shard_gets = [(key, request, size) for key, request, size in counting.gets
                  if key.startswith("c/")]
    assert {key for key, _, _ in shard_gets} == {"c/0/0/0"}
    assert all(request is not None for _, request, _ in shard_gets)  # never the whole shard
    index_bytes = 16 * INNER + 4
    chunk_reads = [size for _, request, size in shard_gets if size != index_bytes]
    assert len(chunk_reads) == 2
    whole = os.path.getsize(os.path.join(store, "c", "0", "0", "0"))
    assert sum(size for _, _, size in shard_gets) < whole / 2


# --- damaged shards ------------------------------------------------------------------------


def _shard(store, index=(0, 0, 0)):
    return os.path.join(store, "c", *map(str, index))


def _rewrite_index(path, change):
    """Apply ``change`` to a shard's (offset, length) table and store it with a good CRC."""
    data = open(path, "rb").read()
    size = 16 * INNER + 4
    table = np.frombuffer(data[-size:-4], "<u8").reshape(INNER, 2).copy()
    change(table)
    raw = table.tobytes()
    open(path, "wb").write(data[:-size] + raw + integrity.crc(raw))


def _sharded(tmp_path):
    store = str(tmp_path / "a.zarr")
    chunkpress.to_zarr(field(), store, tolerance=TOLERANCE, chunks=CHUNKS, shards=SHARDS)
    return store


def test_a_damaged_shard_index_names_the_chunk(tmp_path, capsys):
    store = _sharded(tmp_path)
    path = _shard(store, (1, 0, 0))
    data = bytearray(open(path, "rb").read())
    data[-10] ^= 0x40
    open(path, "wb").write(bytes(data))
    with pytest.raises(chunkpress.ZfpError, match=r"chunk \(2, 0, 0\) .*c/1/0/0.*index"):
        chunkpress.from_zarr(store).blocks[2, 0, 0].compute()
    table = chunkpress.verify(store)
    assert len(table) == INNER and set(table.chunk) == {
        (i, j, k) for i in (2, 3) for j in (0, 1) for k in (0, 1)}
    assert all("shard index checksum" in p for p in table.problem)
    assert chunkpress.cli.main(["verify", store]) == chunkpress.cli.EXIT_PROBLEMS
    assert "chunk (2, 0, 0) (c/1/0/0[0, 0, 0])" in capsys.readouterr().out


def test_swapped_inner_chunks_are_caught(tmp_path):
    store = _sharded(tmp_path)

    def swap(table):
        table[[0, 5]] = table[[5, 0]]  # inner (0, 0, 0) <-> (1, 0, 1)

    _rewrite_index(_shard(store), swap)
    assert zarr.open_array(store, mode="r")[:16, :16, :16].shape == (16, 16, 16)  # zarr can't
    with pytest.raises(chunkpress.ZfpError, match=r"chunk \(0, 0, 0\).*written as chunk "
                                                  r"\(1, 0, 1\)"):
        chunkpress.from_zarr(store)[:16, :16, :16].compute()
    table = chunkpress.verify(store)
    assert set(table.chunk) == {(0, 0, 0), (1, 0, 1)}
    assert set(table.object) == {"c/0/0/0[0, 0, 0]", "c/0/0/0[1, 0, 1]"}


def test_a_shard_copied_over_another_is_caught(tmp_path):
    store = _sharded(tmp_path)
    shutil.copyfile(_shard(store, (0, 0, 0)), _shard(store, (1, 1, 0)))
    with pytest.raises(chunkpress.ZfpError, match=r"chunk \(2, 2, 0\).*moved or copied"):
        chunkpress.from_zarr(store).blocks[2, 2, 0].compute()
    assert len(chunkpress.verify(store)) == INNER


def test_a_missing_shard_or_inner_chunk_is_an_error_not_fill(tmp_path, capsys):
    store = _sharded(tmp_path)
    os.remove(_shard(store, (0, 1, 0)))
    with pytest.raises(chunkpress.ZfpError, match=r"chunk \(0, 2, 0\) .*is missing"):
        chunkpress.from_zarr(store).blocks[0, 2, 0].compute()
    assert chunkpress.info(store).loc["/", "missing_chunks"] == 1
    table = chunkpress.verify(store)
    assert len(table) == INNER and all("missing" in p for p in table.problem)

    def drop(table):
        table[3] = 2**64 - 1  # inner chunk (0, 1, 1) of shard (1, 1, 0): absent

    _rewrite_index(_shard(store, (1, 1, 0)), drop)
    with pytest.raises(chunkpress.ZfpError, match=r"chunk \(2, 3, 1\) .*is missing"):
        chunkpress.from_zarr(store).blocks[2, 3, 1].compute()
    table = chunkpress.verify(store)
    assert (2, 3, 1) in set(table.chunk) and len(table) == INNER + 1
    assert chunkpress.cli.main(["verify", store]) == chunkpress.cli.EXIT_PROBLEMS
    assert "chunk (2, 3, 1) (c/1/1/0[0, 1, 1]): missing" in capsys.readouterr().out


def test_doctests_of_the_store_layer():
    import doctest

    from chunkpress.storage import shards, writer

    for module in (shards, writer):
        failures, tried = doctest.testmod(module)
        assert tried and not failures, module.__name__
