"""An xarray Dataset written to a Zarr v3 store: compressed variables and exact ones, published
together when complete.

xarray makes every node's metadata (attributes, CF encodings, coordinates) and writes the
exact variables held in memory, into a memory store; the documents are handed to the
destination, written there at publish (see ``publish``). Exact variables held by dask are
written by tasks, through zarr, into arrays whose metadata is not yet published; compressed
variables by chunkpress's own write tasks (see ``writer``). A write that stops halfway leaves
no node of the dataset where a reader looks: not the root, not any variable.
"""

from __future__ import annotations

import json
import warnings

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from xarray.conventions import decode_cf_variable, encode_cf_variable
from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import MemoryStore, StorePath

from . import publish
from .destination import collect_keys
from .codecs import ChunkpressCodec, zarr_codec
from .reader import with_packing, with_written
from .missing import codec_missing, missing_as_nan, missing_values
from .writer import ArrayWrite, WriteJob

__all__ = ["write_dataset", "Variable", "unpublished_array", "missing_values", "codec_missing",
           "missing_as_nan", "checked_exact"]

#: the encodings that decide what is stored; the rest (netCDF chunking, filters) is dropped
CF_ENCODINGS = ("dtype", "_FillValue", "missing_value", "scale_factor", "add_offset", "units",
                "calendar")


class Variable:
    """A compressed variable to write: its blocks and how xarray stores it."""

    def __init__(self, compressed, missing=None):
        self.compressed = compressed  # CompressedArray of the CF-encoded values
        self.missing = missing  # what marks a missing cell (see codec_missing), stored as NaN


def write_dataset(source: xr.Dataset, variables: dict, store, *, overwrite=False,
                  storage_options=None, shards=None, compute=True, attributes=None,
                  portable=None):
    """Write ``source`` to ``store``: ``variables`` maps names to :class:`Variable` (the
    compressed ones), every other variable is written exact, as xarray would; ``portable``
    maps names to the zarr/numcodecs codecs that store them instead (see ``portable``).

    ``attributes``: extra attributes per compressed variable (e.g. what codec="auto" chose).
    Returns the zarr group written, or (``compute=False``) a WriteJob that writes it.
    """
    if portable:
        from .portable import portable_variable

        source = source.copy()
        for name, chosen in portable.items():
            source[name] = portable_variable(source[name].variable, chosen)
    _check_exact_in_memory(source, variables)
    destination = publish.open_destination(store, None, overwrite=overwrite,
                                           storage_options=storage_options)
    try:
        plans, writes, memory = _prepare(source, variables, destination, shards,
                                         attributes or {}, set(portable or ()))
    except BaseException:
        destination.abort()
        destination.close()
        raise
    job = WriteJob(writes, destination, plans,
                   lambda: _after(destination, plans, memory, store, storage_options))
    return job if not compute else job.compute()


