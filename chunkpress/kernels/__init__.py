"""Per-chunk kernels: one block in, bytes out, and back. Knows nothing of dask, zarr or xarray."""

from ._common import ChunkpressError, check_tolerance  # noqa: F401 — the one tolerance check
from ._common import is_real  # noqa: F401 — what a number is, for the checks above
from .floatpred import FLOATPRED, FloatpredError, floatpred_check, floatpred_decode, floatpred_encode
from .jetraw import JETRAW, JetrawError, jetraw_check, jetraw_decode, jetraw_encode
from .lerc import LERC, LercError, lerc_check, lerc_decode, lerc_encode
from .pcodec import PCODEC, PcodecError, pcodec_check, pcodec_decode, pcodec_encode
from .sperr import SPERR, SperrError, sperr_check, sperr_decode, sperr_encode
from .sz3 import SZ3, Sz3Error, sz3_check, sz3_decode, sz3_encode
from .szip import SZIP, SzipError, szip_check, szip_decode, szip_encode
from .zfp import ZFP, ZfpError, zfp_check, zfp_decode, zfp_encode

from . import registry
from ._isolate import here as made_here  # noqa: F401 — decode streams made just now, here
from ._frame import split_nonfinite  # noqa: F401 — a block as lossy codecs see it (auto)

#: the kernel codecs by name, each a module with NAME_encode, NAME_decode, NAME_check (the
#: array codecs and filters of the registry; ``chunkpress.CODECS`` is what compress takes)
CODECS = registry.names("array") + registry.names("filter")


def _faces() -> dict:
    """Every registered codec's face, from the module that holds its descriptor: NAME_encode,
    NAME_decode, NAME_check, the NAME class and its error class (``chunkpress.NAME_encode`` for a
    codec added by its kernel module alone; a module of several codecs, such as bytecodecs,
    has no such names and gives none)."""
    import importlib

    out = {}
    for d in registry.descriptors():
        module = importlib.import_module(d.encode.__module__)
        names = [f"{d.name}_encode", f"{d.name}_decode", f"{d.name}_check", d.name.upper()]
        if getattr(module, "DESCRIPTOR", None) is d:  # the codec's own module: its error too
            names.append(d.error.__name__)
        out.update((n, getattr(module, n)) for n in names if hasattr(module, n))
    return out


_FACES = _faces()
globals().update(_FACES)

#: ChunkpressError, CODECS and every registered codec's face (its module's NAME_encode, ...)
__all__ = ["ChunkpressError", "CODECS", *_FACES]
