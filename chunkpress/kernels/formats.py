"""The stream layouts chunkpress writes, in one place: frame, trailer, chain and batch.

Format version 1 of each is frozen: tests/fixtures holds streams of every layout, written
once, which must decode for ever. All integers are little-endian.

**Frame** (implemented in ``_frame.py``): a small header in front of a codec's stream where
the stream alone does not do (a decoder that needs the shape or parameters, non-finite cells,
values patched to keep the tolerance, shapes a codec cannot take)::

    magic b"\\x89CPK", uint8 version 1, uint8 codec id (the descriptor's ``frame_id``),
    uint8 flags (1 mask, 2 patch, 4 stored, 8 relative), uint8 ndim, 4 bytes dtype string,
    ndim uint64 extents, uint16 P + P bytes of codec parameters, uint64 L + L bytes of the
    codec's stream, [mask: two zstd sections], [patch: two zstd sections], uint32 CRC-32C

A mask (flag 1) on a PCODEC frame (a codec of sequences, ``fill="compact"`` in
``_lossy.Spec``) means its codec stream holds the finite cells alone, in C order, as one
dimension (PCODEC's own header says how many: the cells the mask leaves); the mask's cells
are not in it. PCODEC frames before this had no mask (PCODEC coded NaN itself) and read as
before.

**Relative** (flag 8, added to version 1; a decoder without it refuses such a frame as
corrupt, and every frame without the flag reads as before; implemented in ``relative.py``):
a block bounded by ``rel_tolerance`` (|x - y| <= r |x|). The codec coded g, the base-2 log of
the magnitudes (above t/r, with a ``tolerance`` t too, the line tangent to it there); the
frame's parameters and codec stream are the transform's::

    parameters: uint8 transform (1: log2), 3 bytes 0, float64 rel_tolerance,
                float64 tolerance (0: none), float64 crossover t/r (+inf: none)
    stream:     uint64 S + zstd(sign bits), uint64 Z + zstd(bits of the finite cells g does
                not code: zeros, and values the patch holds), a bit per cell, least
                significant first; then the codec's own stream of g (empty: none coded)

The mask and patch sections are every frame's (NaN/±Inf; values stored exactly), applied
after the magnitudes 2**g (or the line's) are signed and rounded to the frame's dtype.
Its frozen streams are in tests/fixtures/relative. (Bit rounding given a ``rel_tolerance``
writes the chain layout below, as with ``keepbits``.)

**Trailer**: a codec's own, self-describing stream (ZFP, LERC; SPERR inside its last
section) followed by its CRC-32C (uint32) and b"CPK\\x01"; the codec's decoders ignore it.

**Chain**: the stream of a chain ending in a bytes codec (``"floatpred+zstd"``, ``"zstd"``):
the filters' output (an array of the block's shape and dtype, C order) compressed by the
bytes codec, then a trailer::

    the bytes codec's stream, uint32 CRC-32C of that stream, b"CPC\\x01"

It does not hold the block's shape or dtype: its reader knows them (the array's metadata).
A chain ending in an array codec (``"bitround+pcodec"``) writes that codec's stream as is.

**Batch**: an array with more dimensions than its codec takes, one codec stream per index of
its B leading axes::

    magic b"\\x89CPB", uint8 version 1, uint8 B, uint16 0, B uint64 extents,
    one uint64 length per stream, uint32 CRC-32C of all that; then the streams, in C order

Each stream is the codec's own, with its own checksum.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from . import _frame
from ._common import ChunkpressError

__all__ = ["ChainError", "BatchError", "is_frame", "frame_codec", "patched_cells",
           "chain_pack", "chain_unpack", "is_chain", "batch_pack", "batch_unpack", "is_batch"]

CHAIN_TRAILER = b"CPC\x01"
BATCH_MAGIC = b"\x89CPB"
MAX_BATCH_AXES = 32


class ChainError(ChunkpressError):
    """A chain (e.g. floatpred+zstd) failed, or its stored bytes are damaged."""


class BatchError(ChunkpressError):
    """A batch block (an array with more dimensions than its codec takes) is damaged."""


# --- frames ---------------------------------------------------------------------------------


def is_frame(data) -> bool:
    """Whether ``data`` starts as a chunkpress frame."""
    return _frame.frame_codec(data) is not None


def frame_codec(data) -> str | None:
    """Return the codec a frame names ("unknown" for an id no codec has), None if no frame."""
    return _frame.frame_codec(data)


def patched_cells(stream, codec: str, error: type) -> int:
    """Return how many values a codec stream stores exactly beside the codec's own stream
    (0 for a stream that is not a frame), after checking the frame."""
    buf = memoryview(stream).cast("B")
    if not _frame.is_frame(buf):
        return 0
    frame = _frame.unpack(buf, codec, error)
    return 0 if frame.patch is None else len(frame.patch.index)


# --- chains ---------------------------------------------------------------------------------


def chain_pack(stream) -> bytes:
    """Return a bytes codec's ``stream`` with the chain trailer after it."""
    stream = bytes(stream)
    return stream + struct.pack("<I", _frame.crc32c(stream)) + CHAIN_TRAILER


