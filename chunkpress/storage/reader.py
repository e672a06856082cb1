"""from_zarr and info: a store read back, every chunk checked for its bytes and its place.

A chunkpress array (its codec is a chunkpress codec, then zarr's crc32c; inside Zarr v3
sharding or not) is read here, not through zarr's pipeline: each task fetches its chunk object
(an inner chunk of a shard: the byte range the shard's index gives), checks its CRC-32C, then
its place record (see ``integrity``) against the index it was asked for, and decodes it. A
missing chunk is an error: chunkpress writes every chunk, so none may read as fill. Other
arrays (an exact variable, a plain zarr array in the same dataset) are read through zarr; an
exact variable chunkpress wrote every chunk of (see ``WRITTEN``) has none missing either.
"""

from __future__ import annotations

import math
import os

import dask.array as da
import numpy as np
import pandas as pd
import zarr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from zarr.codecs import Crc32cCodec, ShardingCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, ZipStore

from ..graph import codecs, information
from ..kernels import ChunkpressError
from . import integrity, portable, publish, shards
from .codecs import ChunkpressCodec, decode_block

__all__ = ["from_zarr", "info", "Layout", "layout", "read_chunk", "chunk_object",
           "object_bytes", "open_array", "arrays_of", "WRITTEN", "written", "with_written",
           "MissingChunkError", "PACKING", "with_packing", "packing", "missing_chunks"]

#: the field of an exact array's ``zarr.json`` that says chunkpress wrote every chunk of it
#: (zarr's ``write_empty_chunks``), chunks of fill values too, up to a shape: an absent chunk
#: there is missing, not fill. A Zarr v3 extension field (``must_understand: false``): zarr
#: and xarray read the array as before; their own writes (xarray's append) may leave out
#: chunks of fill, beyond that shape.
WRITTEN = "chunkpress_written"


class MissingChunkError(ChunkpressError):
    """A chunk chunkpress wrote is not in the store."""


def written(metadata) -> tuple | None:
    """The shape up to which chunkpress wrote every chunk of an exact array (``metadata``:
    zarr's or a ``zarr.json`` document), None if it does not say."""
    field = metadata.get(WRITTEN) if isinstance(metadata, dict) else \
        (getattr(metadata, "extra_fields", None) or {}).get(WRITTEN)
    shape = field.get("every_chunk_within") if isinstance(field, dict) else None
    if not isinstance(shape, list) or not all(isinstance(n, int) for n in shape):
        return None
    return tuple(shape)


def with_written(document: dict, shape) -> dict:
    """``document`` saying that every chunk within ``shape`` is written (see ``WRITTEN``)."""
    return {**document, WRITTEN: {"must_understand": False,
                                  "every_chunk_within": [int(n) for n in shape]}}


#: the field of an array's ``zarr.json`` that records the types of its ``scale_factor`` and
#: ``add_offset`` (JSON keeps their values only): float32 factors decode int16 to float32,
#: float64 ones to float64 (xarray's rule), and a netCDF written back needs the same.
PACKING = "chunkpress_packing"


def with_packing(document: dict, encoding) -> dict:
    """``document`` recording the types of the ``scale_factor``/``add_offset`` in
    ``encoding`` (a variable's CF encoding; a Python float is a float64)."""
    types = {k: np.asarray(encoding[k]).dtype.name for k in ("scale_factor", "add_offset")
             if k in encoding and np.asarray(encoding[k]).dtype.kind == "f"}
    if not types:
        return document
    return {**document, PACKING: {"must_understand": False, **types}}


def packing(metadata) -> dict:
    """{attribute: numpy dtype} of the packing factors an array's metadata records."""
    field = (getattr(metadata, "extra_fields", None) or {}).get(PACKING)
    if not isinstance(field, dict):
        return {}
    out = {}
    for key in ("scale_factor", "add_offset"):
        if field.get(key) in ("float32", "float64"):
            out[key] = np.dtype(field[key])
    return out


