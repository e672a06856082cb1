"""The one-call API: compress any array block by block on dask, and decompress it lazily."""

from __future__ import annotations

import math
import os
import sys

import dask
import dask.array as da
import numpy as np

from .graph import _codecs, build, plan
from .graph.compressed import CompressedArray

__all__ = ["compress", "decompress"]


def compress(data, codec="zfp", *, tolerance=None, rate=None, precision=None, mode=None,
             quality=None, level=None, chunks="auto", verify=False) -> CompressedArray:
    """Return the lazy compressed form of ``data``, one codec stream per block.

    ``data`` is a dask array, a numpy array, or anything ``dask.array.asarray`` takes. The
    blocks are encoded in parallel by whatever scheduler computes the result: the local
    threads by default, a ``distributed.Client`` unchanged.

    Targets hold for the whole array: ``tolerance`` bounds the error of every value, SPERR's
    ``mode="psnr"`` with ``quality`` dB is the PSNR of the whole array over its global value
    range, ``rate`` is bits per value overall. Per codec:

    - ``zfp``: exactly one of ``tolerance``, ``rate``, ``precision``. 1-4 dimensions.
    - ``sperr``: ``tolerance``; or ``rate``; or ``mode`` 'rate' | 'psnr' | 'pwe' with
      ``quality``. 2-3 dimensions. PSNR mode reads the input twice: once for the value range.
    - ``sz3``: ``tolerance``. ``lerc``: ``tolerance`` (0 or None: lossless).
    - ``szip``, ``pcodec`` (``level``), ``"floatpred+zstd"`` and the other lossless chains
      (``level`` of the final codec): lossless.
    - ``"auto"``, ``"auto-array"``: ``tolerance`` (none or 0: lossless); the codec is chosen
      from samples of the data, per block where that wins (see ``chunkpress.auto``).

    An array with more dimensions than its codec takes is compressed as a batch over its
    leading axes (each block holds one codec stream per leading index).

    ``chunks="auto"`` cuts blocks of tens of MiB aligned to the codec (multiples of 4 for
    ZFP, so that any chunking gives exactly the values of whole-array compression), at least
    a few per worker; aligned dask chunks of a sensible size are kept as they are, others are
    rechunked once. Explicit ``chunks`` (anything dask's ``normalize_chunks`` takes) must be
    aligned, or a ValueError says how to fix them.

    ``verify=True`` decodes every block in the task that encodes it and measures it: the
    figures ``max_error``, ``psnr`` and ``corrected`` (values the codec left outside the
    tolerance, which the kernels store exactly) follow, and a block over its bound is an error.
    With SPERR's PSNR mode, a block SPERR leaves short of its share of the target is encoded
    again, finer, so that the measured PSNR of the whole array is at least ``quality``.

    A numpy array is not copied: leave it unchanged until the result has been computed.
    Bad arguments raise ValueError/TypeError here, before any task runs.
    """
    if isinstance(codec, str) and codec.strip().lower() in _codecs.AUTO_NAMES:
        from . import auto  # samples the data to choose the codec, then calls back here

        return auto.compress(data, codec, tolerance=tolerance, rate=rate, precision=precision,
                             mode=mode, quality=quality, level=level, chunks=chunks,
                             verify=verify)
    spec = _codecs.get_codec(codec)
    if not isinstance(verify, (bool, np.bool_)):
        raise TypeError(f"verify must be True or False, got {verify!r}")
    x = _as_array(data)
    _codecs.check_input(spec, x.dtype, x.ndim)
    target = _codecs.normalize_targets(spec, tolerance=tolerance, rate=rate, precision=precision,
                                       mode=mode, quality=quality, level=level)
    # a bad value for the codec fails here, on a tiny block, not on a worker
    _codecs.probe(spec, x.dtype, x.ndim, _codecs.block_kwargs(spec, target, 1.0, 1.0))
    numpy = x if isinstance(x, np.ndarray) else None  # the blocks are views of it
    x = _blocked(x, spec, chunks)
    value_range = None
    if _codecs.needs_range(spec, target):
        ranges = build.block_ranges(x).compute().reshape(x.numblocks)
        value_range = build.global_range(ranges)
        kwargs = {index: _codecs.block_kwargs(spec, target, ranges[index][1] - ranges[index][0],
                                              value_range)
                  for index in np.ndindex(*x.numblocks)}
    else:
        kwargs = _codecs.block_kwargs(spec, target)
    verify_bound = _codecs.bound(spec, target) if verify else False
    max_mse = _codecs.max_mse(spec, target, value_range) if verify else None
    blocks = build.encode_array(x, spec, kwargs, verify_bound, max_mse)
    recipe = build.Recipe(x, spec, kwargs, verify_bound, max_mse, numpy)
    # the kernels decode to native byte order
    return CompressedArray(blocks, x.dtype.newbyteorder("="), spec, target, bool(verify),
                           recipe=recipe)


def decompress(compressed: CompressedArray) -> da.Array:
    """Return the lazy dask array that ``compressed`` decodes to: same shape, dtype, chunks."""
    if not isinstance(compressed, CompressedArray):
        raise TypeError(f"decompress takes a CompressedArray (from compress), "
                        f"got {type(compressed).__name__}")
    return build.decode_array(compressed.blocks, compressed._codec, compressed.dtype,
                              compressed.name)


def _as_array(data):
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


def _blocked(x, spec, chunks) -> da.Array:
    """Return ``x`` as a dask array cut into blocks aligned to the codec."""
    align = spec.block_align(x.ndim)
    itemsize = np.dtype(x.dtype).itemsize
    is_dask = isinstance(x, da.Array)
    if isinstance(chunks, str) and chunks == "auto":
        if is_dask:
            new = plan.auto_chunks(x.shape, itemsize, align, x.chunks, workers=_workers())
        else:
            new = plan.auto_chunks(x.shape, itemsize, spec.block_align(x.ndim, preferred=True),
                                   workers=_workers())
    else:
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


def _workers() -> int:
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
