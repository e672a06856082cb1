"""The metadata journal of an append or region write: its documents go in all or not at all.

An update puts several ``zarr.json`` documents (the arrays', then the root's). Before the
first, :func:`commit` writes a *journal* (beside a local store's root, or
``.chunkpress-journal.json`` at an object store's root) that holds every new document, the
digest of the one it replaces and the renames of staged chunks; then it carries the journal
out and removes it. A crash between the puts is finished by the next chunkpress reader or
writer (:func:`finish_pending`); a write that stops before the journal is complete leaves the
store as it was (a journal cut off mid-write is not valid JSON, and is dropped).

Local directories: the journal is written under a temporary name and renamed into place
before any document changes; the documents are then written under hidden temporary names and
renamed into place in order, before the journal is removed. A process killed anywhere leaves
either a complete journal (finished by the next reader) or every new document in place. Like
every write of chunkpress, this guards against a process that dies, not a power cut: nothing
is fsynced (the chunks, written just before, are not either: syncing the journal alone, 10 to
18 ms of each append in benchmarks/store.py, bought no guarantee while they are not).
"""

from __future__ import annotations

import hashlib
import json
import os

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, ZipStore

from .destination import staging_name

__all__ = ["JOURNAL", "commit", "finish_pending", "ordered", "journal_path"]

#: the journal of an object store, at its root
JOURNAL = ".chunkpress-journal.json"


def ordered(documents) -> list:
    """Keys of documents: deepest first, the root's last (what ``xr.open_zarr`` reads)."""
    return sorted(documents, key=lambda k: (k == "zarr.json", -k.count("/"), k))


def commit(where, write: str, renames: list, documents: dict) -> None:
    """Journal, then carry out, the ``renames`` (staged, final) and ``documents`` (key:
    bytes) of the update ``write``. ``where``: a local root, or a store."""
    current = {key: _get(where, key) for key in documents}
    entries = [{"key": key, "old": _digest(current[key]), "new": documents[key].decode()}
               for key in ordered(documents)]
    journal = {"write": write, "renames": renames, "documents": entries}
    _write_journal(where, journal)
    _apply(where, journal, current)


def finish_pending(store) -> str | None:
    """Finish an append or region write that stopped between its metadata puts (its journal
    is complete, so are its chunks); say what was done. ``store``: a local root or a store."""
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    if isinstance(store, str):
        if "://" in store or store.endswith(".zip"):
            return None
        where = os.path.abspath(store)
    elif isinstance(store, LocalStore):
        where = os.path.abspath(str(store.root))
    elif isinstance(store, ZipStore) or type(store).__module__.startswith("icechunk"):
        return None
    else:
        where = store
        if getattr(store, "read_only", False):
            try:
                where = store.with_read_only(False)
            except (AttributeError, NotImplementedError, ValueError):
                return None
    try:
        journal = _read_journal(where)
    except OSError:
        return None
    if journal is None:
        return None
    done = _apply(where, journal)
    return f"{store}: finished an interrupted append or region write" if done else None


# --- carrying a journal out -------------------------------------------------------------------


def _apply(where, journal: dict, current: dict | None = None) -> bool:
    """Carry out a journal (again): renames, then documents in order; False if it is stale
    (a document is neither the one it replaces nor the new one: the store was replaced).
    ``current``: the documents' bytes now, if the caller has just read them."""
    if current is None:
        current = {e["key"]: _get(where, e["key"]) for e in journal["documents"]}
    for entry in journal["documents"]:
        now = current[entry["key"]]
        if _digest(now) != entry["old"] and now != entry["new"].encode():
            _remove_journal(where)
            return False
    for staged, final in journal["renames"]:
        if isinstance(where, str) and os.path.exists(os.path.join(where, staged)):
            os.replace(os.path.join(where, staged), os.path.join(where, final))
    documents = [(e["key"], e["new"].encode()) for e in journal["documents"]
                 if current[e["key"]] != e["new"].encode()]
    _put_all(where, documents, journal.get("write") or "0")
    _remove_journal(where)
    return True


def _put_all(where, documents: list, write: str) -> None:
    """Put ``documents`` (key, bytes) in order: locally each under a hidden temporary name,
    then renamed in order (see the module)."""
    if not isinstance(where, str):
        for key, data in documents:
            _install(where, key, data)
        return
    staged = []
    try:
        for key, data in documents:
            path = os.path.join(where, key)
            head, tail = os.path.split(path)
            os.makedirs(head, exist_ok=True)
            # hidden and ending in .partial: what an overwrite's check takes for a cut-off file
            partial = os.path.join(head, f".{tail}.chunkpress-{write}.partial")
            file = open(partial, "wb")
            staged.append((key, partial, file))
            file.write(data)
    finally:
        for _, _, file in staged:
            file.close()
    for key, partial, _ in staged:
        _install(where, key, partial)


def _install(where, key: str, data) -> None:
    """One document into place: a local staged file renamed over ``key``, or one put."""
    if isinstance(where, str):
        os.replace(data, os.path.join(where, key))
    else:
        sync(where.set(key, default_buffer_prototype().buffer.from_bytes(data)))


# --- the journal itself -----------------------------------------------------------------------


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def journal_path(root: str) -> str:
    """Where the journal of a local store at ``root`` is, while there is one."""
    return staging_name(root, "journal")



def _get(where, key: str) -> bytes | None:
    if isinstance(where, str):
        try:
            with open(os.path.join(where, key), "rb") as file:
                return file.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
    buffer = sync(where.get(key, default_buffer_prototype()))
    return None if buffer is None else buffer.to_bytes()


def _write_journal(where, journal: dict) -> None:
    data = json.dumps(journal).encode()
    if not isinstance(where, str):
        sync(where.set(JOURNAL, default_buffer_prototype().buffer.from_bytes(data)))
        return
    path = journal_path(where)
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "wb") as file:
        file.write(data)
    os.replace(partial, path)  # whole before any document changes


def _read_journal(where) -> dict | None:
    data = _get(*os.path.split(journal_path(where))) if isinstance(where, str) else \
        _get(where, JOURNAL)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:  # cut off while written: the update had not begun its puts
        return {"renames": [], "documents": []}


def _remove_journal(where) -> None:
    if isinstance(where, str):
        try:
            os.remove(journal_path(where))
        except FileNotFoundError:
            pass
    else:
        sync(where.delete(JOURNAL))
