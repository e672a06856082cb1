"""Encode and decode one block with any codec, codec="auto" included.

An "auto" block is given its codec (``kwargs["codec"]``, chosen for the array by
``chunkpress.auto``) or chooses it here from samples of itself (``graph.sample``); its stream
is that codec's, which says which codec wrote it (:func:`identify`). Every other codec goes
straight to ``blocks``.
"""

from __future__ import annotations

import numpy as np

from ..kernels import chains, formats, registry
from . import blocks, sample
from .codecs import AutoError, Codec, auto_chain, get_codec

__all__ = ["encode", "decode", "identify", "AutoError"]


def encode(block: np.ndarray, codec: Codec, kwargs: dict, verify_bound=False, max_mse=None):
    """Return the Encoded block (see :func:`blocks.encode`).

    codec="auto" takes ``kwargs`` with the chosen ``codec`` and its kernel arguments, or
    ``tolerance`` (and ``candidates``) alone, to choose here from samples of the block.
    """
    if codec.is_auto:
        codec, kwargs = _auto_codec(block, kwargs)
    return blocks.encode(block, codec, kwargs, verify_bound, max_mse)


def decode(data, codec: Codec, shape, dtype) -> np.ndarray:
    """Return the block in ``data`` (an :func:`encode` stream) as an array of ``shape``."""
    if codec.is_auto:
        codec = get_codec(identify(data, dtype))
    return blocks.decode(data, codec, shape, dtype)


def _auto_codec(block, kwargs: dict) -> tuple:
    """Return (the codec, its kernel arguments) of an auto block: given, or chosen here."""
    kwargs = dict(kwargs)
    name = kwargs.pop("codec", None)
    if name is None:
        candidates = sample.candidates(block.dtype, block.ndim, kwargs.get("tolerance"),
                                       kwargs.get("candidates"))
        chosen = sample.choose_in_block(block, candidates)
        name, kwargs = chosen.name, chosen.kwargs
    inner = get_codec(name)
    chain = auto_chain(block.dtype)
    if inner.is_auto or (inner.chain.is_chain and inner.name != chain):
        raise ValueError(f"auto: a block's codec must be a chunkpress codec or {chain}, "
                         f"got {name!r}")
    return inner, kwargs


def identify(data, dtype) -> str:
    """Return the codec that wrote a block's stream: a frame or the codec's own stream says it.

    Frames carry their codec, ZFP and LERC streams their magic; a chain's stream ends with
    its trailer and CRC-32C (the chain is auto's for the dtype); SPERR's stream, which has no
    magic, is tried last (a layout that adds up). A batch block is its streams' codec.
    """
    buf = memoryview(data).cast("B")
    if formats.is_batch(buf):
        streams = formats.batch_unpack(buf)[1]
        if not streams:
            raise AutoError("auto: an empty batch block does not say its codec")
        buf = streams[0]
    candidates = [d for d in registry.descriptors()
                  if d.kind == "array" and d.auto and d.available and d.check is not None]
    for d in candidates:
        if d.recognised == "magic" and d.check(buf):
            return d.name
    chain = auto_chain(dtype)
    if chain is not None and chains.resolve(chain).check(buf):
        return chain
    for d in candidates:
        if d.recognised == "layout" and d.check(buf):
            return d.name
    raise AutoError("auto: a stored block is none of the streams codec='auto' writes (a "
                    "chunkpress frame, a ZFP, LERC or SPERR stream, a lossless chain); the "
                    "stored bytes are damaged or belong to another array")

