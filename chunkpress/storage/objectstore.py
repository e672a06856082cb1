"""Stores that cannot rename (object stores, memory): a write replaces an array in place
without ever destroying it.

The new array's chunks go under keys the old metadata does not name (the chunk key separator,
``/`` or ``.``, alternates between writes), publishing puts each ``zarr.json`` in one put (the
moment the new array replaces the old), and only then are the old chunks, and the old nodes
the new write does not have, deleted. A write that fails removes its new chunks (a write that
fails while publishing first puts back the documents it had replaced); a writer that is
killed leaves the old store as it was, plus chunk objects no metadata names, which the next
write of the target deletes before it writes anything. A first write that stops leaves no
``zarr.json``: no reader opens it, chunkpress's readers call it incomplete. Publishing a
dataset is a few puts, one per node: a writer killed between them leaves each array whole,
old or new, and the next overwrite replaces them all.

``overwrite=True`` replaces only a Zarr v3 store: any object under the target that is neither
a node's ``zarr.json`` nor a chunk key of an array is refused, naming it (so is a Zarr v2
store, which chunkpress does not replace in place).

Two writers. A write holds a lock object, ``<node>/.chunkpress-lock`` (JSON: write id, host,
pid, expiry), created with an atomic create-if-absent put (S3's ``If-None-Match: *``, through
s3fs): a second writer is refused with ``WriterBusyError``. Policy for a lock whose holder
died (SIGKILL, a lost machine): the holder refreshes its lock every ``LOCK_TTL / 4`` seconds;
a lock not refreshed for ``LOCK_TTL`` seconds (default 120, env ``CHUNKPRESS_LOCK_TTL``) has
expired and the next writer takes it over with a conditional put (``If-Match`` its ETag, so
two writers cannot both take it). A writer whose lock was taken over (it stalled longer than
the TTL) publishes nothing. The refusal names the lock object and says how to delete it when
no writer is running. Clocks of the machines must agree to well within the TTL. Stores
without an atomic create (a memory store, other fsspec file systems) get a lock in this
process only: two processes writing one such store are not detected.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
import time
import weakref

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import WrapperStore

from .destination import (CHUNK_KEY, WRITING, Destination, WriterBusyError, collect_keys,
                          read_json)

__all__ = ["InPlaceDestination", "in_place_destination", "LOCK", "LOCK_TTL"]

#: the lock object of a write, under the target's node
LOCK = ".chunkpress-lock"
#: seconds a lock stays valid after its holder last refreshed it
LOCK_TTL = float(os.environ.get("CHUNKPRESS_LOCK_TTL", "120"))
_V2_FILES = {".zarray", ".zgroup", ".zattrs", ".zmetadata"}
_ORPHAN = re.compile(r"^(?:(?P<node>.+)/)?(?P<key>c(?:[./]\d+)*)$")


def in_place_destination(store, node: str, overwrite: bool, write: str) -> Destination:
    """Return the destination of a write of ``node`` in ``store`` (refusing what it must)."""
    target = f"{store}/{node}" if node else str(store)
    lock = _lock(store, node, write, target)
    try:
        nodes = _refuse_existing(store, node, overwrite)
        destination = InPlaceDestination(store, node, write, lock, nodes)
        destination.remove_orphans()
        return destination
    except BaseException:
        lock.release()
        raise


class InPlaceDestination(Destination):
    """A store without renames (object stores): new chunk keys, one metadata put, cleanup."""

    def __init__(self, store, node: str, write: str, lock, nodes: dict):
        self.gate = _Gate()
        super().__init__(_Gated(store, self.gate), node, write,
                         f"{store}/{node}" if node else str(store))
        self.lock = lock
        self._existing = nodes  # every node under the target: path in store -> its document
        self._new: dict[str, str] = {}  # arrays this write creates: path -> key separator
        self._put_documents: set[str] = set()
        self._published = False

    def key_encoding(self, node: str) -> dict:
        path = self.path(node)
        old = self._existing.get(path)
        if old is not None:
            self._old[path] = old
        separator = "." if _separator(old) == "/" else "/"
        self._new[path] = separator
        return {"name": "default", "configuration": {"separator": separator}}

    def remove_orphans(self) -> None:
        """Delete chunk objects that no metadata names (a writer that died left them)."""
        prefix = f"{self.node}/" if self.node else ""
        keys = sync(collect_keys(self.store.list_prefix(prefix)))
        orphans = []
        for key in keys:
            if key.endswith("/" + WRITING) or key == WRITING:
                orphans.append(key)  # an unfinished document of an older chunkpress
                continue
            match = _ORPHAN.match(key)
            if match is None:
                continue
            document = self._existing.get(match["node"] or "")
            separator = _separator(document)
            if separator is None or not _named(match["key"], separator):
                orphans.append(key)
        _delete(self.store, orphans)

    def publish(self) -> None:
        self.lock.confirm()
        self.check()
        order = sorted(self._documents, key=lambda p: (-p.count("/"), p == "", p))
        for path in order:
            self._put(f"{path}/zarr.json" if path else "zarr.json", self._documents[path])
            self._put_documents.add(path)
        self._published = True
        self._add_parents()
        if self.node and self.node in self._documents:
            _refresh_consolidated(self.store, self.node, self._documents[self.node])
        # the new store is in place: the old chunks, and old nodes it does not have, go
        for path, old in self._existing.items():
            separator = _separator(old)
            if path in self._documents:
                new = _separator(json.loads(self._documents[path]))
                if separator is not None and new != separator:
                    _delete_chunks(self.store, path, separator)
            elif self._inside(path):
                _delete(self.store, [f"{path}/zarr.json" if path else "zarr.json"])
                if separator is not None:
                    _delete_chunks(self.store, path, separator)

    def abort(self) -> None:
        if self._published or self._landed():
            return  # the write is the store now: nothing of it may go
        self.gate.close()  # no write task of this process puts a chunk after this
        for path in self._put_documents:  # a publish that failed halfway: put the old back
            old = self._existing.get(path)
            key = f"{path}/zarr.json" if path else "zarr.json"
            if old is None:
                _delete(self.store, [key])
            else:
                self._put(key, json.dumps(old, indent=2).encode())
        self._put_documents.clear()
        for path, separator in self._new.items():
            if _separator(self._existing.get(path)) != separator:
                _delete_chunks(self.store, path, separator)

    def close(self) -> None:
        self.lock.release()

    def _add_parents(self) -> None:
        """Put a group document where a parent of the target has none (as zarr does)."""
        parts = self.node.split("/")[:-1] if self.node else []
        for depth in range(len(parts) + 1):
            key = "/".join(parts[:depth] + ["zarr.json"])
            if read_json(self.store, key) is None:
                self._put(key, json.dumps({"zarr_format": 3, "node_type": "group",
                                           "attributes": {}}).encode())

    def _landed(self) -> bool:
        """Whether this write was published (by a copy of this destination: dask runs the
        publishing step on a worker when computing on a cluster)."""
        for path, separator in self._new.items():
            current = read_json(self.store, f"{path}/zarr.json" if path else "zarr.json")
            if path not in self._put_documents and _separator(current) == separator:
                return True
        return False

    def _inside(self, path: str) -> bool:
        return not self.node or path == self.node or path.startswith(self.node + "/")


# --- what is under the target -------------------------------------------------------------


def _refuse_existing(store, node: str, overwrite: bool) -> dict:
    """Return the nodes under ``node`` (path -> document); raise if the target holds anything
    but a Zarr v3 store, or holds one and ``overwrite`` is False."""
    _refuse_object(store, node)
    prefix = f"{node}/" if node else ""
    keys = [k for k in sync(collect_keys(store.list_prefix(prefix))) if k != prefix + LOCK]
    if not keys:
        return {}
    nodes = {}
    for key in keys:
        name = key.rsplit("/", 1)[-1]
        if name in _V2_FILES:
            raise FileExistsError(
                f"{store}/{node}: holds a Zarr v2 store ({key!r}); chunkpress replaces only a "
                "Zarr v3 store in place on this store: choose another path, or remove it "
                "yourself")
        if name == "zarr.json":
            path = key[: -len("zarr.json")].rstrip("/")
            document = read_json(store, key)
            if not isinstance(document, dict) or "node_type" not in document:
                raise FileExistsError(f"{store}: {key!r} is not Zarr metadata; chunkpress "
                                      "does not replace it: choose another path")
            nodes[path] = document
    for key in keys:
        if key.endswith("zarr.json") or key.endswith(WRITING):
            continue
        match = _ORPHAN.match(key)
        owner = None if match is None else nodes.get(match["node"] or "")
        if match is None or (owner is not None and owner.get("node_type") != "array"):
            raise FileExistsError(
                f"{store}/{node} holds {key!r}, which is not part of a Zarr store; "
                "overwrite=True replaces only a Zarr store and chunkpress never deletes "
                "objects it did not write: choose another path")
    top = nodes.get(node)
    if top is None:
        if overwrite:
            return nodes  # a write that stopped before it was published: written again
        raise FileExistsError(f"{store}/{node}: holds a write that stopped before it was "
                              "finished; pass overwrite=True to write it again")
    if not overwrite:
        raise FileExistsError(f"{store}/{node} already holds a zarr "
                              f"{top.get('node_type', 'node')}; pass overwrite=True to "
                              "replace it")
    return nodes


def _refuse_object(store, node: str) -> None:
    """Raise if the target itself is an object (a file), not a prefix."""
    fs, root = getattr(store, "fs", None), getattr(store, "path", None)
    if fs is None or root is None or not getattr(fs, "async_impl", False):
        return
    path = "/".join(p for p in (root.rstrip("/"), node) if p)
    try:
        is_file = sync(fs._isfile(path))  # fsspec's async API: the store's own event loop
    except (OSError, ValueError):
        return
    if is_file:
        raise FileExistsError(f"{fs.protocol}://{path} is an object (a file), not a Zarr "
                              "store; chunkpress does not replace it: choose another path")


def _separator(document) -> str | None:
    if not document or document.get("node_type") != "array":
        return None
    encoding = document.get("chunk_key_encoding", {})
    if encoding.get("name", "default") != "default":
        return None
    return (encoding.get("configuration") or {}).get("separator", "/")


def _named(key: str, separator: str) -> bool:
    """Whether the chunk key ``key`` is one the default encoding with ``separator`` makes."""
    return key == "c" or key.startswith("c" + separator) and \
        ("." if separator == "/" else "/") not in key


def _delete_chunks(store, path: str, separator: str) -> None:
    """Delete the chunk objects of the array at ``path`` stored with ``separator`` (default
    encoding: ``c/0/0`` or ``c.0.0``)."""
    prefix = f"{path}/" if path else ""
    head = f"{prefix}c{separator}" if separator == "/" else f"{prefix}c."
    keys = [k for k in sync(collect_keys(store.list_prefix(head)))
            if CHUNK_KEY.match(k[len(prefix):]) and _named(k[len(prefix):], separator)]
    _delete(store, keys)


def _delete(store, keys) -> None:
    if keys:
        sync(_delete_all(store, list(keys)))


async def _delete_all(store, keys, concurrency=32) -> None:
    for start in range(0, len(keys), concurrency):
        await asyncio.gather(*(store.delete(k) for k in keys[start:start + concurrency]))


# --- no chunk put after an abort -------------------------------------------------------------


class _Gate:
    """Counts this process's chunk puts in flight; once closed, lets none start."""

    def __init__(self):
        self._condition = threading.Condition()
        self._busy = 0
        self.closed = False

    def enter(self) -> bool:
        with self._condition:
            if self.closed:
                return False
            self._busy += 1
            return True

    def leave(self) -> None:
        with self._condition:
            self._busy -= 1
            self._condition.notify_all()

    def close(self) -> None:
        """Refuse new puts and wait for those in flight (not from zarr's event loop thread)."""
        with self._condition:
            self.closed = True
            self._condition.wait_for(lambda: self._busy == 0)

    def __reduce__(self):  # a copy in a worker process: always open (it cannot be closed)
        return _Gate, ()


