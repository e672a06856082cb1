"""to_zarr / from_zarr: compressed blocks written straight into a Zarr v3 store, and read back.

Each block is encoded once, by the task that writes it: the array's metadata names the
chunkpress codec (then zarr's crc32c), and each block's kernel stream, its CRC-32C behind it,
is put into the store as the chunk object of that block. An edge block's stream holds its real
extent only; the Zarr codec pads it when decoding (see ``chunkpress.zarr``).
"""

from __future__ import annotations

import math
import os
import struct
import threading

import dask
import dask.array as da
import google_crc32c
import numpy as np
import pandas as pd
import zarr
from dask._task_spec import List, Task, TaskRef
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from zarr.codecs import Crc32cCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import StorePath
from zarr.storage._common import make_store_path
from zarr.errors import ContainsArrayError, ContainsGroupError
from zarr.storage import LocalStore, ZipStore

from . import api
from .graph import _codecs, build
from .graph.compressed import CompressedArray
from .kernels import ChunkpressError
from .zarr import ChunkpressCodec, decode_block, zarr_codec

__all__ = ["to_zarr", "from_zarr", "info", "compress_for_zarr", "create_array", "write_blocks",
           "regular_chunks", "hide_metadata", "reveal_metadata", "check_complete",
           "refuse_unfinished", "IncompleteStoreError"]

_PARAMS = ("tolerance", "rate", "precision", "mode", "quality", "level")


def to_zarr(data, store, *, codec=None, tolerance=None, rate=None, precision=None, mode=None,
            quality=None, level=None, chunks="auto", verify=False, path=None, overwrite=False,
            compute=True, attributes=None, dimension_names=None, storage_options=None):
    """Compress ``data`` block by block straight into a Zarr v3 array in ``store``.

    ``data`` is anything ``chunkpress.compress`` takes (compressed here with ``codec``, default
    "zfp", and its parameters) or a CompressedArray (written as it is; its codec and parameters
    are fixed). ``store`` is any zarr store or a path or URL (``.zip`` paths give a zip
    store). Every block becomes one chunk object: encoded once, in parallel, by the task that
    writes it. An existing store is refused unless ``overwrite=True``.

    Until the last chunk is written the array's ``zarr.json`` is kept aside (see
    :func:`hide_metadata`): a writer that stops halfway leaves a store that no reader opens
    (an :class:`IncompleteStoreError` here, zarr's "no array found" elsewhere), never one that
    reads fill values where data was meant to be. Writing it again with ``overwrite=True``
    completes it.

    ``compute=False`` returns a ``dask.delayed`` that does the work, like
    ``dask.array.to_zarr``; otherwise the blocks are written now and the zarr array returned.
    """
    params = dict(zip(_PARAMS, (tolerance, rate, precision, mode, quality, level)))
    compressed = compress_for_zarr(data, codec, chunks, verify, params)
    opened, close = _open_store(store, storage_options, overwrite)
    try:
        if not overwrite:
            refuse_unfinished(opened, path, storage_options)
        array = create_array(opened, compressed, path=path, overwrite=overwrite,
                             attributes=attributes, dimension_names=dimension_names)
        hidden = hide_metadata(array.store_path)
    except BaseException:
        close()
        raise
    writes = write_blocks(compressed, array)
    done = dask.delayed(_finish, pure=True)(writes, array, hidden, close,
                                            dask_key_name=f"chunkpress-to-zarr-{writes.key}")
    if not compute:
        return done
    return done.compute()


def from_zarr(store, path=None, *, storage_options=None) -> da.Array:
    """Return a lazy dask array of a Zarr array: one task per chunk, reading that chunk only.

    A chunk whose bytes are damaged is an error naming the chunk (the codec's error for a
    chunkpress array, e.g. ZfpError).
    """
    if isinstance(store, zarr.Array):
        array = store
    else:
        opened = _read_store(store)
        try:
            array = zarr.open_array(opened, path=path, mode="r",
                                    storage_options=storage_options)
        except FileNotFoundError:
            check_complete(opened, path, storage_options)
            raise FileNotFoundError(f"no zarr array at {_where(store, path)}") from None
    chunks = tuple(
        tuple(min(c, n - i) for i in range(0, n, c)) if n else (0,)
        for n, c in zip(array.shape, array.chunks)
    )
    direct = _direct(array)
    name = "chunkpress-from-zarr-" + tokenize(str(array.store_path), array.metadata.to_dict())
    layer = {
        (name, *index): Task((name, *index), _read_chunk, array, index, direct)
        for index in np.ndindex(*(len(c) for c in chunks))
    }
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    dtype = array.dtype
    return da.Array(graph, name, chunks, meta=np.empty((0,) * array.ndim, dtype))


