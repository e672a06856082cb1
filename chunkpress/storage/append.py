"""Appends and region writes: new chunks with the store's own codec and target, metadata last.

An update of an existing store never decodes a lossy chunk: it writes whole chunks only, so
an append must start where a chunk starts (the old length a multiple of the chunk along the
append dimension) and a region must begin and end on chunk boundaries (or at the array's end).
The codec, its target, the chunk shape, the write identifier and the ``missing`` value are
the store's own (read from each array's ``zarr.json``); a codec or parameter given that
differs from the store's is an error naming both. Exact variables (the time coordinate) are
written through zarr, which may rewrite their last chunk: they are lossless, so nothing drifts.

What a reader sees, while and after:

- append: the new chunks go to grid places the old shape does not reach, so no reader sees
  them; then every changed ``zarr.json`` is written, arrays first and the root (with the
  consolidated metadata ``xr.open_zarr`` reads) last. Before those puts, the new documents
  are written to a *journal* (beside a local store's root, or ``.chunkpress-journal.json``
  in an object store; see ``journal``): a crash between the puts is finished by the next
  chunkpress reader or writer (:func:`journal.finish_pending`), so chunkpress never reads half
  an append. A write that
  stops before the journal leaves the store as it was.
- region: on a local directory the new chunks are written under temporary names beside the
  old ones and renamed over them when all are written (the renames are in the journal too):
  each chunk is old or new, and the region as a whole is old or new once the journal exists.
  Stores that cannot rename (object stores) get each chunk in one put: a region write that
  stops halfway there leaves some chunks new, each whole; write the region again.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import warnings

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from xarray.conventions import encode_cf_variable
from zarr.core.sync import sync
from zarr.storage import LocalStore, ZipStore

from ..graph import _codecs
from . import integrity, publish
from .dataset import CF_ENCODINGS, unpublished_array
from .journal import commit, finish_pending, ordered
from .reader import MEASURED, Layout
from .writer import ChunkSink, WriteJob, compress_for_zarr, write_blocks

__all__ = ["append_dataset", "region_dataset", "write_region", "finish_pending",
           "StoreArray"]


# --- the store's arrays as an update sees them -----------------------------------------------


class StoreArray:
    """One array of the store being updated: its document and how its chunks are stored."""

    def __init__(self, store, node: str, document: dict):
        self.node = node
        self.document = document
        self.handle = unpublished_array(store, node, document)
        read = Layout(self.handle)
        self.codec = read.codec  # the chunkpress codec, None: an exact (plain zarr) array
        self.chunk_shape = read.chunk_shape
        self.grid_shape = tuple(self.handle.metadata.chunk_grid.chunk_shape)  # shards or chunks
        self.shape = tuple(document["shape"])
        self.dims = tuple(document.get("dimension_names") or
                          document.get("attributes", {}).get("_ARRAY_DIMENSIONS") or ())

    @property
    def sharded(self) -> bool:
        return self.grid_shape != self.chunk_shape

    def describe(self) -> str:
        target = ", ".join(f"{k}={v}" for k, v in self.codec.target.items())
        return f"{self.codec.name}" + (f" with {target}" if target else "")

    def check_given(self, name, codec=None, params=None) -> None:
        """Raise ValueError if ``codec`` or ``params`` (stored units) differ from the store's."""
        given = {k: v for k, v in (params or {}).items() if v is not None}
        conflicts = []
        if codec is not None and _codecs.get_codec(codec).name != self.codec.spec.name:
            conflicts.append(f"codec={codec!r}")
        target = self.codec.target
        for key, value in given.items():
            if not _same(target.get(key), value):
                conflicts.append(f"{key}={value!r}")
        if conflicts:
            raise ValueError(
                f"{name}: the store's array is written with {self.describe()}; given "
                f"{', '.join(conflicts)}. An append or region write uses the store's codec "
                "and target (so that every chunk holds the same bound): drop the argument, "
                "or write a new store")

    def new_document(self, shape) -> dict:
        document = json.loads(json.dumps(self.document))
        document["shape"] = list(shape)
        return document


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
            not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _aligned(start: int, stop: int, step: int, extent: int) -> bool:
    return start % step == 0 and (stop % step == 0 or stop == extent)


