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

This module chooses the destination (:func:`open_destination`) and holds what readers check
(:func:`check_complete`). The parts live beside it: ``destination`` (the base class and the
errors), ``local`` (directories: the lock, staging, swap, repair), ``zipstore`` (``.zip``
files), ``foreign`` (refusing what chunkpress did not write), ``objectstore``, ``icechunk``.
"""

from __future__ import annotations

import os
import time

import numpy as np
from zarr.core.sync import sync
from zarr.storage import LocalStore, StorePath, ZipStore

from . import integrity
from .destination import (WRITING, Destination, IncompleteStoreError, WriterBusyError,
                          first_key, staging_name)
from .foreign import check_replaceable, refuse_around
from .local import Lock, local_destination, repair, replacing_file
from .zipstore import open_zip_destination, zip_destination

__all__ = ["open_destination", "Destination", "check_complete", "repair",
           "IncompleteStoreError", "WriterBusyError", "staging_name", "check_replaceable",
           "replacing_file"]


# --- choosing one -----------------------------------------------------------------------------


#: xarray's and zarr's open/write modes: a ``mode=`` that is one of them meant that, not the
#: codec's mode (sperr's "psnr", ...) that chunkpress's to_zarr takes
XARRAY_MODES = ("w", "w-", "a", "a-", "r+", "r")


def check_write_options(overwrite, mode=None) -> None:
    """Refuse, before anything runs, an ``overwrite`` that is not a bool (``"no"`` would be
    true: a store replaced) and an xarray-style ``mode=``."""
    if not isinstance(overwrite, (bool, np.bool_)):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    if isinstance(mode, str) and mode in XARRAY_MODES:
        raise ValueError(f"mode={mode!r} is xarray's; chunkpress's to_zarr writes a new store, "
                         "replaces one with overwrite=True (only once the new one is "
                         "complete), adds to one with append_dim= or rewrites part with "
                         "region=. Its mode= is a codec's (e.g. sperr's 'psnr')")


def open_destination(store, path=None, *, overwrite=False, storage_options=None,
                     write: str | None = None) -> Destination:
    """Return where a write of ``path`` in ``store`` goes (see the module's docstring).

    Refuses, before anything is written: an existing node without ``overwrite``; with it, a
    target that is not a Zarr store or holds anything else; a target another writer holds.
    """
    check_write_options(overwrite)
    write = write or integrity.new_write_id()
    node = node_path(path)
    if isinstance(store, (str, os.PathLike)) and "://" not in str(store):
        if storage_options is not None:
            raise ValueError(f"storage_options go with a URL (s3://...), not with the local "
                             f"path {os.fspath(store)!r}: drop them")
        target = os.path.abspath(os.fspath(store))
        refuse_around(target)
        if target.endswith(".zip"):
            return zip_destination(target, node, overwrite, write)
        return local_destination(target, node, overwrite, write)
    if isinstance(store, LocalStore):
        if store.read_only:
            raise ValueError(f"{store} is read-only; open it writable to write to it")
        refuse_around(os.path.abspath(str(store.root)))
        return local_destination(str(store.root), node, overwrite, write)
    if isinstance(store, str):
        from zarr.storage import FsspecStore

        store = FsspecStore.from_url(store, storage_options=storage_options)
    elif storage_options is not None:
        raise ValueError("storage_options go with a URL (s3://...), not with a store object")
    if type(store).__module__.startswith("icechunk"):
        from .icechunk import icechunk_destination

        return icechunk_destination(store, node, overwrite, write)
    if isinstance(store, ZipStore):
        return open_zip_destination(store, node, write)
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


# --- what readers check -------------------------------------------------------------------


def check_complete(store, path=None, storage_options=None) -> None:
    """Raise IncompleteStoreError if ``store`` holds a write that stopped before publishing.

    For a local directory, also repair a swap that a crash interrupted (see :func:`repair`).
    """
    from .journal import finish_pending  # an append cut off between its metadata puts

    local = _local_root(store)
    if local is not None:
        _finish_pending_local(local)
    else:
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
            unfinished = bool(sync(first_key(node.store.list_prefix(f"{node.path}/" if node.path
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


#: seconds a reader waits for a live writer to finish publishing (its commit takes ms)
PUBLISH_WAIT = 30.0


def _local_root(store) -> str | None:
    if isinstance(store, (str, os.PathLike)) and "://" not in str(store):
        root = os.path.abspath(os.fspath(store))
        return None if root.endswith(".zip") else root
    if isinstance(store, LocalStore):
        return os.path.abspath(str(store.root))
    return None


def _finish_pending_local(root: str) -> None:
    """A reader finishes the journal of a write that died, holding the store's lock; the
    journal of a live writer (it holds the lock) is the writer's to carry out: the reader
    waits for it to go. Both carrying one out at once raced on each rename, and the writer
    that lost aborted while the reader published its appends half written."""
    from .journal import finish_pending, journal_path

    journal = journal_path(root)
    if not os.path.exists(journal):
        return
    try:
        lock = Lock(root, reader=True)
    except WriterBusyError:
        deadline = time.monotonic() + PUBLISH_WAIT
        while os.path.exists(journal) and time.monotonic() < deadline:
            time.sleep(0.005)
        if os.path.exists(journal):
            raise IncompleteStoreError(
                f"{root}: another process holds it and is publishing a write that has not "
                f"finished in {PUBLISH_WAIT:.0f} s; read it again once that write is done")
        return
    except OSError:  # a place this process cannot write: nor could it finish a journal
        return
    try:
        finish_pending(root)
    except OSError:
        pass
    finally:
        lock.release()


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
