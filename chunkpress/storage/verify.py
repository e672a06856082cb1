"""verify: a whole store checked, chunk by chunk: present, at its place, its checksum good.

Nothing is decoded to check the chunks: each chunk object (a shard: its index, then every
inner chunk in it) is read once, its CRC-32C computed and its place record parsed (see
``integrity``), so verify runs at the speed the bytes are read. Given the original data
(``against=``), every chunk is also decoded and compared with it: the max error, in the
variable's own (decoded) units, against the bound the array's metadata records.

What can be checked depends on who wrote the chunks. chunkpress writes every chunk with its
place record (the codec's configuration then has a ``write`` field): a chunk missing, moved,
copied from another place or another array is caught. Chunks zarr wrote itself (xarray's own
appends) carry the write but no place: zarr gives codecs no chunk coordinates. An array whose
codec has no ``write`` (a store zarr or xarray wrote with a chunkpress codec) has no place
records at all: only the CRCs are checked, and an absent chunk is zarr's fill value, not a
problem (zarr leaves out chunks that hold only the fill value). The exact variables
chunkpress writes (zarr's codecs, then crc32c) have no place records either, but every chunk
written (``reader.WRITTEN``): one absent is a problem.

Against the original, each array is held to the bound its store claims, read from the store
itself: a chunkpress array's from its codec's configuration (``tolerance``: absolute;
``rel_tolerance``: |x - y| <= r |x|; bit rounding's and quantization's parameters: r max(|x|,
tiny), tiny the dtype's smallest normal number; both where both are claimed); a portable
array's (numcodecs' filters) from the bounds its ``chunkpress_portable`` attribute records;
an exact array (lossless: chunkpress's exact variables, portable ones without a filter) must
give back the original's values. NaN and ±Inf must match in every array, and under a relative
bound a zero stays zero. An array with none of these (zarr's or xarray's own) is measured, not
held to a bound.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import Crc32cCodec
from zarr.storage import LocalStore, ZipStore

from ..graph import codecs, measure
from ..kernels import ChunkpressError
from . import integrity, portable, publish, reader, shards

__all__ = ["verify", "summary"]

COLUMNS = ["array", "chunk", "object", "problem"]
ARRAY_COLUMNS = ["array", "checks", "chunks", "stored_bytes", "unplaced_chunks",
                 "absent_chunks", "error_bound", "max_error", "rel_bound", "max_rel_error",
                 "compared"]
#: chunk objects read at once (local files and object stores alike wait on I/O)
READERS = min(16, 2 * (os.cpu_count() or 1))


def verify(store, path=None, *, against=None, storage_options=None) -> pd.DataFrame:
    """Check every chunk of every array of ``store`` (at ``path``); one row per problem.

    A row names the array, the chunk (its grid index; an inner chunk of a shard by its index
    in the whole array), the object that holds it and the problem. No rows: no problem found.
    ``against``: the original data (a netCDF or Zarr path, an xarray Dataset or DataArray, a
    numpy or dask array for a store of one array): every chunk is decoded and the max error,
    in the variable's decoded units, must be within the bound the array's metadata records.

    ``.attrs["arrays"]`` is one row per array (what was checked, chunks, bytes, bound, max
    error measured); ``.attrs["summary"]`` the totals; :func:`summary` says it in one line.
    """
    opened = reader.read_store(store, storage_options)
    try:
        publish.check_complete(opened, path, storage_options)
    except publish.IncompleteStoreError as exc:
        return _table([_row(path or "/", None, "", str(exc))], [])
    node = _open(opened, path, store)
    members = reader.arrays_of(node)
    originals = _Originals(against, members) if against is not None else None
    problems, arrays = _consolidated_problems(node, members), []
    local = all(isinstance(array.store_path.store, (LocalStore, ZipStore))
                for _, array in members)
    # local files come from the page cache at memory speed, and the CRC holds the GIL for
    # chunks under 1 MiB: threads only add hand-overs there (object stores wait on I/O)
    with (_Inline() if local and originals is None else ThreadPoolExecutor(READERS)) as pool:
        for name, array in members:
            found, stats = _check_array(name, array, pool)
            problems += found
            if originals is not None and stats["checks"] != "none":
                original = originals.get(name, array)
                if original is None:
                    stats["checks"] += "; not compared: not in the original"
                else:
                    bad = {row["chunk"] for row in found}
                    problems += _compare(name, array, original, bad, stats, pool)
            arrays.append(stats)
    return _table(problems, arrays)


def summary(problems: pd.DataFrame) -> str:
    """One line: what verify checked and what it found."""
    totals = problems.attrs.get("summary", {})
    found = len(problems)
    text = (f"{totals.get('arrays', 0)} arrays, {totals.get('chunks', 0)} chunks, "
            f"{totals.get('stored_bytes', 0) / 2**20:.1f} MiB checked: "
            f"{'no problem found' if not found else f'{found} problem(s)'}")
    notes = []
    exact = totals.get("exact", 0)
    if exact:
        notes.append(f"{exact} exact array(s) (lossless, chunkpress's): chunks present and "
                     "checksums, no place records")
    held = totals.get("portable", 0)
    if held:
        notes.append(f"{held} portable array(s) (numcodecs' filters, chunkpress's): chunks "
                     "present and checksums, no place records")
    if totals.get("crc_only", 0) - exact - held:
        notes.append(f"{totals['crc_only'] - exact - held} array(s) without place records "
                     "(written by zarr or xarray): checksums only")
    compared = [f"{totals[key]} {what}" for key, what in (
        ("compared_absolute", "within an absolute bound"),
        ("compared_relative", "within a relative bound"),
        ("compared_exact", "exact"), ("compared_unbounded", "with no bound recorded: "
                                      "measured only")) if totals.get(key)]
    if compared:
        notes.append("compared with the original: " + ", ".join(compared))
    if totals.get("unplaced_chunks"):
        notes.append(f"{totals['unplaced_chunks']} chunk(s) written by zarr itself: place not "
                     "recorded")
    if totals.get("other"):
        notes.append(f"{totals['other']} array(s) not chunkpress's: not checked")
    return text + "".join(f"; {n}" for n in notes)


# --- the chunks ----------------------------------------------------------------------------


def _open(opened, path, store):
    # not through consolidated metadata: the arrays' own zarr.json is what chunkpress reads
    try:
        return zarr.open_array(opened, path=path, mode="r")
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        pass
    try:
        return zarr.open_group(opened, path=path, mode="r", use_consolidated=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"no zarr store at {reader.where(store, path)}") from None


class _Inline:
    """An executor that runs each task as it is submitted, in this thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, function, *args) -> Future:
        future = Future()
        try:
            future.set_result(function(*args))
        except BaseException as exc:  # handed to whoever asks for the result, as a pool does
            future.set_exception(exc)
        return future