def alignment_error(name, axis_name, start, stop, step, extent, what="chunk") -> ValueError:
    """The error for a region that does not begin and end on chunk boundaries."""
    lo = start - start % step
    hi = min(extent, -(-stop // step) * step)
    return ValueError(
        f"{name}: the region {start}:{stop} along {axis_name} does not begin and end on "
        f"{what} boundaries (the {what} size is {step} along it, the array's extent "
        f"{extent}); chunkpress never decodes and re-encodes lossy values (their error could "
        f"reach twice the bound). Write whole {what}s: e.g. {lo}:{hi}")


# --- the update: a destination that writes into the store itself -----------------------------


class Update(publish.Destination):
    """An append or region write of an existing store: chunks where no reader looks yet,
    documents through the journal (see the module)."""

    def __init__(self, store, storage_options=None):
        self.lock = None
        self.local_root = None
        self.given = store
        if isinstance(store, (str, os.PathLike)) and "://" not in str(store):
            root = os.path.abspath(os.fspath(store))
            if root.endswith(".zip"):
                raise ValueError(f"{root}: a .zip store is written whole; append to or write "
                                 "regions of a directory or object store")
            if not os.path.isdir(root):
                raise FileNotFoundError(f"{root}: no Zarr store to append to or write a "
                                        "region of; write it first (without append_dim/region)")
            store = LocalStore(root)
        elif isinstance(store, str):
            from zarr.storage import FsspecStore

            store = FsspecStore.from_url(store, storage_options=storage_options)
        elif storage_options is not None:
            raise ValueError("storage_options go with a URL (s3://...), not with a store object")
        if isinstance(store, ZipStore):
            raise ValueError("a zip store is written whole; append to or write regions of a "
                             "directory or object store")
        if isinstance(store, LocalStore):
            if store.read_only:
                raise ValueError(f"{store} is read-only; open it writable to write to it")
            self.local_root = os.path.abspath(str(store.root))
            message = publish.repair(self.local_root)
            if message:
                warnings.warn(message, stacklevel=4)
            self.lock = publish._Lock(self.local_root)  # one writer at a time, as publish does
        self.icechunk = type(store).__module__.startswith("icechunk")
        super().__init__(store, "", integrity.new_write_id(), str(self.local_root or store))
        try:
            finish_pending(self.local_root or store)
        except BaseException:
            self.close()
            raise
        self._written: list[str] = []  # chunk keys no reader reads yet: removed by abort()
        self._renames: list[tuple[str, str]] = []  # (staged, final) keys, local region writes
        self._guards: dict[str, dict] = {}

    # -- reading the store ----------------------------------------------------------------

    def read_document(self, node: str) -> dict | None:
        key = f"{node}/zarr.json" if node else "zarr.json"
        if self.local_root is not None:
            try:
                with open(os.path.join(self.local_root, key), "rb") as file:
                    return json.loads(file.read())
            except FileNotFoundError:
                return None
        from .objectstore import _read_json

        return _read_json(self.store, key)

    def array(self, node: str) -> StoreArray:
        document = self.read_document(node)
        if document is None or document.get("node_type") != "array":
            raise FileNotFoundError(f"{self.target}: no zarr array at {node or 'its root'!r} "
                                    "to append to or write a region of")
        return StoreArray(self.store, node, document)

    def sink(self, array: StoreArray, document: dict, staged: bool) -> ChunkSink:
        handle = unpublished_array(self.store, array.node, document)
        write = array.codec.write
        if staged and self.local_root is not None:
            return StagedSink(self.store, array.node, handle.metadata, write,
                              self.write)
        return ChunkSink(self.store, array.node, handle.metadata, write)

    # -- what the write tells it ----------------------------------------------------------

    def expect(self, node: str, keys, *, new: bool, staged_sink=None) -> None:
        """Chunk keys (relative to ``node``) this write puts: ``new`` ones lie outside the
        old shape (an abort removes them); a staged sink's are renamed at publish."""
        prefix = f"{node}/" if node else ""
        for key in keys:
            if staged_sink is not None:
                self._renames.append((prefix + staged_sink.staged(key), prefix + key))
            elif new:
                self._written.append(prefix + key)

    def guard(self, node: str, document: dict) -> None:
        """A document the update relies on (unchanged): the journal checks it is still there."""
        self._guards[node] = document

    def check(self) -> None:
        missing = [k for k in [*self._written, *(s for s, _ in self._renames)]
                   if not self._exists(k)]
        if missing:
            raise publish.IncompleteStoreError(
                f"{self.target}: {len(missing)} of the chunks this write put are not in the "
                f"store as this process sees it (e.g. {missing[0]!r}); nothing was changed. "
                "Workers on other machines write to their own disks: give a path on a file "
                "system every worker and this process share, or an object store (s3://...)")

    def _exists(self, key: str) -> bool:
        if self.local_root is not None:
            return os.path.exists(os.path.join(self.local_root, key))
        return sync(self.store.exists(key))

    # -- the end ----------------------------------------------------------------------------

    def publish(self) -> None:
        """Check every chunk is there, then journal, renames, documents (root last)."""
        self.check()
        documents = {(f"{p}/zarr.json" if p else "zarr.json"): d
                     for p, d in self._documents.items()}
        for node, document in self._guards.items():
            documents.setdefault(f"{node}/zarr.json" if node else "zarr.json",
                                 json.dumps(document, indent=2).encode())
        if self.icechunk:  # the session is the transaction: no journal (its keys are refused)
            for key in ordered(documents):
                self._put(key, documents[key])
            return
        commit(self.local_root or self.store, self.write, self._renames, documents)

    def abort(self) -> None:
        """Remove the chunks this write put where no reader looks (never an old chunk)."""
        for key in [*self._written, *(s for s, _ in self._renames)]:
            try:
                if self.local_root is not None:
                    os.remove(os.path.join(self.local_root, key))
                else:
                    sync(self.store.delete(key))
            except FileNotFoundError:
                pass

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class StagedSink(ChunkSink):
    """A sink that puts each chunk (or shard) under a temporary name beside its key."""

    def __init__(self, store, path, metadata, write, token):
        super().__init__(store, path, metadata, write)
        self.token = token

    def staged(self, key: str) -> str:
        head, _, tail = key.rpartition("/")
        # hidden and ending in .partial: what an overwrite's check takes for a cut-off chunk
        name = f".{tail}.chunkpress-{self.token}.partial"
        return f"{head}/{name}" if head else name

    def key(self, index) -> str:
        return self.staged(super().key(index))


# --- what is written --------------------------------------------------------------------------


class _ArrayPlan:
    """One compressed array of an update: its new document and the task that writes its
    chunks (see ``writer.WriteJob``)."""

    def __init__(self, update: Update, array: StoreArray, compressed, offset, new_shape,
                 staged: bool):
        self.update = update
        self.array = array
        self.compressed = compressed
        self.document = array.new_document(new_shape)
        sink = update.sink(array, self.document, staged)
        self.sink = sink
        self.offset = offset
        grid = array.grid_shape
        per = [g // c for g, c in zip(grid, array.chunk_shape)]
        counts = compressed.numblocks
        first = [o // p for o, p in zip(offset, per)]
        last = [-(-(o + n) // p) for o, n, p in zip(offset, counts, per)]
        keys = [ChunkSink.key(sink, tuple(a + j for a, j in zip(first, i)))
                for i in np.ndindex(*(b - a for a, b in zip(first, last)))]
        update.expect(array.node, keys, new=not staged,
                      staged_sink=sink if isinstance(sink, StagedSink) else None)
        self.verified = compressed.verified

    def writes(self):
        shard = self.array.grid_shape if self.array.sharded else None
        return write_blocks(self.compressed, self.sink, shard, self.offset)

    def record_measured(self, measured: float) -> None:
        """The measured error covers the whole array only if the old one did and this did."""
        attributes = dict(self.document.get("attributes") or {})
        old = attributes.pop(MEASURED, None)
        if self.verified and isinstance(old, (int, float)) and math.isfinite(measured):
            attributes[MEASURED] = max(float(old), float(measured))
        self.document["attributes"] = attributes

    def hand_over(self) -> None:
        if self.document != self.array.document:
            self.update.add_document(self.array.node, self.document)
        else:
            self.update.guard(self.array.node, self.document)


class _ExactPlan:
    """An exact variable of an update, written through zarr (lossless: a partial chunk is
    read and rewritten whole, so nothing drifts)."""

    verified = False

    def __init__(self, update: Update, array: StoreArray, data, selection, new_shape):
        self.update = update
        self.array = array
        self.document = array.new_document(new_shape)
        self.data = data
        self.selection = selection

    def writes(self):
        handle = unpublished_array(self.update.store, self.array.node, self.document)
        if isinstance(self.data, da.Array):
            chunks = tuple(_zarr_aligned(s.start, s.stop, c) for s, c in
                           zip(self.selection, self.array.grid_shape))
            stored = da.store(self.data.rechunk(chunks), handle, regions=self.selection,
                              lock=False, compute=False)
            return dask.delayed(_nothing, pure=True)(stored)
        name = "chunkpress-exact-" + tokenize(self.array.node, self.update.write)
        return dask.delayed(_set, pure=True)(handle, self.selection, self.data,
                                             dask_key_name=name)

    def record_measured(self, measured) -> None:
        pass

    def hand_over(self) -> None:
        if self.document != self.array.document:
            self.update.add_document(self.array.node, self.document)


def _set(handle, selection, data) -> tuple:
    handle[selection] = data
    return 0, float("nan")


def _nothing(*_) -> tuple:
    return 0, float("nan")


def _zarr_aligned(start: int, stop: int, step: int) -> tuple:
    """Block extents of ``start:stop`` cut at the multiples of ``step`` (one task per chunk).

    >>> _zarr_aligned(6, 17, 4)
    (2, 4, 4, 1)
    """
    edges = [start] + list(range(start - start % step + step, stop, step)) + [stop]
    return tuple(b - a for a, b in zip(edges, edges[1:]) if b > a) or (0,)


def _root_plan(update: Update, plans) -> None:
    """The root's consolidated metadata, updated with the changed documents (written last)."""
    root = update.read_document("")
    if root is None or root.get("node_type") != "group":
        return
    consolidated = (root.get("consolidated_metadata") or {}).get("metadata")
    if not isinstance(consolidated, dict):
        return
    changed = False
    for plan in plans:
        if plan.array.node in consolidated and consolidated[plan.array.node] != plan.document:
            consolidated[plan.array.node] = plan.document
            changed = True
    if changed:
        update.add_document("", root)


class _Root:
    """The root's document, handed over after every array's (see ``_root_plan``)."""

    verified = False

    def __init__(self, update, plans):
        self.update, self.plans = update, plans

    def writes(self):
        return dask.delayed(_nothing, pure=True)(
            dask_key_name="chunkpress-root-" + self.update.write)

    def record_measured(self, measured) -> None:
        pass

    def hand_over(self) -> None:
        _root_plan(self.update, self.plans)


def _run(update: Update, plans: list, compute: bool, opener):
    try:
        plans = [*plans, _Root(update, [p for p in plans])]
        writes = [plan.writes() for plan in plans]
    except BaseException:
        update.abort()
        update.close()
        raise
    job = WriteJob(writes, update, plans, opener)
    return job if not compute else job.compute()


# --- arrays: chunkpress.to_zarr(x, store, region=...) -----------------------------------------


def write_region(data, store, region, *, path=None, codec=None, params=None, verify=False,
                 compute=True, storage_options=None):
    """Rewrite the chunks of ``region`` (a tuple of slices, on chunk boundaries) of the
    chunkpress array at ``path`` of ``store`` with ``data``, in the store's codec and target.

    See the module for what a reader sees meanwhile. Returns the zarr array (or, with
    ``compute=False``, a ``dask.delayed`` that writes it).
    """
    node = (path or "").strip("/")
    update = Update(store, storage_options)
    try:
        array = update.array(node)
        if array.codec is None:
            raise ValueError(f"{node or 'the array'}: not a chunkpress array (no chunkpress "
                             "codec); write its region with zarr or xarray")
        selection = _region(region, array.shape, node or "the array")
        x = da.asarray(data) if not isinstance(data, (np.ndarray, da.Array)) else data
        want = tuple(s.stop - s.start for s in selection)
        if tuple(x.shape) != want:
            raise ValueError(f"data of shape {tuple(x.shape)} does not fit the region "
                             f"{_show(selection)} of shape {want}")
        array.check_given(node or "the array", codec, params)
        _check_chunk_aligned(array, selection, array.dims or None, node or "the array")
        plan = _compressed_plan(update, array, x, selection, array.shape, verify, staged=True)
    except BaseException:
        update.close()
        raise
    return _run(update, [plan], compute,
                lambda: zarr.open_array(_reopen(store, storage_options, update), path=node,
                                        mode="r"))


def _region(region, shape, name) -> tuple:
    if not isinstance(region, tuple) or len(region) != len(shape) or \
            not all(isinstance(s, slice) for s in region):
        raise TypeError(f"region must be a tuple of {len(shape)} slices (one per axis of "
                        f"{name}, shape {shape}), got {region!r}")
    out = []
    for axis, (s, n) in enumerate(zip(region, shape)):
        start, stop, step = s.indices(n)
        if step != 1 or (s.start is not None and not 0 <= s.start <= n) or \
                (s.stop is not None and not 0 <= s.stop <= n) or stop <= start:
            raise ValueError(f"region: axis {axis} takes a slice of 0..{n} with step 1 and "
                             f"at least one element, got {s!r}")
        out.append(slice(start, stop))
    return tuple(out)


def _show(selection) -> str:
    return "(" + ", ".join(f"{s.start}:{s.stop}" for s in selection) + ")"


def _check_chunk_aligned(array: StoreArray, selection, dims, name) -> None:
    step_of = array.grid_shape if array.sharded else array.chunk_shape
    what = "shard" if array.sharded else "chunk"
    for axis, (s, step, n) in enumerate(zip(selection, step_of, array.shape)):
        if not _aligned(s.start, s.stop, step, n):
            axis_name = repr(dims[axis]) if dims else f"axis {axis}"
            raise alignment_error(name, axis_name, s.start, s.stop, step, n, what)


def _compressed_plan(update, array: StoreArray, x, selection, new_shape, verify, staged):
    codec = array.codec
    compressed = compress_for_zarr(x, codec.spec.name, array.chunk_shape, verify,
                                   dict(codec.target))
    offset = tuple(s.start // c for s, c in zip(selection, array.chunk_shape))
    return _ArrayPlan(update, array, compressed, offset, new_shape, staged)


def _reopen(store, storage_options, update):
    if isinstance(store, (str, os.PathLike)) and "://" not in str(store):
        return os.fspath(store)
    return update.store if isinstance(store, str) else store


# --- datasets: the accessor's to_zarr(append_dim=...) and to_zarr(region=...) ------------------


def append_dataset(source: xr.Dataset, store, append_dim: str, *, codec=None, params=None,
                   compressed=None, verify=False, compute=True, storage_options=None):
    """Append ``source`` along ``append_dim`` to the dataset in ``store``.

    Every array of the store with ``append_dim`` must be in ``source``; the chunkpress
    ones are compressed with the store's codec, target and chunk shape (``codec``,
    ``params``: what the user gave, per variable or for all, in the variable's units; a
    conflict is an error), the others written exact with the store's CF encoding.
    ``compressed``: CompressedArrays already made (reused where their blocks fit).
    """
    return _update_dataset(source, store, append_dim=append_dim, codec=codec, params=params,
                           compressed=compressed, verify=verify, compute=compute,
                           storage_options=storage_options)


def region_dataset(source: xr.Dataset, store, region: dict, *, codec=None, params=None,
                   compressed=None, verify=False, compute=True, storage_options=None):
    """Rewrite ``region`` (``{dim: slice}``, on chunk boundaries) of the dataset in ``store``
    with ``source`` (see :func:`append_dataset` for codecs and encodings)."""
    return _update_dataset(source, store, region=region, codec=codec, params=params,
                           compressed=compressed, verify=verify, compute=compute,
                           storage_options=storage_options)


def _update_dataset(source, store, *, append_dim=None, region=None, codec=None, params=None,
                    compressed=None, verify=False, compute=True, storage_options=None):
    if not isinstance(source, xr.Dataset):
        raise TypeError(f"source must be an xarray Dataset, got {type(source).__name__}")
    if region is not None and not isinstance(region, dict):
        raise TypeError("region for a dataset is a dict from dimension name to slice, e.g. "
                        f"{{'time': slice(8, 12)}}, got {region!r}")
    update = Update(store, storage_options)
    try:
        plans = _dataset_plans(update, source, append_dim, region, codec, params or {},
                               compressed or {}, verify)
    except BaseException:
        update.close()
        raise
    return _run(update, plans, compute,
                lambda: zarr.open_group(_reopen(store, storage_options, update), mode="r"))


def _dataset_plans(update, source, append_dim, region, codec, params, compressed, verify):
    root = update.read_document("")
    if root is None or root.get("node_type") != "group":
        raise FileNotFoundError(f"{update.target}: no Zarr dataset (group) to "
                                f"{'append to' if append_dim else 'write a region of'}")
    nodes = _array_nodes(update, root)
    arrays = {name: update.array(name) for name in nodes}
    dims = {d: n for a in arrays.values() for d, n in zip(a.dims, a.shape)}
    if append_dim is not None:
        if append_dim not in dims:
            raise ValueError(f"append_dim={append_dim!r} is not a dimension of the store's "
                             f"arrays (its dimensions: {', '.join(map(str, dims))})")
        if append_dim not in source.dims:
            raise ValueError(f"append_dim={append_dim!r} is not a dimension of the dataset "
                             f"appended (its dimensions: {', '.join(map(str, source.dims))})")
        extending = {d: (dims[d], dims[d] + source.sizes[append_dim]) for d in [append_dim]}
        touched = {d for d in [append_dim]}
    else:
        for dim, s in region.items():
            if dim not in dims:
                raise ValueError(f"region: {dim!r} is not a dimension of the store's arrays "
                                 f"(its dimensions: {', '.join(map(str, dims))})")
            if not isinstance(s, slice):
                raise TypeError(f"region[{dim!r}] must be a slice, got {s!r}")
        extending = {}
        touched = set(region)
    for name in source.variables:
        if name not in arrays:
            raise ValueError(f"variable {name!r} is not in the store (its variables: "
                             f"{', '.join(arrays)}); an append or region write adds to the "
                             "store's variables only: drop it, or write a new store")
    for name, array in arrays.items():
        if touched & set(array.dims) and name not in source.variables:
            raise ValueError(f"the store's variable {name!r} has dimension "
                             f"{'/'.join(sorted(touched & set(array.dims)))} but is not in the "
                             "dataset given: every variable along it must be written, or the "
                             "store's variables would no longer agree; add it")
    for dim, n in source.sizes.items():
        if dim not in touched and dim in dims and dims[dim] != n:
            raise ValueError(f"dimension {dim!r} has {n} elements in the dataset, {dims[dim]} "
                             "in the store: they must agree")
    opened = _open_stored(update)
    stored = {name: {k: v for k, v in (opened.variables[name].encoding
                                       if name in opened.variables else {}).items()
                     if k in CF_ENCODINGS} for name in arrays}
    _check_per_variable(source, codec, params)
    plans = []
    for name, array in arrays.items():
        if name not in source.variables:
            continue
        var = source.variables[name]
        if tuple(var.dims) != array.dims:
            raise ValueError(f"variable {name!r} has dimensions {tuple(var.dims)}, the store's "
                             f"{array.dims}: transpose it to the store's order")
        if not touched & set(array.dims):
            _check_unchanged(opened, name, var)
            continue
        if append_dim is not None:
            axis = array.dims.index(append_dim)
            old, new = extending[append_dim]
            selection = tuple(slice(old, new) if d == append_dim else slice(0, n)
                              for d, n in zip(array.dims, array.shape))
            new_shape = tuple(new if d == append_dim else n
                              for d, n in zip(array.dims, array.shape))
        else:
            selection = _region(tuple(region.get(d, slice(None)) for d in array.dims),
                                array.shape, name)
            for d, s in zip(array.dims, selection):
                if d in region and source.sizes[d] != s.stop - s.start:
                    raise ValueError(f"region[{d!r}] = {s.start}:{s.stop} has "
                                     f"{s.stop - s.start} elements, the dataset "
                                     f"{source.sizes[d]} along {d!r}")
            new_shape = array.shape
        encoding = stored[name]
        given_codec = codec.get(name) if isinstance(codec, dict) else None
        if array.codec is None and given_codec is not None:
            raise ValueError(f"{name!r}: the store holds it exact (plain zarr); given "
                             f"codec={given_codec!r}. An append or region write keeps the "
                             "store's choice: compress it in a new store, or keep it exact")
        if array.codec is None:
            data = _encoded(var, encoding, name)
            plans.append(_ExactPlan(update, array, data.data, selection, new_shape))
            continue
        if append_dim is not None:
            _check_append_aligned(name, array, axis, append_dim)
        if append_dim is None:
            _check_chunk_aligned(array, selection, array.dims, name)
        scale = abs(float(encoding.get("scale_factor", 1.0))) or 1.0
        given = {k: (v.get(name) if isinstance(v, dict) else v) for k, v in params.items()}
        if given.get("tolerance") is not None and scale != 1.0:
            given["tolerance"] = float(given["tolerance"]) / scale
        array.check_given(repr(name), codec.get(name) if isinstance(codec, dict) else codec,
                          given)
        made = compressed.get(name)
        if made is not None and _fits(made, array):
            blocks = made
            offset = tuple(s.start // c for s, c in zip(selection, array.chunk_shape))
            plans.append(_ArrayPlan(update, array, blocks, offset, new_shape,
                                    staged=append_dim is None))
            continue
        data = _encoded(var, encoding, name, as_nan=True).data
        plans.append(_compressed_plan(update, array, data, selection, new_shape, verify,
                                      staged=append_dim is None))
    return plans


def _check_append_aligned(name, array: StoreArray, axis: int, dim) -> None:
    """An append starts on a chunk (shard) boundary, or is refused saying what aligns."""
    step = array.grid_shape[axis] if array.sharded else array.chunk_shape[axis]
    old = array.shape[axis]
    if old % step == 0:
        return
    what = "shard" if array.sharded else "chunk"
    fits = math.gcd(old, step)
    align = array.codec.spec.block_align(len(array.shape))[axis]
    advice = f"chunks of {fits} along {dim!r} (or of the length of every append)"
    if fits % align:
        advice = (f"chunks along {dim!r} that divide every append; {array.codec.spec.name} "
                  f"needs multiples of {align} there, so append {align} or a multiple of "
                  f"{align} at a time, or choose sz3, sperr or lerc, which take any chunk")
    raise ValueError(
        f"{name}: the store holds {old} elements along {dim!r}, which ends inside a {what} "
        f"(size {step}): an append must start on a {what} boundary, and chunkpress never "
        "decodes and re-encodes lossy values (their error could reach twice the bound). "
        f"Write the store from the original data with {advice}")


def _fits(compressed, array: StoreArray) -> bool:
    """Whether blocks made beforehand are the store's (codec, target, chunk shape)."""
    from .codecs import zarr_codec

    try:
        made = zarr_codec(compressed.codec, compressed.params)
    except (ValueError, TypeError):
        return False
    return made.spec.name == array.codec.spec.name and made.target == array.codec.target and \
        tuple(compressed.chunksize) == tuple(array.chunk_shape) and \
        all(all(c == axis[0] for c in axis[:-1]) for axis in compressed.chunks)


def _check_per_variable(source, codec, params) -> None:
    for values in [codec, *params.values()]:
        if isinstance(values, dict):
            for name in values:
                if name not in source.data_vars:
                    raise KeyError(f"variable {name!r} is given a parameter but is not a data "
                                   "variable of the dataset")


def _array_nodes(update, root) -> list:
    """The arrays of the dataset: the root's members (consolidated, or listed)."""
    consolidated = (root.get("consolidated_metadata") or {}).get("metadata")
    if isinstance(consolidated, dict):
        return sorted(n for n, d in consolidated.items()
                      if d.get("node_type") == "array" and "/" not in n)
    group = zarr.open_group(update.store, mode="r")
    return sorted(name for name, _ in group.arrays())


def _open_stored(update) -> xr.Dataset:
    """The store's dataset as xarray reads it (lazily: for encodings and coordinates)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(update.store, consolidated=None, chunks=None, zarr_format=3,
                            **_NO_INDEXES)


# no indexes (xarray >= 2025.7): they would read every coordinate, which grows with each append
_NO_INDEXES = {"create_default_indexes": False} if "create_default_indexes" in \
    inspect.signature(xr.open_zarr).parameters else {}


def _encoded(var: xr.Variable, encoding: dict, name, as_nan=False) -> xr.Variable:
    """``var`` CF-encoded as the store encodes it (its ``_FillValue`` as NaN with ``as_nan``:
    the codec keeps NaN exactly, and a fill value pushed into it would cost bytes)."""
    var = xr.Variable(var.dims, var.data, attrs={}, encoding=dict(encoding))
    encoded = encode_cf_variable(var, name=name)
    if as_nan:
        fill = encoded.attrs.get("_FillValue")
        if fill is not None and encoded.dtype.kind == "f" and np.isfinite(fill):
            data = encoded.data
            where = da if isinstance(data, da.Array) else np
            data = where.where(data == np.asarray(fill, encoded.dtype),
                               np.asarray(np.nan, encoded.dtype), data)
            encoded = xr.Variable(encoded.dims, data, attrs=encoded.attrs)
    return encoded


def _check_unchanged(stored: xr.Dataset, name, var) -> None:
    """A variable not along the update's dimensions is kept; an index must equal the store's."""
    if name not in var.dims:  # not an index coordinate: kept as stored
        return
    if not np.array_equal(np.asarray(stored[name].values), np.asarray(var.values)):
        raise ValueError(f"coordinate {name!r} differs from the store's: an append or region "
                         "write keeps the other dimensions' coordinates; select the store's "
                         "grid")
