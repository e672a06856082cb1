"""to_zarr(portable=True) of one array: zarr's own codecs write each chunk, in tasks that
certify the block first (see ``chunkpress.storage.portable``)."""

from __future__ import annotations

import json
import warnings

import numpy as np

from .portable import ATTRIBUTE, Portable, certify, portable_for

__all__ = ["PortableArrayWrite", "to_zarr_portable"]


class PortableArrayWrite:
    """One array of a write through zarr's own codecs: certified block by block by the tasks
    that write it (a block outside the bound fails the write: nothing is published)."""

    def __init__(self, destination, node: str, x, chosen: Portable, *, chunks,
                 attributes=None, dimension_names=None, document=None):
        import zarr
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync
        from zarr.storage import MemoryStore

        self.destination = destination
        self.node = node
        self.x = x
        self.chosen = chosen
        if document is None:
            memory = MemoryStore()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zarr.create_array(memory, shape=x.shape, chunks=chunks, dtype=x.dtype,
                                  filters=list(chosen.filters) or None,
                                  compressors=list(chosen.compressors),
                                  fill_value=np.nan if x.dtype.kind == "f" else None,
                                  attributes=attributes, dimension_names=dimension_names,
                                  zarr_format=3,
                                  chunk_key_encoding=destination.key_encoding(node))
            document = json.loads(sync(memory.get("zarr.json", default_buffer_prototype()))
                                  .to_bytes())
        document = dict(document)
        document["chunk_key_encoding"] = destination.key_encoding(node)
        document["attributes"] = {**(document.get("attributes") or {}),
                                  ATTRIBUTE: self.attribute()}
        self.document = document
        if destination.documents_first:
            self.hand_over()

    def attribute(self, measured=None) -> dict:
        entry = {"codecs": self.chosen.description}
        for name in ("tolerance", "rel_tolerance"):
            if getattr(self.chosen, name):
                entry[name] = getattr(self.chosen, name)
        if measured is not None:
            entry["measured_error"] = measured[0]
            if self.chosen.rel_tolerance:
                entry["measured_rel_error"] = measured[1]
        return entry

    def writes(self):
        """The delayed that certifies and writes every block; its value: (blocks, (max
        absolute error, max relative error), what the tasks returned)."""
        import dask
        import dask.array as da

        from .dataset import unpublished_array

        x = da.asarray(self.x)
        grid = tuple(self.document["chunk_grid"]["configuration"]["chunk_shape"])
        x = x.rechunk(grid)  # one task per zarr chunk: two tasks never write the same object
        # every chunk written, a chunk of fill values too: publishing checks none is absent
        # (a handle's own config: zarr.config.set is one global, not a task's)
        target = unpublished_array(self.destination.store, self.destination.path(self.node),
                                   self.document, config={"write_empty_chunks": True})
        starts = [np.cumsum((0,) + axis) for axis in x.chunks]
        parts = []
        for index, block in zip(np.ndindex(*x.numblocks), x.to_delayed().ravel()):
            region = tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, index))
            parts.append(dask.delayed(_write_block, pure=False)(
                block, target, region, self.chosen, self.destination.returns))
        return dask.delayed(_gathered, pure=False)(parts)

    def record_measured(self, measured) -> None:
        self.document["attributes"][ATTRIBUTE] = self.attribute(measured)

    def hand_over(self) -> None:
        self.destination.add_document(self.node, self.document)


def _write_block(block, target, region, chosen: Portable, returns):
    errors = certify(block, chosen)
    target[region] = block
    return errors, [] if returns is None else [returns(target.store_path.store)]


def _gathered(parts) -> tuple:
    errors = [e for e, _ in parts]
    worst = (max((e[0] for e in errors), default=0.0), max((e[1] for e in errors), default=0.0))
    return len(parts), worst, [r for _, returned in parts for r in returned]


def to_zarr_portable(data, store, *, tolerance=None, rel_tolerance=None, chunks="auto",
                     path=None, overwrite=False, compute=True, attributes=None,
                     dimension_names=None, storage_options=None):
    """``chunkpress.to_zarr(..., portable=True)``: see :func:`chunkpress.to_zarr`."""
    import dask.array as da

    from . import publish
    from .writer import WriteJob, reopen

    x = data if isinstance(data, da.Array) else da.asarray(data, chunks=chunks)
    if not x.dtype.isnative:  # a big-endian array: numcodecs' filters know native types only
        x = x.astype(x.dtype.newbyteorder("="))
    if isinstance(data, da.Array) and chunks != "auto":
        x = x.rechunk(chunks)
    if x.ndim == 0:
        raise ValueError("portable=True: data must have at least one dimension")
    chosen = portable_for(x, tolerance, rel_tolerance)
    destination = publish.open_destination(store, path, overwrite=overwrite,
                                           storage_options=storage_options)
    try:
        plan = PortableArrayWrite(destination, "", x, chosen,
                                  chunks=tuple(max(1, c[0]) for c in x.chunks),
                                  attributes=attributes, dimension_names=dimension_names)
        writes = [plan.writes()]
    except BaseException:
        destination.abort()
        destination.close()
        raise

    def opened():
        import zarr

        target = reopen(store, storage_options, destination)
        return zarr.open_array(target, path=path, mode="r")

    job = WriteJob(writes, destination, [plan], opened)
    return job if not compute else job.compute()
