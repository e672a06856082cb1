"""JETRAW: the proprietary camera-noise codec. Its library is on no package registry."""

from __future__ import annotations

import numpy as np

from ._common import ChunkpressError
from .registry import Descriptor


class JETRAW:
    available = False


class JetrawError(ChunkpressError):
    pass


_MISSING = ("jetraw: the Jetraw library is proprietary and not distributed on any package "
            "registry, so chunkpress is built without it; use another codec (e.g. pcodec or "
            "szip for lossless, zfp or sz3 with a tolerance)")


def jetraw_encode(data, *, identifier=None, out=None):
    """Raise JetrawError: the codec is not available."""
    raise JetrawError(_MISSING)


def jetraw_decode(data, *, out=None):
    """Raise JetrawError: the codec is not available."""
    raise JetrawError(_MISSING)


def jetraw_check(data):
    """Return None: without the library no stream can be recognised."""
    return None


# --- the registry's entry (see registry.py) --------------------------------------------


DESCRIPTOR = Descriptor(
    name="jetraw", kind="array", encode=jetraw_encode, decode=jetraw_decode, error=JetrawError,
    dtypes=tuple(np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32",
                                       "int64", "uint64")),
    ndims=(2, 3), check=jetraw_check, lossless=True, available=JETRAW.available,
    unavailable=_MISSING, recognised="none", rank=7,
    doc="JETRAW: camera-noise coding of images (proprietary: not in this build)")