def _check_array(name, array, pool) -> tuple:
    read = reader.layout(array)
    stats = dict.fromkeys(ARRAY_COLUMNS, 0)
    stats.update(array=name, error_bound=math.nan, max_error=math.nan, rel_bound=math.nan,
                 max_rel_error=math.nan, compared="")
    if not read.ours:
        if read.sharding is not None or not _ends_with_crc(array):
            stats["checks"] = "none"
            return [], stats
        # an exact variable chunkpress wrote (zarr's codecs, then crc32c): its checksums
        stats["checks"] = "crc only"
        # chunkpress wrote every chunk: present; exact unless portable through a filter
        stats["exact"] = read.written is not None and not array.filters
        stats["portable"] = read.written is not None and bool(array.filters)
        chunks = list(np.ndindex(*_grid(array.shape, array.chunks)))
        size = max(1, -(-len(chunks) // (4 * READERS)))
        work = [pool.submit(_check_chunk_objects, array, read, chunks[s:s + size], None, name)
                for s in range(0, len(chunks), size)]
        return _gather(work, stats)
    codec = read.codec
    placed = codec.write is not None
    stats["checks"] = "crc, place" if placed else "crc only"
    bound = codecs.bound(codec.spec, codec.target)
    stats["error_bound"] = math.nan if bound is None else bound * _cf(array)[0]
    grid = _grid(array.shape, read.chunk_shape)
    if read.sharding is not None:
        layout = shards.ShardFormat(array, read)
        objects = list(np.ndindex(*_grid(array.shape, array.shards)))
        work = [pool.submit(_check_shard, array, read, layout, s, grid, codec.write, name)
                for s in objects]
    else:
        # a few batches per reader, not a task per chunk: the CRC holds the GIL (chunks are
        # under google_crc32c's 1 MiB), so per-chunk hand-overs cost more than they overlap
        chunks = list(np.ndindex(*grid))
        size = max(1, -(-len(chunks) // (4 * READERS)))
        work = [pool.submit(_check_chunk_objects, array, read, chunks[s:s + size],
                            codec.write, name) for s in range(0, len(chunks), size)]
    return _gather(work, stats)


def _gather(work, stats) -> tuple:
    problems = []
    for future in work:
        found, counts = future.result()
        problems += found
        for key, value in counts.items():
            stats[key] += value
    return problems, stats


def _ends_with_crc(array) -> bool:
    """Whether each chunk object of ``array`` ends with zarr's crc32c of the rest."""
    compressors = getattr(array, "compressors", ())
    return bool(compressors) and isinstance(compressors[-1], Crc32cCodec)


def _grid(shape, chunk_shape) -> tuple:
    return tuple(math.ceil(n / c) if n else 0 for n, c in zip(shape, chunk_shape))





def _check_chunk_objects(array, read, indices, write, name) -> tuple:
    problems, counts = [], {}
    for index in indices:
        found, chunk_counts = _check_chunk_object(array, read, index, write, name)
        problems += found
        for key, value in chunk_counts.items():
            counts[key] = counts.get(key, 0) + value
    return problems, counts


def _check_chunk_object(array, read, index, write, name) -> tuple:
    key = array.metadata.encode_chunk_key(index)
    data = reader.object_bytes(array, read, key)
    if data is None:
        if write is None and not read.required(index):  # zarr left out a chunk of fill
            return [], {"absent_chunks": 1}
        return [_row(name, index, _full(array, key), _MISSING)], {}
    return _check_chunk(data, index, write, array.ndim, name, _full(array, key))


def _full(array, key) -> str:
    """The key of an array's object in the whole store."""
    return f"{array.store_path.path}/{key}" if array.store_path.path else key


_MISSING = ("missing: every chunk of a chunkpress array is written, so the store is damaged "
            "or its write did not finish (plain zarr would read it as fill)")


def _check_chunk(data, index, write, ndim, name, key) -> tuple:
    counts = {"chunks": 1, "stored_bytes": len(data)}
    try:
        body = integrity.unseal(data)
        if write is not None:
            _, stored = integrity.split(body, write, ndim, index)
            if stored[0] == integrity.UNPLACED:
                counts["unplaced_chunks"] = 1
    except integrity.PlaceError as exc:
        return [_row(name, index, key, f"not this chunk: {exc}")], counts
    except ValueError as exc:
        return [_row(name, index, key, str(exc))], counts
    return [], counts


def _check_shard(array, read, layout, shard, grid, write, name) -> tuple:
    key = array.metadata.encode_chunk_key(shard)
    inner = layout.inner_chunks(shard, grid)
    data = reader.object_bytes(array, read, key)
    key = _full(array, key)
    if data is None:
        if write is None:
            return [], {"absent_chunks": len(inner)}
        return [_row(name, i, _inner_key(key, layout, i), f"missing: its shard {key!r} is "
                     "missing; every chunk of a chunkpress array is written")
                for i in inner], {}
    try:
        table = layout.index_of(data)
    except ValueError as exc:
        return [_row(name, i, _inner_key(key, layout, i), f"unreadable: shard {key!r}: {exc}")
                for i in inner], {"stored_bytes": len(data)}
    problems, counts = [], {"stored_bytes": layout.index_size}
    view = memoryview(data)
    for index in inner:
        where = _inner_key(key, layout, index)
        offset, length = (int(v) for v in table[layout.shard_of(index)[1]])
        if offset == length == 2**64 - 1:
            if write is None:
                counts["absent_chunks"] = counts.get("absent_chunks", 0) + 1
            else:
                problems.append(_row(name, index, where, "missing: the shard's index has no "
                                     "entry for it; every chunk of a chunkpress array is "
                                     "written"))
            continue
        found, chunk_counts = _check_chunk(view[offset:offset + length], index, write,
                                           array.ndim, name, where)
        problems += found
        for k, v in chunk_counts.items():
            counts[k] = counts.get(k, 0) + v
    return problems, counts


def _inner_key(key, layout, index) -> str:
    return f"{key}[{', '.join(map(str, layout.shard_of(index)[1]))}]"


def _row(array, chunk, key, problem) -> dict:
    return {"array": array, "chunk": None if chunk is None else tuple(int(i) for i in chunk),
            "object": key, "problem": problem}


def _table(problems, arrays) -> pd.DataFrame:
    table = pd.DataFrame(problems, columns=COLUMNS)
    per_array = pd.DataFrame(arrays, columns=ARRAY_COLUMNS)
    table.attrs["arrays"] = per_array
    table.attrs["summary"] = {
        "arrays": int((per_array["checks"] != "none").sum()),
        "chunks": int(per_array["chunks"].sum()),
        "stored_bytes": int(per_array["stored_bytes"].sum()),
        "unplaced_chunks": int(per_array["unplaced_chunks"].sum()),
        "crc_only": int(per_array["checks"].str.startswith("crc only").sum()),
        "exact": sum(1 for stats in arrays if stats.get("exact")),
        "portable": sum(1 for stats in arrays if stats.get("portable")),
        **{f"compared_{kind}": int(per_array["compared"].fillna("").str.contains(kind).sum())
           for kind in ("absolute", "relative", "exact", "unbounded")},
        "other": int((per_array["checks"] == "none").sum()),
        "problems": len(table),
    }
    return table


def _consolidated_problems(node, members) -> list:
    """An array whose consolidated metadata (what xarray reads) differs from its zarr.json."""
    if isinstance(node, zarr.Array):
        return []
    consolidated = (node.metadata.consolidated_metadata.metadata
                    if node.metadata.consolidated_metadata is not None else {})
    if not consolidated:
        try:  # the group as xarray opens it
            opened = zarr.open_group(node.store_path.store, path=node.store_path.path,
                                     mode="r", use_consolidated=True)
        except (ValueError, FileNotFoundError, TypeError):
            return []
        if opened.metadata.consolidated_metadata is None:
            return []
        consolidated = _flat(opened.metadata.consolidated_metadata.metadata)
    problems = []
    for name, array in members:
        claimed = consolidated.get(name)
        if claimed is not None and claimed.to_dict() != array.metadata.to_dict():
            problems.append(_row(name, None, f"{array.store_path.path}/zarr.json",
                                 "the root's consolidated metadata (what xr.open_zarr reads) "
                                 "differs from the array's own zarr.json: one of them was "
                                 "edited"))
    return problems


def _flat(metadata, prefix="") -> dict:
    out = {}
    for name, doc in metadata.items():
        out[prefix + name] = doc
        inner = getattr(doc, "consolidated_metadata", None)
        if inner is not None:
            out.update(_flat(inner.metadata, f"{prefix}{name}/"))
    return out


# --- against the original ------------------------------------------------------------------


def _cf(array) -> tuple:
    """(|scale_factor|, scale_factor, add_offset, fill) of an array's CF attributes."""
    attrs = array.attrs
    scale = float(attrs.get("scale_factor", 1.0))
    offset = float(attrs.get("add_offset", 0.0))
    fill = attrs.get("_FillValue", attrs.get("missing_value"))
    fill = float(fill) if isinstance(fill, (int, float)) and not isinstance(fill, bool) \
        else None
    return abs(scale), scale, offset, fill


class _Originals:
    """The original data, looked up by the store's array names."""

    def __init__(self, against, members):
        import xarray as xr

        ours = [n for n, a in members if reader.layout(a).ours]
        # a store of one array chunkpress wrote through zarr's own codecs (portable=True)
        ours = ours or [n for n, a in members
                        if reader.layout(a).sharding is None and _ends_with_crc(a)]
        self.by_name, self.single, self.single_name = None, None, None
        if isinstance(against, (str, os.PathLike)):
            against = _open_original(os.fspath(against))
        if isinstance(against, xr.DataArray):
            against = against.variable
        if isinstance(against, xr.Dataset):
            self.by_name = against
        elif hasattr(against, "shape") and hasattr(against, "dtype"):
            if len(ours) != 1:
                raise TypeError(f"against: an array is compared with a store of one array; "
                                f"this store has {len(ours)} chunkpress arrays: give a Dataset "
                                "or a path")
            self.single, self.single_name = against, ours[0]
        else:
            raise TypeError("against must be a netCDF or Zarr path, an xarray Dataset or "
                            f"DataArray, or an array, got {type(against).__name__}")
        if self.by_name is not None and ours and not any(self._lookup(n) is not None
                                                         for n in ours):
            raise ValueError(f"against: the original has none of the store's arrays {ours}; "
                             f"it has {sorted(map(str, self.by_name.variables))}")

    def _lookup(self, name):
        for key in (name, name.rsplit("/", 1)[-1]):
            if key in self.by_name.variables:
                return self.by_name.variables[key]
        if name == "/" and len(self.by_name.data_vars) == 1:
            return next(iter(self.by_name.data_vars.values())).variable
        return None

    def get(self, name, array):
        if self.by_name is None:
            return self.single if name == self.single_name else None
        return self._lookup(name)


def _open_original(path: str):
    import xarray as xr

    if not os.path.exists(path) and "://" not in path:
        raise FileNotFoundError(f"against: no such file or directory: {path}")
    if os.path.isdir(path):
        try:
            return zarr.open_array(path, mode="r")
        except (FileNotFoundError, ValueError, TypeError, KeyError):
            return xr.open_zarr(path, chunks=None)
    return xr.open_dataset(path, chunks=None)  # lazy: each chunk reads its part only


class _Claim(NamedTuple):
    """The bounds a store claims for an array, in the variable's decoded units."""

    absolute: float | None  # |x - y| <= absolute (0: exact), or None
    relative: float | None  # |x - y| <= relative * max(|x|, floor), or None
    floor: float  # 0, or the smallest normal number (times |scale_factor|): bit rounding's
    what: str  # where the claim comes from, e.g. "zfp tolerance=0.01" (for the report)
    unchecked: str = ""  # a bound the store claims that cannot be checked here, and why

    @property
    def exact(self) -> bool:
        return self.absolute == 0.0 and not self.relative

    def compared(self) -> str:
        if self.exact:
            return "exact"
        kinds = [k for k, v in (("absolute", self.absolute), ("relative", self.relative))
                 if v is not None]
        return "+".join(kinds) or "unbounded"


def _claim(array) -> _Claim:
    """The bounds ``array``'s metadata claims: its chunkpress codec's configuration, a
    portable write's attribute, or (chunkpress's exact variables) none but the values."""
    read = reader.layout(array)
    scale = _cf(array)[0]
    offset = bool(array.attrs.get("add_offset"))
    if read.ours:
        spec, target = read.codec.spec, read.codec.target
        what = f"{spec.name} {_params(target)}".strip()
        absolute = codecs.bound(spec, target)
        absolute = None if absolute is None else absolute * scale
        # as compress certifies it: a rel_tolerance given is |x - y| <= r |x|; a bound claimed
        # by the parameters (bit rounding's keepbits) r max(|x|, tiny)
        relative, floored = codecs.certified_relative(spec, target)
        relative = None if relative is None else float(relative)
        floor = float(np.finfo(array.dtype).tiny) * scale \
            if floored and array.dtype.kind == "f" else 0.0
        if relative and offset:  # relative to the stored values, not to the decoded ones
            return _Claim(absolute, None, 0.0, what, f"relative bound {relative:g} not "
                          "checked: the array has an add_offset")
        return _Claim(absolute, relative, floor, what)
    entry = array.attrs.get(portable.ATTRIBUTE)
    if isinstance(entry, dict):
        what = f"portable: {entry.get('codecs', '')}"
        bounds = {k: float(entry[k]) for k in ("tolerance", "rel_tolerance")
                  if isinstance(entry.get(k), (int, float)) and not isinstance(entry[k], bool)
                  and entry[k] > 0}
        what += "".join(f", {k}={v:g}" for k, v in bounds.items())
        if bounds:
            return _Claim(bounds.get("tolerance"), bounds.get("rel_tolerance"), 0.0, what)
        if not array.filters:
            return _Claim(0.0, None, 0.0, what)
        return _Claim(None, None, 0.0, what)
    if read.written is not None and not array.filters:
        return _Claim(0.0, None, 0.0, "exact: lossless codecs")
    return _Claim(None, None, 0.0, "no bound recorded")


class _ChunkError(NamedTuple):
    """What one chunk's comparison found (errors in decoded units; ``*_at``: the whole
    array's index of the worst value, with the original's value and the store's there)."""

    error: float = 0.0
    error_at: tuple | None = None
    error_values: tuple = ()
    over: bool = False
    rel_error: float = 0.0
    rel_at: tuple | None = None
    rel_values: tuple = ()
    rel_over: bool = False
    differ: int = 0
    failure: str | None = None


def _compare(name, array, original, bad, stats, pool) -> list:
    """Decode every good chunk and hold it to the bounds the store claims, against the
    original's values."""
    if array.dtype.kind not in "biufc":
        stats["checks"] += "; not compared: not numbers"
        return []
    if tuple(original.shape) != tuple(array.shape):
        return [_row(name, None, "", f"the original has shape {tuple(original.shape)}, the "
                     f"store's array {tuple(array.shape)}: not compared")]
    read = reader.layout(array)
    cf = _cf(array)
    claim = _claim(array)
    stats["error_bound"] = math.nan if claim.absolute is None else claim.absolute
    stats["rel_bound"] = math.nan if claim.relative is None else claim.relative
    stats["compared"] = claim.compared()
    stats["checks"] += f"; compared: {_said(claim)}" + (f" ({claim.unchecked})"
                                                        if claim.unchecked else "")
    grid = _grid(array.shape, read.chunk_shape)
    indices = [i for i in np.ndindex(*grid) if i not in bad]
    results = list(pool.map(lambda i: _chunk_error(array, read, original, i, cf, claim),
                            indices))
    problems, mismatched = [], []
    worst = worst_rel = _ChunkError()
    over = rel_over = 0
    for index, found in zip(indices, results):
        if found.failure is not None:
            problems.append(_row(name, index, _full(array, reader.chunk_key(array, read, index)),
                                 found.failure))
            continue
        if found.differ:
            mismatched.append((index, found.differ))
        over += found.over
        rel_over += found.rel_over
        # the worst value over the bound, else the worst
        if (found.over, found.error) > (worst.over, worst.error):
            worst, worst_index = found, index
        if (found.rel_over, found.rel_error) > (worst_rel.rel_over, worst_rel.rel_error):
            worst_rel, rel_index = found, index
    stats["max_error"] = worst.error if indices else math.nan
    if claim.relative is not None:
        stats["max_rel_error"] = worst_rel.rel_error if indices else math.nan
    if over:
        where = _full(array, reader.chunk_key(array, read, worst_index))
        problems.append(_row(name, worst_index, where, (
            f"values differ from the original, max error {worst.error:.4g}: the array is "
            f"exact ({claim.what})" if claim.exact else
            f"max error {worst.error:.4g} exceeds the bound {claim.absolute:.4g} the metadata "
            f"records ({claim.what})") + f" {_at(worst.error_at, worst.error_values)}; "
            f"{over} of {len(indices)} chunks exceed it"))
    if rel_over:
        where = _full(array, reader.chunk_key(array, read, rel_index))
        floor = " max(|x|, the smallest normal number)" if claim.floor else " |x|"
        problems.append(_row(name, rel_index, where,
                             f"max relative error {worst_rel.rel_error:.4g} exceeds the bound "
                             f"{claim.relative:.4g} the metadata records ({claim.what}; |x - y| "
                             f"<= {claim.relative:g}{floor}) "
                             f"{_at(worst_rel.rel_at, worst_rel.rel_values)}; {rel_over} of "
                             f"{len(indices)} chunks exceed it"))
    if mismatched:
        index, count = mismatched[0]
        problems.append(_row(name, index, _full(array, reader.chunk_key(array, read, index)),
                             f"{sum(c for _, c in mismatched)} values are missing or "
                             f"non-finite in one of the store and the original but not in "
                             f"the other ({count} in this chunk, {len(mismatched)} chunks)"))
    return problems


def _said(claim: _Claim) -> str:
    """What was compared, e.g. "absolute <= 0.01, relative <= 0.001"."""
    if claim.exact:
        return "exact"
    said = [f"{k} <= {v:g}" for k, v in (("absolute", claim.absolute),
                                          ("relative", claim.relative)) if v is not None]
    return ", ".join(said) or "no bound recorded (max error measured)"


def _at(index, values) -> str:
    """Where the worst value is, and its values in the original and the store."""
    if index is None:
        return ""
    return f"at {tuple(int(i) for i in index)}: {values[0]!r} in the original, " \
           f"{values[1]!r} in the store"


def _params(target) -> str:
    return ", ".join(f"{k}={v}" for k, v in target.items())


def _chunk_error(array, read, original, index, cf, claim: _Claim) -> _ChunkError:
    """A chunk's errors against the original, held to ``claim``."""
    absolute, scale, offset, fill = cf
    try:
        block = reader.read_chunk(array, index, read)
    except (ChunkpressError, ValueError) as exc:
        return _ChunkError(failure=str(exc))
    stored = block.astype(np.float64)
    if fill is not None:
        stored[stored == fill] = np.nan
    decoded = stored * scale + offset
    start = tuple(i * c for i, c in zip(index, read.chunk_shape))
    selection = tuple(slice(s, s + n) for s, n in zip(start, block.shape))
    expected = np.asarray(_values(original[selection]))
    rounding = 0.0  # the relative rounding between the store's numbers and the original's
    if expected.dtype.kind in "mMO":  # times (numpy's or cftime's): in the store's units
        try:
            expected = _as_stored_times(expected, array.attrs)
        except (TypeError, ValueError, OverflowError) as exc:
            return _ChunkError(failure="the original's times cannot be compared with the "
                                       f"store's: {exc}")
        rounding = 2 * float(np.finfo(np.float64).eps)
    elif (scale, offset) != (1.0, 0.0) or expected.dtype != block.dtype:
        rounding = 2 * max((float(np.finfo(d).eps) for d in (block.dtype, expected.dtype)
                            if d.kind == "f"), default=0.0)
    expected = expected.astype(np.float64)
    finite = np.isfinite(expected)
    differ = int(np.count_nonzero(finite != np.isfinite(decoded)))
    both = finite & np.isfinite(decoded)
    differ += int(np.count_nonzero(~finite & ~np.isfinite(decoded)
                                   & (expected != decoded) & ~np.isnan(expected)))
    if not both.any():
        return _ChunkError(differ=differ)
    a = np.where(both, expected, 0.0)
    diff = np.where(both, np.abs(decoded - a), 0.0)
    worst = int(np.argmax(diff))
    error = float(diff.flat[worst])
    # the bound holds on the stored values; scaling and the stored dtype round once more
    eps = np.finfo(block.dtype).eps if block.dtype.kind == "f" else 0.0
    allowed = max(2 * eps, rounding) * float(np.max(np.abs(a)))
    if claim.exact and not rounding:  # the store's numbers are the original's: bit for bit
        allowed = 0.0
    over = claim.absolute is not None and error > claim.absolute + allowed
    found = dict(error=error, error_at=_where(start, block.shape, worst), over=bool(over),
                 error_values=(float(a.flat[worst]), float(decoded.flat[worst])),
                 differ=differ)
    if claim.relative is not None:
        ratio = measure.relative_errors(a, diff, claim.floor)
        outside = measure.outside_relative(a, diff, claim.relative + rounding, claim.floor)
        worst = int(np.argmax(np.where(outside, ratio, -1.0) if outside.any() else ratio))
        found.update(rel_error=float(ratio.flat[worst]), rel_over=bool(outside.any()),
                     rel_at=_where(start, block.shape, worst),
                     rel_values=(float(a.flat[worst]), float(decoded.flat[worst])))
    return _ChunkError(**found)


def _where(start, shape, flat) -> tuple:
    """The whole array's index of a chunk's value ``flat`` (its index in the chunk)."""
    return tuple(s + int(i) for s, i in zip(start, np.unravel_index(flat, shape)))


def _as_stored_times(times: np.ndarray, attrs) -> np.ndarray:
    """``times`` as numbers in the units and calendar the store keeps them in (its ``units``,
    e.g. "days since 2000-01-01", and ``calendar``), as floats: they compare with the store's
    numbers exactly."""
    import warnings

    import xarray as xr
    from xarray.conventions import encode_cf_variable

    encoding = {k: attrs[k] for k in ("units", "calendar") if isinstance(attrs.get(k), str)}
    if "units" not in encoding:
        raise ValueError("the store's array has no CF units to read its times in")
    var = xr.Variable(tuple(f"axis{i}" for i in range(times.ndim)), times,
                      encoding={**encoding, "dtype": "float64"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. xarray's note on float times
        return np.asarray(encode_cf_variable(var).values)


def _values(part):
    values = getattr(part, "values", part)
    return values.compute() if hasattr(values, "compute") else values