def _prepare(source, variables, destination, shards, attributes, portable):
    memory = MemoryStore()
    placeholders = source.copy()
    encoding = {}
    for name in source.variables:
        if name in variables:
            c = variables[name].compressed
            chunk_shape = tuple(max(1, axis[0]) for axis in c.chunks)
            var = source[name].variable
            placeholders[name] = xr.Variable(var.dims, da.zeros(var.shape, dtype=var.dtype,
                                                                chunks=chunk_shape),
                                             attrs=var.attrs, encoding=var.encoding)
            cf = {**_no_fill_for_missing(var),
                  **{k: v for k, v in var.encoding.items() if k in CF_ENCODINGS}}
            encoding[name] = {**cf, "serializer": zarr_codec(c.codec, c.params),
                              "compressors": [Crc32cCodec()], "filters": None,
                              "chunks": chunk_shape}
            encoding[name]["chunk_key_encoding"] = destination.key_encoding(name)
        else:  # its own encoding kept (an encoding= entry would replace all of it)
            var = placeholders.variables[name]
            placeholders[name] = var.copy(deep=False)
            own = var.encoding if name in portable else _exact_encoding(var)
            placeholders[name].encoding = {**_no_fill(var), **own,
                                           "chunk_key_encoding": destination.key_encoding(name)}
    lazy = [n for n, v in source.variables.items()
            if n not in variables and dask.is_dask_collection(v.data)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        # every chunk of an exact variable written, fill values too: a missing one is then
        # an error to chunkpress's readers, not fill (see reader.WRITTEN)
        delayed = placeholders.to_zarr(memory, mode="w-", compute=False, zarr_format=3,
                                       encoding=encoding, consolidated=False,
                                       write_empty_chunks=True)
    del delayed  # the placeholders' zeros and the lazy exact variables: never written
    plans, writes = [], []
    for name, variable in variables.items():
        document = _document(memory, name)
        document["attributes"] = {**document.get("attributes", {}),
                                  **attributes.get(name, {})}
        document = with_packing(document, source[name].variable.encoding)
        plan = ArrayWrite(destination, name, variable.compressed, shards=shards,
                          missing=variable.missing, document=document)
        if plan.document["data_type"] != _document(memory, name)["data_type"]:
            raise ValueError(f"{name}: xarray stores it as {document['data_type']}, the "
                             f"compressed blocks are {variable.compressed.dtype}; please "
                             "report this")
        plans.append(plan)
        writes.append(plan.writes())
    exact = _ExactNodes(memory, destination, set(variables), list(plans), source)
    plans.append(exact)
    writes.append(exact.writes(source, lazy))
    return plans, writes, memory


# --- exact variables: values their CF encoding holds, or an error ---------------------------


def checked_exact(encoded: xr.Variable, given, name, *, kept: str, advice: str) -> xr.Variable:
    """``encoded`` (``given`` CF-encoded into integers, to be stored exact), or ValueError
    naming ``name`` where it does not decode back to ``given``: xarray casts values out of the
    integers' range (or a packing's: they wrap), fractional ones, and NaN without a
    ``_FillValue``, with a warning at most. Packed values (``scale_factor``) may move by half a
    step. Values held by dask are checked by each task that writes a block (the write then
    fails, nothing published). ``kept``: what keeps it so ("the store keeps it as int16");
    ``advice``: what to do instead. Both appends and first writes check with this."""
    step = abs(float(encoded.attrs.get("scale_factor", 0.0)))
    check = dict(variable=name, dims=encoded.dims, attrs=encoded.attrs,
                 tolerance=step / 2 * (1 + 1e-6),
                 message=f"{kept} ({_holds(encoded.dtype, encoded.attrs)})", advice=advice)
    if not isinstance(encoded.data, da.Array):
        given = given.compute() if isinstance(given, da.Array) else given
        _check_exact(encoded.data, np.asarray(given), **check)
        return encoded
    given = given if isinstance(given, da.Array) else da.from_array(np.asarray(given))
    checked = da.map_blocks(_checked_block, encoded.data, given.rechunk(encoded.data.chunks),
                            dtype=encoded.dtype, stored_dtype=encoded.dtype, **check)
    return xr.Variable(encoded.dims, checked, attrs=encoded.attrs, encoding=encoded.encoding)


def _holds(dtype, attrs) -> str:
    """What an integer type holds, packed or not, in words."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "True or False"
    info = np.iinfo(dtype)
    scale = float(attrs.get("scale_factor", 1.0))
    offset = float(attrs.get("add_offset", 0.0))
    if "scale_factor" not in attrs and "add_offset" not in attrs:
        return f"integers from {info.min} to {info.max}"
    ends = sorted((info.min * scale + offset, info.max * scale + offset))
    return (f"packed with scale_factor={scale:g}, add_offset={offset:g}: values from "
            f"{ends[0]:.6g} to {ends[1]:.6g} in steps of {abs(scale):g}")


def _checked_block(stored, given, *, stored_dtype, **check):
    """A block of values as the store keeps it, checked: cast to the stored type first, as
    zarr would cast it after (xarray's lazy encoding declares int32 times whose blocks hold
    int64, NaT's -2**63 among them, which wraps to 0: the epoch, not NaT)."""
    stored = np.asarray(stored).astype(stored_dtype, copy=False)
    _check_exact(stored, given, **check)
    return stored


def _check_exact(stored, given, *, variable, dims, attrs, tolerance, message, advice) -> None:
    """Raise ValueError unless ``stored`` (CF-encoded) decodes to ``given``."""
    given = np.asarray(given)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = decode_cf_variable(variable, xr.Variable(dims, np.asarray(stored), attrs),
                                  **_times_like(given)).values
    if not _same(np.asarray(back), np.asarray(given), tolerance):
        raise ValueError(
            f"{variable!r}: {message}, which does not hold every value given (out of its "
            "range, fractional, or NaN without a _FillValue): they would read back as other "
            f"values. {advice}")


def _times_like(given) -> dict:
    """How to decode times to compare them with ``given``: cftime objects (a standard calendar
    too, which xarray would decode to datetime64) where ``given`` holds objects."""
    if given.dtype.kind != "O":
        return {}
    try:
        from xarray.coders import CFDatetimeCoder
    except ImportError:  # xarray before 2025.1
        return {"use_cftime": True}
    return {"decode_times": CFDatetimeCoder(use_cftime=True)}


def _same(a: np.ndarray, b: np.ndarray, tolerance: float = 0.0) -> bool:
    """Whether two arrays hold the same values (NaN and NaT equal to themselves; numbers
    within ``tolerance``)."""
    if a.shape != b.shape:
        return False
    if tolerance and a.dtype.kind in "iufc" and b.dtype.kind in "iufc":
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        with np.errstate(invalid="ignore", over="ignore"):
            far = np.abs(a.astype(np.float64) - b.astype(np.float64)) > tolerance
        return bool(np.array_equal(nan_a, nan_b) and not np.any(far & ~nan_a))
    if a.dtype.kind in "mM" and b.dtype.kind in "mM":
        unit = "M8[ns]" if a.dtype.kind == "M" else "m8[ns]"
        return np.array_equal(a.astype(unit).view("i8"), b.astype(unit).view("i8"))
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        try:
            return np.array_equal(a, b, equal_nan=True)
        except TypeError:
            return False
    return bool(np.all(a == b))


def _first_write_checked(var, name) -> xr.Variable:
    """``var`` CF-encoded for a new store, checked where its encoding stores integers that
    could not hold its values (see :func:`checked_exact`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said below, as an error
        encoded = encode_cf_variable(var, name=name)
    if encoded.dtype.kind not in "iub" or (var.dtype == encoded.dtype and not (
            {"scale_factor", "add_offset"} & set(var.encoding))):
        # integers stored as they are: nothing to lose (raw packed values too, opened with
        # mask_and_scale=False: their scale_factor an attribute, which encoding leaves be)
        return encoded
    stored = f"its encoding stores it as {encoded.dtype}"
    return checked_exact(encoded, var.data, name, kept=stored, advice=(
        f"Give values within it, or another encoding (ds[{name!r}].encoding: drop its dtype, "
        "scale_factor and add_offset to store it as it is, or give a _FillValue for NaN)"))


def _check_exact_in_memory(source: xr.Dataset, compressed) -> None:
    """The exact variables held in memory, checked before anything is written (those held by
    dask are checked by the tasks writing them)."""
    for name, var in source.variables.items():
        if name not in compressed and not dask.is_dask_collection(var.data):
            _first_write_checked(var, name)


def _no_fill(var) -> dict:
    """A float variable read from a file without a _FillValue keeps none (xarray would give
    it NaN, which then reaches the netCDF written back)."""
    if var.encoding and "_FillValue" not in var.encoding and var.dtype.kind == "f" \
            and "_FillValue" not in var.attrs:
        return {"_FillValue": None}
    return {}


def _no_fill_for_missing(var) -> dict:
    """A compressed variable whose missing cells are marked by a ``missing_value`` alone keeps
    no ``_FillValue`` (xarray would add NaN beside it: a netCDF written back would have both,
    which xarray then refuses to write again)."""
    if ("missing_value" in var.encoding or "missing_value" in var.attrs) \
            and "_FillValue" not in var.encoding and "_FillValue" not in var.attrs:
        return {"_FillValue": None}
    return {}


def _exact_encoding(var) -> dict:
    """The encoding of a variable kept exact: its own (CF, chunks, zarr's compressors a user or
    a Zarr v3 input names), less the codecs of an input store that would not write it exact,
    or could not be written: numcodecs' (a Zarr v2 input's Blosc, which Zarr v3 refuses) and
    chunkpress's serializers (lossy, and another write's). A CRC-32C always comes last, so
    that damaged bytes are an error to every reader, never other values."""
    encoding = {k: v for k, v in var.encoding.items() if k != "compressor"}  # Zarr v2's key
    if not _zarr_codecs(encoding.get("filters"), ArrayArrayCodec):
        encoding.pop("filters")
    serializer = encoding.get("serializer")
    given = encoding.pop("compressors", None)
    if isinstance(serializer, ChunkpressCodec):  # and its CRC behind it
        given = None
    if serializer is not None and (isinstance(serializer, ChunkpressCodec)
                                   or not isinstance(serializer, ArrayBytesCodec)):
        encoding.pop("serializer")
    if isinstance(given, BytesBytesCodec):
        given = [given]
    if given is not None and _zarr_codecs(given, BytesBytesCodec):
        compressors = list(given)
        if not compressors or not isinstance(compressors[-1], Crc32cCodec):
            compressors.append(Crc32cCodec())
        return {**encoding, "compressors": compressors}
    return {**encoding, **_exact_compressors(var)}


def _zarr_codecs(codecs, kind) -> bool:
    """Whether ``codecs`` (an encoding's entry, None for none) are Zarr v3 codecs of ``kind``."""
    if codecs is None:
        return True
    return isinstance(codecs, (list, tuple)) and all(isinstance(c, kind) for c in codecs)


def _exact_compressors(var) -> dict:
    """For a numeric variable kept exact: zstd behind a byte shuffle (what netCDF users have
    with zlib and shuffle), then a CRC-32C so that damaged bytes are an error, not other
    numbers; for text, zstd then the CRC. Plain zarr reads it (blosc, crc32c)."""
    dtype = np.dtype(var.encoding.get("dtype", var.dtype))
    if dtype.kind in "MmO":  # times (datetime64, timedelta64, cftime): stored as CF numbers
        try:
            dtype = encode_cf_variable(var.isel({d: slice(0, 1) for d in var.dims})).dtype
        except (ValueError, TypeError, OverflowError):
            return {}
    # text, behind the serializer zarr chooses for its string type ("T": numpy's StringDType,
    # which xarray gives the strings of a Zarr input)
    if dtype.kind in "USOT":
        return {"compressors": [ZstdCodec(), Crc32cCodec()]}
    if dtype.kind not in "iufb":
        return {}
    if dtype.itemsize < 2 or var.size < 1024:
        return {"compressors": [ZstdCodec(), Crc32cCodec()]}
    return {"compressors": [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),
                            Crc32cCodec()]}


