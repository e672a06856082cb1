"""Appends and region writes: new chunks with the store's own codec and target, metadata last.

An update of an existing store never decodes a lossy chunk: it writes whole chunks only, so
an append must start where a chunk starts (the old length a multiple of the chunk along the
append dimension) and a region must begin and end on chunk boundaries (or at the array's end).
The codec, its target, the chunk shape, the write identifier and the ``missing`` value are
the store's own (read from each array's ``zarr.json``); a codec or parameter given that
differs from the store's is an error naming both. Exact variables (the time coordinate) are
written through zarr, which may rewrite their last chunk: they are lossless, so nothing drifts.

An update writes into the store itself (see ``update`` for what a reader sees meanwhile);
this module checks what is asked (the variables, their dimensions, chunk alignment) and makes
the plans (``update_plans``) that write it.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import warnings

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from xarray.conventions import decode_cf_variable, encode_cf_variable
from zarr.storage import LocalStore, StorePath

from .dataset import CF_ENCODINGS, checked_exact, missing_as_nan
from .journal import finish_pending
from .portable import certified_update
from .update import StoreArray, Update
from .update_plans import ArrayPlan, ExactPlan, compressed_plan, run

__all__ = ["append_dataset", "region_dataset", "write_region", "finish_pending",
           "StoreArray"]


# --- what an update may write -----------------------------------------------------------------


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


# --- arrays: chunkpress.to_zarr(x, store, region=...) -----------------------------------------


def write_region(data, store, region, *, path=None, codec=None, params=None, verify=False,
                 compute=True, storage_options=None):
    """Rewrite the chunks of ``region`` (a tuple of slices, on chunk boundaries) of the
    chunkpress array at ``path`` of ``store`` with ``data``, in the store's codec and target.

    See ``update`` for what a reader sees meanwhile. Returns the zarr array (or, with
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
        stored = np.dtype(array.handle.dtype)  # streams of another dtype: chunks unreadable
        if x.dtype.newbyteorder("=") != stored.newbyteorder("="):
            if not np.can_cast(x.dtype, stored, "safe"):
                raise ValueError(f"data of dtype {x.dtype} for an array of {stored}: give it "
                                 f"as {stored} (astype), or write a new array")
            x = x.astype(stored)
        array.check_given(node or "the array", codec, params)
        _check_chunk_aligned(array, selection, array.dims or None, node or "the array")
        plan = compressed_plan(update, array, x, selection, array.shape, verify, staged=True)
    except BaseException:
        update.close()
        raise
    return run(update, [plan], compute,
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
    return run(update, plans, compute, lambda: _published_group(store, storage_options, update))


def _published_group(store, storage_options, update) -> zarr.Group:
    """The dataset updated, to read. A local one from its root document, read here: zarr's
    open reads it through zarr's event loop (1 to 4 ms at every append of a loop)."""
    target = _reopen(store, storage_options, update)
    if isinstance(target, str) and update.local_root is not None:
        root = update.read_document("")
        if root is not None and root.get("node_type") == "group":
            return zarr.Group(zarr.AsyncGroup.from_dict(
                StorePath(LocalStore(target, read_only=True)), root))
    return zarr.open_group(target, mode="r")


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
    stored = _stored_encodings(update, arrays)
    opened = None  # the store through xarray, for the values of a coordinate kept
    _check_per_variable(source, codec, params)
    plans = []
    for name, array in arrays.items():
        if name not in source.variables:
            continue
        var = _unpacked(source.variables[name], name)
        if tuple(var.dims) != array.dims:
            raise ValueError(f"variable {name!r} has dimensions {tuple(var.dims)}, the store's "
                             f"{array.dims}: transpose it to the store's order")
        if not touched & set(array.dims):
            if name in var.dims:  # an index coordinate: it must be the store's
                opened = _open_stored(update) if opened is None else opened
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
            data = certified_update(_exact(var, encoding, name).data, array.document, name,
                                    codec, params)
            plans.append(ExactPlan(update, array, data, selection, new_shape))
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
            plans.append(ArrayPlan(update, array, blocks, offset, new_shape,
                                    staged=append_dim is None))
            continue
        data = _encoded(var, encoding, name, as_nan=True).data
        plans.append(compressed_plan(update, array, data, selection, new_shape, verify,
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
    """Whether blocks made beforehand are the store's (codec, target, chunk shape, dtype:
    float64 streams in a float32 array could not be read)."""
    from .codecs import zarr_codec

    if np.dtype(compressed.dtype) != np.dtype(array.handle.dtype):
        return False

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


def _stored_encodings(update, arrays: dict) -> dict:
    """Each array's CF encoding (``CF_ENCODINGS``) as xarray reads it from the store.

    It is a function of the arrays' documents but for their shapes, which an append changes:
    an append loop opens the store through xarray once, not at every step (3 ms each).
    """
    key = json.dumps({name: {k: v for k, v in array.document.items() if k != "shape"}
                      for name, array in arrays.items()}, sort_keys=True)
    known = _ENCODINGS.get(key)
    if known is None:
        opened = _open_stored(update)
        known = {name: {k: v for k, v in (opened.variables[name].encoding
                                          if name in opened.variables else {}).items()
                        if k in CF_ENCODINGS} for name in arrays}
        while len(_ENCODINGS) >= 64:
            _ENCODINGS.pop(next(iter(_ENCODINGS)), None)
        _ENCODINGS[key] = known
    return {name: dict(encoding) for name, encoding in known.items()}


#: the stored encodings of the stores updated last (see _stored_encodings), by their documents
_ENCODINGS: dict[str, dict] = {}


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
    """``var`` CF-encoded as the store encodes it (its missing cells as NaN with ``as_nan``,
    see ``dataset.missing_as_nan``)."""
    var = xr.Variable(var.dims, var.data, attrs={}, encoding=dict(encoding))
    encoded = encode_cf_variable(var, name=name)
    if var.dtype.kind == encoded.dtype.kind == "f" and encoded.dtype.itemsize < \
            var.dtype.itemsize and not {"scale_factor", "add_offset"} & set(encoded.attrs):
        # xarray casts, unchecked: 1e39 would be Inf, 1e8 + 0.5 off a tolerance of 0.01
        raise ValueError(f"{name!r}: its values are {var.dtype}, the store keeps "
                         f"{encoded.dtype}; give them as {encoded.dtype} (astype), or write a "
                         "new store")
    if as_nan:
        data = missing_as_nan(encoded.data, encoded.attrs)
        if data is not encoded.data:
            encoded = xr.Variable(encoded.dims, data, attrs=encoded.attrs)
    return encoded


def _unpacked(var: xr.Variable, name) -> xr.Variable:
    """``var``, or the values its raw integers stand for where they are packed by attributes
    (opened with mask_and_scale=False: scale_factor, add_offset and _FillValue attributes, not
    encoding), which the store's encoding then packs as it does: taken for the values
    themselves they were packed again (raw 8 with scale 0.01, offset 280: stored -27200)."""
    packing = {"scale_factor", "add_offset"}
    if var.dtype.kind not in "iu" or not packing & set(var.attrs) or packing & set(var.encoding):
        return var
    decoded = decode_cf_variable(name, var, decode_times=False, decode_timedelta=False)
    data = decoded.data if isinstance(decoded.data, da.Array) else np.asarray(decoded)
    return xr.Variable(var.dims, data, attrs=decoded.attrs, encoding=decoded.encoding)


def _exact(var: xr.Variable, encoding: dict, name) -> xr.Variable:
    """``var`` encoded for an exact variable of the store, or ValueError where the store's
    encoding cannot hold its values: xarray then changes the units (times at 12:00 in integer
    "days since" are encoded in hours, read back by the store's days: other dates) or casts
    (1e10 or NaN into int16: 0), with a warning only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said below, as an error
        encoded = _encoded(var, encoding, name)
    for key in ("units", "calendar"):
        if key in encoding and not _same_attribute(key, encoded.attrs.get(key, encoding[key]),
                                                   encoding[key]):
            raise ValueError(
                f"{name!r}: its values need {key} {encoded.attrs[key]!r}; the store keeps "
                f"{encoding[key]!r} (e.g. times at 12:00 in integer 'days since' units), in "
                "which they would read back as other values. Write a new store with "
                f"encoding {{{name!r}: {{{key!r}: {encoded.attrs[key]!r}}}}}, or give values "
                "the store's encoding holds")
    if encoded.dtype.kind not in "iub":
        return encoded
    # packed (scale_factor): within half a step of what was given, as the store promises
    return checked_exact(encoded, var.data, name,
                         kept=f"the store keeps it as {encoded.dtype} (exact)",
                         advice="Give values of its type, or write a new store")


def _same_attribute(key, a, b) -> bool:
    """Whether two CF units (or calendars) say the same: "days since 2000-01-01" is "days
    since 2000-01-01 00:00:00" (xarray writes either)."""
    if a == b:
        return True
    if key != "units" or not isinstance(a, str) or not isinstance(b, str):
        return False
    (unit_a, _, since_a), (unit_b, _, since_b) = a.partition(" since "), b.partition(" since ")
    if unit_a.strip().rstrip("s") != unit_b.strip().rstrip("s") or not since_a or not since_b:
        return False
    try:
        import pandas as pd

        return pd.Timestamp(since_a.strip()) == pd.Timestamp(since_b.strip())
    except (ValueError, TypeError, OverflowError):
        return since_a.strip() == since_b.strip()


def _check_unchanged(stored: xr.Dataset, name, var) -> None:
    """An index coordinate not along the update's dimensions must equal the store's."""
    if not np.array_equal(np.asarray(stored[name].values), np.asarray(var.values)):
        raise ValueError(f"coordinate {name!r} differs from the store's: an append or region "
                         "write keeps the other dimensions' coordinates; select the store's "
                         "grid")
