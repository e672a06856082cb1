"""The chunkpress frame: the small header put in front of a codec stream where one is needed.

A kernel returns the codec's own stream wherever that stream describes itself and the block
needs nothing more (ZFP, SPERR and LERC on finite data). Everything else goes in a frame:
streams whose decoder needs a shape or parameters (SZ3, SZIP, PCODEC), blocks with non-finite
cells (their mask rides beside the codec stream), blocks where values the codec left outside
the tolerance are stored exactly (the patch), and shapes a codec cannot take (0-d, 0-size).

Frame layout, format version 1, all integers little-endian::

    offset  size      field
    0       4         magic b"\\x89CPK"
    4       1         format version (1)
    5       1         codec id (1 zfp, 2 sperr, 3 sz3, 4 lerc, 5 szip, 6 pcodec)
    6       1         flags: 1 = mask sections follow, 2 = patch sections follow,
                      4 = stored: the codec stream is zstd(the block's raw values), for
                      blocks the codec cannot take (or where it would miss the bound),
                      8 = relative: the codec stream codes the log of the magnitudes, with
                      signs and zeros before it (see relative.py; not with 4)
    7       1         ndim (0-32)
    8       4         dtype as numpy's type string, NUL-padded (b"<f4\\0")
    12      8*ndim    shape (uint64)
    ...     2 + P     codec parameters: uint16 length P, then P bytes
    ...     8 + L     codec stream: uint64 length L, then L bytes
    [mask]  8 + M     zstd(bit per cell, least significant bit first, 1 = non-finite)
            8 + V     zstd(the non-finite cells' raw values, in order: NaN payloads kept)
    [patch] 8 + I     zstd(uint64 deltas of the patched cells' flat indices)
            8 + W     zstd(the patched cells' exact raw values)
    end-4   4         CRC-32C of every byte before it

A codec's own stream may carry a trailer instead: its CRC-32C (uint32) then b"CPK\\x01".
Decoders of the codec ignore trailing bytes, so the stream stays the codec's own (ZFP, LERC).
SPERR's carries the same trailer inside its last section (see sperr.py: SPERR reads what
follows its blobs as more sections, so the section is extended to hold it).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import google_crc32c
import imagecodecs
import numpy as np

from ._common import ChunkpressError
from . import _native

MAGIC = b"\x89CPK"
VERSION = 1
TRAILER_MAGIC = b"CPK\x01"
CODEC_IDS = {"zfp": 1, "sperr": 2, "sz3": 3, "lerc": 4, "szip": 5, "pcodec": 6}
CODECS_IDS_ITEMS = tuple(CODEC_IDS.items())
FLAG_MASK = 1
FLAG_PATCH = 2
FLAG_STORED = 4
#: the codec stream codes the log of the magnitudes (a relative bound, see relative.py)
FLAG_RELATIVE = 8
MAX_NDIM = 32
#: a decoded block larger than this is refused before anything is allocated
MAX_BLOCK_BYTES = 1 << 34

_HEAD = struct.Struct("<4sBBBB4s")


class Mask(NamedTuple):
    """Where a block's non-finite cells are and their exact values."""

    bits: np.ndarray  # uint8, one bit per cell
    values: np.ndarray  # the non-finite values, in order


class Patch(NamedTuple):
    """Cells a codec left outside the tolerance, stored exactly."""

    index: np.ndarray  # int64 flat indices, increasing
    values: np.ndarray


class Frame(NamedTuple):
    codec: str
    dtype: np.dtype
    shape: tuple
    params: bytes
    payload: memoryview
    mask: Mask | None
    patch: Patch | None
    stored: bool
    relative: bool = False


def crc32c(data) -> int:
    """Return the CRC-32C of any buffer, without copying it."""
    return google_crc32c.value(np.frombuffer(data, np.uint8))


def is_frame(data) -> bool:
    return bytes(data[:4]) == MAGIC


def frame_codec(data) -> str | None:
    """Return the codec named by a frame's header, None if ``data`` is not a frame."""
    head = bytes(memoryview(data).cast("B")[:6])
    if len(head) < 6 or head[:4] != MAGIC:
        return None
    return next((name for name, number in CODECS_IDS_ITEMS if number == head[5]), "unknown")


