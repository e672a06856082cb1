"""PCODEC: lossless compression of numerical sequences (integers and floats)."""

from __future__ import annotations

import math

import imagecodecs
import numpy as np

from . import _frame, _lossy
from ._common import ChunkpressError, check_integer
from .registry import Descriptor, Param


class PCODEC:
    available = bool(imagecodecs.PCODEC.available)


class PcodecError(ChunkpressError):
    pass


DTYPES = tuple(np.dtype(t) for t in ("uint16", "int16", "uint32", "int32", "uint64", "int64",
                                      "float16", "float32", "float64"))


def _encode(block, level, out=None):
    return imagecodecs.pcodec_encode(block, level, out=out)


def _decode(stream, shape, dtype, params):
    return imagecodecs.pcodec_decode(_guard(stream, shape, np.dtype(dtype)), shape=tuple(shape),
                                     dtype=dtype)


# PCODEC's decoder is Rust: memory-safe, but a panic in it aborts the interpreter, and it
# panics on a stream whose count hint is forged (it reserves that many values first). Its
# standalone header (format version 3, as imagecodecs 2026.3.6 writes it) is checked against
# the frame first: b"pco!", the version, the number type, then the count: 6 bits holding
# its bit width less one, then that many bits, least significant first.
_NUMBER_TYPES = {1: "uint32", 2: "uint64", 3: "int32", 4: "int64", 5: "float32", 6: "float64",
                 7: "uint16", 8: "int16", 9: "float16"}


def _guard(stream, shape, dtype):
    """Return a PCODEC stream after checking its header against the frame's shape and dtype."""
    buf = memoryview(stream).cast("B")
    if len(buf) < 7 or bytes(buf[:4]) != b"pco!":
        raise PcodecError("pcodec: not a PCODEC stream (no b'pco!' magic) or truncated")
    if buf[4] != 3:
        raise PcodecError(f"pcodec: PCODEC standalone format version {buf[4]}; this build "
                          "reads version 3")
    if _NUMBER_TYPES.get(buf[5]) != dtype.name:
        raise PcodecError(f"pcodec: the stream holds values of PCODEC number type {buf[5]}, "
                          f"not the frame's {dtype}; the stream is corrupt")
    bits = int.from_bytes(buf[6:16], "little")
    width = (bits & 63) + 1
    count = (bits >> 6) & ((1 << width) - 1)
    size = math.prod(shape)
    if count != size or 6 + width > 8 * len(buf[6:16]):
        raise PcodecError(f"pcodec: the stream says it holds {count} values, the frame "
                          f"{size}; the stream is corrupt")
    return buf


def _refuse_bare(stream, shape, dtype):
    raise PcodecError("pcodec: not a chunkpress PCODEC frame (a bare PCODEC stream does not "
                      "say its shape and dtype)")


_SPEC = _lossy.Spec("pcodec", PcodecError, (1, 2, 3, 4, 5, 6, 7, 8), _encode, _decode,
                    own_stream=False, dtypes=DTYPES, fill="compact",
                    decode_bare=_refuse_bare)


def pcodec_encode(data, *, level=None, out=None):
    """Return the framed PCODEC stream of ``data`` (lossless; ``level`` 0-12, default 8)."""
    level = 8 if level is None else _check_level(level)
    return _lossy.encode(_SPEC, data, level, None, out)


def pcodec_decode(data, *, out=None):
    """Return the array in a pcodec_encode stream."""
    return _lossy.decode(_SPEC, data, None, None, out)


def pcodec_check(data):
    """Return True for a chunkpress PCODEC frame, False otherwise."""
    return _frame.frame_codec(data) == "pcodec"


# --- the registry's entry (see registry.py) --------------------------------------------


def _check_level(level, dtype=None):
    return check_integer("pcodec", "level", level, 0, 12)


DESCRIPTOR = Descriptor(
    name="pcodec", kind="array", encode=pcodec_encode, decode=pcodec_decode, error=PcodecError,
    dtypes=DTYPES, ndims=_SPEC.ndims, params=(Param("level", _check_level, "0..12 (default 8)"),),
    check=pcodec_check, lossless=True, available=PCODEC.available, frame_id=6,
    auto=("lossless",), rank=4, doc="PCODEC: numerical sequences, lossless")
