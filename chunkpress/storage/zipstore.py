"""A ``.zip`` store: written as a temporary zip file beside it, renamed over it at the end.

A zip file cannot replace its entries in place, so a ``.zip`` path is written whole
(:func:`zip_destination`, under the same lock as a local directory); a ZipStore already
opened is written into as it is (:func:`open_zip_destination`). Dask tokenizes the zarr
arrays a write stores into: the tokenizers here name a ZipStore by its path, since pickling
one (dask's fallback) and unpickling it would reopen the file in mode "w" and empty it.
"""

from __future__ import annotations

import os

from dask.tokenize import normalize_token
from zarr.core.sync import sync
from zarr.storage import StorePath, ZipStore

from .destination import Destination, first_key, staging_name
from .foreign import refuse_foreign_zip
from .local import Lock, cleanup

__all__ = ["ZipDestination", "zip_destination", "open_zip_destination"]


class ZipDestination(Destination):
    """A ``.zip`` file: written as a temporary zip file beside it, renamed over it at the end."""

    def __init__(self, target: str, write: str, lock: Lock):
        self.zip_path = os.path.abspath(target)
        self.temporary = staging_name(self.zip_path, "staging", write) + ".zip"
        super().__init__(ZipStore(self.temporary, mode="w"), "", write, target)
        self.lock = lock

    def publish(self) -> None:
        super().publish()
        _close_zip(self.store)
        os.replace(self.temporary, self.zip_path)

    def abort(self) -> None:
        """Remove the temporary zip file, whatever closing it raises."""
        try:
            _close_zip(self.store)
        except OSError:
            pass  # its directory could not be written (a full disk): the file goes anyway
        finally:
            # tasks still running put nothing more: zarr would reopen (recreate) the closed
            # file (zarr has no public way to make a store read-only)
            self.store._read_only = True
            if os.path.exists(self.temporary):
                os.remove(self.temporary)

    def close(self) -> None:
        self.lock.release()


def zip_destination(target: str, node: str, overwrite: bool, write: str) -> Destination:
    if node:
        raise ValueError("a .zip store is written whole: give path=None")
    lock = Lock(target)
    try:
        cleanup(target)
        if os.path.isdir(target):
            raise FileExistsError(f"{target} is a directory, not a zip file; chunkpress does "
                                  "not replace it: choose another name")
        if os.path.lexists(target):
            if not overwrite:
                raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
            refuse_foreign_zip(target)
        return ZipDestination(target, write, lock)
    except BaseException:
        lock.release()
        raise


def open_zip_destination(store: ZipStore, node: str, write: str) -> Destination:
    """An open ZipStore: written into as it is (a zip file is unreadable until closed, and
    opening it with mode "w" already emptied it); a ``.zip`` path is the safe way to replace
    one."""
    if store.read_only:
        raise ValueError(f"{store} is read-only; open it with mode='w' to write to it")
    if not store._is_open:  # zarr opens a store on first use; listing needs it open now
        sync(store._open())
    if sync(first_key(store.list_prefix(f"{node}/" if node else ""))) is not None:
        raise FileExistsError(f"{store} already holds {node or 'a store'}; a zip file cannot "
                              "replace entries in place: give its .zip path with "
                              "overwrite=True, which writes a new file and renames it")
    return Destination(store, node, write, str(store))


@normalize_token.register(ZipStore)
def _tokenize_zip(store: ZipStore):
    # dask tokenizes the zarr arrays a write stores into; its fallback pickles them, and
    # unpickling a ZipStore reopens its file in mode "w", truncating what is written so far
    # (the mode the file was opened with is kept privately only: ZipStore exposes no mode)
    return ("zarr.storage.ZipStore", os.path.abspath(store.path), store._zmode)


@normalize_token.register(StorePath)
def _tokenize_store_path(store_path: StorePath):
    return ("zarr.storage.StorePath", normalize_token(store_path.store), store_path.path)


def _close_zip(store: ZipStore) -> None:
    if store._is_open:  # zarr opens a zip store on first use; closing one never opened fails
        store.close()