def pack(codec, dtype, shape, payload, *, params=b"", mask=None, patch=None) -> bytearray:
    """Return the frame of one block around the codec stream ``payload``."""
    writer = Writer(codec, dtype, shape, params, len(payload))
    writer.put_payload(payload)
    return writer.finish(mask, patch)


class Writer:
    """Builds a frame in one buffer, the codec writing its stream straight into it.

    A codec stream is the bulk of a frame; writing it in place saves a copy of it (and the
    page faults of a second buffer), which is several percent of a fast lossless codec's time.
    """

    def __init__(self, codec, dtype, shape, params, capacity: int):
        dtype = np.dtype(dtype)
        head = b"".join([
            _HEAD.pack(MAGIC, VERSION, CODEC_IDS[codec], 0, len(shape), dtype.str.encode()),
            struct.pack(f"<{len(shape)}Q", *shape),
            struct.pack("<H", len(params)),
            params,
            bytes(8),  # the payload length, filled in when known
        ])
        self.start = len(head)
        self.buf = _native.empty_bytearray(self.start + capacity)
        self.buf[: self.start] = head
        self.size = 0

    def encode_payload(self, encode_into, fallback):
        """Let ``encode_into(out)`` write the stream into the frame; ``fallback()`` if it can't."""
        with memoryview(self.buf) as view, view[self.start :] as out:
            try:
                written = encode_into(out)
            except (RuntimeError, ValueError):  # out too small, or a failure the plain call reports
                written = None
            if written is not None:
                self.size = len(written)
                if isinstance(written, memoryview):
                    written.release()
        if written is None:
            self.put_payload(fallback())
        return self.payload()

    def put_payload(self, payload):
        self.size = len(payload)
        del self.buf[self.start :]
        self.buf += payload

    def payload(self) -> memoryview:
        """The codec stream as written (a view: release it before finish)."""
        return memoryview(self.buf)[self.start : self.start + self.size]

    def finish(self, mask=None, patch=None, *, stored=False, relative=False) -> bytearray:
        buf, end = self.buf, self.start + self.size
        del buf[end:]
        struct.pack_into("<Q", buf, self.start - 8, self.size)
        buf[6] = ((FLAG_MASK if mask is not None else 0) | (FLAG_PATCH if patch is not None else 0)
                  | (FLAG_STORED if stored else 0) | (FLAG_RELATIVE if relative else 0))
        sections = []
        if mask is not None:
            sections += [zstd(mask.bits), zstd(mask.values)]
        if patch is not None:
            deltas = np.diff(patch.index, prepend=0).astype("<u8")
            sections += [zstd(deltas), zstd(patch.values)]
        for section in sections:
            buf += struct.pack("<Q", len(section))
            buf += section
        buf += struct.pack("<I", crc32c(buf))
        return buf


