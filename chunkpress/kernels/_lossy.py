"""The one encode/decode path every floating-point codec goes through.

A codec module supplies its native calls and a :class:`Spec`; this module does the rest the
same way for all of them: layout and dtype checks, the non-finite mask, the certified
tolerance (patching what a codec left outside it), framing, checksums and ``out=``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import _frame, _isolate, _native, relative
from ._common import FLOAT_DTYPES, as_bytes, as_native, write_array_out, write_bytes_out


@dataclass(frozen=True)
class Spec:
    name: str
    error: type
    ndims: tuple  # the dimensionalities the codec takes
    encode: Callable  # (C-contiguous block, params, out buffer or None) -> the codec's stream
    decode: Callable  # (stream, shape or None, dtype or None, frame params) -> ndarray
    #: (block, params, tolerance or None, absolute max of its finite values) ->
    #: (params to use, whether to decode and check the bound, whether to store the block
    #: losslessly instead: the codec cannot take it or would crash on it)
    plan: Callable = lambda block, params, tolerance, amax: (params, tolerance is not None, False)
    own_stream: bool = True  # True: finite blocks get the codec's own stream, not a frame
    #: whether a block of this shape keeps its shape through the codec's own stream
    own_shape: Callable = lambda shape: True
    #: (the codec's own stream) -> that stream carrying a checksum the codec's decoders ignore
    seal: Callable | None = None
    dtypes: tuple = FLOAT_DTYPES
    mask: bool = True  # False: the codec keeps non-finite values itself (lossless codecs)
    writes_into: bool = True  # the codec can write into a buffer, refusing one too small
    #: (block, params) -> the most bytes the codec's stream of ``block`` can take: for a codec
    #: that writes into a buffer without checking its size (ZFP), the codec's own worst case.
    #: By default the block's size and an eighth more (codecs that check ``out`` fall back).
    capacity: Callable = lambda block, params: block.nbytes + block.nbytes // 8 + 4096
    #: (stream, shape or None, dtype or None) -> ndarray: decodes a stream that is not a frame
    #: (the codec's own, sealed or not); by default ``decode``
    decode_bare: Callable | None = None
    #: what the codec sees where a cell is NaN/Inf (the mask keeps the cell): "smooth", a
    #: continuation of the finite cells around it, or "mean", the block's finite mean
    #: (constant land is what ZFP, SZ3 and LERC predict best: 10-60% smaller on land-heavy
    #: fields; SPERR's wavelets gain from the smooth one on some), or "compact", for a
    #: lossless codec of sequences (PCODEC): the codec codes the finite cells alone, in C
    #: order, as one dimension (a fill would break the run of values it models; the finite
    #: cells' count tells its decoder which layout a masked frame holds)
    fill: str = "smooth"
    #: the codec reads a block of up to 3 dimensions whose rows are contiguous in place (ZFP
    #: takes strides): a block sliced out of a larger array is not copied first
    strided: bool = False


def encode(spec: Spec, data, params, tolerance, out, *, frame_params: bytes = b""):
    """Return the stream of one block; ``tolerance`` (or None) is certified on finite cells."""
    a = data if spec.strided and _rows_contiguous(data, spec) else \
        as_native(data, spec.name, dtypes=spec.dtypes, ndims=spec.ndims, zero_d=True)
    shape = a.shape
    if a.size == 0:
        return write_bytes_out(_frame.pack(spec.name, a.dtype, shape, b""), out, spec.name)
    block = a.reshape((1,) * spec.ndims[0]) if a.ndim == 0 else a
    mask = None
    amax = 0.0
    # (the scan takes float32 and float64: PCODEC keeps float16 NaN itself)
    if a.dtype.kind == "f" and a.dtype.itemsize >= 4 and (spec.mask or tolerance is not None):
        rows = block.reshape(1, 1, -1) if block.flags.c_contiguous else \
            block.reshape((1,) * (3 - block.ndim) + block.shape)  # a view: rows contiguous
        bad, amax = _native.scan(rows)
        if bad and spec.mask:
            block, mask = _frame.split_nonfinite(np.ascontiguousarray(block), bad,
                                                 spec.fill)
            if spec.fill == "compact" and tolerance is not None:
                raise ValueError(f"{spec.name}: a compacted block takes no tolerance")
            if block.size == 0:  # nothing finite: the mask holds the block
                frame = _frame.Writer(spec.name, a.dtype, shape, frame_params, 0)
                frame.put_payload(b"")
                return write_bytes_out(frame.finish(mask, None), out, spec.name)
    # with its non-finite cells: what a patch is checked on (a compacted block has none)
    original = a.reshape(block.shape) if a.size == block.size else None
    params, verify, store = spec.plan(block, params, tolerance, amax)
    verify = verify and tolerance is not None and a.dtype.kind == "f"
    if store:
        frame = _frame.Writer(spec.name, a.dtype, shape, frame_params, 0)
        frame.put_payload(_frame.zstd(block))
        return write_bytes_out(frame.finish(mask, None, stored=True), out, spec.name)
    own = mask is None and spec.own_stream and a.ndim != 0 and spec.own_shape(shape)
    if own:
        # room for the seal too: it is appended without copying the stream
        stream = _own_stream(spec, block, params, spec.capacity(block, params) + 16)
        patch = _find_patch(spec, stream, block, original, tolerance) if verify else None
        if patch is None:
            stream = spec.seal(stream) if spec.seal is not None else stream
            return write_bytes_out(stream, out, spec.name)
        frame = _frame.Writer(spec.name, a.dtype, shape, frame_params, len(stream))
        frame.put_payload(stream)
    else:
        # a codec that checks its output's size writes straight into the frame
        frame = _frame.Writer(spec.name, a.dtype, shape, frame_params,
                              spec.capacity(block, params) if spec.writes_into else 0)
        if spec.writes_into:
            payload = frame.encode_payload(
                lambda into: spec.encode(block, params, into),
                lambda: _call(spec, spec.encode, block, params, None),
            )
        else:
            frame.put_payload(_call(spec, spec.encode, block, params, None))
            payload = frame.payload()
        with payload:
            patch = _find_patch(spec, payload, block, original, tolerance) if verify else None
    return write_bytes_out(frame.finish(mask, patch), out, spec.name)


def _own_stream(spec, block, params, capacity):
    """Return the codec's own stream of ``block``, in a bytearray where the codec can write.

    A buffer given to the codec spares it sizing its output first (LERC encodes twice
    otherwise) and leaves room to append a trailer without copying the stream.
    """
    if not spec.writes_into:
        return _call(spec, spec.encode, block, params, None)
    buf = _native.empty_bytearray(capacity)
    with memoryview(buf) as view:
        try:
            written = spec.encode(block, params, view)
        except (RuntimeError, ValueError):  # out too small, or a failure the plain call reports
            written = None
        size = None if written is None else len(written)
        if isinstance(written, memoryview):
            written.release()
    if size is None:
        return _call(spec, spec.encode, block, params, None)
    del buf[size:]
    return buf


def _find_patch(spec, stream, block, original, tolerance):
    """Decode ``stream`` and return the finite cells of ``original`` it leaves outside
    ``tolerance``, if any."""
    with _isolate.here():  # a stream just made here
        decoded = _call(spec, spec.decode, stream, block.shape, block.dtype, b"")
    flat = np.ascontiguousarray(original).reshape(-1)  # (a copy only of a strided block)
    return _frame.find_patch(flat, np.ascontiguousarray(decoded), tolerance)


def _rows_contiguous(data, spec) -> bool:
    """Whether ``data`` can be encoded where it lies: a native block the codec takes, of up to
    3 dimensions, whose rows are contiguous (anything else goes through ``as_native``)."""
    return (isinstance(data, np.ndarray) and 1 <= data.ndim <= 3 and data.ndim in spec.ndims
            and data.dtype in spec.dtypes and data.dtype.isnative and data.flags.aligned
            and data.strides[-1] == data.itemsize and min(data.strides) >= 0)


def decode(spec: Spec, data, shape=None, dtype=None, out=None):
    """Return the block in ``data``, an encode() stream or the codec's own stream."""
    buf = as_bytes(data, spec.name)
    if _frame.is_frame(buf):
        frame = _frame.unpack(buf, spec.name, spec.error)
        if frame.dtype.newbyteorder("=") not in spec.dtypes:
            raise spec.error(f"{spec.name}: the frame says dtype {frame.dtype}, which "
                             f"{spec.name} does not make; the stream is corrupt")
        _check_expected(spec, frame.shape, frame.dtype, shape, dtype)
        if 0 in frame.shape:
            if len(frame.payload) or frame.mask is not None or frame.patch is not None:
                raise spec.error(f"{spec.name}: a frame of an empty block holds data; "
                                 "the stream is corrupt")
            return write_array_out(np.empty(frame.shape, frame.dtype), out, spec.name)
        native_shape = frame.shape or (1,) * spec.ndims[0]
        if frame.stored:
            decoded = _frame.stored_block(frame, native_shape, spec.error)
        elif frame.relative:  # a relative bound: the codec coded the log of the magnitudes
            decoded = relative.invert(frame, native_shape, lambda inner: decode(spec, inner),
                                      spec.name, spec.error)
        elif frame.mask is not None and spec.fill == "compact":
            decoded = _expand(spec, frame, native_shape)
        else:
            decoded = _call(spec, spec.decode, frame.payload, native_shape, frame.dtype,
                            frame.params)
        if decoded.shape != native_shape or decoded.dtype != frame.dtype.newbyteorder("="):
            raise spec.error(
                f"{spec.name}: the stream decodes to {decoded.shape} {decoded.dtype}, "
                f"its frame says {native_shape} {frame.dtype}; the stream is corrupt"
            )
        decoded = np.ascontiguousarray(decoded)
        _frame.restore(decoded, frame.mask, frame.patch, spec.name, spec.error)
        decoded = decoded.reshape(frame.shape)
    else:
        if spec.decode_bare is not None:
            decoded = _call(spec, spec.decode_bare, buf, shape, dtype)
        else:
            decoded = _call(spec, spec.decode, buf, shape, dtype, b"")
        _check_expected(spec, decoded.shape, decoded.dtype, shape, dtype)
    return write_array_out(decoded, out, spec.name)