def _within(extent, index, chunk_shape, shape=None) -> bool:
    """Whether chunk ``index`` begins within ``extent`` (chunkpress wrote it), and, along an
    axis the array has since grown past ``extent`` by another writer (xarray's own append),
    ends within it too: that writer rewrote the chunk across the old edge, and zarr leaves
    out a chunk that became all fill."""
    if extent is None or len(extent) != len(index):
        return False
    shape = extent if shape is None else shape
    return all(i * c < n and (m <= n or (i + 1) * c <= n)
               for i, c, n, m in zip(index, chunk_shape, extent, shape))


def from_zarr(store, path=None, *, storage_options=None) -> da.Array:
    """Return a lazy dask array of a Zarr array: one task per chunk, reading that chunk only.

    A chunk whose bytes are damaged, that is missing, or that is not the chunk written at its
    place (moved, copied from another array, left over from another write) is an error naming
    the chunk (the codec's error for a chunkpress array, e.g. ZfpError). Sharded arrays are
    read inner chunk by inner chunk: a selection reads the inner chunks it touches.
    """
    array = store if isinstance(store, zarr.Array) else open_array(store, path, storage_options)
    read = layout(array)
    chunks = tuple(
        tuple(min(c, n - i) for i in range(0, n, c)) if n else (0,)
        for n, c in zip(array.shape, read.chunk_shape)
    )
    name = "chunkpress-from-zarr-" + tokenize(str(array.store_path), array.metadata.to_dict())
    layer = {
        (name, *index): (read_chunk, array, index, read)
        for index in np.ndindex(*(len(c) for c in chunks))
    }
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    return da.Array(graph, name, chunks, meta=np.empty((0,) * array.ndim, array.dtype))


def open_array(store, path=None, storage_options=None) -> zarr.Array:
    """Open the array at ``path`` of ``store`` (a path, URL, zip or zarr store) to read it."""
    opened = read_store(store, storage_options)
    publish.check_complete(opened, path, storage_options)
    try:
        return zarr.open_array(opened, path=path, mode="r")
    except FileNotFoundError:
        raise FileNotFoundError(f"no zarr array at {where(store, path)}") from None


class Layout:
    """How a zarr array's chunks are stored, as chunkpress reads them."""

    def __init__(self, array: zarr.Array):
        codecs = list(array.metadata.codecs)
        self.sharding = codecs[0] if len(codecs) == 1 and isinstance(codecs[0],
                                                                       ShardingCodec) else None
        inner = list(self.sharding.codecs) if self.sharding is not None else codecs
        # ours: the chunkpress codec then crc32c, nothing else (zarr's own pipeline otherwise)
        self.codec = inner[0] if len(inner) == 2 and isinstance(inner[0], ChunkpressCodec) \
            and isinstance(inner[1], Crc32cCodec) else None
        self.chunk_shape = tuple(self.sharding.chunk_shape if self.sharding is not None
                                 else array.chunks)
        self.written = written(array.metadata)  # an exact array's chunks chunkpress wrote
        self.shape = tuple(array.shape)
        store = array.store_path.store
        self.local_root = None
        if isinstance(store, LocalStore):
            self.local_root = os.path.join(str(store.root), array.store_path.path)

    @property
    def ours(self) -> bool:
        return self.codec is not None

    def required(self, index) -> bool:
        """Whether chunk ``index`` of an exact array must be in the store (see ``WRITTEN``)."""
        return _within(self.written, index, self.chunk_shape, self.shape)


def layout(array: zarr.Array) -> Layout:
    return Layout(array)


def chunk_object(array: zarr.Array, read: Layout, index):
    """Return the stored bytes of chunk ``index`` (an inner chunk of a shard), None if absent."""
    if read.sharding is not None:
        return shards.read_inner(array, read, index)
    return object_bytes(array, read, array.metadata.encode_chunk_key(tuple(index)))


