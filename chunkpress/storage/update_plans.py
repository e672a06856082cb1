"""What an update writes, one plan per array: the tasks that write its chunks, and the new
document each hands to the :class:`~.update.Update` when they are done.

The plans have the face ``writer.WriteJob`` expects (``writes``, ``record_measured``,
``hand_over``): :class:`ArrayPlan` a compressed array (whole chunks, with the store's codec
and target), :class:`ExactPlan` an exact variable (through zarr, lossless), :class:`RootPlan`
the root's consolidated metadata, handed over last. :func:`run` makes them one write job.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import os

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.core import flatten
from dask.task_spec import List, TaskRef
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import MemoryStore

from .dataset import unpublished_array
from .reader import MEASURED, MEASURED_RELATIVE, with_written, written
from .update import StagedSink, StoreArray, Update
from .writer import ChunkSink, WriteJob, compress_for_zarr, one_task, write_blocks

__all__ = ["ArrayPlan", "ExactPlan", "RootPlan", "run", "compressed_plan"]


class ArrayPlan:
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

    def writes(self, first=()):
        shard = self.array.grid_shape if self.array.sharded else None
        return write_blocks(self.compressed, self.sink, shard, self.offset, first)

    def record_measured(self, measured: float) -> None:
        """The measured error covers the whole array only if the old one did and this did."""
        attributes = dict(self.document.get("attributes") or {})
        old = attributes.pop(MEASURED, None)
        attributes.pop(MEASURED_RELATIVE, None)  # not measured on the new chunks
        if self.verified and isinstance(old, (int, float)) and math.isfinite(measured):
            attributes[MEASURED] = max(float(old), float(measured))
        self.document["attributes"] = attributes

    def hand_over(self) -> None:
        if self.document != self.array.document:
            self.update.add_document(self.array.node, self.document)
        else:
            self.update.guard(self.array.node, self.document)


class ExactPlan:
    """An exact variable of an update, written through zarr (lossless: a partial chunk is
    read and rewritten whole, so nothing drifts)."""

    verified = False

    def __init__(self, update: Update, array: StoreArray, data, selection, new_shape):
        self.update = update
        self.array = array
        self.document = array.new_document(new_shape)
        if written(array.document) == array.shape:  # every chunk, as before: written whole
            self.document = with_written(self.document, new_shape)
        self.data = data
        self.selection = selection
        self.pending = None
        grid = array.grid_shape
        # an append from a chunk boundary only adds objects beyond the old shape, which no
        # reader reads and an abort removes: it may run before the compressed blocks
        self.only_new = tuple(new_shape) != array.shape and \
            all(s.start % g == 0 for s, g in zip(selection, grid))
        keys = _touched_keys(array.handle.metadata, grid, selection)
        self.staged = None
        if self.only_new:
            update.expect(array.node, keys, new=True, checked=False)
        elif update.local_root is not None:
            # chunks that exist (a region, or an append into a partial last chunk) are made
            # beside their keys and renamed in at publish with the compressed ones: a write
            # that stops leaves them as they were (through zarr in place, a failed region
            # write left new times beside old data)
            self.staged = _StagedExact(update, array, self.document)
            update.expect(array.node, keys, new=False, staged_sink=self.staged.sink)

    def start(self) -> None:
        """Begin writing the values now, on a thread of this process, if they are in memory
        and only add chunks beyond the old shape (an append from a chunk boundary): the write
        job's ``compute`` waits for it (:meth:`settle`) before publishing or removing
        anything. As a dask task beside compressing threads, zarr's round trip to its event
        loop waits for the GIL at each switch (0.5 ms alone, 4 to 5 ms beside two encoding
        threads, where a block takes 6: 5% of a 24 MiB append)."""
        if self.only_new and not isinstance(self.data, da.Array):
            self.pending = _background().submit(_set, self.update.store, self.array.node,
                                                self.document, self.selection, self.data)

    def settle(self, quiet: bool = False) -> None:
        """Wait for what :meth:`start` began; raise its error unless ``quiet``."""
        if self.pending is not None:
            concurrent.futures.wait([self.pending])
            if not quiet:
                self.pending.result()

    def writes(self):
        if self.pending is not None:
            return one_task("chunkpress-exact-" + tokenize(self.array.node, self.update.write),
                            _nothing)
        if isinstance(self.data, da.Array):
            handle = self.staged or unpublished_array(self.update.store, self.array.node,
                                                      self.document)
            chunks = tuple(_zarr_aligned(s.start, s.stop, c) for s, c in
                           zip(self.selection, self.array.grid_shape))
            stored = da.store(self.data.rechunk(chunks), handle, regions=self.selection,
                              lock=False, compute=False)
            # a Delayed in older dask, an Array of one store task a block since 2025
            keys = list(flatten(stored.__dask_keys__()))
            return one_task("chunkpress-exact-" + tokenize(keys), _nothing,
                            List(*(TaskRef(k) for k in keys)), dependencies=[stored])
        name = "chunkpress-exact-" + tokenize(self.array.node, self.update.write)
        if self.staged is not None:
            return one_task(name, _staged_set, self.staged, self.selection, self.data)
        return one_task(name, _set, self.update.store, self.array.node, self.document,
                        self.selection, self.data)

    def record_measured(self, measured) -> None:
        pass

    def hand_over(self) -> None:
        if self.document != self.array.document:
            self.update.add_document(self.array.node, self.document)


class _StagedExact:
    """Where an exact variable's values go when its chunks exist already: ``target[sel] =
    values`` (as ``da.store`` writes a block) encodes the chunks ``sel`` touches with the
    array's own codecs, each read whole first (zarr rewrites a partial chunk whole), in
    memory, and puts each beside its key under the update's staged name."""

    def __init__(self, update: Update, array: StoreArray, document: dict):
        self.root = update.local_root
        self.node = array.node
        self.document = document
        self.grid = array.grid_shape
        handle = unpublished_array(update.store, array.node, document)
        self.metadata = handle.metadata
        self.sink = StagedSink(update.store, array.node, handle.metadata, None, update.write)

    def __setitem__(self, selection, values) -> None:
        keys = _touched_keys(self.metadata, self.grid, selection)
        memory = MemoryStore()
        prefix = f"{self.node}/" if self.node else ""
        for key in keys:
            try:
                with open(os.path.join(self.root, prefix + key), "rb") as file:
                    data = default_buffer_prototype().buffer.from_bytes(file.read())
                sync(memory.set(prefix + key, data))
            except FileNotFoundError:  # fill values: zarr left the chunk out
                pass
        # every chunk touched is put, fill values too: a rename stands for each
        handle = unpublished_array(memory, self.node, self.document,
                                   {"write_empty_chunks": True})
        handle[tuple(selection)] = values
        for key in keys:
            chunk = sync(memory.get(prefix + key, default_buffer_prototype()))
            self.sink.put(self.sink.staged(key), [chunk.to_bytes()])


