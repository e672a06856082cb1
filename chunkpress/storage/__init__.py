"""The store layer: chunkpress arrays and datasets at rest in Zarr v3 stores.

- ``codecs``: the Zarr v3 codecs (registered by entry point) that decode a chunk anywhere;
- ``array``: ``to_zarr``, one array: a new one (``writer``) or a region of one (``append``);
- ``writer``: blocks encoded and written by the same task, published when complete;
- ``dataset``: the same for an xarray Dataset (the accessor's ``to_zarr``), appends included;
- ``append``: appends and region writes with the store's own codec and target;
- ``update``: the destination of an append or region write (the store itself, staged chunks);
- ``update_plans``: what an update writes, one plan per array;
- ``journal``: the metadata documents of an append or region write, all or none;
- ``publish``: where a write goes until it is complete (staging, new keys, a transaction),
  and what readers check; its parts: ``destination`` (the base class and the errors),
  ``local`` (a directory: lock, staging, swap, repair), ``zipstore`` (a ``.zip`` file),
  ``foreign`` (refusing what chunkpress did not write), ``objectstore``, ``icechunk``;
- ``shards``: Zarr v3 sharding, one task per shard;
- ``reader``: ``from_zarr`` and ``info``, each chunk checked for its bytes and its place;
- ``integrity``: the place record behind each chunk;  ``verify``: a whole store checked.
"""

from .publish import IncompleteStoreError, WriterBusyError
from .reader import from_zarr, info
from .array import to_zarr

__all__ = ["to_zarr", "from_zarr", "info", "IncompleteStoreError", "WriterBusyError"]
