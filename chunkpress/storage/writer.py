"""Compressed blocks written straight into a Zarr v3 store, published when complete.

Each block is encoded once, by the task that writes it: the array's metadata names the
chunkpress codec (then zarr's crc32c), and each block's kernel stream, its place record and a
CRC-32C behind it (see ``integrity``), is put into the store as the chunk object of that block
(or, with ``shards=``, as an inner chunk of the shard its task writes whole). An edge block's
stream holds its real extent only; the Zarr codec pads it when decoding.

Nothing is visible at the target until the write is complete: the chunks go where no reader
looks and the metadata is written last (see ``publish``).
"""

from __future__ import annotations

import json
import math
import os
import threading

import dask
import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from dask.task_spec import List, Task, TaskRef
from zarr.codecs import Crc32cCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, MemoryStore

from .. import api
from ..graph import build, codecs, information, pipeline
from ..graph.compressed import CompressedArray
from . import integrity, publish, shards as _shards
from .codecs import zarr_codec
from .reader import MEASURED, MEASURED_RELATIVE

__all__ = ["compress_for_zarr", "ArrayWrite", "ChunkSink", "write_blocks",
           "regular_chunks", "WriteJob", "reopen", "one_task"]


class WriteJob(Delayed):
    """A write not yet run, as a ``dask.delayed``: computing it writes every chunk on the
    scheduler, then publishes the write in this process (the one that checks what the
    store holds), and its value is what ``opener()`` returns (the array written).

    Its own ``compute()`` also removes what a failed write left unpublished; a write computed
    with ``dask.compute`` that fails leaves that to the next write of the same target.
    """

    __slots__ = ("destination", "plans", "opener")

    def __init__(self, writes: list, destination: publish.Destination, plans, opener):
        collected = one_task("chunkpress-written-" + tokenize([w.key for w in writes]),
                             _results, List(*(TaskRef(w.key) for w in writes)),
                             dependencies=writes)
        super().__init__(collected.key, collected.dask)
        self.destination = destination
        self.plans = plans
        self.opener = opener

    def __dask_postcompute__(self):
        return _publish, (self.destination, self.plans, self.opener)

    @property
    def writes(self) -> Delayed:
        """The writing alone (its value: what :meth:`finish` takes), for a client that runs
        it itself, e.g. ``client.compute(job.writes)`` with a progress bar."""
        return Delayed(self.key, self.dask)

    def finish(self, results):
        """Publish the write whose :attr:`writes` gave ``results``; return the array/group."""
        return _publish([results], self.destination, self.plans, self.opener)

    def _settle(self, quiet: bool = False) -> None:
        """Wait for what plans began beside the tasks (see ``ExactPlan.start``)."""
        for plan in self.plans:
            if hasattr(plan, "settle"):
                plan.settle(quiet)

    def abort(self) -> None:
        """Remove what the write left unpublished (after :attr:`writes` failed)."""
        self.destination.abort()
        self.destination.close()

    def compute(self, **kwargs):
        writes = Delayed(self.key, self.dask)
        pool = _own_pool(kwargs, writes)
        try:
            # the writes only: dask runs a collection's finalizer as a task (on a worker, with
            # distributed), and publishing must happen in this process
            (results,) = dask.compute(writes, **kwargs)
            self._settle()
            return _publish((results,), self.destination, self.plans, self.opener)
        except BaseException as exc:
            if pool is not None and not isinstance(exc, KeyboardInterrupt):
                # dask raises at the first failed task while others still run: they finish
                # (or never start) before the abort, or their chunks would land after it.
                # (Ctrl-C does not wait: what lands after it, the next write removes.)
                pool.shutdown(wait=True, cancel_futures=True)
            self._settle(quiet=True)
            self.abort()
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=False)


def _own_pool(kwargs: dict, writes: Delayed):
    """Where the write runs on the local threads, a pool of this write's own, put in
    ``kwargs`` (its threads can then be waited for); None for any other scheduler or a pool
    the caller chose."""
    import concurrent.futures
    import dask.threaded

    if "pool" in kwargs or dask.config.get("pool", None) is not None:
        return None
    if dask.base.get_scheduler(scheduler=kwargs.get("scheduler"),
                               collections=[writes]) is not dask.threaded.get:
        return None
    workers = kwargs.pop("num_workers", None) or dask.config.get("num_workers", None) \
        or os.cpu_count() or 1
    kwargs.update(scheduler="threads",
                  pool=concurrent.futures.ThreadPoolExecutor(workers, "chunkpress-write"))
    return kwargs["pool"]


