"""Floating-point predictor (TIFF predictor 3), bit-identical to imagecodecs.floatpred_*.

The array is cut into rows along ``axis``: a row is one index of the leading axes, i.e. the
C-ordered values of ``data[i0, ..., i(axis-1), ...]``, ``L = shape[axis] * S`` values with
``S = prod(shape[axis+1:])``. Each row becomes a byte stream of ``itemsize`` planes, the most
significant byte of every value first, then the next byte of every value, and so on; each byte
of the stream is then replaced by its difference (mod 256) to the byte ``dist * S`` places
earlier in the stream (the first ``dist * S`` bytes are kept). So every byte is predicted by the
same byte of the value ``dist`` steps back along ``axis``, and the first bytes of a plane by the
end of the plane before. The encoded stream is returned viewed as an array of the input's shape
and dtype.

Where imagecodecs refuses (``axis`` before the last two, or ``shape[axis]`` not a multiple of
``dist``), the same definition is simply continued. Big-endian input is read by value and gives
the same stream as native input; F-ordered and strided arrays are taken by their logical
(C-order) elements, as imagecodecs' encoder does.
"""

from __future__ import annotations

import numpy as np

from ._common import ChunkpressError
from ._numba import kernel

__all__ = [
    "FLOATPRED",
    "FloatpredError",
    "floatpred_check",
    "floatpred_decode",
    "floatpred_encode",
]

_CODEC = "floatpred"
_WORDS = {2: np.dtype(np.uint16), 4: np.dtype(np.uint32), 8: np.dtype(np.uint64)}
_BLOCK = 2048  # values per cache block: block inputs and plane outputs stay in L1/L2
_HIGH = np.uint64(0x8080808080808080)  # top bit of every byte lane
_LOW = np.uint64(0x7F7F7F7F7F7F7F7F)


class FLOATPRED:
    """FLOATPRED codec constants."""

    available = True


class FloatpredError(ChunkpressError):
    """The floating-point predictor failed."""


@kernel(*(f"void({w}[:, ::1], int64, uint8[:, ::1])" for w in ("uint16", "uint32", "uint64")))
def _encode_rows(values, stride, stream):
    """Write each row of values as byte planes, each byte minus the one ``stride`` earlier."""
    nrows, length = values.shape
    nbytes = stream.shape[1] // length
    head = min(stride, length)  # the first bytes of a plane, predicted from an earlier plane
    for row in range(nrows):
        v = values[row]
        e = stream[row]
        for start in range(0, length, _BLOCK):
            stop = min(start + _BLOCK, length)
            for plane in range(nbytes):
                shift = np.uint64(8 * (nbytes - 1 - plane))
                base = plane * length
                body = max(start, min(stop, head))
                for j in range(start, body):
                    k = base + j - stride
                    prev = np.uint64(0)
                    if k >= 0:
                        earlier = k // length
                        prev = v[k - earlier * length] >> np.uint64(8 * (nbytes - 1 - earlier))
                    e[base + j] = np.uint8(v[j] >> shift) - np.uint8(prev)
                for j in range(body, stop):
                    e[base + j] = np.uint8(v[j] >> shift) - np.uint8(v[j - stride] >> shift)


@kernel(*(f"void(uint8[:, ::1], int64, {w}[:, ::1])" for w in ("uint16", "uint32", "uint64")))
def _decode_rows(stream, stride, values):
    """Undo ``_encode_rows``: running byte sums with distance ``stride``, planes to values."""
    nrows, length = values.shape
    nbytes = stream.shape[1] // length
    head = min(stride, length)
    column_sums = np.empty((nbytes, head), np.uint8)
    carries = np.empty((nbytes, head), np.uint8)
    carry_words = np.empty(head, np.uint64)
    block = np.empty(_BLOCK, np.uint64)
    for row in range(nrows):
        e = stream[row]
        out = values[row]
        # sum (mod 256) of the differences of each plane over each residue class mod stride
        for plane in range(nbytes):
            base = plane * length
            if stride == 1:
                total = np.uint64(0)
                for j in range(length):
                    total += e[base + j]
                column_sums[plane, 0] = np.uint8(total)
            elif stride < 16:
                for r in range(head):
                    column_sums[plane, r] = 0
                r = 0
                for j in range(length):
                    column_sums[plane, r] += e[base + j]
                    r += 1
                    if r == stride:
                        r = 0
            else:
                for r in range(head):
                    column_sums[plane, r] = 0
                for start in range(0, length, stride):
                    for r in range(min(stride, length - start)):
                        column_sums[plane, r] += e[base + start + r]
        # byte that precedes position r < head of each plane: it closes an earlier plane,
        # whose own start is predicted from the planes before it
        for plane in range(nbytes):
            for r in range(head):
                k = plane * length + r - stride
                if k < 0:
                    carries[plane, r] = 0
                else:
                    earlier = k // length
                    c = (k - earlier * length) % stride
                    carries[plane, r] = carries[earlier, c] + column_sums[earlier, c]
        for r in range(head):
            word = np.uint64(0)
            for plane in range(nbytes):
                word |= np.uint64(carries[plane, r]) << np.uint64(8 * (nbytes - 1 - plane))
            carry_words[r] = word
        # gather the planes of a block into words, then add byte lanes without carries
        acc = carry_words[0]
        for start in range(0, length, _BLOCK):
            n = min(_BLOCK, length - start)
            for i in range(n):
                block[i] = 0
            for plane in range(nbytes):
                shift = np.uint64(8 * (nbytes - 1 - plane))
                base = plane * length + start
                for i in range(n):
                    block[i] |= np.uint64(e[base + i]) << shift
            if stride == 1:
                for i in range(n):
                    g = block[i]
                    acc = ((acc & _LOW) + (g & _LOW)) ^ ((acc ^ g) & _HIGH)
                    out[start + i] = acc
            else:
                for i in range(n):
                    j = start + i
                    a = carry_words[j] if j < head else np.uint64(out[j - stride])
                    g = block[i]
                    out[j] = ((a & _LOW) + (g & _LOW)) ^ ((a ^ g) & _HIGH)