class _Gated(WrapperStore):
    """The target store, whose puts stop once the write is aborted (see ``abort``)."""

    def __init__(self, store, gate: _Gate | None = None):
        super().__init__(store)
        self._gate = gate or _Gate()

    def _with_store(self, store):
        return type(self)(store, self._gate)

    async def set(self, key, value) -> None:
        if not self._gate.enter():
            raise WriterBusyError(f"{self._store}: {key!r} not written: this write was "
                                  "stopped")
        try:
            await self._store.set(key, value)
        finally:
            self._gate.leave()

    def __str__(self) -> str:
        return str(self._store)

    def __repr__(self) -> str:
        return repr(self._store)


# --- the lock ---------------------------------------------------------------------------------


def _lock(store, node: str, write: str, target: str):
    fs = getattr(store, "fs", None)
    if fs is not None and getattr(fs, "async_impl", False) and \
            type(fs).__module__.startswith("s3fs"):
        return _ObjectLock(store, node, write, target)
    return _ProcessLock(store, node, target)


class _ObjectLock:
    """The lock object of a write on S3 (see the module for the policy)."""

    def __init__(self, store, node: str, write: str, target: str):
        self.fs = store.fs
        self.path = "/".join(p for p in (store.path.rstrip("/"), node, LOCK) if p)
        self.write = write
        self.target = target
        self.etag = None
        self.lost = False
        self._stop = threading.Event()
        for _ in range(3):
            if self._acquire():
                break
        else:
            raise WriterBusyError(f"{target}: could not take the lock {self.url}; another "
                                  "writer is taking it")
        self._heart = threading.Thread(target=self._beat, daemon=True,
                                       name=f"chunkpress-lock-{write}")
        self._heart.start()

    @property
    def url(self) -> str:
        return f"s3://{self.path}"

    def __getstate__(self):  # a copy (on the worker that publishes) renews nothing
        state = dict(self.__dict__)
        del state["_stop"], state["_heart"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._stop = threading.Event()
        self._stop.set()
        self._heart = None

    def _body(self) -> bytes:
        return json.dumps({"write": self.write, "host": socket.gethostname(),
                           "pid": os.getpid(), "expires": time.time() + LOCK_TTL}).encode()

    def _acquire(self) -> bool:
        try:
            # s3fs's async API (the event loop the store runs on); mode="create" is S3's
            # If-None-Match: * (atomic), which the public pipe_file would run on another loop
            out = sync(self.fs._pipe_file(self.path, self._body(), mode="create"))
        except FileExistsError:
            holder, etag = self._read()
            if holder is None:
                return False  # released meanwhile: try again
            expires = holder.get("expires", 0)
            if isinstance(expires, (int, float)) and expires > time.time():
                raise WriterBusyError(
                    f"{self.target}: another chunkpress write to it is running (write "
                    f"{holder.get('write')}, pid {holder.get('pid')} on {holder.get('host')}, "
                    f"its lock {self.url} expires at "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(expires))} unless "
                    "renewed); wait for it to finish, or, if you know no writer is running, "
                    f"delete {self.url}") from None
            try:  # expired: take it over, only if nobody changed it since we read it
                out = sync(self.fs._pipe_file(self.path, self._body(), IfMatch=etag))
            except FileNotFoundError:
                return False
            except OSError:
                raise WriterBusyError(f"{self.target}: another writer took over the expired "
                                      f"lock {self.url} just now") from None
        self.etag = out.get("ETag")
        return True

    def _read(self):
        bucket, key, _ = self.fs.split_path(self.path)
        try:
            # the body and its ETag from one request (s3fs has no public call that gives both)
            response = sync(self.fs._call_s3("get_object", Bucket=bucket, Key=key))
            body = sync(_read_body(response["Body"]))
        except FileNotFoundError:
            return None, None
        try:
            holder = json.loads(body)
        except ValueError:
            holder = {}
        return (holder if isinstance(holder, dict) else {}), response.get("ETag")

    def _beat(self) -> None:
        while not self._stop.wait(LOCK_TTL / 4):
            try:
                # fsspec's async API (its coroutines are named _*): the store's event loop
                out = sync(self.fs._pipe_file(self.path, self._body(), IfMatch=self.etag))
                self.etag = out.get("ETag")
            except OSError:
                self.lost = True
                return

    def confirm(self) -> None:
        """Raise unless this write still holds its lock."""
        holder, _ = self._read()
        if self.lost or holder is None or holder.get("write") != self.write:
            raise WriterBusyError(
                f"{self.target}: this write lost its lock {self.url} (it was not renewed "
                f"within {LOCK_TTL:g} s and another writer took it over); nothing was "
                "published")

    def release(self) -> None:
        self._stop.set()
        if self._heart is not None and self._heart is not threading.current_thread():
            self._heart.join()
        if not self.lost:
            holder, _ = self._read()
            if holder is not None and holder.get("write") == self.write:
                try:
                    sync(self.fs._rm_file(self.path))  # fsspec's async API, as above
                except FileNotFoundError:
                    pass
            self.lost = True  # released: never again