def _document(memory, node: str) -> dict:
    key = f"{node}/zarr.json" if node else "zarr.json"
    return json.loads(sync(memory.get(key, default_buffer_prototype())).to_bytes())


class _ExactNodes:
    """The root, the groups and the exact variables: documents from xarray, data copied from
    the memory store (in-memory variables) or written by tasks (dask variables)."""

    def __init__(self, memory, destination, compressed: set, plans, source):
        self.plans = plans  # the compressed variables' writes, handed over before this one
        self.source = source
        self.memory = memory
        self.destination = destination
        self.compressed = compressed
        keys = sync(collect_keys(memory.list_prefix("")))
        self.documents = {k[: -len("zarr.json")].rstrip("/"): k for k in keys
                          if k.endswith("zarr.json")}
        self.chunks = [k for k in keys if not k.endswith("zarr.json")
                       and k.split("/", 1)[0] not in compressed]

    def writes(self, source, lazy):
        """Copy the in-memory chunks now; return the delayed that writes the dask ones."""
        store = self.destination.store
        if self.destination.documents_first:  # a store that refuses chunks of unknown arrays
            self.hand_over()
        for key in self.chunks:
            data = sync(self.memory.get(key, default_buffer_prototype()))
            sync(store.set(self.destination.path(key), data))
        sources, targets = [], []
        for name in lazy:
            encoded = _first_write_checked(source.variables[name], name)
            document = self.document(name)
            # one task per zarr chunk: two tasks never write the same chunk object
            grid = tuple(document["chunk_grid"]["configuration"]["chunk_shape"])
            sources.append(da.asarray(encoded.data).rechunk(grid))
            targets.append(unpublished_array(store, self.destination.path(name), document))
        if not sources:
            return dask.delayed(_nothing, pure=True)()
        if self.destination.returns is not None:  # each task's store comes back (Icechunk)
            from .icechunk import store_returning

            return store_returning(sources, targets, self.destination.returns)
        stored = da.store(sources, targets, lock=False, compute=False)
        return dask.delayed(_nothing, pure=True)(stored)

    def record_measured(self, measured) -> None:
        pass

    def document(self, node: str) -> dict:
        """The document xarray made for ``node``; an array's says every chunk is written,
        and the types of its packing factors."""
        document = _document(self.memory, node)
        if document.get("node_type") == "array":
            document = with_written(document, document["shape"])
            if node in self.source.variables:
                document = with_packing(document, self.source.variables[node].encoding)
        return document

    def hand_over(self) -> None:
        """Hand over every document but the compressed variables'; the root's with the
        consolidated metadata of all (what ``xr.open_zarr`` reads first)."""
        documents = {node: self.document(node) for node in self.documents
                     if node not in self.compressed}
        documents.update({plan.node: plan.document for plan in self.plans})
        root = documents.get("", {"zarr_format": 3, "node_type": "group", "attributes": {}})
        root["consolidated_metadata"] = {
            "kind": "inline", "must_understand": False,
            "metadata": {node: doc for node, doc in sorted(documents.items()) if node}}
        for node, document in documents.items():
            if node not in self.compressed:
                self.destination.add_document(node, document)


def _nothing(*_) -> tuple:
    return 0, float("nan")


def unpublished_array(store, path: str, document: dict, config=None) -> zarr.Array:
    """A zarr array handle on ``store`` at ``path`` with ``document`` as its metadata, which
    is not in the store yet: writing through it puts chunks only, every chunk written, fill
    values too (``config``: zarr's ArrayConfig fields; a handle's own, as zarr.config.set is
    one global, not a task's)."""
    return zarr.Array(zarr.AsyncArray(metadata=document, store_path=StorePath(store, path),
                                      config={"write_empty_chunks": True, **(config or {})}))


def _after(destination, plans, memory, store, storage_options):
    """The group written, opened from the target."""
    from .writer import reopen

    return zarr.open_group(reopen(store, storage_options, destination), mode="r")