def _touched_keys(metadata, grid, selection) -> list:
    """The keys of the chunks (of shape ``grid``) that ``selection`` (slices) touches."""
    ranges = [range(s.start // g, -(-s.stop // g)) for s, g in zip(selection, grid)]
    return [metadata.encode_chunk_key(index) for index in itertools.product(*ranges)]


def _staged_set(staged: _StagedExact, selection, data) -> tuple:
    staged[selection] = data
    return 0, float("nan")


def _set(store, node, document, selection, data) -> tuple:
    unpublished_array(store, node, document)[selection] = data
    return 0, float("nan")


_executor = []


def _background() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread that writes exact variables beside a local write's tasks."""
    if not _executor:
        _executor.append(concurrent.futures.ThreadPoolExecutor(1, "chunkpress-exact"))
    return _executor[0]


def _nothing(*_) -> tuple:
    return 0, float("nan")


def _on_a_cluster() -> bool:
    """Whether dask's scheduler now is not this process's threads or the synchronous one."""
    import dask.local
    import dask.threaded
    from dask.base import get_scheduler

    return get_scheduler() not in (None, dask.threaded.get, dask.local.get_sync)


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


class RootPlan:
    """The root's document, handed over after every array's (see ``_root_plan``)."""

    verified = False

    def __init__(self, update, plans):
        self.update, self.plans = update, plans

    def writes(self):
        return one_task("chunkpress-root-" + self.update.write, _nothing)

    def record_measured(self, measured) -> None:
        pass

    def hand_over(self) -> None:
        _root_plan(self.update, self.plans)


def run(update: Update, plans: list, compute: bool, opener):
    try:
        plans = [*plans, RootPlan(update, [p for p in plans])]
        if update.icechunk and compute and _on_a_cluster():
            raise ValueError(
                "an append or region write into an Icechunk session runs on this process's "
                "threads (its writable session does not go to a cluster's workers): run it "
                "within dask.config.set(scheduler='threads'), nothing was written")
        if update.icechunk:
            # Icechunk refuses a chunk beyond an array's shape: the arrays are extended in the
            # session first (nothing is visible before the user commits; an abort puts the
            # old documents back)
            update.extend_first({p.array.node: p.document for p in plans
                                 if isinstance(p, (ArrayPlan, ExactPlan))
                                 and p.document.get("shape") != p.array.document.get("shape")})
        if compute:
            for plan in plans:
                if isinstance(plan, ExactPlan):
                    plan.start()
        # the first group of blocks waits for the exact variables' appends not begun above
        # (lazy values), so that dask runs them first: last, a write through zarr adds its
        # round trip to zarr's event loop (2 to 5 ms) to every append. A region's exact
        # chunks, staged, stay as dask orders them.
        writes = [None if isinstance(p, ArrayPlan) else p.writes() for p in plans]
        first = [w for p, w in zip(plans, writes)
                 if getattr(p, "only_new", False) and getattr(p, "pending", None) is None]
        for number, plan in enumerate(plans):
            if writes[number] is None:
                writes[number], first = plan.writes(first), []
    except BaseException:
        for plan in plans:  # what began beside the tasks lands before the abort removes it
            if isinstance(plan, ExactPlan):
                plan.settle(quiet=True)
        update.abort()
        update.close()
        raise
    job = WriteJob(writes, update, plans, opener)
    return job if not compute else job.compute()


def compressed_plan(update, array: StoreArray, x, selection, new_shape, verify, staged):
    codec = array.codec
    compressed = compress_for_zarr(x, codec.spec.name, array.chunk_shape, verify,
                                   dict(codec.target))
    offset = tuple(s.start // c for s, c in zip(selection, array.chunk_shape))
    return ArrayPlan(update, array, compressed, offset, new_shape, staged)