def _results(results) -> list:
    return list(results)


def one_task(name: str, function, *args, dependencies=()) -> Delayed:
    """A Delayed of the one task ``function(*args)`` named ``name``, after ``dependencies``
    (``TaskRef`` arguments). Unlike ``dask.delayed``, which walks every argument's fields
    looking for collections (a zarr array's metadata: thousands of calls) and optimizes the
    graphs of those it finds, each time."""
    layer = {name: Task(name, function, *args)}
    return Delayed(name, HighLevelGraph.from_collections(name, layer,
                                                         dependencies=dependencies))


def _publish(results, destination, plans, opener):
    """Record what was measured, hand the documents over, publish (see ``WriteJob``)."""
    (results,) = results
    try:
        for plan, (_, measured, *returned) in zip(plans, results):
            plan.record_measured(measured)
            if len(returned) > 1 and isinstance(plan, ArrayWrite):  # (see write_blocks)
                plan.record_measured_relative(returned[1])
            plan.hand_over()
            destination.collect(returned[0] if returned else [])
        destination.publish()
    except BaseException:
        destination.abort()
        raise
    finally:
        destination.close()
    return opener()


def reopen(store, storage_options, destination):
    """The target as a store to read the published array from."""
    if isinstance(store, (str, os.PathLike)) and "://" not in str(store):
        if str(store).endswith(".zip"):
            return zarr.storage.ZipStore(store, mode="r")
        return os.fspath(store)
    if isinstance(store, str):
        return destination.store
    return store


class ChunkSink:
    """Where a write task puts chunk objects: the destination's store, under the array's keys.

    Local directories are written with plain file writes (zarr's store API would hand each
    one to its event loop and back), each under a temporary name then renamed, so that an
    object is whole or absent.
    """

    def __init__(self, store, path: str, metadata, write: str | None):
        self.store = store
        self.path = path
        self.metadata = metadata
        self.write = write
        self.local = os.path.join(str(store.root), path) if isinstance(store, LocalStore) \
            else None
        self.returns = None  # what a task gives back to publish (see Destination.returns)

    def key(self, index) -> str:
        return self.metadata.encode_chunk_key(tuple(index))

    def put_chunk(self, index, stream) -> int:
        """Store one block's stream as the chunk object ``index``; return its size."""
        return self.put(self.key(index), integrity.parts(stream, index, self.write))

    def put(self, key: str, parts) -> int:
        size = sum(len(p) for p in parts)
        if self.local is not None:
            path = os.path.join(self.local, key)
            if not os.path.isdir(os.path.dirname(path)):
                if not os.path.isdir(self.store.root):  # never made here: see the message
                    raise publish.IncompleteStoreError(
                        f"{self.store.root} (where chunk {key} goes) is not there as this "
                        "process sees it: the write was stopped, or this worker does not see "
                        "the file system of the process that started it; give a path on a "
                        "file system every worker and that process share, or an object store")
                os.makedirs(os.path.dirname(path), exist_ok=True)
            partial = f"{path}.{os.getpid()}-{threading.get_ident()}.partial"
            with open(partial, "wb") as file:
                for part in parts:
                    file.write(part)
            os.replace(partial, path)
        else:
            data = b"".join(parts)
            buffer = default_buffer_prototype().buffer.from_bytes(data)
            sync(self.store.set(f"{self.path}/{key}" if self.path else key, buffer))
        return size


