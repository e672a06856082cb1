"""chunkpress: parallel, error-bounded compression of large scientific arrays."""

from . import xarray as _xarray_accessor  # noqa: F401 — registers ds.chunkpress / da.chunkpress
from . import zarr as _zarr_codecs  # noqa: F401 — registers the Zarr v3 codecs in a source tree
from .api import compress, decompress
from .evaluation import evaluate
from .graph.compressed import CompressedArray
from .kernels import *  # noqa: F401,F403 — the per-chunk codec API
from .kernels import __all__ as _kernel_names
from .store import from_zarr, to_zarr
from .xarray import CompressedDataset

__version__ = "0.1.0"

__all__ = [
    "compress", "decompress", "CompressedArray", "to_zarr", "from_zarr", "CompressedDataset",
    "evaluate", *_kernel_names,
]
