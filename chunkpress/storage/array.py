"""to_zarr: one array into a Zarr v3 store, as a new array or a region of an existing one.

A new array: its blocks compressed and written by the tasks of ``writer``, published when
complete (``publish``). A region: the store's own codec and target (``append``). This module
sits above both, so that neither imports the other.
"""

from __future__ import annotations

import json

import numpy as np
import zarr

from ..graph.codecs import codec_params
from ..graph.compressed import CompressedArray

from . import publish
from .append import write_region
from .writer import ArrayWrite, WriteJob, compress_for_zarr, reopen

__all__ = ["to_zarr"]

_PARAMS = ("tolerance", "rate", "precision", "mode", "quality", "level", "rel_tolerance",
           "keepbits", "digits", "method", "information")


def to_zarr(data, store, *, codec=None, tolerance=None, rate=None, precision=None, mode=None,
            quality=None, level=None, chunks="auto", verify=False, path=None, overwrite=False,
            compute=True, attributes=None, dimension_names=None, storage_options=None,
            shards=None, region=None, rel_tolerance=None, portable=False, keepbits=None,
            digits=None, method=None, information=None, **extra):
    """Compress ``data`` block by block straight into a Zarr v3 array in ``store``.

    ``data`` is anything ``chunkpress.compress`` takes (compressed here with ``codec``, default
    "zfp", and its parameters) or a CompressedArray (written as it is; its codec and parameters
    are fixed). ``store`` is a path (``.zip``: a zip file), a URL (``s3://...``, with
    ``storage_options``), a zarr store, or an Icechunk session's store. Every block becomes one
    chunk object, encoded once, in parallel, by the task that writes it; ``shards=`` (a shape
    in chunks, or ``"auto"``) groups them into Zarr v3 shards, each written whole by one task.

    An existing array is refused unless ``overwrite=True``, which replaces it only once the new
    one is complete: a write that fails or is killed leaves the old array as it was (see
    ``chunkpress.storage.publish``). ``overwrite`` never deletes anything that is not the
    Zarr store it replaces. ``region=`` (a tuple of slices, aligned to the chunks) rewrites
    part of an existing chunkpress array with its own codec and target.

    ``rel_tolerance=r`` bounds each value's error by ``r`` times its magnitude, as in
    ``chunkpress.compress``; the codec's configuration carries it, so that zarr writing a
    chunk on its own keeps the same bound.

    ``keepbits`` or ``information`` (bit rounding: ``codec="bitround"``), ``digits`` and
    ``method`` (``codec="quantize"``) are ``chunkpress.compress``'s; the keepbits chosen from
    ``information`` is the codec's configuration, and the array's attributes say how
    (``chunkpress_rounding``). Any other parameter a registered codec takes is given by name,
    as to ``chunkpress.compress``.

    ``portable=True`` writes only codecs that zarr and numcodecs register themselves (no
    ``codec``): numcodecs' quantize (``tolerance``) or bitround (``rel_tolerance``, or both),
    then blosc-zstd and a CRC-32C, every block certified by the task that writes it; the store
    opens wherever zarr does, without chunkpress (see ``chunkpress.storage.portable``).

    ``compute=False`` returns a ``dask.delayed`` that does the work, like
    ``dask.array.to_zarr``; otherwise the blocks are written now and the zarr array returned.
    """
    publish.check_write_options(overwrite, mode)
    if attributes is not None:
        try:
            json.dumps(attributes, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"attributes must be a dict of what JSON holds (strings, numbers, "
                            f"lists, dicts), as zarr.json keeps them: {exc}") from None
    if portable:
        return _portable(data, store, codec=codec, tolerance=tolerance,
                         rel_tolerance=rel_tolerance, others=(rate, precision, mode, quality,
                                                              level, shards, region, keepbits,
                                                              digits, method, information,
                                                              *codec_params("to_zarr",
                                                                            extra).values()),
                         verify=verify, chunks=chunks, path=path, overwrite=overwrite,
                         compute=compute, attributes=attributes,
                         dimension_names=dimension_names, storage_options=storage_options)
    params = dict(zip(_PARAMS, (tolerance, rate, precision, mode, quality, level,
                                rel_tolerance, keepbits, digits, method, information)),
                  **codec_params("to_zarr", extra))
    if region is not None:
        return write_region(data, store, region, path=path, codec=codec, params=params,
                            verify=verify, compute=compute, storage_options=storage_options)
    compressed = compress_for_zarr(data, codec, chunks, verify, params)
    destination = publish.open_destination(store, path, overwrite=overwrite,
                                           storage_options=storage_options)
    try:
        if path:
            # an array of a dataset replaced on its own keeps its dimensions' names and its
            # attributes (CF units, _FillValue, ...), unless new ones are given
            old = destination.existing_document() or {}
            names = old.get("dimension_names")
            if dimension_names is None and isinstance(names, list) and \
                    len(names) == compressed.ndim:
                dimension_names = names
            if attributes is None and old.get("node_type") == "array":
                attributes = {k: v for k, v in (old.get("attributes") or {}).items()
                              if not k.startswith("chunkpress_")}
        plan = ArrayWrite(destination, "", compressed, attributes=attributes,
                          dimension_names=dimension_names, shards=shards)
        writes = [plan.writes()]
    except BaseException:
        destination.abort()
        destination.close()
        raise
    job = WriteJob(writes, destination, [plan],
                   lambda: _open_written(store, storage_options, destination, path))
    return job if not compute else job.compute()


def _portable(data, store, *, codec, tolerance, rel_tolerance, others, verify, **options):
    """to_zarr(portable=True): the checks, then chunkpress.storage.portable's write."""
    from .portable_write import to_zarr_portable

    if codec is not None:
        raise ValueError(f"portable=True chooses numcodecs' codecs for the bound; drop "
                         f"codec={codec!r} (or drop portable=True)")
    if any(v is not None for v in others):
        raise ValueError("portable=True takes tolerance= and rel_tolerance= only (not rate, "
                         "precision, mode, quality, level, keepbits, digits, method, "
                         "information, shards or region)")
    if not isinstance(verify, (bool, np.bool_)):
        raise TypeError(f"verify must be True or False, got {verify!r}")
    # verify=True or not: a portable write certifies every block as it writes it
    if isinstance(data, CompressedArray):
        raise ValueError("portable=True: data is already compressed (a CompressedArray); "
                         "pass the array itself")
    return to_zarr_portable(data, store, tolerance=tolerance, rel_tolerance=rel_tolerance,
                            **options)


def _open_written(store, storage_options, destination, path) -> zarr.Array:
    target = reopen(store, storage_options, destination)
    read_only = isinstance(target, str) or getattr(target, "read_only", True)
    return zarr.open_array(target, path=path, mode="r" if read_only else "r+")
