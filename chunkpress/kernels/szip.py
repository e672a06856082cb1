"""SZIP (CCSDS 121, via libaec): lossless Rice coding of integer and float blocks."""

from __future__ import annotations

import struct

import imagecodecs
import numpy as np

from . import _frame, _lossy
from ._common import ChunkpressError, as_native
from .registry import Descriptor


class SZIP:
    available = bool(imagecodecs.SZIP.available)


class SzipError(ChunkpressError):
    pass


DTYPES = tuple(np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32",
                                      "uint64", "int64", "float32", "float64"))
_CODING = {"ec": 4, "nn": 32}  # entropy coding alone; nearest-neighbour preprocessing first
_LSB = 8  # samples are stored least significant byte first (native on every platform we build)
_PARAMS = struct.Struct("<BBBI")  # options mask, pixels per block, bits per pixel, per scanline


def _storage_bytes(bits_per_pixel):
    return 1 if bits_per_pixel <= 8 else 2 if bits_per_pixel <= 16 else 4 if bits_per_pixel <= 32 else 8


def _encode(block, params, out=None):
    mask, ppb, bpp, pps = _PARAMS.unpack(params)
    return imagecodecs.szip_encode(block, mask, ppb, bpp, pps, out=out)


def _decode(stream, shape, dtype, params):
    mask, ppb, bpp, pps = _PARAMS.unpack(params)
    if _storage_bytes(bpp) != np.dtype(dtype).itemsize:
        raise SzipError(f"szip: the frame says {bpp} bits per value of {np.dtype(dtype)}; "
                        "the frame is corrupt")
    decoded = np.empty(shape, dtype)
    with memoryview(decoded.reshape(-1).view(np.uint8)) as out:
        written = len(imagecodecs.szip_decode(stream, mask, ppb, bpp, pps, out=out))
    if written != decoded.nbytes:
        raise SzipError(f"szip: the stream holds {written} bytes, its frame says {decoded.nbytes}")
    return decoded


def _refuse_bare(stream, shape, dtype):
    raise SzipError("szip: not a chunkpress SZIP frame (bare SZIP streams need parameters "
                    "that only the frame carries)")


_SPEC = _lossy.Spec("szip", SzipError, (1, 2, 3, 4, 5, 6, 7, 8), _encode, _decode,
                    own_stream=False, dtypes=DTYPES, mask=False,
                    decode_bare=_refuse_bare)


def szip_encode(data, *, coding=None, pixels_per_block=None, bits_per_pixel=None, out=None):
    """Return the framed SZIP stream of ``data`` (lossless).

    ``coding`` is 'nn' (nearest-neighbour preprocessing, the default, for smooth data) or 'ec'
    (entropy coding alone); ``pixels_per_block`` an even number in 2..32 (default 32);
    ``bits_per_pixel`` the significant bits of each value (default: all of the dtype).
    """
    coding = "nn" if coding is None else coding
    if coding not in _CODING:
        raise ValueError(f"szip: coding must be 'ec' or 'nn', got {coding!r}")
    ppb = 32 if pixels_per_block is None else pixels_per_block
    if isinstance(ppb, bool) or not isinstance(ppb, (int, np.integer)) or ppb % 2 or not 2 <= ppb <= 32:
        raise ValueError(f"szip: pixels_per_block must be an even integer in 2..32, got {ppb!r}")
    array = as_native(data, "szip", dtypes=DTYPES, ndims=_SPEC.ndims, zero_d=True)
    dtype = array.dtype
    bits = dtype.itemsize * 8
    bpp = bits if bits_per_pixel is None else bits_per_pixel
    if isinstance(bpp, bool) or not isinstance(bpp, (int, np.integer)) or not (
        1 <= bpp <= bits and _storage_bytes(bpp) == dtype.itemsize
    ):
        low = {1: 1, 2: 9, 4: 17, 8: 33}[dtype.itemsize]
        raise ValueError(
            f"szip: bits_per_pixel for {dtype} must be an integer in {low}..{bits}, got {bpp!r}"
        )
    if bpp < bits and array.size and dtype.kind in "ui":
        if int(array.view(f"u{dtype.itemsize}").max()) >> bpp:
            raise ValueError(f"szip: values of data need more than bits_per_pixel={bpp} bits")
    pps = ppb * max(1, min(128, -(-array.size // ppb)))
    params = _PARAMS.pack(_CODING[coding] | _LSB, ppb, bpp, pps)
    return _lossy.encode(_SPEC, array, params, None, out, frame_params=params)


def szip_decode(data, *, out=None):
    """Return the array in an szip_encode stream; its frame holds every parameter."""
    return _lossy.decode(_SPEC, data, None, None, out)


def szip_check(data):
    """Return True for a chunkpress SZIP frame, False otherwise."""
    return _frame.frame_codec(data) == "szip"


# --- the registry's entry (see registry.py) --------------------------------------------


DESCRIPTOR = Descriptor(
    name="szip", kind="array", encode=szip_encode, decode=szip_decode, error=SzipError,
    dtypes=DTYPES, ndims=_SPEC.ndims, check=szip_check, lossless=True,
    available=SZIP.available, frame_id=5, auto=("lossless",), rank=5,
    doc="SZIP (CCSDS 121, libaec): Rice coding, lossless")
