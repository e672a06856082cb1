"""The update of an existing store (an append or a region write), as a destination.

:class:`Update` is the :class:`~.destination.Destination` of an append or region write: it
opens the store (one writer at a time, as ``publish`` does), reads the arrays' documents
(:class:`StoreArray`: the codec, target and chunk shape the update must keep), puts chunks into
the store itself where no reader looks yet, and publishes the new documents through the
``journal``. :class:`StagedSink` is the sink of a local region write: each chunk under a
temporary name beside its key, renamed over it at publish.

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

import json
import math
import os
import warnings

from zarr.core.sync import sync
from zarr.storage import LocalStore, ZipStore

from ..graph import codecs, information
from . import integrity
from .dataset import unpublished_array
from .destination import Destination, IncompleteStoreError, read_json, staging_name
from .journal import commit, finish_pending, ordered
from .local import Lock, repair
from .reader import Layout
from .writer import ChunkSink

__all__ = ["Update", "StoreArray", "StagedSink"]


# --- the store's arrays as an update sees them -----------------------------------------------


class StoreArray:
    """One array of the store being updated: its document and how its chunks are stored."""

    def __init__(self, store, node: str, document: dict):
        self.node = node
        self.document = document
        self.handle = unpublished_array(store, node, document)
        read = Layout(self.handle)
        self.codec = read.codec  # the chunkpress codec, None: an exact (plain zarr) array
        # from the codecs, not the shapes: a shard may hold one chunk, and is still a shard
        # (its index beside the chunk), written whole as a first write does
        self.sharding = read.sharding
        self.chunk_shape = read.chunk_shape
        self.grid_shape = tuple(self.handle.metadata.chunk_grid.chunk_shape)  # shards or chunks
        self.shape = tuple(document["shape"])
        self.dims = tuple(document.get("dimension_names") or
                          document.get("attributes", {}).get("_ARRAY_DIMENSIONS") or ())

    @property
    def sharded(self) -> bool:
        return self.sharding is not None

    def describe(self) -> str:
        target = ", ".join(f"{k}={v}" for k, v in self.codec.target.items())
        return f"{self.codec.name}" + (f" with {target}" if target else "")

    def check_given(self, name, codec=None, params=None) -> None:
        """Raise ValueError if ``codec`` or ``params`` (stored units) differ from the store's."""
        given = {k: v for k, v in (params or {}).items() if v is not None}
        conflicts = []
        if codec is not None and codecs.get_codec(codec).name != self.codec.spec.name:
            conflicts.append(f"codec={codec!r}")
        target = self.codec.target
        # information= chose the store's keepbits: the same share given again is the store's
        rounding = (self.document.get("attributes") or {}).get(information.ATTRIBUTE) or {}
        for key, value in given.items():
            if key == "information" and isinstance(rounding, dict) and \
                    _same(rounding.get("information"), value):
                continue
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


# --- the update: a destination that writes into the store itself -----------------------------


