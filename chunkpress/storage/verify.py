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
"""

from __future__ import annotations

import math
import os
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import Crc32cCodec
from zarr.storage import LocalStore, ZipStore

from ..graph import codecs
from ..kernels import ChunkpressError
from . import integrity, publish, reader, shards

__all__ = ["verify", "summary"]

COLUMNS = ["array", "chunk", "object", "problem"]
ARRAY_COLUMNS = ["array", "checks", "chunks", "stored_bytes", "unplaced_chunks",
                 "absent_chunks", "error_bound", "max_error"]
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
    if totals.get("crc_only", 0) - exact:
        notes.append(f"{totals['crc_only'] - exact} array(s) without place records (written "
                     "by zarr or xarray): checksums only")
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
    stats.update(array=name, error_bound=math.nan, max_error=math.nan)
    if not read.ours:
        if read.sharding is not None or not _ends_with_crc(array):
            stats["checks"] = "none"
            return [], stats
        # an exact variable chunkpress wrote (zarr's codecs, then crc32c): its checksums
        stats["checks"] = "crc only"
        stats["exact"] = read.written is not None  # chunkpress wrote every chunk: present
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
        self.by_name, self.single = None, None
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
            self.single = against
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
        return self.single if self.by_name is None else self._lookup(name)


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


def _compare(name, array, original, bad, stats, pool) -> list:
    """Decode every good chunk and measure its max error against the original's values."""
    if array.dtype.kind not in "biufc":
        stats["checks"] += "; not compared: not numbers"
        return []
    if tuple(original.shape) != tuple(array.shape):
        return [_row(name, None, "", f"the original has shape {tuple(original.shape)}, the "
                     f"store's array {tuple(array.shape)}: not compared")]
    read = reader.layout(array)
    cf = _cf(array)
    grid = _grid(array.shape, read.chunk_shape)
    indices = [i for i in np.ndindex(*grid) if i not in bad]
    results = list(pool.map(lambda i: _chunk_error(array, read, original, i, cf), indices))
    problems, worst, worst_at, over, mismatched = [], 0.0, None, 0, []
    bound = stats["error_bound"]
    for index, (error, allowed, differ, failure) in zip(indices, results):
        if failure is not None:
            problems.append(_row(name, index, _full(array, reader.chunk_key(array, read, index)),
                                 failure))
            continue
        if differ:
            mismatched.append((index, differ))
        if error > worst:
            worst, worst_at = error, index
        if not math.isnan(bound) and error > bound + allowed:
            over += 1
    stats["max_error"] = worst if indices else math.nan
    if over:
        problems.append(_row(name, worst_at, _full(array, reader.chunk_key(array, read,
                                                                          worst_at)),
                             f"max error {worst:.4g} exceeds the bound {bound:.4g} the "
                             f"metadata records ({read.codec.spec.name} "
                             f"{_params(read.codec.target)}); {over} of {len(indices)} chunks "
                             "exceed it"))
    if mismatched:
        index, count = mismatched[0]
        problems.append(_row(name, index, _full(array, reader.chunk_key(array, read, index)),
                             f"{sum(c for _, c in mismatched)} values are missing or "
                             f"non-finite in one of the store and the original but not in "
                             f"the other ({count} in this chunk, {len(mismatched)} chunks)"))
    return problems


def _params(target) -> str:
    return ", ".join(f"{k}={v}" for k, v in target.items())


def _chunk_error(array, read, original, index, cf) -> tuple:
    """(max error, rounding allowed, values whose finiteness differs, failure) of a chunk."""
    absolute, scale, offset, fill = cf
    try:
        block = reader.read_chunk(array, index, read)
    except (ChunkpressError, ValueError) as exc:
        return 0.0, 0.0, 0, str(exc)
    stored = block.astype(np.float64)
    if fill is not None:
        stored[stored == fill] = np.nan
    decoded = stored * scale + offset
    selection = tuple(slice(i * c, i * c + n) for i, c, n in zip(index, read.chunk_shape,
                                                                block.shape))
    expected = np.asarray(_values(original[selection]))
    if expected.dtype.kind in "mMO":  # times (numpy's or cftime's): in the store's units
        try:
            expected = _as_stored_times(expected, array.attrs)
        except (TypeError, ValueError, OverflowError) as exc:
            return 0.0, 0.0, 0, f"the original's times cannot be compared with the store's: {exc}"
    expected = expected.astype(np.float64)
    finite = np.isfinite(expected)
    differ = int(np.count_nonzero(finite != np.isfinite(decoded)))
    both = finite & np.isfinite(decoded)
    differ += int(np.count_nonzero(~finite & ~np.isfinite(decoded)
                                   & (expected != decoded) & ~np.isnan(expected)))
    if not both.any():
        return 0.0, 0.0, differ, None
    error = float(np.max(np.abs(decoded[both] - expected[both])))
    # the bound holds on the stored values; scaling and the stored dtype round once more
    eps = np.finfo(block.dtype).eps if block.dtype.kind == "f" else 0.0
    allowed = 2 * eps * float(np.max(np.abs(expected[both])))
    return error, allowed, differ, None


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
