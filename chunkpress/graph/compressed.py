"""CompressedArray: a dask collection of compressed blocks, one key per block.

Each key's value is an ``Encoded`` block: the bytes, the block's shape and, with
``verify=True``, what was measured of it. The collection wraps a dask array of those blocks
(dtype object), so it runs on any scheduler, culls, fuses with the tasks that make its input
and persists in worker memory like any dask collection.

The figures (compressed sizes, ratio, errors) need the blocks to exist. ``compute()`` and, on
the local schedulers, ``persist()`` return a collection whose figures come with its blocks. Asking
a figure of a lazy collection compresses it once, as ``persist()`` would, keeps the blocks (in
worker memory under ``distributed``) and caches the figures: nothing is compressed twice, and
the memory that costs is the compressed size. After a ``distributed`` persist the figures are
fetched on first use by one small task per block, without moving the blocks.
"""

from __future__ import annotations

import copy
import math

import dask
import dask.array as da
import numpy as np
from dask.task_spec import DataNode
from dask.base import DaskMethodsMixin
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph

from . import build, codecs, measure, plan

_FIELDS = ("nbytes", "max_error", "sse", "count", "lo", "hi", "corrected", "max_rel_error")


class CompressedArray(DaskMethodsMixin):
    """Compressed blocks of an array, with the codec and target they were made with."""

    def __init__(self, blocks: da.Array, dtype, codec, target: dict, verify: bool = False,
                 figures: dict | None = None, recipe: build.Recipe | None = None,
                 attributes: dict | None = None):
        self._blocks = blocks
        self._recipe = recipe  # how the lazy blocks are made; dropped once they exist
        self._dtype = np.dtype(dtype)
        self._codec = codec
        self._target = dict(target)
        self._verify = bool(verify)
        self._attributes = dict(attributes or {})
        self._figures = figures
        self._pending = None  # the figures of persisted blocks, persisted beside them
        if self._figures is None:
            self._figures = _local_figures(blocks)

    # --- what it is ----------------------------------------------------------------------

    name = property(lambda self: self._blocks.name)
    shape = property(lambda self: self._blocks.shape)
    ndim = property(lambda self: self._blocks.ndim)
    size = property(lambda self: self._blocks.size)
    chunks = property(lambda self: self._blocks.chunks)
    chunksize = property(lambda self: self._blocks.chunksize)
    numblocks = property(lambda self: self._blocks.numblocks)
    npartitions = property(lambda self: self._blocks.npartitions)
    dtype = property(lambda self: self._dtype)
    codec = property(lambda self: self._codec.name, doc="the codec's name, e.g. 'zfp'")
    spec = property(lambda self: self._codec, doc="the codec's entry in the registry")
    params = property(lambda self: dict(self._target), doc="the global target it was made with")
    verified = property(lambda self: self._verify)

    @property
    def error_bound(self) -> float | None:
        """The max absolute error its target guarantees (0: lossless), or None where the
        target bounds no error (a rate, a precision, a PSNR)."""
        return codecs.bound(self._codec, self._target)

    @property
    def relative_bound(self) -> float | None:
        """The max relative error its target guarantees: |x - y| <= r * max(|x|, tiny) for
        every finite value (tiny: the dtype's smallest normal number); 0 for lossless, None
        where the target bounds none (see ``chunkpress.kernels.registry.Descriptor``)."""
        return codecs.relative_bound(self._codec, self._target)

    @property
    def attributes(self) -> dict:
        """What a store keeps beside its blocks as array attributes: how a bit rounding was
        chosen (``chunkpress.graph.information``); codec="auto" records its choice."""
        return dict(self._attributes)

    def with_attributes(self, attributes: dict) -> CompressedArray:
        """Return the same blocks with ``attributes`` added to those a store keeps."""
        out = copy.copy(self)
        out._attributes = {**self._attributes, **attributes}
        return out

    @property
    def blocks(self) -> da.Array:
        """The dask array of ``Encoded`` blocks (dtype object), one per block of the array."""
        return self._blocks

    @property
    def recipe(self) -> build.Recipe | None:
        """How the blocks are made (input, codec, arguments), while they are lazy; else None.

        A writer may encode and store several blocks in one task from it (see
        ``chunkpress.storage.writer.write_blocks``): each block is still encoded once, the
        same way.
        """
        if self._recipe is None or _is_materialized(self._blocks):
            return None
        return self._recipe

    @property
    def raw_nbytes(self) -> int:
        """Bytes of the uncompressed array."""
        return self.size * self._dtype.itemsize

    # --- the figures (computed on first use, see the module docstring) -------------------

    @property
    def block_nbytes(self) -> np.ndarray:
        """Compressed bytes of each block, shaped like the block grid."""
        return self._figure("nbytes").astype(np.int64)

    @property
    def nbytes(self) -> int:
        """Compressed bytes of the whole array."""
        return int(self.block_nbytes.sum())

    @property
    def ratio(self) -> float:
        """Uncompressed over compressed bytes."""
        nbytes = self.nbytes
        return self.raw_nbytes / nbytes if nbytes else math.inf

    @property
    def bits_per_value(self) -> float:
        """Compressed bits per array value."""
        return 8 * self.nbytes / self.size if self.size else 0.0

    @property
    def block_max_error(self) -> np.ndarray | None:
        """Each block's measured max absolute error (``verify=True`` only, else None)."""
        return self._figure("max_error") if self._verify else None

    @property
    def max_error(self) -> float | None:
        """Measured max absolute error of the finite values (``verify=True`` only, else None)."""
        errors = self.block_max_error
        return None if errors is None else float(np.max(errors, initial=0.0))

    @property
    def max_rel_error(self) -> float | None:
        """Measured max |x - y| / |x| of the finite values (zeros decode to zeros), where
        ``verify=True`` certified a ``rel_tolerance``; else None."""
        if not self._verify:
            return None
        errors = self._figure("max_rel_error")
        errors = errors[~np.isnan(errors)]
        return float(np.max(errors, initial=0.0)) if errors.size else None

    @property
    def corrected(self) -> int | None:
        """Values the codec left outside the bound, stored exactly (``verify=True`` only)."""
        return int(self._figure("corrected").sum()) if self._verify else None

    @property
    def value_range(self) -> float | None:
        """max - min of the finite values (``verify=True`` only)."""
        if not self._verify:
            return None
        lo, hi = np.min(self._figure("lo"), initial=math.inf), np.max(self._figure("hi"),
                                                                      initial=-math.inf)
        return float(hi - lo) if hi >= lo else 0.0

    @property
    def psnr(self) -> float | None:
        """Measured PSNR (dB) of the whole array, over its global range (``verify=True``)."""
        if not self._verify:
            return None
        return plan.psnr_from_sse(float(self._figure("sse").sum()),
                                  int(self._figure("count").sum()), self.value_range)

    def _figure(self, field: str) -> np.ndarray:
        if self._figures is None:
            self._figures = self._compute_figures()
        return self._figures[field]

    def _compute_figures(self) -> dict:
        if self._pending is not None:
            cells, self._pending = self._pending.compute(), None
            return _figures_from(cells.reshape(self.numblocks))
        if not _is_materialized(self._blocks):
            # compress once and keep the blocks, as persist() does
            persisted = self.persist()
            self._blocks = persisted._blocks
            if persisted._figures is not None:
                return persisted._figures
        cells = build.figures_array(self._blocks).compute()
        return _figures_from(cells.reshape(self.numblocks))

    def persist(self, **kwargs) -> CompressedArray:
        """Return the collection with its blocks in memory (in the workers' under distributed).

        Each block's figures (a few numbers) are computed in the same go, beside the block,
        so that the sizes and errors later cost one small fetch and no further tasks.
        """
        if self._figures is not None or _is_materialized(self._blocks):
            return super().persist(**kwargs)
        blocks, figures = dask.persist(self._blocks, build.figures_array(self._blocks), **kwargs)
        persisted = CompressedArray(blocks, **self._meta())
        if persisted._figures is None:
            persisted._pending = figures
        return persisted

    # --- dask collection protocol --------------------------------------------------------

    def __dask_graph__(self):
        return self._blocks.__dask_graph__()

    def __dask_keys__(self):
        return self._blocks.__dask_keys__()

    def __dask_layers__(self):
        return self._blocks.__dask_layers__()

    def __dask_tokenize__(self):
        return self.name

    __dask_optimize__ = staticmethod(da.Array.__dask_optimize__)
    __dask_scheduler__ = staticmethod(da.Array.__dask_scheduler__)

    def __dask_postcompute__(self):
        return _finalize, (self._blocks.name, self._blocks.chunks, self._meta())

    def __dask_postpersist__(self):
        rebuild, args = self._blocks.__dask_postpersist__()
        return _rebuild, (rebuild, args, self._meta())

    def _meta(self) -> dict:
        return {"dtype": self._dtype, "codec": self._codec, "target": self._target,
                "verify": self._verify, "attributes": self._attributes}

    # --- display -------------------------------------------------------------------------

    def __repr__(self) -> str:
        target = ", ".join(f"{k}={v!r}" for k, v in self._target.items())
        chunks = self.chunksize if self.ndim else ()
        lines = [
            f"<chunkpress.CompressedArray {self.codec}" + (f" {target}" if target else ""),
            f"  shape={self.shape} dtype={self._dtype} chunksize={chunks} "
            f"blocks={math.prod(self.numblocks)}",
        ]
        if self._figures is None:
            lines.append(f"  {_size(self.raw_nbytes)} raw; compressed size not computed yet "
                         "(.persist(), .compute() or .nbytes computes it)>")
            return "\n".join(lines)
        lines.append(f"  compressed {_size(self.nbytes)} of {_size(self.raw_nbytes)}: "
                     f"ratio {self.ratio:.3g}, {self.bits_per_value:.3g} bits per value")
        if self._verify:
            bound = self.error_bound
            line = f"  verified: max error {self.max_error:.3g}"
            line += f" <= {bound:g}" if bound else ""
            rel = self.max_rel_error
            if rel is not None:
                line += f", max relative error {rel:.3g}"
                line += f" <= {self._target['rel_tolerance']:g}" \
                    if "rel_tolerance" in self._target else ""
            psnr = self.psnr
            line += f", PSNR {psnr:.4g} dB" if math.isfinite(psnr) else ""
            line += f", {self.corrected} values corrected"
            lines.append(line)
        return "\n".join(lines) + ">"

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d CompressedArray")
        return self.shape[0]


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.4g} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return ""  # pragma: no cover