def regular_chunks(chunks) -> bool:
    """Whether a dask chunking is a zarr chunk grid: equal blocks along each axis, but the last.

    >>> regular_chunks(((4, 4, 2), (3,)))
    True
    >>> regular_chunks(((4, 2, 4),))
    False
    """
    return all(all(c == axis[0] for c in axis[:-1]) and axis[-1] <= axis[0] for axis in chunks)


def create_array(store, compressed: CompressedArray, *, path=None, overwrite=False,
                 attributes=None, dimension_names=None) -> zarr.Array:
    """Create the Zarr array that the blocks of ``compressed`` are the chunks of."""
    codec = zarr_codec(compressed.codec, compressed.params)
    chunk_shape = tuple(max(1, axis[0]) for axis in compressed.chunks)
    choice = getattr(compressed, "choice", None)
    if choice is not None:  # what codec="auto" chose and why, for `chunkpress info`
        from . import auto

        attributes = {**(attributes or {}), auto.ATTRIBUTE: auto.attribute(choice)}
    try:
        return zarr.create_array(
            store, name=path, shape=compressed.shape, chunks=chunk_shape,
            dtype=compressed.dtype, serializer=codec, compressors=[Crc32cCodec()],
            filters=None, overwrite=overwrite, attributes=attributes,
            dimension_names=dimension_names, zarr_format=3,
            config={"write_empty_chunks": True},
        )
    except (ContainsArrayError, ContainsGroupError):
        raise FileExistsError(f"{_where(store, path)} already holds a zarr array or group; "
                              "pass overwrite=True to replace it") from None


class IncompleteStoreError(FileNotFoundError):
    """A store whose writing stopped before its last chunk (its metadata is still aside)."""


#: the key a node's zarr.json is kept under while its chunks are being written
WRITING = "zarr.json.writing"


def hide_metadata(node: StorePath) -> bytes | None:
    """Move the ``zarr.json`` of ``node`` (an array or group) aside until :func:`reveal_metadata`.

    Readers find no array (or group) there meanwhile, only the marker: a write that stops
    halfway can't be read as if it were whole. Returns the document, or None for stores that
    can't delete (a zip store, which is unreadable until it is closed anyway).
    """
    store = node.store
    if not store.supports_deletes:
        return None
    document = sync((node / "zarr.json").get(default_buffer_prototype()))
    sync((node / WRITING).set(document))
    sync((node / "zarr.json").delete())
    return document.to_bytes()


def reveal_metadata(node: StorePath, document: bytes | None) -> None:
    """Put back what :func:`hide_metadata` moved aside: the node is complete."""
    if document is None:
        return
    buffer = default_buffer_prototype().buffer.from_bytes(document)
    sync((node / "zarr.json").set(buffer))  # first: once this exists the node is readable
    sync((node / WRITING).delete())


def refuse_unfinished(store, path, storage_options) -> None:
    """Raise FileExistsError if ``store`` holds a write that stopped halfway."""
    try:
        check_complete(store, path, storage_options)
    except IncompleteStoreError:
        raise FileExistsError(f"{_where(store, path)} holds a write that stopped halfway; pass "
                              "overwrite=True to write it again") from None


def check_complete(store, path, storage_options) -> None:
    """Raise IncompleteStoreError if ``store`` holds a write that stopped halfway."""
    try:
        if isinstance(store, str) and "://" in store:
            from zarr.storage import FsspecStore

            store = FsspecStore.from_url(store, storage_options=storage_options, read_only=True)
        node = sync(make_store_path(store, path=path or "", mode="r"))
        unfinished = sync((node / WRITING).exists())
    except (OSError, ValueError, TypeError):
        return
    if unfinished:
        raise IncompleteStoreError(
            f"{_where(store, path)} is incomplete: it was being written and the writer stopped "
            "before its last chunk; write it again with overwrite=True")