class Update(Destination):
    """An append or region write of an existing store: chunks where no reader looks yet,
    documents through the journal (see the module)."""

    def __init__(self, store, storage_options=None):
        self.lock = None
        self.local_root = None
        self.given = store
        if isinstance(store, (str, os.PathLike)) and "://" not in str(store):
            if storage_options is not None:
                raise ValueError(f"storage_options go with a URL (s3://...), not with the "
                                 f"local path {os.fspath(store)!r}: drop them")
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
            message = repair(self.local_root)
            if message:
                warnings.warn(message, stacklevel=4)
            self.lock = Lock(self.local_root)  # one writer at a time, as publish does
        self.icechunk = type(store).__module__.startswith("icechunk")
        super().__init__(store, "", integrity.new_write_id(), str(self.local_root or store))
        try:
            finish_pending(self.local_root or store)
            if self.local_root is not None:
                _remove_dead_staged(self.local_root)
        except BaseException:
            self.close()
            raise
        self._restore: dict[str, bytes] = {}  # Icechunk: documents put early, as they were
        self._marked = False  # whether this write's staged-chunks marker is beside the store
        self._written: list[str] = []  # chunk keys no reader reads yet: removed by abort()
        self._unchecked: list[str] = []  # the same, that zarr may leave out (all fill values)
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
        return read_json(self.store, key)

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

    def expect(self, node: str, keys, *, new: bool, staged_sink=None, checked=True) -> None:
        """Chunk keys (relative to ``node``) this write puts: ``new`` ones lie outside the
        old shape (an abort removes them); a staged sink's are renamed at publish. Not
        ``checked``: written through zarr, which leaves out a chunk of fill values, so
        publishing does not look for them."""
        prefix = f"{node}/" if node else ""
        if staged_sink is not None and self.local_root is not None and not self._marked:
            # beside the store, until this write publishes or aborts: the next writer removes
            # the staged chunks of a write killed before either (see _remove_dead_staged)
            with open(_marker(self.local_root, self.write), "wb"):
                pass
            self._marked = True
        for key in keys:
            if staged_sink is not None:
                self._renames.append((prefix + staged_sink.staged(key), prefix + key))
            elif new:
                (self._written if checked else self._unchecked).append(prefix + key)

    def extend_first(self, documents: dict) -> None:
        """Put the new documents of arrays that grow now, keeping the old ones to put back
        on abort (Icechunk, whose session is the transaction; see update_plans.run)."""
        for node, document in documents.items():
            key = f"{node}/zarr.json" if node else "zarr.json"
            old = self.read_document(node)
            self._restore[key] = json.dumps(old, indent=2).encode()
            self._put(key, json.dumps(document, indent=2).encode())

    def guard(self, node: str, document: dict) -> None:
        """A document the update relies on (unchanged): the journal checks it is still there."""
        self._guards[node] = document

    def check(self) -> None:
        missing = [k for k in [*self._written, *(s for s, _ in self._renames)]
                   if not self._exists(k)]
        if missing:
            raise IncompleteStoreError(
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
        self._unmark()

    def abort(self) -> None:
        """Remove the chunks this write put where no reader looks (never an old chunk)."""
        for key in [*self._written, *self._unchecked, *(s for s, _ in self._renames)]:
            try:
                if self.local_root is not None:
                    os.remove(os.path.join(self.local_root, key))
                elif not self.icechunk or sync(self.store.exists(key)):
                    # (Icechunk refuses to delete a key beyond an array's shape: never put)
                    sync(self.store.delete(key))
            except FileNotFoundError:
                pass
        for key, data in self._restore.items():  # the arrays as they were (Icechunk)
            self._put(key, data)
        self._restore = {}
        self._unmark()

    def _unmark(self) -> None:
        if self._marked:
            try:
                os.remove(_marker(self.local_root, self.write))
            except FileNotFoundError:
                pass
            self._marked = False

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def _marker(root: str, write: str) -> str:
    """The marker of a write's staged chunks: beside the directory itself, whatever name a
    writer gives it (a symbolic link), as the lock is."""
    return staging_name(os.path.realpath(root), "staged", write)


def _remove_dead_staged(root: str) -> None:
    """Remove the staged chunks of writes that died before publishing or aborting (called
    with the lock held and the journal finished: no live write stages, and a committed one
    has renamed its chunks). Each such write left its marker beside the store; the store is
    walked only then, and only files of that write's own staged name are removed."""
    parent, name = os.path.split(os.path.realpath(root))
    prefix = f".{name}.chunkpress-staged-"
    try:
        markers = [e for e in os.listdir(parent) if e.startswith(prefix)]
    except OSError:
        return
    if not markers:
        return
    endings = tuple(f".chunkpress-{marker[len(prefix):]}.partial" for marker in markers)
    for directory, _, files in os.walk(root):
        for file in files:
            if file.startswith(".") and file.endswith(endings):
                os.remove(os.path.join(directory, file))
    for marker in markers:
        os.remove(os.path.join(parent, marker))


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
