"""chunkpress: parallel, error-bounded compression of large scientific arrays."""

from .kernels import *  # noqa: F401,F403 — the per-chunk codec API
from .kernels import __all__ as _kernel_names

__version__ = "0.1.0"

__all__ = list(_kernel_names)

try:  # the graph layer, present once it has landed
    from .api import compress, decompress  # noqa: F401
    from .graph.compressed import CompressedArray  # noqa: F401
except ImportError:  # pragma: no cover
    pass
else:
    __all__ += ["compress", "decompress", "CompressedArray"]
