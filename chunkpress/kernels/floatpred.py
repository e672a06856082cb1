"""Floating-point predictor (TIFF predictor 3), bit-identical to imagecodecs.floatpred_*.

Layout. A row is ``data[i_0, ..., i_(axis-1)]`` with the axes from ``axis`` on flattened in C
order: ``L = shape[axis] * S`` values, ``S = prod(shape[axis+1:])``. The row's bytes are split
into planes, the most significant byte of all L values first (whatever the byte order in
memory), then the next, and each byte of that stream becomes its difference mod 256 to the
byte ``D = dist * S`` places before it; the first D bytes stay. So a byte is predicted by the
same byte of the value ``dist`` steps back along ``axis``; the first bytes of a plane by the
last ones of the plane before. The stream is returned viewed as ``data.shape`` and ``data.dtype``.

Where imagecodecs refuses, the same definition goes on: any axis (it takes the last two only),
any ``shape[axis]`` (it wants a multiple of ``dist``), and F-ordered or strided streams to
decode (it takes the logical C-order elements when encoding, and so does this module both
ways). Big-endian data gives the same stream as native data and keeps its dtype, as in
imagecodecs. Zero-size arrays give zero-size arrays; 0-d arrays are refused (no axis -1).
``out`` may be ``data`` itself: the result is then written in place.
"""

from __future__ import annotations

import numpy as np

from ._common import ChunkpressError, check_floats, filter_output
from .registry import Descriptor
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


def _encode_rows(values, stride, stream):
    """Write each row of values as byte planes, each byte minus the one ``stride`` earlier."""
    nrows, length = values.shape
    nbytes = stream.shape[1] // length
    head = min(stride, length)  # the first bytes of a plane are predicted from an earlier plane
    for row in range(nrows):
        v = values[row]
        e = stream[row]
        # blocks of values, all planes of one block in turn: the block is read from cache
        for start in range(0, length, _BLOCK):
            stop = min(start + _BLOCK, length)
            body = max(start, min(stop, head))
            for plane in range(nbytes):
                shift = np.uint64(8 * (nbytes - 1 - plane))
                e_plane = e[plane * length : (plane + 1) * length]
                # positions j < stride: the byte before is in an earlier plane, or none
                if plane > 0 and length >= stride:  # the end of the plane before
                    cur = v[start:body]
                    ends = v[length - stride + start : length - stride + body]
                    dst = e_plane[start:body]
                    up = shift + np.uint64(8)
                    for i in range(body - start):
                        dst[i] = np.uint8(cur[i] >> shift) - np.uint8(ends[i] >> up)
                else:  # the first plane, or a row shorter than the distance
                    for j in range(start, body):
                        k = plane * length + j - stride
                        prev = np.uint64(0)
                        if k >= 0:
                            earlier = k // length
                            up = np.uint64(8 * (nbytes - 1 - earlier))
                            prev = v[k - earlier * length] >> up
                        e_plane[j] = np.uint8(v[j] >> shift) - np.uint8(prev)
                # slices indexed from 0 let numba drop negative-index checks and vectorise
                cur = v[body:stop]
                prev_values = v[body - stride : stop - stride]
                dst = e_plane[body:stop]
                for i in range(stop - body):
                    dst[i] = np.uint8(cur[i] >> shift) - np.uint8(prev_values[i] >> shift)