def write_blocks(compressed: CompressedArray, array: zarr.Array) -> Delayed:
    """Return a delayed that writes every block of ``compressed`` as the chunk of ``array``.

    Its value is the number of bytes written. Each task writes a group of neighbouring blocks
    (a few MiB of input, a few groups per worker): the scheduler then handles tens of tasks,
    not one per block. While the blocks are lazy (``compressed.recipe``), the task that
    writes a block encodes it, straight from the input, the way ``compress`` would: nothing is
    encoded twice and no block is kept. Blocks that already exist (persisted) are written as
    they are.
    """
    if tuple(compressed.chunks and (max(1, a[0]) for a in compressed.chunks)) != \
            tuple(array.chunks) or compressed.shape != array.shape:
        raise ValueError(f"the blocks {compressed.chunksize} of shape {compressed.shape} are not "
                         f"the chunks {array.chunks} of shape {array.shape}")
    recipe = compressed.recipe
    name = "chunkpress-write-" + tokenize(compressed.name, str(array.store_path))
    grid = compressed.numblocks
    indices = list(np.ndindex(*grid)) if grid else [()]
    block_bytes = math.prod(compressed.chunksize) * compressed.dtype.itemsize \
        if compressed.ndim else compressed.dtype.itemsize
    size = _group_size(len(indices), block_bytes, api._workers())
    starts = None if recipe is None else [np.cumsum((0,) + axis) for axis in recipe.x.chunks]
    layer = {}
    for number, start in enumerate(range(0, len(indices), size)):
        group = indices[start:start + size]
        key = (name, number)
        if recipe is None:
            blocks = List(*(TaskRef((compressed.name, *index)) for index in group))
            layer[key] = Task(key, _write_group, blocks, group, array)
        else:
            layer[key] = Task(key, _encode_and_write_group, _inputs(recipe, group, starts), group,
                              recipe.codec, [build.block_kwargs(recipe, i) for i in group],
                              recipe.verify_bound, recipe.max_mse, array)
    layer[name] = Task(name, _total, List(*(TaskRef(k) for k in layer)))
    source = recipe.x if recipe is not None and recipe.numpy is None else \
        (compressed if recipe is None else None)
    graph = HighLevelGraph.from_collections(name, layer,
                                            dependencies=[source] if source is not None else ())
    return Delayed(name, graph)


#: input bytes a write task takes at most (several blocks, when they are small)
GROUP_BYTES = 16 * 2**20


