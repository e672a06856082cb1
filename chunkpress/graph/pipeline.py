"""From any array to its CompressedArray: what every caller of the graph layer shares.

``as_array`` takes what a user hands over (numpy, dask, xarray, zarr, lists) as numpy or
dask; ``blocked`` cuts it into blocks aligned to a codec; ``compress_array`` encodes it with
one codec and a validated target. ``chunkpress.compress``, ``codec="auto"`` and ``evaluate``
all go through here, so that one codec's blocks are cut and encoded the same way whoever asks.
"""

from __future__ import annotations

import math
import os
import sys

import dask
import dask.array as da
import numpy as np

from . import build, codecs, plan
from .compressed import CompressedArray

__all__ = ["as_array", "blocked", "compress_array", "workers"]


def as_array(data):
    """Return ``data`` as a numpy array (used in place) or a dask array (lazy inputs)."""
    if isinstance(data, (da.Array, np.ndarray)):
        x = data
    elif dask.is_dask_collection(data):
        x = da.asarray(data)
    elif isinstance(getattr(data, "data", None), np.ndarray) and hasattr(data, "dims"):
        x = data.data  # an xarray object held in memory
    elif isinstance(data, (list, tuple, int, float, complex, bool, np.generic)):
        x = np.asarray(data)
    elif hasattr(data, "shape") and hasattr(data, "dtype"):
        x = da.asarray(data)  # zarr, h5py, ...: read block by block, never loaded whole
    else:
        x = np.asarray(data)
    if isinstance(x, da.Array) and any(math.isnan(n) for c in x.chunks for n in c):
        raise ValueError("data has unknown chunk sizes (after boolean indexing, say); call "
                         "data.compute_chunk_sizes() first")
    return x


def blocked(x, spec, chunks) -> da.Array:
    """Return ``x`` (from :func:`as_array`) as a dask array cut into blocks aligned to the codec
    ``spec``: ``chunks="auto"`` or explicit chunks, which must be aligned (else a ValueError
    says how to fix them)."""
    align = spec.block_align(x.ndim)
    itemsize = np.dtype(x.dtype).itemsize
    is_dask = isinstance(x, da.Array)
    if isinstance(chunks, str) and chunks == "auto":
        if is_dask:
            new = plan.auto_chunks(x.shape, itemsize, align, x.chunks, workers=workers())
        else:
            new = plan.auto_chunks(x.shape, itemsize, spec.block_align(x.ndim, preferred=True),
                                   workers=workers())
    else:
        plan.check_chunks(chunks)  # dask divides by a 0 (ZeroDivisionError) and takes -3
        try:
            new = da.core.normalize_chunks(
                chunks, x.shape, dtype=x.dtype,
                previous_chunks=x.chunks if is_dask else getattr(x, "chunks", None))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"chunks={chunks!r} do not fit shape {x.shape}: {exc}") from None
        _check_aligned(new, align, spec, chunks, x.shape)
    if is_dask:
        return x if tuple(x.chunks) == tuple(new) else x.rechunk(new)
    if isinstance(x, np.ndarray):
        return build.numpy_blocks(x, new)
    return da.from_array(x, chunks=new)


def _check_aligned(new, align, spec, chunks, shape) -> None:
    bad = plan.misaligned(new, align)
    if not bad:
        return
    axis, index, extent = bad[0]
    step = align[axis]
    suggestion = plan.nearest_aligned_block(shape, new, align)
    why = (f"{spec.name} encodes blocks of {step}^d values and a block cut elsewhere would not "
           "give the values whole-array compression gives") if spec.name == "zfp" else \
        f"{spec.name} needs block extents that are multiples of {step}"
    raise ValueError(
        f"{spec.name}: chunks={chunks!r}: block {index} of axis {axis} has extent {extent}, not a "
        f"multiple of {step}; {why}. Use multiples of {step} (e.g. chunks={suggestion}) or "
        "chunks='auto'"
    )


def compress_array(x, spec, target: dict, chunks="auto", verify=False) -> CompressedArray:
    """Return the lazy CompressedArray of ``x`` (from :func:`as_array`) with the codec ``spec``
    and its validated ``target`` (see ``chunkpress.compress``): global targets become
    per-block parameters here, after one pass for the value range where they need it."""
    numpy = x if isinstance(x, np.ndarray) else None  # the blocks are views of it
    x = blocked(x, spec, chunks)
    value_range = None
    if codecs.needs_range(spec, target):
        ranges = build.block_ranges(x).compute().reshape(x.numblocks)
        value_range = build.global_range(ranges)
        kwargs = {index: codecs.block_kwargs(spec, target, ranges[index][1] - ranges[index][0],
                                             value_range)
                  for index in np.ndindex(*x.numblocks)}
    else:
        kwargs = codecs.block_kwargs(spec, target)
    verify_bound = codecs.bound(spec, target) if verify else False
    max_mse = codecs.max_mse(spec, target, value_range) if verify else None
    blocks = build.encode_array(x, spec, kwargs, verify_bound, max_mse)
    recipe = build.Recipe(x, spec, kwargs, verify_bound, max_mse, numpy)
    # the kernels decode to native byte order
    return CompressedArray(blocks, x.dtype.newbyteorder("="), spec, target, bool(verify),
                           recipe=recipe)


def workers() -> int:
    """Return how many tasks the scheduler that will run the graph runs at once."""
    scheduler = dask.config.get("scheduler", None)
    if hasattr(scheduler, "nthreads"):  # dask.config.set(scheduler=client)
        return max(1, sum(scheduler.nthreads().values()))
    if "distributed" in sys.modules and scheduler in (None, "dask.distributed", "distributed"):
        from distributed import default_client

        try:
            return max(1, sum(default_client().nthreads().values()))
        except ValueError:  # no client
            pass
    if scheduler in ("sync", "synchronous", "single-threaded"):
        return 1
    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