class ArrayWrite:
    """One chunkpress array of a write: its metadata document and the tasks that write it."""

    def __init__(self, destination: publish.Destination, node: str,
                 compressed: CompressedArray, *, attributes=None, dimension_names=None,
                 shards=None, missing=None, document: dict | None = None):
        self.destination = destination
        self.node = node
        self.compressed = compressed
        self.write = integrity.array_write(destination.write, node)
        self.chunk_shape = tuple(max(1, axis[0]) for axis in compressed.chunks)
        self.shard_shape = _shards.shard_shape(shards, self.chunk_shape, compressed.shape,
                                               compressed.dtype.itemsize, pipeline.workers())
        if compressed.attributes:  # e.g. what codec="auto" chose and why, for `chunkpress info`
            attributes = {**(attributes or {}), **compressed.attributes}
        codec = zarr_codec(compressed.codec, compressed.params, write=self.write,
                           missing=missing)
        if document is None:
            document, metadata = self._document(codec, attributes, dimension_names)
        else:  # given (xarray made it): the codec, key encoding and the array's attributes
            document, metadata = self._adopt(document, codec, compressed.attributes)
        self.document = document
        self.metadata = metadata
        if destination.documents_first:  # a store that refuses chunks of unknown arrays
            self.hand_over()

    def _document(self, codec, attributes, dimension_names):
        memory = MemoryStore()
        array = zarr.create_array(
            memory, shape=self.compressed.shape, chunks=self.chunk_shape,
            shards=self.shard_shape, dtype=self.compressed.dtype, serializer=codec,
            compressors=[Crc32cCodec()], filters=None, attributes=attributes,
            dimension_names=dimension_names, zarr_format=3,
            chunk_key_encoding=self.destination.key_encoding(self.node),
        )
        return json.loads(sync(memory.get("zarr.json", default_buffer_prototype()))
                          .to_bytes()), array.metadata

    def _adopt(self, document, codec, attributes):
        document = dict(document)
        if attributes:
            document["attributes"] = {**(document.get("attributes") or {}), **attributes}
        inner = [codec.to_dict(), Crc32cCodec().to_dict()]
        if self.shard_shape is not None:
            document["chunk_grid"] = {"name": "regular",
                                      "configuration": {"chunk_shape": list(self.shard_shape)}}
            document["codecs"] = [_shards.sharding_document(self.chunk_shape, inner)]
        else:
            document["chunk_grid"] = {"name": "regular",
                                      "configuration": {"chunk_shape": list(self.chunk_shape)}}
            document["codecs"] = inner
        document["chunk_key_encoding"] = self.destination.key_encoding(self.node)
        memory = MemoryStore()
        sync(memory.set("zarr.json", default_buffer_prototype().buffer.from_bytes(
            json.dumps(document).encode())))
        return document, zarr.open_array(memory, mode="r").metadata

    def sink(self) -> ChunkSink:
        sink = ChunkSink(self.destination.store, self.destination.path(self.node),
                         self.metadata, self.write)
        sink.returns = self.destination.returns
        return sink

    def expected_keys(self) -> list:
        grid = self.shard_shape or self.chunk_shape
        counts = [math.ceil(n / c) if n else 0 for n, c in zip(self.compressed.shape, grid)]
        return [self.metadata.encode_chunk_key(i) for i in np.ndindex(*counts)]

    def writes(self) -> Delayed:
        """The delayed that writes every chunk (or shard); its value: (bytes, max error)."""
        return write_blocks(self.compressed, self.sink(), self.shard_shape)

    def record_measured(self, measured: float) -> None:
        if self.compressed.verified and math.isfinite(measured):
            attributes = dict(self.document.get("attributes") or {})
            attributes[MEASURED] = float(measured)
            self.document["attributes"] = attributes

    def record_measured_relative(self, measured: float) -> None:
        """The max relative error measured where a ``rel_tolerance`` was certified."""
        if self.compressed.verified and math.isfinite(measured):
            attributes = dict(self.document.get("attributes") or {})
            attributes[MEASURED_RELATIVE] = float(measured)
            self.document["attributes"] = attributes

    def hand_over(self) -> None:
        """Give the destination the document, and the chunk objects it must find."""
        self.destination.add_document(self.node, self.document, self.expected_keys())


def regular_chunks(chunks) -> bool:
    """Whether a dask chunking is a zarr chunk grid: equal blocks along each axis, but the last.

    >>> regular_chunks(((4, 4, 2), (3,)))
    True
    >>> regular_chunks(((4, 2, 4),))
    False
    """
    return all(all(c == axis[0] for c in axis[:-1]) and axis[-1] <= axis[0] for axis in chunks)