def unpack(data, codec: str, error: type) -> Frame:
    """Return the parts of a frame after checking its checksum, lengths and header."""
    buf = memoryview(data).cast("B")
    if len(buf) < _HEAD.size + 2 + 8 + 4:
        raise error(f"{codec}: frame truncated: {len(buf)} bytes")
    if bytes(buf[:4]) != MAGIC:
        raise error(f"{codec}: not a chunkpress frame (bad magic)")
    stored = struct.unpack_from("<I", buf, len(buf) - 4)[0]
    if crc32c(buf[:-4]) != stored:
        raise error(f"{codec}: checksum mismatch; the stream is damaged or truncated")
    _, version, codec_id, flags, ndim, dtype_str = _HEAD.unpack_from(buf, 0)
    if version != VERSION:
        raise error(f"{codec}: frame format version {version} is not supported (this is {VERSION})")
    if codec_id != CODEC_IDS[codec]:
        names = {v: k for k, v in CODEC_IDS.items()}
        raise error(f"{codec}: the stream is a {names.get(codec_id, 'unknown')} frame, not {codec}")
    if ndim > MAX_NDIM or flags & ~(FLAG_MASK | FLAG_PATCH | FLAG_STORED | FLAG_RELATIVE) or (
            flags & FLAG_STORED and flags & FLAG_RELATIVE):
        raise error(f"{codec}: corrupt frame header")
    try:
        # (numpy parses any type string, structured ones too, some raising SyntaxError)
        dtype = np.dtype(dtype_str.rstrip(b"\0").decode("ascii"))
    except (TypeError, ValueError, SyntaxError, UnicodeDecodeError):
        dtype = None
    if dtype is None or dtype.kind not in "iuf" or dtype.fields is not None or dtype.shape \
            or dtype.byteorder == ">":  # chunkpress frames native little-endian blocks
        raise error(f"{codec}: corrupt frame header (dtype {dtype_str!r})")
    end = len(buf) - 4
    pos = _HEAD.size
    if pos + 8 * ndim + 2 > end:
        raise error(f"{codec}: frame truncated")
    shape = struct.unpack_from(f"<{ndim}Q", buf, pos)
    pos += 8 * ndim
    size = 1
    for extent in shape:
        size *= extent
    if size * dtype.itemsize > MAX_BLOCK_BYTES:
        raise error(
            f"{codec}: the frame claims shape {shape} {dtype}, larger than the "
            f"{MAX_BLOCK_BYTES} bytes a block may have; the stream is corrupt"
        )

    def take(length_format):
        nonlocal pos
        width = struct.calcsize(length_format)
        if pos + width > end:
            raise error(f"{codec}: frame truncated")
        (length,) = struct.unpack_from(length_format, buf, pos)
        pos += width
        if pos + length > end:
            raise error(f"{codec}: frame section of {length} bytes runs past the end")
        pos += length
        return buf[pos - length : pos]

    params = bytes(take("<H"))
    payload = take("<Q")
    mask = patch = None
    if flags & FLAG_MASK:
        bits = _unzstd(take("<Q"), (size + 7) // 8, codec, error)
        values = _values(take("<Q"), size, dtype, codec, error)
        mask = Mask(np.frombuffer(bits, np.uint8), values)
    if flags & FLAG_PATCH:
        deltas_bytes = take("<Q")
        values = _values(take("<Q"), size, dtype, codec, error)
        deltas = np.frombuffer(_unzstd(deltas_bytes, 8 * len(values), codec, error), "<u8")
        index = np.cumsum(deltas, dtype=np.uint64)  # (a forged delta wraps it around)
        if len(index) and (index.max() >= size or np.any(deltas[1:] == 0)):
            raise error(f"{codec}: corrupt patch section")
        patch = Patch(index.astype(np.int64), values)
    if pos != end:
        raise error(f"{codec}: {end - pos} unexpected bytes at the end of the frame")
    return Frame(codec, dtype, tuple(shape), params, payload, mask, patch,
                 bool(flags & FLAG_STORED), bool(flags & FLAG_RELATIVE))


def reserve(nbytes: int, codec: str, error: type):
    """Raise ``error`` unless ``nbytes`` of address space can be had now.

    C++ codecs abort the interpreter when an allocation fails; reserving their peak first
    (not touched, so it costs no memory) turns a size they could not allocate into an error.
    """
    if nbytes > 1 << 26:
        try:
            np.empty(nbytes, np.uint8)
        except MemoryError:
            raise error(f"{codec}: the stream claims a block that needs {nbytes} bytes to "
                        "decode, more than this process can have; it is corrupt, or the block "
                        "too large here") from None


def zstd(array: np.ndarray) -> bytes:
    return imagecodecs.zstd_encode(np.ascontiguousarray(array).view(np.uint8), level=1)


def _unzstd(section, size: int, codec: str, error: type, *, exact: bool = True) -> bytes:
    try:
        out = imagecodecs.zstd_decode(section, out=max(size, 1))
    except imagecodecs.ZstdError as exc:
        raise error(f"{codec}: corrupt frame section: {exc}") from None
    except MemoryError:
        raise error(f"{codec}: the frame claims a block of {size} bytes, more than this "
                    "process can have; it is corrupt, or the block too large here") from None
    if exact and len(out) != size:
        raise error(f"{codec}: frame section holds {len(out)} bytes, {size} expected")
    return out


def stored_block(frame: Frame, shape, error) -> np.ndarray:
    """Return the block of a stored frame (zstd of its raw values)."""
    size = int(np.prod(shape)) * frame.dtype.itemsize
    raw = _unzstd(frame.payload, size, frame.codec, error)
    return np.frombuffer(raw, frame.dtype).astype(frame.dtype.newbyteorder("=")).reshape(shape)


def _values(section, size: int, dtype, codec: str, error: type) -> np.ndarray:
    """Return the cell values of a frame section holding at most ``size`` of them."""
    raw = _unzstd(section, size * dtype.itemsize, codec, error, exact=False)
    if len(raw) % dtype.itemsize:
        raise error(f"{codec}: corrupt frame section (length {len(raw)})")
    return np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))


