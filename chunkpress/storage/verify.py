"""verify: every chunk of a store present, at its place, with a good checksum."""

from __future__ import annotations

import numpy as np
import pandas as pd
import zarr

from ..kernels import ChunkpressError
from . import publish, reader

__all__ = ["verify"]


def verify(store, path=None, *, storage_options=None) -> pd.DataFrame:
    """Check every chunk of every chunkpress array of ``store``; one row per problem."""
    opened = reader.read_store(store, storage_options)
    publish.check_complete(opened, path, storage_options)
    node = zarr.open(opened, path=path, mode="r")
    rows = []
    for name, array in reader.arrays_of(node):
        read = reader.layout(array)
        if not read.ours:
            continue
        grid = [-(-n // c) for n, c in zip(array.shape, read.chunk_shape)]
        for index in np.ndindex(*grid):
            try:
                reader.read_chunk(array, index, read)
            except (ChunkpressError, ValueError) as exc:
                rows.append({"array": name, "chunk": index, "problem": str(exc)})
    return pd.DataFrame(rows, columns=["array", "chunk", "problem"])