def write_blocks(compressed: CompressedArray, sink: ChunkSink, shard_shape=None,
                 offset=None, first=()) -> Delayed:
    """Return a delayed that writes every block of ``compressed`` through ``sink``.

    Its value is (bytes written, max error measured or NaN, what the sink's tasks returned,
    max relative error measured or NaN: where a ``rel_tolerance`` was). Each task writes a
    group of neighbouring blocks (a few MiB of input, a few groups per worker), or one whole
    shard: the scheduler handles tens of tasks, not one per block. While the blocks are lazy
    (``compressed.recipe``), the task that writes a block encodes it, straight from the input,
    the way ``compress`` would: nothing is encoded twice and no block is kept. Blocks that
    already exist (persisted) are written as they are. ``offset``: the grid index of block
    (0, ...) in the array (appends and regions). ``first``: small writes (delayed) that the
    first group waits for: dask then runs them first, where it would run a lone task last
    and add its wait to the write's.
    """
    recipe = compressed.recipe
    name = "chunkpress-write-" + tokenize(compressed.name, sink.path, sink.write,
                                          str(sink.store), shard_shape, offset,
                                          [w.key for w in first])
    grid = compressed.numblocks
    indices = list(np.ndindex(*grid)) if grid else [()]
    offset = tuple(offset or (0,) * len(grid))
    if shard_shape is not None:
        groups = _shards.groups(indices, grid, compressed.chunksize, shard_shape, offset)
    else:
        block_bytes = math.prod(compressed.chunksize) * compressed.dtype.itemsize \
            if compressed.ndim else compressed.dtype.itemsize
        size = _group_size(len(indices), block_bytes, pipeline.workers())
        groups = [(None, indices[s:s + size]) for s in range(0, len(indices), size)]
    starts = None if recipe is None else [np.cumsum((0,) + axis) for axis in recipe.x.chunks]
    layer = {}
    for number, (shard, group) in enumerate(groups):
        key = (name, number)
        # a keyword: the arguments keep the order progress reports read (cli/progress.py)
        after = {"after": List(*(TaskRef(w.key) for w in first))} if first and not number \
            else {}
        if recipe is None:
            blocks = List(*(TaskRef((compressed.name, *index)) for index in group))
            layer[key] = Task(key, _write_group, blocks, group, None, None, None, sink, shard,
                              offset, compressed.chunksize, **after)
        else:
            layer[key] = Task(key, _write_group, _inputs(recipe, group, starts), group,
                              recipe.codec, [build.block_kwargs(recipe, i) for i in group],
                              (recipe.verify_bound, recipe.max_mse), sink, shard, offset,
                              compressed.chunksize, **after)
    layer[name] = Task(name, _total, List(*(TaskRef(k) for k in layer)))
    source = recipe.x if recipe is not None and recipe.numpy is None else \
        (compressed if recipe is None else None)
    graph = HighLevelGraph.from_collections(
        name, layer, dependencies=([source] if source is not None else []) + list(first))
    return Delayed(name, graph)


#: input bytes a write task takes at most (several blocks, when they are small)
GROUP_BYTES = 16 * 2**20


