"""What every destination shares: the :class:`Destination` base class a write hands its
chunks and documents to, the two errors, and the names chunkpress gives what it puts beside a
target.

Each kind of store has its own subclass elsewhere (``local``, ``zipstore``, ``objectstore``,
``icechunk``); ``publish`` chooses one. This module imports none of them, so each can import
it.
"""

from __future__ import annotations

import json
import os
import re

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

__all__ = ["Destination", "IncompleteStoreError", "WriterBusyError", "staging_name", "WRITING",
           "CHUNK_KEY", "collect_keys", "first_key", "read_json"]

#: the key a node's zarr.json was kept under while its chunks were written (older versions)
WRITING = "zarr.json.writing"
#: the key of a chunk object (either chunk key encoding, either separator)
CHUNK_KEY = re.compile(r"^(c([./]\d+)*|\d+([./]\d+)*)$")




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
    """Where a write goes until :meth:`publish` makes it the target (see ``publish``)."""

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
        return read_json(self.store, f"{path}/zarr.json" if path else "zarr.json")

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
            present = set(sync(collect_keys(self.store.list_prefix(prefix))))
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


async def collect_keys(iterator) -> list:
    """Return every key a zarr store's listing gives (run it with ``sync``)."""
    return [key async for key in iterator]


def read_json(store, key: str) -> dict | None:
    """Return the JSON document at ``key`` of a zarr store, or None if absent or unreadable."""
    try:
        buffer = sync(store.get(key, default_buffer_prototype()))
        return None if buffer is None else json.loads(buffer.to_bytes())
    except (OSError, ValueError, KeyError):
        return None


async def first_key(iterator):
    """Return the first key a zarr store's listing gives, or None (run it with ``sync``)."""
    async for key in iterator:
        return key
    return None
