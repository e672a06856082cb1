"""Icechunk: a write goes into the session's own transaction; the user commits.

A writable session without uncommitted changes (the usual case): chunkpress forks it
(``session.fork()``); every document and chunk goes into the fork (the fork pickles, so
write tasks on a cluster's workers each write into their copy and return it), and publishing
merges the forks into the session. A write that fails merges nothing: the session stays
exactly as it was (a commit afterwards finds no changes), and what was committed before is
untouched. ``overwrite=True`` deletes the old node in the fork only, so a failed overwrite
leaves the old array in the session too.

A session that already holds uncommitted changes cannot be forked: chunkpress then writes
into it directly (on the local scheduler only: a writable session does not pickle), and a
write that fails deletes the nodes it created, and nothing else. An overwrite of an existing
node in such a session is refused (a failure could not give the old node back): commit the
changes, or open a new session, first.

Icechunk keeps its own transactions: no lock, no staging keys, no hidden metadata (Icechunk
refuses key names outside Zarr's). Two sessions writing one branch: the second commit fails
with Icechunk's ConflictError.
"""

from __future__ import annotations

import json

from zarr.core.sync import sync

from .destination import Destination, IncompleteStoreError, collect_keys

__all__ = ["icechunk_destination", "IcechunkDestination"]


def icechunk_destination(store, node: str, overwrite: bool, write: str) -> Destination:
    """Return the destination of a write of ``node`` into an Icechunk session's ``store``."""
    if store.read_only:
        raise ValueError(f"{store} is read-only: write to repo.writable_session(branch).store")
    session = store.session
    exists = sync(store.exists(f"{node}/zarr.json" if node else "zarr.json"))
    if exists and not overwrite:
        raise FileExistsError(f"icechunk session: {node or 'the root'} already exists; pass "
                              "overwrite=True to replace it")
    if session.has_uncommitted_changes:
        if exists:
            raise ValueError(
                f"icechunk session: overwriting {node or 'the root'} in a session with "
                "uncommitted changes is refused (a failed write could not give the old node "
                "back); commit your changes, or open a new writable session, first")
        if _on_cluster():
            raise ValueError(
                "icechunk session: it has uncommitted changes, so it cannot be forked, and a "
                "writable session does not go to a cluster's workers; commit your changes, or "
                "open a new writable session, first (or write with the local scheduler)")
        return IcechunkDestination(store, session, None, node, write)
    fork = session.fork()
    destination = IcechunkDestination(fork.store, session, fork, node, write)
    if exists:  # replaced in the fork only: the session keeps it until publish merges
        prefix = f"{node}/" if node else ""
        for key in sync(collect_keys(fork.store.list_dir(node))) if node else \
                sync(collect_keys(fork.store.list_dir(""))):
            sync(fork.store.delete_dir(prefix + key) if key != "zarr.json" else
                 fork.store.delete(prefix + key))
    return destination


class IcechunkDestination(Destination):
    """A write into an Icechunk session (see the module): its fork, or the session itself."""

    documents_first = True

    def __init__(self, store, session, fork, node: str, write: str):
        super().__init__(store, node, write, f"icechunk session ({node or 'root'})")
        self.session = session
        self.fork = fork
        self.returns = _fork_of if fork is not None else None
        self._returned = []
        self._created: list[str] = []  # nodes this write created (direct writes: abort)

    def add_document(self, node: str, document, expected_keys=()) -> None:
        path = self.path(node)
        self._ensure_parents(path)
        key = f"{path}/zarr.json" if path else "zarr.json"
        if path not in self._documents and not sync(self.store.exists(key)):
            self._created.append(path)
        super().add_document(node, document, expected_keys)

    def _ensure_parents(self, path: str) -> None:
        parts = path.split("/")[:-1] if path else []
        for depth in range(len(parts) + 1):
            parent = "/".join(parts[:depth])
            key = f"{parent}/zarr.json" if parent else "zarr.json"
            if parent != path and not sync(self.store.exists(key)):
                self._created.append(parent)
                self._put(key, json.dumps({"zarr_format": 3, "node_type": "group",
                                           "attributes": {}}).encode())

    def collect(self, returned: list) -> None:
        self._returned.extend(returned)

    def publish(self) -> None:
        if self.fork is not None:
            mine = _fork_of(self.fork.store)
            for other in self._returned:
                if not _same(other, mine):
                    self.fork.merge(other)
            self._returned = []
        try:
            self.check()
        except IncompleteStoreError:
            raise IncompleteStoreError(
                f"{self.target}: chunks written by the write tasks did not reach the session; "
                "nothing was merged into it") from None
        if self.fork is not None:
            self.session.merge(self.fork)
            self.fork = None

    def abort(self) -> None:
        self._returned = []
        if self.fork is not None:
            self.fork = None  # dropped: nothing of it reaches the session
            return
        # direct write: only the nodes it created, deepest first; a group it created that
        # holds anything else stays (deleting a group's zarr.json deletes what is under it)
        for path in sorted(set(self._created), key=lambda p: -len(p.split("/")) if p else 1):
            key = f"{path}/zarr.json" if path else "zarr.json"
            document = self._documents.get(path)
            kind = json.loads(document).get("node_type") if document else "group"
            if kind == "group" and \
                    set(sync(collect_keys(self.store.list_dir(path)))) - {"zarr.json"}:
                continue
            sync(self.store.delete(key))
        self._created = []


def _on_cluster() -> bool:
    """Whether dask computes on a distributed cluster (its default client) by default."""
    import dask

    try:
        from distributed import default_client

        default_client()
    except (ImportError, ValueError):
        return False
    return dask.config.get("scheduler", None) in (None, "dask.distributed", "distributed")


def _fork_of(store):
    """The fork session a write task wrote into (what it returns to the publishing process)."""
    return store.session


def _same(a, b) -> bool:
    return getattr(a, "_session", a) is getattr(b, "_session", b)


def store_returning(sources, targets, returns):
    """``da.store(sources, targets)`` as a delayed whose value is (0, NaN, what each task's
    ``returns(store)`` gave): the exact dask variables of a dataset written into forks."""
    import dask
    import numpy as np

    parts = []
    for source, target in zip(sources, targets):
        starts = [np.cumsum((0,) + axis) for axis in source.chunks]
        for index, block in zip(np.ndindex(*source.numblocks), source.to_delayed().ravel()):
            region = tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, index))
            parts.append(dask.delayed(_store_block, pure=False)(block, target, region, returns))
    return dask.delayed(_gathered, pure=False)(parts)


def _store_block(block, target, region, returns):
    target[region] = block
    return returns(target.store_path.store)


def _gathered(returned) -> tuple:
    return 0, float("nan"), list(returned)
