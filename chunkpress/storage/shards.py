"""Zarr v3 shards: the codec-aligned blocks are the inner chunks, each shard written whole.

A shard object (``sharding_indexed``, index at the end, zarr's default) is the inner chunk
objects one after another, then the index: for every inner chunk of the shard, in C order,
its offset and length (uint64 little-endian; both all ones: absent), then the index's
CRC-32C. One task writes one shard, so no two tasks ever write the same object. Reading an
inner chunk reads the index, then that chunk's byte range only.
"""

from __future__ import annotations

import math
import os

import numpy as np
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.codecs import BytesCodec, Crc32cCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from . import integrity

__all__ = ["shard_shape", "groups", "put_shard", "read_inner", "sharding_document",
           "ShardFormat", "parse_index", "AUTO_SHARD_BYTES"]

#: input bytes a shard of ``shards="auto"`` holds at most
AUTO_SHARD_BYTES = 256 * 2**20
_EMPTY = 2**64 - 1


def shard_shape(shards, chunk_shape, shape, itemsize, workers=1) -> tuple | None:
    """Return the shard shape in elements for ``shards=`` (None: no sharding).

    ``shards`` is a shape in elements (a multiple of the chunk shape, as zarr takes it),
    ``{"chunks": shape}`` (chunks per shard), or ``"auto"``: whole chunks along the last axes
    first, up to AUTO_SHARD_BYTES of input, never past the array, and small enough that each
    of ``workers`` gets about four shards to write (one task writes one shard: two shards for
    two workers would leave one idle while the other finishes).

    >>> shard_shape((8, 8), (4, 4), (100, 100), 4)
    (8, 8)
    >>> shard_shape({"chunks": (2, 1)}, (4, 4), (100, 100), 4)
    (8, 4)
    >>> shard_shape("auto", (4, 4), (1000, 10), 4)  # 3 chunks across, a quarter of the rows
    (208, 12)
    >>> shard_shape("auto", (4, 4), (64, 64), 4, workers=2)  # 8 shards of 2 x 16 chunks
    (8, 64)
    """
    if shards is None:
        return None
    ndim = len(chunk_shape)
    if isinstance(shards, str):
        if shards != "auto":
            raise ValueError(f"shards must be a shape, {{'chunks': shape}} or 'auto', "
                             f"got {shards!r}")
        per = [1] * ndim
        chunk_bytes = max(1, math.prod(chunk_shape) * itemsize)
        balanced = math.prod(shape) * itemsize // (4 * max(1, workers))
        budget = max(1, min(AUTO_SHARD_BYTES, balanced) // chunk_bytes)
        for axis in reversed(range(ndim)):
            fits = max(1, math.ceil(shape[axis] / chunk_shape[axis]))
            grow = max(1, min(fits, budget // max(1, math.prod(per))))
            per[axis] = grow
        return tuple(p * c for p, c in zip(per, chunk_shape))
    if isinstance(shards, dict):
        if set(shards) != {"chunks"}:
            raise ValueError(f"shards as a dict takes one key, 'chunks' (chunks per shard), "
                             f"got {sorted(shards)}")
        per = _shape(shards["chunks"], ndim, "shards['chunks']")
        return tuple(p * c for p, c in zip(per, chunk_shape))
    elements = _shape(shards, ndim, "shards")
    if any(e % c for e, c in zip(elements, chunk_shape)):
        raise ValueError(f"shards {elements} (in elements) must be a multiple of the chunk shape "
                         f"{tuple(chunk_shape)} along every axis, e.g. "
                         f"{tuple(2 * c for c in chunk_shape)}; or give {{'chunks': shape}} or "
                         "'auto'")
    return elements


def _shape(value, ndim, name) -> tuple:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,) * ndim
    try:
        shape = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of {ndim} positive whole numbers, "
                        f"got {value!r}") from None
    if len(shape) != ndim or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                     and s >= 1 for s in shape):
        raise ValueError(f"{name} must be a tuple of {ndim} positive whole numbers, "
                         f"got {value!r}")
    return tuple(int(s) for s in shape)