def is_chain(data) -> bool:
    """Whether ``data`` ends with a chain trailer whose checksum holds."""
    buf = memoryview(data).cast("B")
    if len(buf) < 8 or bytes(buf[-4:]) != CHAIN_TRAILER:
        return False
    return _frame.crc32c(buf[:-8]) == struct.unpack_from("<I", buf, len(buf) - 8)[0]


def chain_unpack(data, name: str) -> memoryview:
    """Return the bytes codec's stream in a chain stream, after checking its trailer."""
    buf = memoryview(data).cast("B")
    if len(buf) < 8 or bytes(buf[-4:]) != CHAIN_TRAILER:
        raise ChainError(f"{name}: not a chunkpress {name} stream (no trailer)")
    stream = buf[:-8]
    if _frame.crc32c(stream) != struct.unpack_from("<I", buf, len(buf) - 8)[0]:
        raise ChainError(f"{name}: checksum mismatch; the stored bytes are damaged")
    return stream


# --- batches --------------------------------------------------------------------------------


def batch_pack(lead: tuple, streams: list) -> bytes:
    """Return the batch block of ``streams`` (one per index of the ``lead`` axes, C order)."""
    head = (BATCH_MAGIC + struct.pack("<BBH", 1, len(lead), 0)
            + struct.pack(f"<{len(lead)}Q", *lead)
            + struct.pack(f"<{len(streams)}Q", *(len(s) for s in streams)))
    return b"".join([head, struct.pack("<I", _frame.crc32c(head)), *map(bytes, streams)])


def is_batch(data) -> bool:
    """Whether ``data`` starts as a batch block."""
    return bytes(memoryview(data).cast("B")[:4]) == BATCH_MAGIC


def batch_unpack(data, lead=None) -> tuple[tuple, list]:
    """Return (the batch extents, the streams in C order) of a batch block, after its checks.

    ``lead``, where given, is the extents the block must have.
    """
    buf = memoryview(data).cast("B")
    if len(buf) < 12 or bytes(buf[:4]) != BATCH_MAGIC:
        raise BatchError("batch block: not a chunkpress batch block (bad magic)")
    version, batch, _ = struct.unpack_from("<BBH", buf, 4)
    if version != 1 or batch > MAX_BATCH_AXES:
        raise BatchError(f"batch block: unknown version {version} or {batch} batch axes")
    if len(buf) < 8 + 8 * batch + 4:
        raise BatchError("batch block: truncated")
    extents = struct.unpack_from(f"<{batch}Q", buf, 8)
    count = math.prod(extents)
    end = 8 + 8 * batch + 8 * count
    if len(buf) < end + 4:
        raise BatchError("batch block: truncated")
    if _frame.crc32c(buf[:end]) != struct.unpack_from("<I", buf, end)[0]:
        raise BatchError("batch block: checksum mismatch; the stored bytes are damaged")
    if lead is not None and tuple(extents) != tuple(lead):
        raise BatchError(f"batch block: holds {extents} streams, {lead} expected")
    lengths = np.frombuffer(buf, "<u8", count, 8 + 8 * batch)
    pos, streams = end + 4, []
    for length in lengths.tolist():
        streams.append(buf[pos:pos + length])
        pos += length
    if pos != len(buf):
        raise BatchError("batch block: lengths do not add up; the stored bytes are damaged")
    return tuple(extents), streams