def _group_size(blocks: int, block_bytes: int, workers: int) -> int:
    """Return how many blocks one write task takes: up to GROUP_BYTES of input, and at least
    four tasks per worker so that the work stays balanced.

    >>> _group_size(256, 2**20, 2)
    16
    >>> _group_size(256, 2**20, 32)
    2
    >>> _group_size(10, 64 * 2**20, 2)
    1
    """
    by_bytes = max(1, GROUP_BYTES // max(1, block_bytes))
    by_balance = max(1, blocks // (4 * max(1, workers)))
    return min(by_bytes, by_balance)


def _inputs(recipe, group, starts):
    """Return the input of each block of ``group``: views of a numpy array, or task references.

    ``starts`` holds, per axis, where each block begins (and the extent, last).
    """
    if recipe.numpy is not None:
        return [recipe.numpy[tuple(slice(s[i], s[i + 1]) for s, i in zip(starts, index))]
                for index in group]
    return List(*(TaskRef((recipe.x.name, *index)) for index in group))


def _encode_and_write_group(blocks, indices, codec, kwargs, verify_bound, max_mse, array) -> int:
    written = 0
    for block, index, block_kwargs in zip(blocks, indices, kwargs):
        encoded = build.encode_block(block, codec, block_kwargs, verify_bound, max_mse, index)
        written += _put_chunk(encoded.data, array, index)
    return written


def _write_group(blocks, indices, array) -> int:
    return sum(_put_chunk(encoded.data, array, index) for encoded, index in zip(blocks, indices))


def _total(counts) -> int:
    return int(sum(counts))


def info(store, *, storage_options=None) -> pd.DataFrame:
    """Return one row per array of a store: codec, parameters, sizes, ratio, error bound."""
    opened = _read_store(store)
    try:
        node = zarr.open(opened, mode="r", storage_options=storage_options)
    except FileNotFoundError:
        check_complete(opened, None, storage_options)
        raise FileNotFoundError(f"no zarr store at {_where(store, None)}") from None
    arrays = [("", node)] if isinstance(node, zarr.Array) else sorted(node.arrays())
    rows = []
    for name, array in arrays:
        serializer = array.serializer
        stored = sync(array.store_path.store.getsize_prefix(_prefix(array)))
        raw = math.prod(array.shape) * array.dtype.itemsize
        row = {"variable": name or array.path or "/", "shape": array.shape,
               "dtype": str(array.dtype), "original_bytes": raw, "stored_bytes": stored,
               "ratio": raw / stored if stored else math.inf}
        if isinstance(serializer, ChunkpressCodec):
            target = serializer.target
            scale = abs(float(array.attrs.get("scale_factor", 1.0)))
            bound = _codecs.bound(serializer.spec, target)
            row.update(codec=serializer.spec.name,
                       parameters=", ".join(f"{k}={v}" for k, v in target.items()),
                       error_bound=math.nan if bound is None else bound * scale)
        else:
            compressors = [c.to_dict()["name"] for c in array.compressors]
            row.update(codec="+".join(compressors) or "none", parameters="",
                       error_bound=0.0 if array.dtype.kind != "f" or not array.filters else
                       math.nan)
        rows.append(row)
    columns = ["variable", "codec", "parameters", "dtype", "shape", "original_bytes",
               "stored_bytes", "ratio", "error_bound"]
    return pd.DataFrame(rows, columns=columns).set_index("variable")


# --- helpers -------------------------------------------------------------------------------


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
        if data.codec not in _codecs.CODECS and _ragged(data.shape, data.chunks):
            raise ValueError(
                f"{data.codec}: its streams do not record their shape, so its edge blocks must "
                "be whole chunks; pass the array to to_zarr (it pads them) or compress with "
                "chunks that divide the shape")
        return data
    codec = "zfp" if codec is None else codec
    spec = _codecs.get_codec(codec)
    compressed = api.compress(data, codec, chunks=chunks, verify=verify, **given)
    if not regular_chunks(compressed.chunks):
        compressed = api.compress(data, codec, chunks=compressed.chunksize, verify=verify,
                                  **given)
    if spec.name not in _codecs.CODECS and _ragged(compressed.shape, compressed.chunks):
        # a chain's stream does not hold its shape: its edge blocks are padded to whole chunks
        x = da.asarray(data) if not isinstance(data, da.Array) else data
        size = compressed.chunksize
        pad = [(0, -n % c) for n, c in zip(x.shape, size)]
        padded = da.pad(x, pad, mode="constant").rechunk(size)
        blocks = api.compress(padded, codec, chunks=size, verify=verify, **given)
        compressed = CompressedArray(_cut(blocks.blocks, x.shape), blocks.dtype, blocks._codec,
                                     blocks.params, blocks.verified)
    return compressed


def _ragged(shape, chunks) -> bool:
    return any(n % axis[0] for n, axis in zip(shape, chunks) if axis[0])


def _cut(blocks: da.Array, shape) -> da.Array:
    """Return the padded blocks relabelled with the chunks of the unpadded ``shape``."""
    chunks = tuple(
        tuple(min(c, n - i) for i in range(0, n, c)) for n, c in zip(shape, blocks.chunksize))
    return da.Array(blocks.dask, blocks.name, chunks, meta=blocks._meta)


def _open_store(store, storage_options, overwrite):
    """Return (store, close): a ``.zip`` path opens a zip store, closed when writing is done."""
    if isinstance(store, (str, os.PathLike)) and str(store).endswith(".zip") \
            and "://" not in str(store):
        if os.path.exists(store) and not overwrite:
            raise FileExistsError(f"{store} exists; pass overwrite=True to replace it")
        opened = ZipStore(store, mode="w")
        return opened, opened.close
    if isinstance(store, str) and "://" in store:
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(store, storage_options=storage_options), lambda: None
    return store, lambda: None


def _read_store(store):
    """Return ``store``, or a read-only zip store for a ``.zip`` path."""
    if isinstance(store, (str, os.PathLike)) and str(store).endswith(".zip") \
            and "://" not in str(store):
        if not os.path.isfile(store):
            raise FileNotFoundError(f"no such file: {store}")
        return ZipStore(store, mode="r")
    return store


def _local_root(array):
    """Return the directory of a local store's array, whose chunk files are written directly."""
    store = array.store_path.store
    if isinstance(store, LocalStore) and not store.read_only:
        return store.root / array.store_path.path if array.store_path.path else store.root
    return None


def _put_chunk(data, array, index) -> int:
    """Store one block's stream, its CRC-32C behind it, as the chunk object ``index``."""
    crc = struct.pack("<I", google_crc32c.value(np.frombuffer(data, np.uint8)))
    key = array.metadata.encode_chunk_key(tuple(index))
    root = _local_root(array)
    if root is not None:
        # a plain file write: zarr's store API would hand it to its event loop and back
        # written under a temporary name, then renamed: a reader (or a writer run again after
        # this one was killed) finds the whole object or none
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
        with open(partial, "wb") as file:
            file.write(data)
            file.write(crc)
        os.replace(partial, path)
    else:
        buffer = default_buffer_prototype().buffer.from_bytes(bytes(data) + crc)
        sync((array.store_path / key).set(buffer))
    return len(data) + 4


def _finish(writes, array, hidden, close):
    reveal_metadata(array.store_path, hidden)
    close()
    return array


def _read_chunk(array: zarr.Array, index, direct=False):
    try:
        if direct:
            return _read_local_chunk(array, index)
        return array.get_block_selection(index)
    except (ChunkpressError, ValueError) as exc:
        serializer = array.serializer
        error = serializer.error if isinstance(serializer, ChunkpressCodec) else ChunkpressError
        key = array.metadata.encode_chunk_key(index)
        what = serializer.spec.name if isinstance(serializer, ChunkpressCodec) else "zarr"
        raise error(f"{what}: chunk {index} (object {key!r}) of {_where(array.store_path, None)}"
                    f" cannot be read; the stored bytes are damaged: {exc}") from exc


def _direct(array) -> bool:
    """Whether the chunks are read from their files and decoded here, bypassing zarr's pipeline.

    For a local store of a chunkpress array whose pipeline is the codec then crc32c: what
    zarr would do, without the trips to its event loop and its indexing machinery.
    """
    return (isinstance(array.store_path.store, LocalStore)
            and isinstance(array.serializer, ChunkpressCodec) and not array.filters
            and len(array.compressors) == 1 and isinstance(array.compressors[0], Crc32cCodec))


def _read_local_chunk(array: zarr.Array, index) -> np.ndarray:
    extent = tuple(min(c, n - i * c) for n, c, i in zip(array.shape, array.chunks, index))
    key = array.metadata.encode_chunk_key(index)
    store = array.store_path.store
    path = store.root / array.store_path.path / key if array.store_path.path else store.root / key
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:  # never written: the fill value, as zarr gives
        return np.full(extent, array.fill_value, array.dtype)
    stream = memoryview(data)[:-4]
    crc = google_crc32c.value(np.frombuffer(stream, np.uint8))
    if len(data) < 4 or struct.pack("<I", crc) != data[-4:]:
        raise ValueError("checksum mismatch (crc32c)")
    block = decode_block(stream, array.serializer.spec, array.chunks, array.dtype)
    if block.shape != extent:
        if any(b < e for b, e in zip(block.shape, extent)):
            raise ValueError(f"the stream holds a block of shape {block.shape}, the chunk "
                             f"has {extent} values")
        block = block[tuple(slice(0, e) for e in extent)]
    return block


def _prefix(array) -> str:
    key = array.metadata.encode_chunk_key((0,) * array.ndim)
    head = key.split("/")[0] if "/" in key else ""
    path = array.store_path.path
    return f"{path}/{head}" if path else head


def _where(store, path) -> str:
    where = str(store)
    return f"{where}/{path}" if path else where
