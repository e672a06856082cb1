"""JETRAW: the proprietary camera-noise codec. Its library is on no package registry."""

from __future__ import annotations

from ._common import ChunkpressError


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
