"""Turns a plan into dask tasks: one encode task per block, one decode task per block.

Every layer has an explicit name, dtype and meta: the same call twice gives the same graph, and
no kernel is ever called on fake data. Layers are ``map_blocks`` (Blockwise) where every block
takes the same arguments, so that dask fuses an encode with the tasks that make its block.
"""

from __future__ import annotations

import hashlib
import math
from typing import NamedTuple

import dask.array as da
import numpy as np
from dask.task_spec import Task, TaskRef
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ..kernels import ChunkpressError
from . import dispatch, measure
from .codecs import Codec

#: bump when the bytes a block encodes to change, so old graph names never match new ones
FORMAT = 1


class Recipe(NamedTuple):
    """How :func:`encode_array` makes a CompressedArray's blocks, for writers that group them."""

    x: da.Array  # the input, cut into the blocks
    codec: Codec
    kwargs: dict  # every block's kernel arguments, or a dict from block index to them
    verify_bound: object
    max_mse: object
    numpy: np.ndarray | None = None  # the numpy array x views, when it is one


def block_kwargs(recipe: Recipe, index: tuple) -> dict:
    """Return the kernel arguments of block ``index`` of a recipe."""
    return recipe.kwargs[index] if _per_block(recipe.kwargs) else recipe.kwargs


def _per_block(kwargs) -> bool:
    """Whether ``kwargs`` maps block indices to kernel arguments (else: every block's)."""
    return isinstance(kwargs, dict) and bool(kwargs) and isinstance(next(iter(kwargs)), tuple)


def numpy_blocks(array: np.ndarray, chunks) -> da.Array:
    """Return a dask array whose blocks are views of ``array``: nothing is copied or hashed.

    Slabs along the leading axis of a C-ordered array are contiguous, so the codec reads them
    in place. The graph name comes from the buffer's address, shape, strides and a sparse
    sample of its values, not a hash of every byte (a full hash would cost a pass over the
    data, a third of a fast codec's time). The array must not change until its blocks are
    encoded.
    """
    name = "chunkpress-input-" + _cheap_token(array)
    slices = da.core.slices_from_chunks(chunks)
    keys = np.ndindex(*(len(c) for c in chunks)) if chunks else [()]
    layer = {(name, *index): array[slc] for index, slc in zip(keys, slices)}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    return da.Array(graph, name, chunks, meta=np.empty((0,) * array.ndim, array.dtype))


def _cheap_token(array: np.ndarray) -> str:
    per_axis = max(2, int(65536 ** (1 / max(array.ndim, 1))))
    sample = array[tuple(slice(None, None, max(1, -(-n // per_axis))) for n in array.shape)]
    pointer = array.__array_interface__["data"][0]
    # hashed here: dask's tokenize takes 4 ms over the sample's 256 kB, sha256 0.2 ms
    digest = hashlib.sha256(np.ascontiguousarray(sample)).hexdigest()
    return tokenize("ndarray", pointer, array.shape, array.strides, array.dtype.str, digest)


def encode_array(x: da.Array, codec, kwargs, verify_bound=False, max_mse=None) -> da.Array:
    """Return the dask array of Encoded blocks of ``x`` (an object array, one per block).

    ``kwargs`` is the kernel arguments of every block, or a dict from block index to them
    (each task then carries its own); ``verify_bound`` and ``max_mse`` are
    :func:`dispatch.encode`'s.
    """
    per_block = _per_block(kwargs)
    name = "chunkpress-encode-" + tokenize(x.name, codec, _stable(kwargs), verify_bound,
                                           max_mse, FORMAT)
    meta = np.empty((0,) * x.ndim, object)
    # the tasks written out (not map_blocks, which walks and tokenizes every argument again,
    # the codec's fields included: 1.5 ms of each small append's planning)
    layer = {
        (name, *index): Task((name, *index), _encode_task, TaskRef((x.name, *index)), codec,
                             kwargs[index] if per_block else kwargs, verify_bound, max_mse,
                             block_id=index)
        for index in np.ndindex(*x.numblocks)
    }
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[x])
    return da.Array(graph, name, x.chunks, meta=meta)


def _stable(kwargs):
    if isinstance(kwargs, dict):
        return sorted((repr(k), _stable(v)) for k, v in kwargs.items())
    return kwargs


def encode_block(block, codec, kwargs, verify_bound, max_mse, block_id) -> measure.Encoded:
    """Return block ``block_id`` encoded as :func:`encode_array`'s task does it."""
    return _encode_task(block, codec, kwargs, verify_bound, max_mse, block_id=block_id)


def _encode_task(block, codec, kwargs, verify_bound, max_mse, block_id=None):
    try:
        return dispatch.encode(block, codec, kwargs, verify_bound, max_mse)
    except ChunkpressError as exc:
        raise type(exc)(f"block {tuple(block_id)}: {exc}") from exc


def decode_array(encoded: da.Array, codec, dtype, token: str) -> da.Array:
    """Return the lazy array that the Encoded blocks of ``encoded`` decode to."""
    dtype = np.dtype(dtype)
    return encoded.map_blocks(
        _decode_task, codec, dtype,
        name=f"chunkpress-decode-{tokenize(token, FORMAT)}",
        dtype=dtype, meta=np.empty((0,) * encoded.ndim, dtype),
    )


def _decode_task(encoded, codec, dtype, block_id=None):
    try:
        return dispatch.decode(encoded.data, codec, encoded.shape, dtype)
    except ChunkpressError as exc:
        raise type(exc)(f"block {tuple(block_id)}: {exc}") from exc


def per_block(x: da.Array, function, name: str) -> da.Array:
    """Return an object array with ``function(block)`` for each block of ``x``, one cell each."""
    return x.map_blocks(
        _one_cell, function, x.ndim, name=name, dtype=object,
        chunks=tuple((1,) * len(extents) for extents in x.chunks),
        meta=np.empty((0,) * x.ndim, object),
    )


def _one_cell(block, function, ndim):
    cell = np.empty(1, object)
    cell[0] = function(block)
    return cell.reshape((1,) * ndim)


def block_figures(encoded) -> tuple:
    """Return (compressed bytes, max error, sse, count, lo, hi, corrected, max relative error)
    of an Encoded block."""
    return (len(encoded.data),) + tuple(encoded[2:])


def figures_array(encoded: da.Array) -> da.Array:
    """Return the object array of :func:`block_figures`, one cell per block."""
    return per_block(encoded, block_figures, "chunkpress-figures-" + tokenize(encoded.name))


def block_ranges(x: da.Array) -> da.Array:
    """Return the object array of each block's finite (min, max), one cell per block."""
    return per_block(x, measure.block_range, "chunkpress-range-" + tokenize(x.name))


def global_range(ranges: np.ndarray) -> float:
    """Return max - min over the per-block finite ranges (0 when no value is finite)."""
    lo = min((r[0] for r in ranges.flat), default=math.inf)
    hi = max((r[1] for r in ranges.flat), default=-math.inf)
    return hi - lo if hi >= lo else 0.0