def _expand(spec, frame, shape) -> np.ndarray:
    """Decode a masked frame of a "compact" codec: its stream holds the finite cells alone;
    the non-finite ones are left for the mask to fill (see ``_frame.restore``)."""
    size = math.prod(shape)
    nonfinite = np.unpackbits(frame.mask.bits, count=size, bitorder="little").view(bool)
    count = size - int(np.count_nonzero(nonfinite))
    if len(frame.mask.bits) != (size + 7) // 8 or count + len(frame.mask.values) != size:
        raise spec.error(f"{spec.name}: corrupt frame mask: {size - count} cells marked, "
                         f"{len(frame.mask.values)} values stored")
    decoded = np.empty(shape, frame.dtype.newbyteorder("="))
    if count:
        finite = _call(spec, spec.decode, frame.payload, (count,), frame.dtype, frame.params)
        if finite.shape != (count,):
            raise spec.error(f"{spec.name}: the stream decodes to {finite.shape}, the frame's "
                             f"mask leaves {count} finite cells; the stream is corrupt")
        decoded.reshape(-1)[~nonfinite] = finite
    elif len(frame.payload):
        raise spec.error(f"{spec.name}: a frame whose cells are all masked holds a stream; "
                         "the stream is corrupt")
    return decoded


def _check_expected(spec, got_shape, got_dtype, shape, dtype):
    if shape is not None and tuple(shape) != tuple(got_shape):
        raise ValueError(f"{spec.name}: shape {tuple(shape)} given, the stream holds {got_shape}")
    if dtype is not None and np.dtype(dtype).newbyteorder("=") != got_dtype.newbyteorder("="):
        raise ValueError(f"{spec.name}: dtype {np.dtype(dtype)} given, the stream holds {got_dtype}")


def _call(spec, function, *args):
    """Call into the codec, turning its failures into the codec's own error."""
    try:
        return function(*args)
    except spec.error:
        raise
    except (RuntimeError, ValueError, TypeError, MemoryError, OverflowError, IndexError) as exc:
        raise spec.error(f"{spec.name}: {type(exc).__name__}: {exc}") from exc