async def _read_body(body) -> bytes:
    async with body as stream:
        return await stream.read()


_HELD: set = set()
_HELD_LOCK = threading.Lock()


def _discard(key) -> None:
    with _HELD_LOCK:
        _HELD.discard(key)


class _ProcessLock:
    """A lock for stores without an atomic create: this process's writers only."""

    def __init__(self, store, node: str, target: str):
        self.key = (type(store).__name__, str(store), node)
        with _HELD_LOCK:
            if self.key in _HELD:
                raise WriterBusyError(f"{target}: another chunkpress write to it is running "
                                      "in this process; wait for it to finish")
            _HELD.add(self.key)
        self.held = True
        # published by a copy (on a worker): released when this destination is dropped
        self._release = weakref.finalize(self, _discard, self.key)

    def __getstate__(self):
        return {"key": self.key, "held": False}

    def confirm(self) -> None:
        pass

    def release(self) -> None:
        if self.held:
            self._release()  # runs once
            self.held = False


def _refresh_consolidated(store, node: str, document: bytes) -> None:
    """Put the new document of ``node`` into the root's consolidated metadata (what
    ``xr.open_zarr`` reads first), where the root has one: one put."""
    root = read_json(store, "zarr.json")
    consolidated = (root or {}).get("consolidated_metadata")
    if not isinstance(consolidated, dict):
        return
    metadata = dict(consolidated.get("metadata") or {})
    metadata[node] = json.loads(document)
    root["consolidated_metadata"] = {**consolidated, "metadata": metadata}
    sync(store.set("zarr.json", default_buffer_prototype().buffer.from_bytes(
        json.dumps(root, indent=2).encode())))
