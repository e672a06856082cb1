"""Every chunk knows its place: the place record written behind each chunk's stream.

A chunk object that chunkpress writes is::

    codec stream | place record | CRC-32C (zarr's crc32c codec, of everything before it)

The place record, all integers little-endian::

    8 * ndim   the chunk's grid index (uint64 each; all ones: written by zarr itself,
               which hands its codecs no chunk coordinates, so the place is unknown)
    8          the write identifier (the array's, also in its codec configuration as "write")
    1          ndim
    1          record version (1)
    2          reserved (0)
    4          magic b"CPKP"

The checksum covers the record, so a chunk moved to another place, copied from another array
or left over from an earlier write is caught by any chunkpress reader, which knows the index it
asked for; a plain zarr reader (through the codec) checks the write identifier only. The codec
stream in front stays the codec's own (ZFP, SPERR and LERC decoders ignore what follows it).
"""

from __future__ import annotations

import hashlib
import os
import struct

import google_crc32c
import numpy as np

__all__ = ["MAGIC", "UNPLACED", "new_write_id", "array_write", "record", "split", "parts",
           "seal", "unseal", "PlaceError"]

MAGIC = b"CPKP"
VERSION = 1
#: the index a chunk written by zarr itself (no coordinates given to codecs) carries
UNPLACED = 2**64 - 1
_TAIL = struct.Struct("<8sBBH4s")


class PlaceError(ValueError):
    """A chunk that is not where it was written, or not of this array's write."""


def new_write_id() -> str:
    """Return a fresh write identifier: 16 hex digits."""
    return os.urandom(8).hex()


def array_write(write: str, node: str) -> str:
    """The write identifier of the array at ``node`` of write ``write``: each array of a
    dataset has its own, so a chunk copied between two arrays of one write is caught too."""
    return hashlib.blake2b(f"{write}/{node.strip('/')}".encode(), digest_size=8).hexdigest()


def record(index, write: str) -> bytes:
    """Return the place record of the chunk at grid ``index`` of write ``write``."""
    ndim = len(index)
    return struct.pack(f"<{ndim}Q", *index) + _TAIL.pack(bytes.fromhex(write), ndim, VERSION, 0,
                                                         MAGIC)


def split(data, write: str, ndim: int, index=None):
    """Return (stream, stored index) of ``data`` (a chunk without its CRC), checking the record.

    The record must be there, name ``write`` and have ``ndim`` coordinates; with ``index``
    given, the stored index must be it (or UNPLACED: a chunk zarr wrote on its own).
    """
    buf = memoryview(data).cast("B")
    size = 8 * ndim + _TAIL.size
    if len(buf) < size or bytes(buf[-4:]) != MAGIC:
        raise PlaceError("it carries no place record: it was not written by chunkpress for "
                         "this array (a chunk of an older or foreign store, or damaged bytes)")
    stored_write, stored_ndim, version, _, _ = _TAIL.unpack_from(buf, len(buf) - _TAIL.size)
    if version != VERSION or stored_ndim != ndim:
        raise PlaceError(f"its place record is for a {stored_ndim}-d array (version {version}); "
                         f"this array has {ndim} dimensions: the chunk belongs to another array")
    if stored_write.hex() != write:
        raise PlaceError(f"it belongs to write {stored_write.hex()}, not to this array's write "
                         f"{write}: a chunk of another array, or left over from an earlier write")
    stored = struct.unpack_from(f"<{ndim}Q", buf, len(buf) - size)
    if index is not None and tuple(stored) != tuple(index) and \
            not all(i == UNPLACED for i in stored):
        raise PlaceError(f"it was written as chunk {tuple(stored)}: a chunk moved or copied "
                         "from another place")
    return buf[: len(buf) - size], tuple(stored)


def crc(data) -> bytes:
    """The 4 bytes zarr's crc32c codec puts behind a chunk."""
    return struct.pack("<I", google_crc32c.value(np.frombuffer(data, np.uint8)))


def parts(stream, index, write: str | None) -> list:
    """Return the pieces of a stored chunk object, in order, without joining (copying) them:
    ``stream``, its place record (if ``write``), and the CRC-32C of both."""
    pieces = [stream] if write is None else [stream, record(index, write)]
    value = 0
    for piece in pieces:
        value = google_crc32c.extend(value, np.frombuffer(piece, np.uint8))
    return [*pieces, struct.pack("<I", value)]


def seal(stream, index, write: str | None) -> bytes:
    """Return the stored chunk object: ``stream``, its place record (if ``write``), CRC-32C."""
    return b"".join(parts(stream, index, write))


def unseal(data) -> memoryview:
    """Return a stored chunk object without its CRC-32C, after checking it."""
    buf = memoryview(data).cast("B")
    if len(buf) < 4 or crc(buf[:-4]) != bytes(buf[-4:]):
        raise ValueError("checksum mismatch (crc32c): the stored bytes are damaged or truncated")
    return buf[:-4]
