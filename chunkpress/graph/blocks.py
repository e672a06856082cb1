"""One block through one codec: encode, decode, and (verify=True) measure.

A block with more dimensions than its codec takes is a batch: one stream per index of its
leading axes, in the batch layout of ``chunkpress.kernels.formats``. The bytes are the
kernels' (the registry's chains); this module only calls them. codec="auto" is ``dispatch``'s.
"""

from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..kernels import formats
from . import codecs, measure, plan
from .codecs import Codec

__all__ = ["encode", "decode", "decode_any"]

#: a block SPERR leaves short of its PSNR share is encoded again this many times at most
ATTEMPTS = 4


def encode(block: np.ndarray, codec: Codec, kwargs: dict, verify_bound=False,
           max_mse=None) -> measure.Encoded:
    """Return the Encoded block; with ``verify_bound`` not False, decode and measure it too.

    ``verify_bound`` is the max absolute error to certify (0 for lossless), or None to measure
    without a bound. ``max_mse`` (a PSNR target, measured blocks only) is the mean squared
    error the block must keep: a block the codec leaves above it is encoded again, finer.
    """
    batch, _ = plan.codec_axes(block.ndim, codec.ndims)
    for attempt in range(ATTEMPTS):
        data = _encode_batch(block, codec, kwargs, batch) if batch else \
            codec.chain.encode(block, **kwargs)
        if verify_bound is False:
            return measure.Encoded(data, block.shape)
        with kernels.made_here():  # a stream just made here: no need of a decoding process
            # in the byte order the kernels write (a big-endian block, from netCDF-3, say)
            decoded = decode(data, codec, block.shape, block.dtype.newbyteorder("="))
        encoded = measure.measure(block, decoded, data, codec, verify_bound,
                                  *codecs.certified_relative(codec, kwargs))
        if max_mse is None or encoded.count <= 0 or encoded.sse <= max_mse * encoded.count:
            return encoded
        kwargs = finer(kwargs, encoded.sse / encoded.count, max_mse, attempt)
    return encoded


def finer(kwargs: dict, mse: float, max_mse: float, attempt: int) -> dict:
    """Return PSNR-target arguments that should bring a block's error from ``mse`` to
    ``max_mse``: a higher PSNR, then a point-wise bound (see the registry's ``psnr``)."""
    if kwargs.get("mode") == "psnr" and attempt < 2:
        gap = 10.0 * math.log10(mse / max_mse)
        return {"mode": "psnr", "quality": kwargs["quality"] + gap + 0.5 * (attempt + 1)}
    # a point-wise bound of the target's root mean square error keeps it by construction
    return {"tolerance": math.sqrt(max_mse) * 0.999}


def decode(data, codec: Codec, shape, dtype) -> np.ndarray:
    """Return the block in ``data`` (an :func:`encode` stream) as an array of ``shape``."""
    shape = tuple(shape)
    batch, _ = plan.codec_axes(len(shape), codec.ndims)
    if batch:
        return _decode_batch(data, codec, shape, dtype, batch)
    return _decode_one(data, codec, shape, dtype)


def decode_any(data, codec: Codec) -> np.ndarray:
    """Return the block in a stream of a codec whose streams say their shape (``holds_shape``),
    of the shape the stream says: a Zarr edge chunk is stored with its real extent only."""
    if not formats.is_batch(data):
        return codec.chain.decode(data)
    lead, streams = formats.batch_unpack(data)
    blocks = [codec.chain.decode(stream) for stream in streams]
    inner = blocks[0].shape if blocks else (0,) * codec.ndims[0]
    if any(b.shape != inner or b.dtype != blocks[0].dtype for b in blocks):
        raise codec.error(f"{codec.name}: the streams of a batch block differ in shape; "
                          "the stored bytes are damaged")
    out = np.empty(tuple(lead) + tuple(inner), blocks[0].dtype if blocks else np.float64)
    for index, b in zip(np.ndindex(*lead), blocks):
        out[index] = b
    return out


def _decode_one(data, codec: Codec, shape, dtype) -> np.ndarray:
    decoded = codec.chain.decode(data, shape, dtype)
    if decoded.shape != shape:
        raise codec.error(f"{codec.name}: a block of shape {shape} decodes to {decoded.shape}; "
                          "the stored bytes belong to another array")
    return decoded


def _encode_batch(block, codec: Codec, kwargs: dict, batch: int) -> bytes:
    lead = block.shape[:batch]
    return formats.batch_pack(lead, [codec.chain.encode(block[index], **kwargs)
                                     for index in np.ndindex(*lead)])


def _decode_batch(data, codec: Codec, shape, dtype, batch: int) -> np.ndarray:
    lead = shape[:batch]
    out = np.empty(shape, dtype)
    for index, stream in zip(np.ndindex(*lead), formats.batch_unpack(data, lead)[1]):
        out[index] = _decode_one(stream, codec, shape[batch:], dtype)
    return out