def groups(indices, grid, chunk_shape, shard_shape, offset) -> list:
    """Return [(shard index, [block indices])]: the blocks of each shard, shard by shard."""
    per = [s // c for s, c in zip(shard_shape, chunk_shape)]
    out: dict = {}
    for index in indices:
        shard = tuple((i + o) // p for i, o, p in zip(index, offset, per))
        out.setdefault(shard, []).append(index)
    return list(out.items())


def sharding_document(chunk_shape, inner_codecs) -> dict:
    return {"name": "sharding_indexed",
            "configuration": {"chunk_shape": list(chunk_shape), "codecs": list(inner_codecs),
                              "index_codecs": [BytesCodec().to_dict(), Crc32cCodec().to_dict()],
                              "index_location": "end"}}


def _per_shard(metadata) -> tuple:
    sharding = metadata.codecs[0]
    return tuple(s // c for s, c in zip(metadata.chunk_grid.chunk_shape, sharding.chunk_shape))


def put_shard(sink, shard, streams, chunk_shape) -> int:
    """Write the shard ``shard`` whole: ``streams`` are (grid index, stream) of its chunks."""
    per = _per_shard(sink.metadata)
    index = np.full((*per, 2), _EMPTY, "<u8")
    parts, position = [], 0
    for place, stream in sorted(streams):
        pieces = integrity.parts(stream, place, sink.write)
        size = sum(len(p) for p in pieces)
        index[tuple(p % n for p, n in zip(place, per))] = (position, size)
        parts += pieces
        position += size
    table = index.tobytes()
    parts += [table, integrity.crc(table)]
    return sink.put(sink.key(shard), parts)


def _index_size(per) -> int:
    return 16 * math.prod(per) + 4


class ShardFormat:
    """How a sharded array's shard objects are laid out: chunks per shard, index place."""

    def __init__(self, array, read):
        config = read.sharding.to_dict()["configuration"]
        codecs = [c["name"] for c in config.get("index_codecs", [])]
        if codecs != ["bytes", "crc32c"]:
            raise ValueError(f"shard index codecs {codecs} are not read by chunkpress (it reads "
                             "zarr's default: bytes then crc32c)")
        self.per = tuple(s // c for s, c in zip(array.shards, read.chunk_shape))
        self.index_size = _index_size(self.per)
        self.at_end = config.get("index_location", "end") == "end"

    def shard_of(self, index) -> tuple:
        """(shard index, index of the inner chunk within it) of inner chunk ``index``."""
        return (tuple(i // p for i, p in zip(index, self.per)),
                tuple(i % p for i, p in zip(index, self.per)))

    def inner_chunks(self, shard, grid) -> list:
        """The grid indices of the inner chunks of ``shard`` that lie inside the array."""
        ranges = [range(s * p, min(g, (s + 1) * p)) for s, p, g in zip(shard, self.per, grid)]
        return [tuple(r[i] for r, i in zip(ranges, number))
                for number in np.ndindex(*(len(r) for r in ranges))]

    def index_of(self, data) -> np.ndarray:
        """The (offset, length) table of a whole shard object, checked (ValueError if not)."""
        size = self.index_size
        if len(data) < size:
            raise ValueError(f"it is {len(data)} bytes, shorter than its index ({size} bytes): "
                             "the shard is truncated")
        raw = data[len(data) - size:] if self.at_end else data[:size]
        table = parse_index(raw, self.per)
        body = (0, len(data) - size) if self.at_end else (size, len(data))
        present = ~np.all(table == _EMPTY, axis=-1)
        starts, lengths = table[..., 0][present], table[..., 1][present]
        if np.any(starts < body[0]) or np.any(starts + lengths > body[1]):
            raise ValueError("its index points outside the shard's chunk bytes: the shard is "
                             "damaged or truncated")
        return table


def parse_index(raw, per) -> np.ndarray:
    """The (offset, length) table (shape ``per + (2,)``) of a shard index, CRC checked."""
    if len(raw) != _index_size(per) or integrity.crc(raw[:-4]) != bytes(raw[-4:]):
        raise ValueError("shard index checksum mismatch (crc32c): the shard is damaged or "
                         "truncated")
    return np.frombuffer(raw, "<u8", count=2 * math.prod(per)).reshape(*per, 2)


def read_inner(array, read, index):
    """Return the stored bytes of inner chunk ``index`` (its global grid index), None if the
    chunk or its shard is absent. A damaged shard (index) is an error naming the chunk."""
    shape = ShardFormat(array, read)
    shard, inner = shape.shard_of(index)
    key = array.metadata.encode_chunk_key(shard)
    try:
        return _read_inner(array, read, shape, key, inner)
    except ValueError as exc:
        error = read.codec.error if read.codec is not None else ValueError
        name = read.codec.spec.name if read.codec is not None else "zarr"
        raise error(f"{name}: chunk {tuple(index)} (object {key!r}[{', '.join(map(str, inner))}]"
                    f") of {array.store_path} cannot be read: {exc}") from None


def _read_inner(array, read, shape, key, inner):
    size = shape.index_size
    if read.local_root is not None:
        try:
            with open(os.path.join(read.local_root, key), "rb") as file:
                if shape.at_end:
                    file.seek(-size, os.SEEK_END)
                raw = file.read(size)
                entry = _entry(raw, shape.per, inner)
                if entry is None:
                    return None
                file.seek(entry[0])
                return file.read(entry[1])
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:  # seek before the start: a shard shorter than its index
            raise ValueError(f"the shard is truncated ({exc.strerror})") from None
    node = array.store_path / key
    request = SuffixByteRequest(size) if shape.at_end else RangeByteRequest(0, size)
    buffer = sync(node.get(default_buffer_prototype(), byte_range=request))
    if buffer is None:
        return None
    entry = _entry(buffer.to_bytes(), shape.per, inner)
    if entry is None:
        return None
    buffer = sync(node.get(default_buffer_prototype(),
                           byte_range=RangeByteRequest(entry[0], entry[0] + entry[1])))
    return None if buffer is None else buffer.to_bytes()


def _entry(raw: bytes, per, inner):
    """Return (offset, length) of an inner chunk from a shard's index, None if absent."""
    table = parse_index(raw, per)
    offset, length = (int(v) for v in table[inner])
    if offset == _EMPTY and length == _EMPTY:
        return None
    return offset, length