def floatpred_check(data) -> None:
    """Return None: a predicted array is not a recognisable stream."""
    return None


def floatpred_encode(data, *, axis: int = -1, dist: int = 1, out=None) -> np.ndarray:
    """Return the floating-point predicted array, of the shape and dtype of ``data``."""
    data, axis, dist = _check_args(data, axis, dist)
    result = _output(out, data)
    if data.size == 0:
        return result
    rows, length, stride, word = _layout(data, axis, dist)
    values = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("="))
    if np.may_share_memory(values, result):
        values = values.copy()  # encoding in place: keep the input intact while writing
    values = values.view(word).reshape(rows, length)
    direct = result.flags.c_contiguous
    target = result if direct else np.empty(data.shape, result.dtype)
    _encode_rows(values, stride, target.view(np.uint8).reshape(rows, -1))
    if not direct:
        _copy_elements(result, target)
    return result


def floatpred_decode(data, *, axis: int = -1, dist: int = 1, out=None) -> np.ndarray:
    """Return the un-predicted floating-point array, of the shape and dtype of ``data``."""
    data, axis, dist = _check_args(data, axis, dist)
    result = _output(out, data)
    if data.size == 0:
        return result
    rows, length, stride, word = _layout(data, axis, dist)
    stream = np.ascontiguousarray(data)  # the stream is the stored bytes, whatever the order
    if np.may_share_memory(stream, result):
        stream = stream.copy()
    stream = stream.view(np.uint8).reshape(rows, -1)
    direct = result.flags.c_contiguous and result.dtype.isnative
    target = result if direct else np.empty(data.shape, result.dtype.newbyteorder("="))
    _decode_rows(stream, stride, target.view(word).reshape(rows, length))
    if not direct:
        # by integer view: a float copy could change NaN payloads; this swaps bytes if needed
        result.view(result.dtype.str.replace("f", "u"))[...] = target.view(word)
    return result


def _check_args(data, axis, dist):
    """Return (data, axis >= 0, dist) after checking them, or raise TypeError/ValueError."""
    if not isinstance(data, np.ndarray):
        raise TypeError(f"{_CODEC}: data must be a numpy array, got {type(data).__name__}")
    if data.dtype.kind != "f" or data.dtype.itemsize not in _WORDS:
        raise ValueError(
            f"{_CODEC}: data dtype must be float16, float32 or float64 (either byte order), "
            f"got {data.dtype}"
        )
    if data.ndim == 0:
        raise ValueError(f"{_CODEC}: data must have at least 1 dimension, got a 0-d array")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{_CODEC}: axis must be an integer, got {axis!r}")
    if not -data.ndim <= axis < data.ndim:
        raise ValueError(
            f"{_CODEC}: axis must be in [{-data.ndim}, {data.ndim - 1}] for a "
            f"{data.ndim}-d array, got {axis}"
        )
    if isinstance(dist, bool) or not isinstance(dist, (int, np.integer)):
        raise TypeError(f"{_CODEC}: dist must be an integer, 1 or 2, got {dist!r}")
    if dist not in (1, 2):
        raise ValueError(f"{_CODEC}: dist must be 1 or 2, got {dist}")
    return data, int(axis) % data.ndim, int(dist)


def _output(out, data: np.ndarray) -> np.ndarray:
    """Return ``out`` after checking it can hold the result, or a new C-ordered array."""
    if out is None:
        return np.empty(data.shape, data.dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{_CODEC}: out must be a numpy array or None, got {type(out).__name__}")
    if out.shape != data.shape or out.dtype.newbyteorder("=") != data.dtype.newbyteorder("="):
        raise ValueError(
            f"{_CODEC}: out must have the shape and dtype of data, {data.shape} {data.dtype}; "
            f"got {out.shape} {out.dtype}"
        )
    if not out.flags.writeable:
        raise ValueError(f"{_CODEC}: out is read-only")
    return out


def _layout(data: np.ndarray, axis: int, dist: int):
    """Return (rows, values per row, prediction distance in bytes, word dtype)."""
    samples = int(np.prod(data.shape[axis + 1 :], dtype=np.int64))
    length = data.shape[axis] * samples
    return data.size // length, length, dist * samples, _WORDS[data.dtype.itemsize]


def _copy_elements(result: np.ndarray, source: np.ndarray) -> None:
    """Copy the bytes of each element of ``source`` into the same element of ``result``."""
    word = _WORDS[result.dtype.itemsize]
    result.view(word)[...] = source.view(word)
