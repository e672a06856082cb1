"""chunkpress: parallel, error-bounded compression of large scientific arrays."""

from . import accessor as _accessor  # noqa: F401 — registers ds.chunkpress / da.chunkpress
from .storage import codecs as _zarr_codecs  # noqa: F401 — registers the Zarr v3 codecs
from .api import compress, decompress
from .evaluation import evaluate
from .graph.compressed import CompressedArray
from .kernels import *  # noqa: F401,F403 — the per-chunk codec API
from .kernels import __all__ as _kernel_names
from .accessor import CompressedDataset
from .storage import from_zarr, info, to_zarr
from .storage.publish import IncompleteStoreError, WriterBusyError
from .storage.verify import verify
from .graph.codecs import accepted as _accepted

#: the codec names ``compress`` takes, from the codec registry: array codecs, "auto" and
#: "auto-array", bytes codecs alone, chains of one filter ("floatpred+zstd"; several filters
#: chain too). ``chunkpress.kernels.CODECS`` names the kernel modules.
CODECS = _accepted()

__version__ = "0.1.0"

__all__ = [
    "compress", "decompress", "CompressedArray", "to_zarr", "from_zarr", "info", "verify",
    "CompressedDataset", "IncompleteStoreError", "WriterBusyError",
    "evaluate", *_kernel_names,
]