def add_trailer(stream):
    """Return a codec's own stream with the CRC-32C trailer after it (a bytearray in place)."""
    trailer = struct.pack("<I", crc32c(stream)) + TRAILER_MAGIC
    if isinstance(stream, bytearray):
        stream += trailer
        return stream
    return b"".join((stream, trailer))


def strip_trailer(data, codec: str, error: type) -> tuple[memoryview, bool]:
    """Return the codec stream in ``data`` and whether a trailer's checksum vouched for it."""
    buf = memoryview(data).cast("B")
    if len(buf) >= 8 and bytes(buf[-4:]) == TRAILER_MAGIC:
        stream = buf[:-8]
        if crc32c(stream) != struct.unpack_from("<I", buf, len(buf) - 8)[0]:
            raise error(f"{codec}: checksum mismatch; the stream is damaged or truncated")
        return stream, True
    return buf, False


# --- non-finite cells and patches ---------------------------------------------------------


def split_nonfinite(block: np.ndarray, count: int, fill: str = "smooth"):
    """Return (filled copy, Mask) of a C-contiguous block with ``count`` non-finite cells.

    ``fill``: "smooth" (each gap bridged by the lines between its finite neighbours, see
    ``_native.fill_and_mask``), "mean" (the mean of the block's finite cells, 0 if none) or
    "compact" (no cell filled: the finite cells alone, in C order, one dimension).
    """
    flat = block.reshape(-1)
    filled = np.empty_like(flat)
    bits = np.zeros((flat.size + 7) // 8, np.uint8)
    values = np.empty(count, flat.dtype)
    ny = block.shape[-2] if block.ndim > 1 else 1
    _native.fill_and_mask(flat, filled, bits, values, ny, block.shape[-1])
    if fill == "compact":
        return flat[np.isfinite(flat)], Mask(bits, values)
    if fill == "mean":
        finite = np.isfinite(flat)
        mean = flat[finite].mean(dtype=np.float64) if count < flat.size else 0.0
        filled[~finite] = flat.dtype.type(mean)
    elif fill != "smooth":
        raise ValueError(f"fill must be 'smooth', 'mean' or 'compact', got {fill!r}")
    return filled.reshape(block.shape), Mask(bits, values)


def restore(decoded: np.ndarray, mask: Mask | None, patch: Patch | None, codec, error):
    """Write a frame's patched and non-finite cells back into a decoded block, in place."""
    flat = decoded.reshape(-1)
    if patch is not None:
        flat[patch.index] = patch.values
    if mask is not None:
        if flat.dtype.kind != "f" or mask.values.dtype != flat.dtype:
            raise error(f"{codec}: corrupt frame (mask of {mask.values.dtype} on {flat.dtype})")
        try:
            placed = _native.apply_mask(flat, mask.bits, mask.values)
        except ValueError as exc:
            raise error(f"{codec}: corrupt frame mask: {exc}") from None
        if placed != len(mask.values):
            raise error(f"{codec}: corrupt frame mask: {placed} cells marked, "
                        f"{len(mask.values)} values stored")
    return decoded


def find_patch(original: np.ndarray, decoded: np.ndarray, tolerance: float) -> Patch | None:
    """Return the cells of ``decoded`` off ``original`` by more than ``tolerance``, if any."""
    a, b = original.reshape(-1), decoded.reshape(-1)
    count = _native.count_exceeding(a, b, tolerance)
    if count == 0:
        return None
    index = np.empty(count, np.int64)
    _native.find_exceeding(a, b, tolerance, index)
    return Patch(index, a[index])


def register_codec(name: str, number: int) -> None:
    """Give the codec ``name`` its frame id (the registry does, from the codec's descriptor)."""
    global CODECS_IDS_ITEMS
    if CODEC_IDS.get(name, number) != number or (
            number in CODEC_IDS.values() and CODEC_IDS.get(name) != number):
        raise RuntimeError(f"frame id {number} of {name!r} is taken, or {name!r} has another "
                           f"(ids: {CODEC_IDS})")
    CODEC_IDS[name] = number
    CODECS_IDS_ITEMS = tuple(CODEC_IDS.items())
