"""A local directory store: a staging directory beside its root, then two renames.

The write goes to ``.NAME.chunkpress-staging-WRITE`` beside the store's root (or beside the
node written); publishing renames the old root aside (``.NAME.chunkpress-old-WRITE``), the
staging directory into place, then deletes the old one. A crash between the two renames is
repaired by the next open (:func:`repair`); what writers that died left is removed by the next
write (:func:`cleanup`). One writer at a time: :class:`Lock`, an ``flock`` on
``.NAME.chunkpress-lock``, which a killed writer releases. :func:`replacing_file` gives the
same to a whole file (a netCDF file): a temporary file beside it, then a rename.
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
import warnings
import weakref

from zarr.storage import LocalStore

from . import integrity
from .destination import Destination, WriterBusyError, staging_name
from .foreign import refuse_foreign

__all__ = ["Lock", "LocalDestination", "local_destination", "repair", "cleanup",
           "replacing_file"]

#: what chunkpress puts beside a target (see staging_name)
_OURS = re.compile(r"^\.(?P<name>.+)\.chunkpress-(?P<kind>staging|old|lock|trash)"
                   r"(-(?P<id>[0-9a-f]{16}))?(\.zip)?$")


#: how long a writer waits for a reader that holds the lock (finishing a dead writer's journal
#: or swap: milliseconds) before calling the store busy
READER_WAIT = 30.0


class Lock:
    """An exclusive lock beside a local target: ``flock``, so a killed writer releases it.

    ``reader``: taken by a reader to finish what a dead writer left (a journal, a swap); a
    writer that meets it waits for it (a reader that saw a live writer's journal just before
    it went took the lock for an instant, and the writer's next append was refused)."""

    def __init__(self, root: str, reader: bool = False):
        # beside the directory itself: two writers, one through a symbolic link to it, take
        # one lock (each took its own, and both appends "succeeded", their months mixed)
        self.path = staging_name(os.path.realpath(root), "lock")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        deadline = time.monotonic() + READER_WAIT
        while True:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip()
                os.close(self.fd)
                self.fd = None
                # a reader, or a holder that has not said who it is yet (an instant)
                if not reader and (not holder or holder.startswith(_READING)) \
                        and time.monotonic() < deadline:
                    time.sleep(0.005)
                    continue
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
        holder = (f"{_READING if reader else ''}pid {os.getpid()} on {socket.gethostname()} "
                  f"since {time.strftime('%Y-%m-%d %H:%M:%S')}").encode()
        os.pwrite(self.fd, holder, 0)
        # cut to its length after writing: ext4 flushes a file truncated to 0 then written
        # when it is closed (its replace-by-truncate guard), 3 ms at every release
        os.ftruncate(self.fd, len(holder))
        # a write dropped without being run or aborted lets go when it is collected
        self._release = weakref.finalize(self, _let_go, self.path, self.fd)

    def release(self) -> None:
        if self.fd is not None:
            self._release()
            self.fd = None


_READING = "a reader finishing a write that stopped: "


def _let_go(path: str, fd: int) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.close(fd)


class LocalDestination(Destination):
    """A local directory store: a staging directory beside its root, then renames."""

    def __init__(self, root: str, node: str, write: str, lock: Lock):
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
            lock = Lock(root, reader=True)
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


def cleanup(root: str, node: str = "") -> None:
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


def local_destination(root: str, node: str, overwrite: bool, write: str) -> Destination:
    if os.path.islink(root):
        raise FileExistsError(f"{root} is a symbolic link (to {os.readlink(root)}); give the "
                              "path of the store itself: chunkpress replaces a store by "
                              "renames, which would replace the link")
    lock = Lock(root)
    try:
        message = repair(root, node, locked=True)
        if message:
            warnings.warn(message, stacklevel=3)
        cleanup(root, node)
        top = os.path.join(root, node) if node else root
        if os.path.lexists(top) and not (os.path.isdir(top) and not os.listdir(top)):
            if not overwrite:
                raise FileExistsError(f"{top} already exists; pass overwrite=True to replace "
                                      "it")
            refuse_foreign(root, node)
        elif node and os.path.exists(root) and not os.path.isdir(root):
            raise FileExistsError(f"{root} is a file, not a Zarr store: choose another path")
        return LocalDestination(root, node, write, lock)
    except BaseException:
        lock.release()
        raise


@contextlib.contextmanager
def replacing_file(path: str):
    """Yield a temporary path beside ``path`` to write a whole file at (a netCDF file, say);
    renamed over ``path`` when the block ends without error, removed if it raises. A write
    killed halfway leaves ``path`` as it was, and its temporary file to the next write."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; chunkpress replaces only a file there: "
                                "give the name of a file")
    lock = Lock(path)
    try:
        cleanup(path)
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