def _present(array: zarr.Array, read: Layout, index) -> bool:
    """Whether chunk ``index`` is in the store, its bytes not read (zarr reads them next)."""
    if read.sharding is not None:
        return chunk_object(array, read, index) is not None
    key = array.metadata.encode_chunk_key(tuple(index))
    if read.local_root is not None:
        return os.path.isfile(os.path.join(read.local_root, key))
    return sync((array.store_path / key).exists())


def missing_chunks(array: zarr.Array, read: Layout) -> list:
    """The grid indices of the chunks exact array ``array`` must hold and does not (every chunk
    chunkpress wrote, see ``WRITTEN``), for readers that do not read through ``read_chunk``
    (text, which ``from_zarr`` does not read)."""
    if read.ours or read.written is None:
        return []
    return [index for index in np.ndindex(*array.cdata_shape)
            if read.required(index) and not _present(array, read, index)]


def object_bytes(array: zarr.Array, read: Layout, key: str):
    """The bytes of object ``key`` of ``array`` (a chunk or a shard), None if absent."""
    if read.local_root is not None:  # a plain file read: zarr's store API would add a round
        try:  # trip to its event loop per object
            with open(os.path.join(read.local_root, key), "rb") as file:
                return file.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
    buffer = sync((array.store_path / key).get(default_buffer_prototype()))
    return None if buffer is None else buffer.to_bytes()


def read_chunk(array: zarr.Array, index, read: Layout) -> np.ndarray:
    """Return chunk ``index`` of ``array``, checked (see the module's docstring)."""
    index = tuple(int(i) for i in index)
    if not read.ours:
        if read.required(index) and not _present(array, read, index):
            key = chunk_key(array, read, index)
            raise MissingChunkError(
                f"chunk {index} (object {key!r}) of {where(array.store_path, None)} is "
                "missing: chunkpress wrote every chunk of this exact array, so the store is "
                "damaged (zarr would read fill values there); `chunkpress verify` lists them")
        return array.get_block_selection(index) if read.sharding is None else \
            array[_selection(array.shape, read.chunk_shape, index)]
    codec = read.codec
    spec = codec.spec
    name = spec.name
    key = chunk_key(array, read, index)
    whence = f"{name}: chunk {index} (object {key!r}) of {where(array.store_path, None)}"
    data = chunk_object(array, read, index)
    if data is None and codec.write is None:  # written by zarr, which leaves out chunks of
        extent = tuple(min(c, n - i * c) for n, c, i in zip(array.shape, read.chunk_shape,
                                                              index))  # fill only
        return np.full(extent, array.metadata.fill_value, array.dtype)
    if data is None:
        raise codec.error(f"{whence} is missing: every chunk of a chunkpress array is written, "
                          "so the store is damaged or its write did not finish")
    try:
        body = integrity.unseal(data)
        if codec.write is not None:
            body, _ = integrity.split(body, codec.write, array.ndim, index)
        extent = tuple(min(c, n - i * c) for n, c, i in zip(array.shape, read.chunk_shape,
                                                              index))
        block = decode_block(body, spec, read.chunk_shape, array.dtype)
    except integrity.PlaceError as exc:
        raise codec.error(f"{whence} is not this chunk: {exc}") from None
    except (ChunkpressError, ValueError) as exc:
        raise codec.error(f"{whence} cannot be read; the stored bytes are damaged: {exc}") \
            from exc
    if block.shape != extent:
        if any(b < e for b, e in zip(block.shape, extent)):
            raise codec.error(f"{whence} cannot be read: the stream holds a block of shape "
                              f"{block.shape}, the chunk has {extent} values")
        block = block[tuple(slice(0, e) for e in extent)]
    return block


