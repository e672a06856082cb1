"""Stores that cannot rename (object stores, memory): a write replaces an array in place
without ever destroying it.

The new array's chunks go under keys the old metadata does not name (the chunk key separator,
``/`` or ``.``, alternates between writes), publishing puts each ``zarr.json`` in one put (the
moment the new array replaces the old), and only then are the old chunks deleted. A write
that stops before that leaves the old array as it was, and chunk objects no metadata names,
which the next write removes.
"""

from __future__ import annotations

import json

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from .publish import _CHUNK_KEY, WRITING, Destination, _collect

__all__ = ["InPlaceDestination", "in_place_destination"]


def in_place_destination(store, node: str, overwrite: bool, write: str) -> Destination:
    """Return the destination of a write of ``node`` in ``store`` (refusing what it must)."""
    _refuse_existing(store, node, overwrite)
    return InPlaceDestination(store, node, write)


class InPlaceDestination(Destination):
    """A store without renames (object stores): new chunk keys, one metadata put, cleanup."""

    def __init__(self, store, node: str, write: str):
        super().__init__(store, node, write, str(store))
        self._written_prefixes: list[str] = []

    def key_encoding(self, node: str) -> dict:
        path = self.path(node)
        old = _read_json(self.store, f"{path}/zarr.json" if path else "zarr.json")
        if old is not None:
            self._old[path] = old
        separator = _separator(old)
        return {"name": "default",
                "configuration": {"separator": "." if separator == "/" else "/"}}

    def publish(self) -> None:
        super().publish()
        for path, old in self._old.items():
            if old.get("node_type") == "array" and _separator(old) is not None:
                new = json.loads(self._documents.get(path, b"{}") or b"{}")
                if _separator(new) != _separator(old):
                    _delete_chunks(self.store, path, _separator(old))

    def abort(self) -> None:
        for path in self._documents:
            separator = _separator(json.loads(self._documents[path]))
            old = self._old.get(path)
            if separator is not None and (old is None or _separator(old) != separator):
                _delete_chunks(self.store, path, separator)


def _separator(document) -> str | None:
    if not document or document.get("node_type") != "array":
        return None
    encoding = document.get("chunk_key_encoding", {})
    return (encoding.get("configuration") or {}).get("separator", "/")


def _delete_chunks(store, path: str, separator: str) -> None:
    """Delete the chunk objects of the array at ``path`` stored with ``separator`` (default
    encoding: ``c/0/0`` or ``c.0.0``)."""
    prefix = f"{path}/" if path else ""
    head = f"{prefix}c{separator}"
    keys = sync(_collect(store.list_prefix(head))) if separator == "/" else \
        [k for k in sync(_collect(store.list_prefix(f"{prefix}c."))) if "/" not in k[len(prefix):]]
    for key in keys:
        if _CHUNK_KEY.match(key[len(prefix):]):
            sync(store.delete(key))


def _read_json(store, key: str):
    try:
        buffer = sync(store.get(key, default_buffer_prototype()))
    except (OSError, ValueError):
        return None
    if buffer is None:
        return None
    try:
        return json.loads(buffer.to_bytes())
    except ValueError:
        return None


def _refuse_existing(store, node: str, overwrite: bool) -> None:
    prefix = f"{node}/" if node else ""
    keys = sync(_collect(store.list_prefix(prefix)))
    if not keys:
        return
    document = _read_json(store, f"{prefix}zarr.json")
    if document is None:
        if any(k.endswith("zarr.json") or k.endswith(WRITING) for k in keys) or \
                all(_CHUNK_KEY.match(k[len(prefix):].split("/", 1)[-1]) for k in keys):
            if overwrite:
                return  # a write that stopped before it was published: written again
            raise FileExistsError(f"{store}/{node}: holds a write that stopped before it was "
                                  "finished; pass overwrite=True to write it again")
        raise FileExistsError(f"{store}/{node} holds objects that are not a Zarr store (e.g. "
                              f"{keys[0]!r}); chunkpress does not replace them")
    if not overwrite:
        raise FileExistsError(f"{store}/{node} already holds a zarr "
                              f"{document.get('node_type', 'node')}; pass overwrite=True to "
                              "replace it")