def _group_size(blocks: int, block_bytes: int, workers: int) -> int:
    """Return how many blocks one write task takes: up to GROUP_BYTES of input, at least
    four tasks per worker, and the busiest worker's share within 5% of an even one (else
    fewer blocks a task), so that no worker waits long on another's last task. Each task's end
    wakes the scheduler's thread, which takes a core from a worker: an append of 24 one-block
    tasks on 2 cores was preempted 90 times (8 of 3 blocks: 55), for 2-3% of its time.

    >>> _group_size(256, 2**20, 2)
    16
    >>> _group_size(256, 2**20, 32)
    2
    >>> _group_size(24, 2**20, 2)
    3
    >>> _group_size(63, 2**20, 2)  # 7: 9 tasks, 35 blocks on one worker, 28 on the other
    4
    >>> _group_size(10, 64 * 2**20, 2)
    1
    """
    workers = max(1, workers)
    by_bytes = max(1, GROUP_BYTES // max(1, block_bytes))
    size = min(by_bytes, max(1, blocks // (TASKS_PER_WORKER * workers)))
    while size > 1:
        busiest = size * -(-(-(-blocks // size)) // workers)  # blocks, at most, of one worker
        if blocks / workers >= BALANCE * busiest:
            break
        size -= 1
    return size


#: write tasks per worker at least, and the share of an even split the busiest worker's
#: blocks may exceed (see ``_group_size``)
TASKS_PER_WORKER = 4
BALANCE = 0.95


def _inputs(recipe, group, starts):
    """Return the input of each block of ``group``: views of a numpy array, or task references.

    ``starts`` holds, per axis, where each block begins (and the extent, last).
    """
    if recipe.numpy is not None:
        return [recipe.numpy[tuple(slice(s[i], s[i + 1]) for s, i in zip(starts, index))]
                for index in group]
    return List(*(TaskRef((recipe.x.name, *index)) for index in group))


def _write_group(blocks, indices, codec, kwargs, verify, sink: ChunkSink, shard, offset,
                 chunk_shape, after=None) -> tuple:
    """Encode (unless ``codec`` is None: already encoded) and store a group of blocks
    (``after``: the values of the tasks it waits for, unused)."""
    streams, worst, worst_relative = [], math.nan, math.nan
    for number, (block, index) in enumerate(zip(blocks, indices)):
        if codec is not None:
            block = build.encode_block(block, codec, kwargs[number], verify[0], verify[1],
                                       index)
        if not math.isnan(block.max_error):
            worst = block.max_error if math.isnan(worst) else max(worst, block.max_error)
        if not math.isnan(block.max_rel_error):
            worst_relative = block.max_rel_error if math.isnan(worst_relative) else \
                max(worst_relative, block.max_rel_error)
        place = tuple(i + o for i, o in zip(index, offset))
        if shard is None:
            sink.put_chunk(place, block.data)
            streams.append(len(block.data))
        else:
            streams.append((place, block.data))
    returned = [] if sink.returns is None else [sink.returns(sink.store)]
    if shard is not None:
        return _shards.put_shard(sink, shard, streams, chunk_shape), worst, returned, \
            worst_relative
    return sum(streams), worst, returned, worst_relative


def _total(results) -> tuple:
    written = sum(r[0] for r in results)
    errors = [r[1] for r in results if not math.isnan(r[1])]
    returned = [item for r in results for item in r[2]]
    relative = [r[3] for r in results if not math.isnan(r[3])]
    return int(written), (max(errors) if errors else math.nan), returned, \
        (max(relative) if relative else math.nan)


# --- what is written ---------------------------------------------------------------------------


def compress_for_zarr(data, codec, chunks, verify, params) -> CompressedArray:
    """Return ``data`` compressed in blocks that make a zarr chunk grid (or checked to)."""
    given = {k: v for k, v in params.items() if v is not None}
    if isinstance(data, CompressedArray):
        if given or codec is not None:
            raise ValueError("data is already compressed (a CompressedArray): its codec and "
                             f"parameters are fixed; drop {', '.join(given) or 'codec'}")
        if not regular_chunks(data.chunks):
            raise ValueError(
                f"the blocks of this CompressedArray (chunks {data.chunks}) are not a zarr "
                "chunk grid (equal blocks along each axis, the last one smaller); compress "
                "with chunks= one block shape, or pass the array to to_zarr")
        if not data.spec.holds_shape and _ragged(data.shape, data.chunks):
            raise ValueError(
                f"{data.codec}: its streams do not record their shape, so its edge blocks must "
                "be whole chunks; pass the array to to_zarr (it pads them) or compress with "
                "chunks that divide the shape")
        return data
    codec = "zfp" if codec is None else codec
    spec = codecs.get_codec(codec)
    compressed = api.compress(data, codec, chunks=chunks, verify=verify, **given)
    # compressed again below (other chunks, padded edges): with what was chosen from the data
    given, attributes = information.settled(given, compressed.params), compressed.attributes
    if not regular_chunks(compressed.chunks):
        compressed = api.compress(data, codec, chunks=compressed.chunksize, verify=verify,
                                  **given).with_attributes(attributes)
    if not spec.holds_shape and _ragged(compressed.shape, compressed.chunks):
        # a chain's stream does not hold its shape: its edge blocks are padded to whole chunks
        x = da.asarray(data) if not isinstance(data, da.Array) else data
        size = compressed.chunksize
        pad = [(0, -n % c) for n, c in zip(x.shape, size)]
        padded = da.pad(x, pad, mode="constant").rechunk(size)
        blocks = api.compress(padded, codec, chunks=size, verify=verify, **given)
        compressed = CompressedArray(_cut(blocks.blocks, x.shape), blocks.dtype, blocks.spec,
                                     blocks.params, blocks.verified, attributes=attributes)
    return compressed


def _ragged(shape, chunks) -> bool:
    return any(n % axis[0] for n, axis in zip(shape, chunks) if axis[0])


def _cut(blocks: da.Array, shape) -> da.Array:
    """Return the padded blocks relabelled with the chunks of the unpadded ``shape``."""
    chunks = tuple(
        tuple(min(c, n - i) for i in range(0, n, c)) for n, c in zip(shape, blocks.chunksize))
    return da.Array(blocks.dask, blocks.name, chunks, meta=np.empty((0,) * len(chunks), object))
