"""Replace, never destroy: where a write goes until it is complete, and how it becomes the store.

A write gets a :class:`Destination` from :func:`open_destination`. The chunks, and the exact
variables' data, go to ``destination.store``, where no reader of the target looks; the
metadata documents (``zarr.json``) are handed to the destination and written by
:meth:`Destination.publish`, the one step that makes the write the store, after the writing
process has seen every chunk it expects. Until then the target reads as before. How, per
kind of store:

- a local directory: the write goes to a staging directory beside the store's root
  (``.NAME.chunkpress-WRITE``); publishing renames the old root aside, the staging directory
  into place, then deletes the old one. A crash between the two renames is repaired by the
  next open (:func:`repair`). A ``.zip`` file: a temporary zip file beside it, then a rename.
- stores that cannot rename (object stores, memory): the new arrays' chunks go under keys the
  old metadata does not name (chunk key separator ``/`` and ``.`` alternate between writes),
  publishing puts each ``zarr.json`` in one put, then deletes the old chunks.
- Icechunk: see ``icechunk_destination``: the session's own transaction.

``overwrite=True`` replaces only a Zarr store: a target holding anything else is refused,
naming what was found, and nothing chunkpress did not write is ever deleted. Two writers of
one target: the second is refused (a lock beside a local target, or in the store).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import time
import weakref

from dask.tokenize import normalize_token
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, StorePath, ZipStore

from . import integrity

__all__ = ["open_destination", "Destination", "check_complete", "repair",
           "IncompleteStoreError", "WriterBusyError", "staging_name", "check_replaceable",
           "replacing_file"]

#: the key a node's zarr.json was kept under while its chunks were written (older versions)
WRITING = "zarr.json.writing"
_ZARR_FILES = {"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata", WRITING}
_CHUNK_KEY = re.compile(r"^(c([./]\d+)*|\d+([./]\d+)*)$")
_OURS = re.compile(r"^\.(?P<name>.+)\.chunkpress-(?P<kind>staging|old|lock|trash)"
                   r"(-(?P<id>[0-9a-f]{16}))?(\.zip)?$")


class IncompleteStoreError(FileNotFoundError):
    """A store whose writing stopped before it was published."""


class WriterBusyError(FileExistsError):
    """Another writer holds the target."""


def staging_name(root: str, kind: str, write: str | None = None) -> str:
    """The path beside ``root`` that chunkpress uses for ``kind`` (staging, old, lock)."""
    parent, name = os.path.split(os.path.abspath(root))
    suffix = f"-{write}" if write else ""
    return os.path.join(parent, f".{name}.chunkpress-{kind}{suffix}")


class Destination:
    """Where a write goes until :meth:`publish` makes it the target (see the module)."""

    #: documents are written before the chunks (stores that refuse chunks of unknown arrays)
    documents_first = False
    #: a picklable function of the store a write task wrote to, whose value the task returns
    #: and :meth:`collect` gets before publishing (Icechunk: the task's fork of the session)
    returns = None

    def __init__(self, store, node: str, write: str, target: str):
        self.store = store
        self.node = node.strip("/")
        self.write = write
        self.target = target  # for messages
        self._documents: dict[str, bytes] = {}
        self._expected: dict[str, list] = {}
        self._old: dict[str, dict] = {}

    def __reduce__(self):
        # publishing checks the store as this process sees it, and holds its lock here
        raise TypeError(
            "a chunkpress write publishes in the process that started it: run it with its own "
            ".compute() (any scheduler, a distributed client too), or compute job.writes "
            "(e.g. client.compute(job.writes)) and then call job.finish(result) here")

    # -- what the writer tells the destination ---------------------------------------------

    def key_encoding(self, node: str) -> dict:
        """The chunk key encoding of a new array at ``node`` (relative to the target)."""
        return {"name": "default", "configuration": {"separator": "/"}}

    def add_document(self, node: str, document: dict | bytes, expected_keys=()) -> None:
        """Record the ``zarr.json`` of ``node`` (relative to the target's node), to write at
        publish, and the chunk keys (relative to ``node``) that must be there by then."""
        path = self.path(node)
        if isinstance(document, dict):
            document = json.dumps(document, indent=2).encode()
        self._documents[path] = document
        self._expected[path] = list(expected_keys)
        if self.documents_first:
            self._put(f"{path}/zarr.json" if path else "zarr.json", document)

    def existing_document(self, node: str = "") -> dict | None:
        """The ``zarr.json`` now at ``node`` of the target (what the write replaces), if any."""
        path = self.path(node)
        return _read_document(self.store, f"{path}/zarr.json" if path else "zarr.json")

    def path(self, node: str) -> str:
        """The path in ``self.store`` of ``node`` (relative to the target's node)."""
        return "/".join(p for p in (self.node, node.strip("/")) if p)

    # -- the end of a write ---------------------------------------------------------------

    def check(self) -> None:
        """Raise unless every chunk the write expects is in the store (as the client sees it)."""
        for path, keys in self._expected.items():
            if not keys:
                continue
            prefix = f"{path}/" if path else ""
            present = set(sync(_collect(self.store.list_prefix(prefix))))
            missing = [k for k in keys if prefix + k not in present]
            if missing:
                raise IncompleteStoreError(
                    f"{self.target}: {len(missing)} of the {len(keys)} chunks written for "
                    f"{path or 'the array'} are not in the store as this process sees it "
                    f"(e.g. {missing[0]!r}); nothing was published. Workers on other machines "
                    "write to their own disks: give a path on a file system every worker and "
                    "this process share, or an object store (s3://...)")

    def publish(self) -> None:
        """Make the write the target: documents of arrays first, groups after, root last."""
        self.check()
        for path in sorted(self._documents, key=lambda p: (-p.count("/"), p == "", p)):
            if not self.documents_first:
                self._put(f"{path}/zarr.json" if path else "zarr.json", self._documents[path])

    def collect(self, returned: list) -> None:
        """Take what the write tasks returned (see :attr:`returns`)."""

    def abort(self) -> None:
        """Remove what this write put where no reader looks (never what it did not write)."""

    def close(self) -> None:
        """Release what the destination holds (a lock, a zip file)."""

    def _put(self, key: str, data: bytes) -> None:
        buffer = default_buffer_prototype().buffer.from_bytes(data)
        sync(self.store.set(key, buffer))


async def _collect(iterator) -> list:
    return [key async for key in iterator]


# --- local directories and zip files ----------------------------------------------------------


class _Lock:
    """An exclusive lock beside a local target: ``flock``, so a killed writer releases it."""

    def __init__(self, root: str):
        self.path = staging_name(root, "lock")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        while True:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip()
                os.close(self.fd)
                self.fd = None
                if holder.startswith(f"pid {os.getpid()} "):
                    raise WriterBusyError(
                        f"{root}: an earlier write of this process holds it: a compute=False "
                        "write not run yet, or one whose run failed; call its .abort() (or "
                        "drop it) first") from None
                raise WriterBusyError(
                    f"{root}: another chunkpress write to it is running "
                    f"({holder or 'unknown'}); wait for it to finish, or write elsewhere"
                ) from None
            # the holder before us unlinks the file as it lets go: locked, it must still be
            # the file at the path, else a third writer could lock the new one beside us
            try:
                if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(self.fd)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                           f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        # a write dropped without being run or aborted lets go when it is collected
        self._release = weakref.finalize(self, _let_go, self.path, self.fd)

    def release(self) -> None:
        if self.fd is not None:
            self._release()
            self.fd = None


def _let_go(path: str, fd: int) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.close(fd)


class LocalDestination(Destination):
    """A local directory store: a staging directory beside its root, then renames."""

    def __init__(self, root: str, node: str, write: str, lock: _Lock):
        self.root = os.path.abspath(root)
        self.staging = staging_name(self.root, "staging", write)
        os.makedirs(self.staging)
        super().__init__(LocalStore(self.staging), "", write, root)
        self.target_node = node.strip("/")  # where the staged node goes in the root
        self.lock = lock

    def existing_document(self, node: str = "") -> dict | None:
        path = os.path.join(self.root, self.target_node, node.strip("/"), "zarr.json")
        try:
            with open(path, "rb") as file:
                return json.loads(file.read())
        except (OSError, ValueError):
            return None

    def publish(self) -> None:
        super().publish()
        if not self.target_node:
            _swap(self.staging, self.root, self.write)
        else:
            node_dir = os.path.join(self.root, self.target_node)
            _ensure_groups(self.root, self.target_node)
            _swap(self.staging, node_dir, self.write)
            _refresh_consolidated(os.path.join(self.root, "zarr.json"), self.target_node,
                                  self._documents.get(""))

    def abort(self) -> None:
        # renamed first: a task still running (dask does not wait for them) writes by the
        # staging path, which is then gone, and is never made again (see ChunkSink.put)
        trash = staging_name(self.root, "trash", self.write)
        try:
            os.rename(self.staging, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def close(self) -> None:
        self.lock.release()


def _refresh_consolidated(root_document: str, node: str, document: bytes | None) -> None:
    """Put the new document of ``node`` into the root's consolidated metadata (what
    ``xr.open_zarr`` reads first), where the root has one: one write, then a rename."""
    try:
        with open(root_document, "rb") as file:
            root = json.loads(file.read())
    except (OSError, ValueError):
        return
    consolidated = root.get("consolidated_metadata")
    if not isinstance(consolidated, dict) or document is None:
        return
    metadata = dict(consolidated.get("metadata") or {})
    metadata[node] = json.loads(document)
    root["consolidated_metadata"] = {**consolidated, "metadata": metadata}
    partial = f"{root_document}.{os.getpid()}.partial"
    with open(partial, "w") as file:
        json.dump(root, file, indent=2)
    os.replace(partial, root_document)


def _read_document(store, key: str) -> dict | None:
    try:
        buffer = sync(store.get(key, default_buffer_prototype()))
        return None if buffer is None else json.loads(buffer.to_bytes())
    except (OSError, ValueError, KeyError):
        return None


def _swap(staging: str, target: str, write: str) -> None:
    """Put the complete ``staging`` directory at ``target``; the old one is deleted after."""
    old = staging_name(target, "old", write)
    if os.path.lexists(target):
        os.rename(target, old)
        os.rename(staging, target)  # a crash between the renames: see repair()
        shutil.rmtree(old)
    else:
        os.rename(staging, target)


def _ensure_groups(root: str, node: str) -> None:
    """Write the group documents a node's parents lack (as zarr does for a new array)."""
    parts = node.split("/")[:-1]
    for depth in range(len(parts) + 1):
        directory = os.path.join(root, *parts[:depth])
        document = os.path.join(directory, "zarr.json")
        if not os.path.exists(document):
            os.makedirs(directory, exist_ok=True)
            with open(document, "w") as file:
                json.dump({"zarr_format": 3, "node_type": "group", "attributes": {}}, file)


def repair(root: str, node: str | None = None, *, locked: bool = False) -> str | None:
    """Finish or undo a swap that a crash interrupted at ``root`` (its ``node``); say what
    was done. ``locked``: the caller holds the lock of ``root``; otherwise it is taken here,
    and nothing is done while a live writer holds it."""
    root = os.path.abspath(root)
    top = os.path.join(root, node.strip("/")) if node and node.strip("/") else root
    if not _swap_interrupted(top):
        return None
    if not locked:
        try:
            lock = _Lock(root)
        except (WriterBusyError, OSError):  # a live writer (it repairs), or a read-only place
            return None
        try:
            return repair(root, node, locked=True)
        finally:
            lock.release()
    old = _swap_interrupted(top)
    if not old:
        return None
    write = old.rsplit("-", 1)[1]
    staging = staging_name(root, "staging", write)
    if os.path.exists(os.path.join(staging, "zarr.json")):
        os.rename(staging, top)
        shutil.rmtree(old, ignore_errors=True)
        return f"{top}: finished a write that was interrupted while it was put in place"
    os.rename(old, top)
    return f"{top}: put back the store that an interrupted write was replacing"


def _swap_interrupted(top: str) -> str | None:
    """The old directory a swap at ``top`` renamed aside, if nothing took its place."""
    if os.path.lexists(top):
        return None
    parent, name = os.path.split(top)
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return None
    olds = [e for e in entries if _OURS.match(e) and _OURS.match(e)["name"] == name
            and _OURS.match(e)["kind"] == "old"]
    return os.path.join(parent, olds[0]) if olds else None


def _cleanup(root: str, node: str = "") -> None:
    """Remove what writers that died left (called with the lock held): their staging
    directories or files, and old directories a finished swap had not deleted yet."""
    root = os.path.abspath(root)
    top = os.path.join(root, node) if node else root
    for place, kinds in ((root, ("staging", "trash")), (top, ("old",))):
        parent, name = os.path.split(place)
        if kinds == ("old",) and not os.path.lexists(place):
            continue  # the old one is all there is: repair() puts it back, never delete it
        try:
            entries = os.listdir(parent)
        except OSError:
            continue
        for entry in entries:
            match = _OURS.match(entry)
            if match and match["name"] == name and match["kind"] in kinds and match["id"]:
                path = os.path.join(parent, entry)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)


class ZipDestination(Destination):
    """A ``.zip`` file: written as a temporary zip file beside it, renamed over it at the end."""

    def __init__(self, target: str, write: str, lock: _Lock):
        self.zip_path = os.path.abspath(target)
        self.temporary = staging_name(self.zip_path, "staging", write) + ".zip"
        super().__init__(ZipStore(self.temporary, mode="w"), "", write, target)
        self.lock = lock

    def publish(self) -> None:
        super().publish()
        _close_zip(self.store)
        os.replace(self.temporary, self.zip_path)

    def abort(self) -> None:
        _close_zip(self.store)
        # tasks still running put nothing more: zarr would reopen (recreate) the closed file
        self.store._read_only = True  # zarr has no public way to make a store read-only
        if os.path.exists(self.temporary):
            os.remove(self.temporary)

    def close(self) -> None:
        self.lock.release()


@normalize_token.register(ZipStore)
def _tokenize_zip(store: ZipStore):
    # dask tokenizes the zarr arrays a write stores into; its fallback pickles them, and
    # unpickling a ZipStore reopens its file in mode "w", truncating what is written so far
    return ("zarr.storage.ZipStore", os.path.abspath(store.path), store._zmode)


@normalize_token.register(StorePath)
def _tokenize_store_path(store_path: StorePath):
    return ("zarr.storage.StorePath", normalize_token(store_path.store), store_path.path)


def _close_zip(store: ZipStore) -> None:
    if store._is_open:  # zarr opens a zip store on first use; closing one never opened fails
        store.close()


def _refuse_foreign(root: str, node: str) -> None:
    """Raise unless the directory ``root`` (its ``node``) holds a Zarr store and nothing else."""
    top = os.path.join(root, node) if node else root
    if not os.path.isdir(top) or os.path.islink(top):
        what = "a symbolic link" if os.path.islink(top) else "a file"
        raise FileExistsError(f"{top} is {what}, not a Zarr store; chunkpress does not replace "
                              "it: choose another name, or remove it yourself")
    arrays = []
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            if os.path.islink(os.path.join(directory, name)):
                raise FileExistsError(
                    f"{top} holds {os.path.join(directory, name)!r}, a symbolic link, which "
                    "chunkpress did not write; overwrite=True replaces only a Zarr store and "
                    "never deletes what it did not write: choose another path")
        if "zarr.json" in files or ".zarray" in files:
            kind = "array" if ".zarray" in files else _node_type(directory)
            if kind == "array":
                arrays.append(directory)
                dirs[:] = []  # chunk keys: checked below
                _refuse_foreign_chunks(directory)
                continue
        for name in files:
            if name not in _ZARR_FILES:
                raise FileExistsError(
                    f"{top} holds {os.path.join(directory, name)!r}, which is not part of a "
                    "Zarr store; overwrite=True replaces only a Zarr store and chunkpress never "
                    "deletes files it did not write: choose another path")
    if not os.path.exists(os.path.join(top, "zarr.json")) and \
            not os.path.exists(os.path.join(top, ".zgroup")) and not arrays and os.listdir(top):
        raise FileExistsError(f"{top} is a directory but not a Zarr store; overwrite=True "
                              "replaces only a Zarr store: choose another path")


def _refuse_foreign_chunks(array_dir: str) -> None:
    for directory, _, files in os.walk(array_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(directory, name), array_dir)
            if name in _ZARR_FILES or _CHUNK_KEY.match(rel.replace(os.sep, "/")):
                continue
            if name.startswith(".") and name.endswith(".partial"):
                continue  # a chunk file of an older chunkpress, cut off mid-write
            raise FileExistsError(
                f"{array_dir} holds {rel!r}, which is not a chunk of its Zarr array; "
                "overwrite=True replaces only a Zarr store and chunkpress never deletes files "
                "it did not write: choose another path")


def _node_type(directory: str) -> str | None:
    try:
        with open(os.path.join(directory, "zarr.json")) as file:
            return json.load(file).get("node_type")
    except (OSError, ValueError, AttributeError):
        return None


# --- choosing one -----------------------------------------------------------------------------


def open_destination(store, path=None, *, overwrite=False, storage_options=None,
                     write: str | None = None) -> Destination:
    """Return where a write of ``path`` in ``store`` goes (see the module's docstring).

    Refuses, before anything is written: an existing node without ``overwrite``; with it, a
    target that is not a Zarr store or holds anything else; a target another writer holds.
    """
    write = write or integrity.new_write_id()
    node = node_path(path)
    if isinstance(store, (str, os.PathLike)) and "://" not in str(store):
        target = os.path.abspath(os.fspath(store))
        _refuse_around(target)
        if target.endswith(".zip"):
            return _zip_destination(target, node, overwrite, write)
        return _local_destination(target, node, overwrite, write)
    if isinstance(store, LocalStore):
        if store.read_only:
            raise ValueError(f"{store} is read-only; open it writable to write to it")
        _refuse_around(os.path.abspath(str(store.root)))
        return _local_destination(str(store.root), node, overwrite, write)
    if isinstance(store, str):
        from zarr.storage import FsspecStore

        store = FsspecStore.from_url(store, storage_options=storage_options)
    elif storage_options is not None:
        raise ValueError("storage_options go with a URL (s3://...), not with a store object")
    if type(store).__module__.startswith("icechunk"):
        from .icechunk import icechunk_destination

        return icechunk_destination(store, node, overwrite, write)
    if isinstance(store, ZipStore):
        return _open_zip_destination(store, node, write)
    from .objectstore import in_place_destination

    return in_place_destination(store, node, overwrite, write)


def node_path(path) -> str:
    """``path=`` as a node path (``a/b``), refusing what would leave the store."""
    if path is None:
        return ""
    if not isinstance(path, str):
        raise TypeError(f"path must be a string such as 'sst' or 'ocean/sst', got {path!r}")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") or "\\" in p for p in parts):
        raise ValueError(f"path must name a node inside the store ('sst', 'ocean/sst'); "
                         f"{path!r} has a '.' or '..' part")
    return "/".join(parts)


def _refuse_around(target: str) -> None:
    """Refuse a local target that is the working directory (or holds it), or that lies inside
    a Zarr array: replacing the first pulls the directory from under the shell, writing into
    the second puts foreign files among the array's chunks."""
    here = os.path.abspath(os.getcwd())
    if here == target or here.startswith(target.rstrip(os.sep) + os.sep):
        if os.path.isdir(target) and os.listdir(target):
            _refuse_foreign(target, "")  # what is there, named, where it is not a store
        raise ValueError(f"{target} is the current directory or holds it; give the path of "
                         "a new or existing store (e.g. out.zarr), not '.'")
    parent = os.path.dirname(target)
    while parent and parent != os.path.dirname(parent):
        if _node_type(parent) == "array":
            raise ValueError(f"{target} lies inside the Zarr array {parent}; write the store "
                             "elsewhere")
        parent = os.path.dirname(parent)


def _local_destination(root: str, node: str, overwrite: bool, write: str) -> Destination:
    if os.path.islink(root):
        raise FileExistsError(f"{root} is a symbolic link (to {os.readlink(root)}); give the "
                              "path of the store itself: chunkpress replaces a store by "
                              "renames, which would replace the link")
    lock = _Lock(root)
    try:
        message = repair(root, node, locked=True)
        if message:
            import warnings

            warnings.warn(message, stacklevel=3)
        _cleanup(root, node)
        top = os.path.join(root, node) if node else root
        if os.path.lexists(top) and not (os.path.isdir(top) and not os.listdir(top)):
            if not overwrite:
                raise FileExistsError(f"{top} already exists; pass overwrite=True to replace "
                                      "it")
            _refuse_foreign(root, node)
        elif node and os.path.exists(root) and not os.path.isdir(root):
            raise FileExistsError(f"{root} is a file, not a Zarr store: choose another path")
        return LocalDestination(root, node, write, lock)
    except BaseException:
        lock.release()
        raise


def _zip_destination(target: str, node: str, overwrite: bool, write: str) -> Destination:
    if node:
        raise ValueError("a .zip store is written whole: give path=None")
    lock = _Lock(target)
    try:
        _cleanup(target)
        if os.path.isdir(target):
            raise FileExistsError(f"{target} is a directory, not a zip file; chunkpress does "
                                  "not replace it: choose another name")
        if os.path.lexists(target):
            if not overwrite:
                raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
            _refuse_foreign_zip(target)
        return ZipDestination(target, write, lock)
    except BaseException:
        lock.release()
        raise


def _open_zip_destination(store: ZipStore, node: str, write: str) -> Destination:
    """An open ZipStore: written into as it is (a zip file is unreadable until closed, and
    opening it with mode "w" already emptied it); a ``.zip`` path is the safe way to replace
    one."""
    if store.read_only:
        raise ValueError(f"{store} is read-only; open it with mode='w' to write to it")
    if not store._is_open:  # zarr opens a store on first use; listing needs it open now
        sync(store._open())
    if sync(_first(store.list_prefix(f"{node}/" if node else ""))) is not None:
        raise FileExistsError(f"{store} already holds {node or 'a store'}; a zip file cannot "
                              "replace entries in place: give its .zip path with "
                              "overwrite=True, which writes a new file and renames it")
    return Destination(store, node, write, str(store))


def _refuse_foreign_zip(target: str) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(target) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, IsADirectoryError):
        raise FileExistsError(f"{target} is not a zip file holding a Zarr store; chunkpress "
                              "does not replace it: choose another name") from None
    if "zarr.json" not in names:
        raise FileExistsError(f"{target} is a zip file but holds no Zarr store (no zarr.json "
                              "at its root); chunkpress does not replace it")


def check_replaceable(target: str) -> None:
    """Raise FileExistsError, saying what is there, unless the existing local path
    ``target`` is a Zarr store (a directory, or a ``.zip`` file) that overwrite=True replaces."""
    target = os.path.abspath(target)
    if target.endswith(".zip") and not os.path.isdir(target):
        _refuse_foreign_zip(target)
    else:
        _refuse_foreign(target, "")


@contextlib.contextmanager
def replacing_file(path: str):
    """Yield a temporary path beside ``path`` to write a whole file at (a netCDF file, say);
    renamed over ``path`` when the block ends without error, removed if it raises. A write
    killed halfway leaves ``path`` as it was, and its temporary file to the next write."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; chunkpress replaces only a file there: "
                                "give the name of a file")
    lock = _Lock(path)
    try:
        _cleanup(path)
        temporary = staging_name(path, "staging", integrity.new_write_id())
        try:
            yield temporary
            if os.path.exists(path):  # the file it replaces keeps its permissions
                os.chmod(temporary, os.stat(path).st_mode & 0o7777)
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise
    finally:
        lock.release()


# --- what readers check -------------------------------------------------------------------


def check_complete(store, path=None, storage_options=None) -> None:
    """Raise IncompleteStoreError if ``store`` holds a write that stopped before publishing.

    For a local directory, also repair a swap that a crash interrupted (see :func:`repair`).
    """
    from .journal import finish_pending  # an append cut off between its metadata puts

    try:
        finish_pending(store)
    except OSError:
        pass
    if isinstance(store, (str, os.PathLike)) and "://" not in str(store):
        root = os.path.abspath(os.fspath(store))
        if not root.endswith(".zip"):
            _repair_quietly(root, path)
            _local_unfinished(root, path)
        return
    if isinstance(store, LocalStore):
        _repair_quietly(str(store.root), path)
        _local_unfinished(str(store.root), path)
        return
    if isinstance(store, ZipStore):
        return  # a zip file is put in place whole (see ZipDestination)
    if type(store).__module__.startswith("icechunk"):
        return  # its transactions show no half write (and it refuses the key WRITING)
    try:
        node = sync(_store_path(store, path))
        unfinished = sync((node / WRITING).exists())
        if not unfinished and not sync((node / "zarr.json").exists()):
            unfinished = bool(sync(_first(node.store.list_prefix(f"{node.path}/" if node.path
                                                                 else ""))))
    except (OSError, ValueError, TypeError):
        return
    if unfinished:
        raise IncompleteStoreError(
            f"{store}/{path or ''} is incomplete: it was being written and the writer stopped "
            "before it was finished; write it again with overwrite=True")


def _repair_quietly(root: str, path) -> None:
    try:
        repair(root)
        if path:
            repair(root, path)
    except OSError:  # another reader repaired it first, or the place is read-only
        pass


def _local_unfinished(root: str, path) -> None:
    top = os.path.join(root, path) if path else root
    if os.path.exists(os.path.join(top, "zarr.json")):
        return
    parent, name = os.path.split(os.path.abspath(root))
    try:
        pending = [e for e in os.listdir(parent) if e.startswith(f".{name}.chunkpress-staging-")]
    except OSError:
        pending = []
    if os.path.exists(os.path.join(top, WRITING)) or (pending and not os.path.exists(root)):
        raise IncompleteStoreError(
            f"{top} is incomplete: it was being written and the writer stopped before it was "
            "finished; write it again with overwrite=True")


async def _store_path(store, path):
    return StorePath(store, (path or "").strip("/"))


async def _first(iterator):
    async for key in iterator:
        return key
    return None
