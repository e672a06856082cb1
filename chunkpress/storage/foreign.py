"""Refusing what chunkpress did not write: ``overwrite=True`` replaces only a Zarr store.

A local target holding anything else (a file, a symbolic link, a file among an array's chunks,
a zip file with no ``zarr.json``) is refused, naming what was found, before anything is
written; so is a target that is the working directory or lies inside a Zarr array. Nothing
chunkpress did not write is ever deleted. (Object stores: see ``objectstore``.)
"""

from __future__ import annotations

import json
import os

from .destination import CHUNK_KEY, WRITING

__all__ = ["refuse_foreign", "refuse_foreign_zip", "check_replaceable", "refuse_around",
           "node_type"]

_ZARR_FILES = {"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata", WRITING}


def refuse_foreign(root: str, node: str) -> None:
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
            kind = "array" if ".zarray" in files else node_type(directory)
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
            if name in _ZARR_FILES or CHUNK_KEY.match(rel.replace(os.sep, "/")):
                continue
            if name.startswith(".") and name.endswith(".partial"):
                continue  # a chunk file of an older chunkpress, cut off mid-write
            raise FileExistsError(
                f"{array_dir} holds {rel!r}, which is not a chunk of its Zarr array; "
                "overwrite=True replaces only a Zarr store and chunkpress never deletes files "
                "it did not write: choose another path")


def node_type(directory: str) -> str | None:
    try:
        with open(os.path.join(directory, "zarr.json")) as file:
            return json.load(file).get("node_type")
    except (OSError, ValueError, AttributeError):
        return None


def refuse_foreign_zip(target: str) -> None:
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
        refuse_foreign_zip(target)
    else:
        refuse_foreign(target, "")


def refuse_around(target: str) -> None:
    """Refuse a local target that is the working directory (or holds it), or that lies inside
    a Zarr array: replacing the first pulls the directory from under the shell, writing into
    the second puts foreign files among the array's chunks."""
    here = os.path.abspath(os.getcwd())
    if here == target or here.startswith(target.rstrip(os.sep) + os.sep):
        if os.path.isdir(target) and os.listdir(target):
            refuse_foreign(target, "")  # what is there, named, where it is not a store
        raise ValueError(f"{target} is the current directory or holds it; give the path of "
                         "a new or existing store (e.g. out.zarr), not '.'")
    parent = os.path.dirname(target)
    while parent and parent != os.path.dirname(parent):
        if node_type(parent) == "array":
            raise ValueError(f"{target} lies inside the Zarr array {parent}; write the store "
                             "elsewhere")
        parent = os.path.dirname(parent)