def chunk_key(array: zarr.Array, read: Layout, index) -> str:
    """The object that holds chunk ``index``: its own key, or its shard's (with the index in
    the shard)."""
    if read.sharding is None:
        return array.metadata.encode_chunk_key(tuple(index))
    per = [s // c for s, c in zip(array.shards, read.chunk_shape)]
    shard = tuple(i // p for i, p in zip(index, per))
    inner = tuple(i % p for i, p in zip(index, per))
    return f"{array.metadata.encode_chunk_key(shard)}[{', '.join(map(str, inner))}]"


def _selection(shape, chunk_shape, index):
    return tuple(slice(i * c, min(n, (i + 1) * c)) for n, c, i in zip(shape, chunk_shape, index))


def arrays_of(node) -> list:
    """Return [(name, array)] of a zarr array or every array under a group, sorted."""
    if isinstance(node, zarr.Array):
        return [(node.path or "/", node)]
    out = []
    for name, member in sorted(node.members(max_depth=None)):
        if isinstance(member, zarr.Array):
            out.append((name, member))
    return out


def info(store, *, storage_options=None) -> pd.DataFrame:
    """Return one row per array of a store: codec, parameters, sizes, ratio, error bound.

    ``error_bound`` is the bound the metadata claims (the codec's configuration: anyone who
    can edit ``zarr.json`` can change it); ``measured_error`` is the max error the writer
    measured on every value (``verify=True``), recorded beside it, NaN where not measured.
    Where an array has a ``rel_tolerance``, ``rel_bound`` and ``measured_rel_error`` say the
    same of the error relative to each value; bit rounding and quantization, which bound no
    absolute error (``error_bound`` NaN), have their ``rel_bound`` too (|x - y| <= rel_bound *
    max(|x|, the smallest normal number)), and ``parameters`` the ``information`` share a
    keepbits was chosen for.
    ``missing_chunks`` counts the chunk objects (shards) of a chunkpress-written array that
    are not in the store. ``chunkpress.verify`` checks every chunk; given the original, it
    measures the error anew. Each array is read from its own ``zarr.json``, as ``from_zarr``
    reads it, not from the root's consolidated copy.
    """
    opened = read_store(store, storage_options)
    publish.check_complete(opened, None, storage_options)
    try:
        node = zarr.open_array(opened, mode="r")
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        try:
            node = zarr.open_group(opened, mode="r", use_consolidated=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"no zarr store at {where(store, None)}") from None
    rows = []
    for name, array in arrays_of(node):
        read = layout(array)
        prefix = f"{array.store_path.path}/" if array.store_path.path else ""
        keys = sync(_keys(array.store_path.store, prefix))
        stored = _stored_bytes(array)
        raw = math.prod(array.shape) * array.dtype.itemsize
        row = {"variable": name, "shape": array.shape,
               "dtype": str(array.dtype), "original_bytes": raw, "stored_bytes": stored,
               "ratio": raw / stored if stored else math.inf, "measured_error": math.nan,
               "missing_chunks": pd.NA}
        if read.ours:
            codec = read.codec
            target = codec.target
            scale = abs(float(array.attrs.get("scale_factor", 1.0)))
            bound = codecs.bound(codec.spec, target)
            rounding = array.attrs.get(information.ATTRIBUTE)  # keepbits chosen from it
            chosen = {k: v for k, v in rounding.items() if k == "information"} \
                if isinstance(rounding, dict) else {}
            row.update(codec=codec.spec.name,
                       parameters=", ".join(f"{k}={v}" for k, v in {**target, **chosen}.items()),
                       error_bound=math.nan if bound is None else bound * scale)
            measured = array.attrs.get(MEASURED)
            if isinstance(measured, (int, float)) and not isinstance(measured, bool):
                row["measured_error"] = float(measured) * scale
            relative = codecs.relative_bound(codec.spec, target)
            if relative and not array.attrs.get("add_offset"):  # rel_tolerance, bit rounding
                row["rel_bound"] = float(relative)
                measured = array.attrs.get(MEASURED_RELATIVE)
                if isinstance(measured, (int, float)) and not isinstance(measured, bool):
                    row["measured_rel_error"] = float(measured)
            if codec.write is not None:  # chunkpress wrote every chunk: none may be absent
                row["missing_chunks"] = _missing_objects(array, read, keys, prefix)
        else:
            if read.written is not None:
                row["missing_chunks"] = _missing_objects(array, read, keys, prefix,
                                                         read.written)
            names = [c.to_dict()["name"] for c in (*array.filters, *array.compressors)]
            row.update(codec="+".join(n.removeprefix("numcodecs.") for n in names) or "none",
                       parameters="", error_bound=0.0 if array.dtype.kind != "f" or
                       not array.filters else math.nan)
            row.update(_portable_row(array.attrs.get(portable.ATTRIBUTE)))
        rows.append(row)
    columns = ["variable", "codec", "parameters", "dtype", "shape", "original_bytes",
               "stored_bytes", "ratio", "error_bound", "measured_error", "missing_chunks"]
    if any("rel_bound" in row for row in rows):  # a rel_tolerance: its bound, and measured
        columns[-1:-1] = ["rel_bound", "measured_rel_error"]
    table = pd.DataFrame(rows, columns=columns).set_index("variable")
    return table.astype({"missing_chunks": "Int64"})


def _missing_objects(array, read, keys, prefix, extent=None) -> int:
    """How many chunk objects (shards) of ``array`` are not in ``keys``: all of them, or
    (``extent``) those within it."""
    grid = array.shards if read.sharding is not None else read.chunk_shape
    counts = [math.ceil(n / c) if n else 0 for n, c in zip(array.shape, grid)]
    expected = {prefix + array.metadata.encode_chunk_key(i) for i in np.ndindex(*counts)
                if extent is None or _within(extent, i, grid, array.shape)}
    return len(expected - keys)


def _portable_row(entry) -> dict:
    """What a portable write recorded (``chunkpress.storage.portable``): its bounds, measured."""
    if not isinstance(entry, dict):
        return {}
    row = {"parameters": ", ".join(f"{k}={entry[k]:g}" for k in ("tolerance", "rel_tolerance")
                                   if isinstance(entry.get(k), (int, float)))}
    if isinstance(entry.get("tolerance"), (int, float)):
        row["error_bound"] = float(entry["tolerance"])
    if isinstance(entry.get("measured_error"), (int, float)):
        row["measured_error"] = float(entry["measured_error"])
    if isinstance(entry.get("rel_tolerance"), (int, float)):
        row["rel_bound"] = float(entry["rel_tolerance"])
        if isinstance(entry.get("measured_rel_error"), (int, float)):
            row["measured_rel_error"] = float(entry["measured_rel_error"])
    return row


async def _keys(store, prefix) -> set:
    return {key async for key in store.list_prefix(prefix)}


#: the array attribute holding the max error the writer measured (verify=True), stored units
MEASURED = "chunkpress_measured_max_error"
#: the array attribute holding the max relative error the writer measured (verify=True) where
#: the codec's configuration has a rel_tolerance
MEASURED_RELATIVE = "chunkpress_measured_max_rel_error"


def _stored_bytes(array) -> int:
    """The bytes of an array's chunk objects (everything under it but its zarr.json)."""
    store, path = array.store_path.store, array.store_path.path
    prefix = f"{path}/" if path else ""
    total = sync(store.getsize_prefix(prefix))
    return total - sync(store.getsize(f"{prefix}zarr.json"))


def read_store(store, storage_options=None):
    """Return a store to read: a read-only zip store for a ``.zip`` path, an fsspec store for
    a URL, ``store`` itself otherwise."""
    if isinstance(store, (str, os.PathLike)) and str(store).endswith(".zip") \
            and "://" not in str(store):
        if not os.path.isfile(store):
            raise FileNotFoundError(f"no such file: {store}")
        return ZipStore(store, mode="r")
    if isinstance(store, str) and "://" in store:
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(store, storage_options=storage_options, read_only=True)
    if storage_options is not None and not isinstance(store, (str, os.PathLike)):
        raise ValueError("storage_options go with a URL (s3://...), not with a store object")
    return store


def where(store, path) -> str:
    where = str(store)
    return f"{where}/{path}" if path else where