def _finalize(results, name, chunks, meta) -> CompressedArray:
    """Return a CompressedArray holding the computed blocks themselves."""
    keys = [(name, *index) for index in np.ndindex(*(len(c) for c in chunks))] if chunks \
        else [(name,)]
    values = list(flatten(results)) if chunks else [results]
    layer = {key: DataNode(key, value) for key, value in zip(keys, values)}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    blocks = da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), object))
    return CompressedArray(blocks, **meta)


def _rebuild(dsk, rebuild, args, meta, rename=None) -> CompressedArray:
    return CompressedArray(rebuild(dsk, *args, rename=rename), **meta)


def _is_materialized(blocks: da.Array) -> bool:
    """Whether the graph is the blocks alone (computed, or persisted on a cluster)."""
    graph = blocks.__dask_graph__()
    if len(getattr(graph, "layers", ())) > 1:
        return False  # the input's layers are still there: lazy
    keys = set(flatten(blocks.__dask_keys__()))
    return len(graph) == len(keys) and all(key in keys for key in graph)


def _local_figures(blocks: da.Array) -> dict | None:
    """Return the figures when every block is already here, else None."""
    if not _is_materialized(blocks):
        return None
    graph = blocks.__dask_graph__()
    cells = []
    for key in flatten(blocks.__dask_keys__()):
        value = graph[key]
        value = value.value if isinstance(value, DataNode) else value
        if not isinstance(value, measure.Encoded):
            return None
        cells.append(build.block_figures(value))
    grid = np.empty(len(cells), object)
    for i, cell in enumerate(cells):
        grid[i] = cell
    return _figures_from(grid.reshape(blocks.numblocks))


def _figures_from(cells: np.ndarray) -> dict:
    out = {}
    for i, field in enumerate(_FIELDS):
        values = np.empty(cells.shape, np.float64)
        for index in np.ndindex(*cells.shape):
            values[index] = cells[index][i]
        out[field] = values
    return out