def _decode_rows(stream, stride, values):
    """Undo ``_encode_rows``: running byte sums with distance ``stride``, planes to values."""
    nrows, length = values.shape
    nbytes = stream.shape[1] // length
    head = min(stride, length)
    column_sums = np.empty((nbytes, head), np.uint8)
    carries = np.empty((nbytes, head), np.uint8)
    carry_words = np.empty(head, np.uint64)
    block = np.empty(_BLOCK, np.uint64)
    period = stride * max(1, 64 // stride)
    lanes = np.empty(period, np.uint8)
    for row in range(nrows):
        e = stream[row]
        out = values[row]
        # sum (mod 256) of each plane's differences over each residue class mod stride;
        # for stride > 1 first into `period` lanes (a multiple of stride, so vectorisable)
        for plane in range(nbytes):
            e_plane = e[plane * length : (plane + 1) * length]
            if stride == 1:
                total = np.uint64(0)
                for j in range(length):
                    total += e_plane[j]
                column_sums[plane, 0] = np.uint8(total)
                continue
            for i in range(period):
                lanes[i] = 0
            for start in range(0, length, period):
                segment = e_plane[start : start + period]
                for i in range(segment.size):
                    lanes[i] += segment[i]
            sums = column_sums[plane]
            for r in range(head):
                sums[r] = 0
            for start in range(0, min(period, length), stride):
                folded = lanes[start : start + stride]
                for r in range(folded.size):
                    sums[r] += folded[r]
        # the byte before position r < head of a plane closes an earlier plane, whose own
        # first bytes come from the planes before it
        for plane in range(nbytes):
            if plane > 0 and length >= stride:  # the end of the plane before
                c = length % stride
                for r in range(head):
                    carries[plane, r] = carries[plane - 1, c] + column_sums[plane - 1, c]
                    c += 1
                    if c == stride:
                        c = 0
                continue
            for r in range(head):  # the first plane, or a row shorter than the distance
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
        # per block: gather the planes into words, then add byte lanes without carry between
        # lanes, (a & 0x7f..) + (b & 0x7f..) ^ ((a ^ b) & 0x80..), to the word stride back
        acc = carry_words[0]
        for start in range(0, length, _BLOCK):
            n = min(_BLOCK, length - start)
            words = block[:n]
            for i in range(n):
                words[i] = 0
            for plane in range(nbytes):
                shift = np.uint64(8 * (nbytes - 1 - plane))
                segment = e[plane * length + start : plane * length + start + n]
                for i in range(n):
                    words[i] |= np.uint64(segment[i]) << shift
            dst = out[start : start + n]
            if stride == 1:
                for i in range(n):
                    g = words[i]
                    acc = ((acc & _LOW) + (g & _LOW)) ^ ((acc ^ g) & _HIGH)
                    dst[i] = acc
                continue
            body = max(start, min(start + n, head))
            for j in range(start, body):
                a = carry_words[j]
                g = words[j - start]
                dst[j - start] = ((a & _LOW) + (g & _LOW)) ^ ((a ^ g) & _HIGH)
            dst = out[body : start + n]
            prev_values = out[body - stride : start + n - stride]
            gathered = words[body - start : n]
            for i in range(dst.size):
                a = np.uint64(prev_values[i])
                g = gathered[i]
                dst[i] = ((a & _LOW) + (g & _LOW)) ^ ((a ^ g) & _HIGH)


def _signatures(template: str) -> dict[int, str]:
    """Return one kernel signature per item size, ``{word}`` replaced by its unsigned type."""
    names = {2: "uint16", 4: "uint32", 8: "uint64"}
    return {size: template.format(word=name) for size, name in names.items()}


# one kernel per item size, so the first call compiles only the one it needs;
# inputs are declared read-only so that read-only arrays are accepted too
_ENCODERS = {
    size: kernel(sig)(_encode_rows)
    for size, sig in _signatures(
        "void(Array({word}, 2, 'C', readonly=True), int64, uint8[:, ::1])"
    ).items()
}
_DECODERS = {
    size: kernel(sig)(_decode_rows)
    for size, sig in _signatures(
        "void(Array(uint8, 2, 'C', readonly=True), int64, {word}[:, ::1])"
    ).items()
}


def floatpred_check(data) -> None:
    """Return None: a predicted array is not a recognisable stream."""
    return None


def floatpred_encode(data, *, axis: int = -1, dist: int = 1, out=None) -> np.ndarray:
    """Return the floating-point predicted array, of the shape and dtype of ``data``."""
    axis, dist = _check_args(data, axis, dist)
    result = filter_output(out, data, _CODEC)
    if data.size == 0:
        return result
    rows, length, stride = _layout(data, axis, dist)
    word = _WORDS[data.dtype.itemsize]
    # values as native unsigned words, by integer casts only: NaN payloads stay as they are
    values = np.require(data.view(_unsigned(data.dtype)), word, ["C", "A"])
    if np.may_share_memory(values, result):
        values = values.copy()  # encoding in place: keep the input intact while writing
    direct = result.flags.c_contiguous and result.flags.aligned
    target = result if direct else np.empty(data.shape, result.dtype)
    stream = target.view(np.uint8).reshape(rows, -1)
    _ENCODERS[data.dtype.itemsize](values.reshape(rows, length), stride, stream)
    if not direct:
        result.view(word)[...] = target.view(word)  # the stored bytes of each element
    return result


def floatpred_decode(data, *, axis: int = -1, dist: int = 1, out=None) -> np.ndarray:
    """Return the un-predicted floating-point array, of the shape and dtype of ``data``."""
    axis, dist = _check_args(data, axis, dist)
    result = filter_output(out, data, _CODEC)
    if data.size == 0:
        return result
    rows, length, stride = _layout(data, axis, dist)
    word = _WORDS[data.dtype.itemsize]
    # the stream is the stored bytes of the elements in C order, whatever the byte order
    stream = np.ascontiguousarray(data.view(_unsigned(data.dtype)))
    if np.may_share_memory(stream, result):
        stream = stream.copy()
    stream = stream.view(np.uint8).reshape(rows, -1)
    direct = result.flags.c_contiguous and result.flags.aligned and result.dtype.isnative
    target = result.view(word) if direct else np.empty(data.shape, word)
    _DECODERS[data.dtype.itemsize](stream, stride, target.reshape(rows, length))
    if not direct:
        result.view(_unsigned(result.dtype))[...] = target  # integer cast: swaps bytes if needed
    return result


def _check_args(data, axis, dist):
    """Return (axis >= 0, dist) after checking the arguments; raise TypeError/ValueError."""
    check_floats(data, _CODEC)
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
    return int(axis) % data.ndim, int(dist)


def _layout(data: np.ndarray, axis: int, dist: int) -> tuple[int, int, int]:
    """Return (rows, values per row, prediction distance in bytes of a plane)."""
    samples = int(np.prod(data.shape[axis + 1 :], dtype=np.int64))
    length = data.shape[axis] * samples
    return data.size // length, length, dist * samples


def _unsigned(dtype: np.dtype) -> np.dtype:
    """Return the unsigned integer dtype of the size and byte order of ``dtype``."""
    return np.dtype(dtype.str.replace("f", "u"))


# --- the registry's entry (see registry.py) --------------------------------------------


DESCRIPTOR = Descriptor(
    name="floatpred", kind="filter", encode=floatpred_encode, decode=floatpred_decode,
    error=FloatpredError, dtypes=tuple(np.dtype(f"float{8 * n}") for n in _WORDS),
    lossless=True, auto=("lossless",), recognised="none", rank=1,
    doc="floating-point predictor (TIFF predictor 3), lossless; before a bytes codec")
