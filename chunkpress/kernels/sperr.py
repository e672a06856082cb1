"""SPERR: wavelet-based compression of 2-D and 3-D float blocks, by rate, PSNR or error bound."""

from __future__ import annotations

import enum
import struct

import imagecodecs
import numpy as np

from . import _frame, _lossy
from ._common import FLOAT_DTYPES, ChunkpressError, check_number, check_tolerance, is_real
from .registry import Descriptor, Param


class SPERR:
    available = bool(imagecodecs.SPERR.available)

    class MODE(str, enum.Enum):
        RATE = "rate"
        PSNR = "psnr"
        PWE = "pwe"


class SperrError(ChunkpressError):
    pass


_NATIVE_MODE = {"rate": "bpp", "psnr": "psnr", "pwe": "pwe"}


def _encode(block, params, out=None):
    mode, level = params
    if block.ndim == 3 and 1 in block.shape:  # SPERR aborts on these: code them as 2-D
        block = block.reshape(_as_2d(block.shape))
    return imagecodecs.sperr_encode(block, level, _NATIVE_MODE[mode], numthreads=1, out=out)


def _decode(stream, shape, dtype, params):
    decoded = imagecodecs.sperr_decode(_guard(stream), numthreads=1)
    if shape is not None and decoded.shape != tuple(shape) and decoded.size == np.prod(shape):
        decoded = decoded.reshape(shape)  # a 3-D block with a unit extent, coded as 2-D
    return decoded


def _as_2d(shape):
    kept = [extent for extent in shape if extent != 1]
    return tuple(([1, 1] + kept)[-2:]) if len(kept) < 2 else tuple(kept)


def _own_shape(shape):
    return len(shape) == 2 or 1 not in shape


def _plan(block, params, tolerance, amax):
    # SPERR crashes the interpreter on some blocks (measured, imagecodecs 2026.3.6 / SPERR
    # 0.8.4): magnitudes near 1e30, a tolerance 2**-40 of the largest magnitude or below
    # 1e-290 (and a 3-D block with an extent of 1, which _encode codes as 2-D). Those blocks
    # are stored losslessly instead.
    # In its point-wise mode SPERR rounds its double result to the data's type, slipping by
    # under half an ulp: asking for the tolerance less one ulp of the largest value keeps it.
    mode, level = params
    if not amax < 2.0**80:
        return params, False, True
    if mode != "pwe":
        return params, False, False
    ulp = float(np.spacing(block.dtype.type(amax)))
    if level < 2.0**-40 * amax or level < 1e-290 or level <= 4 * ulp:
        return params, False, True
    return (mode, level - ulp), False, False


# --- the layout of a SPERR stream -----------------------------------------------------------
#
# SPERR's decoder trusts its input: a wrong length, count or size in a stream makes it read
# or write memory it does not own, or allocate without limit and abort. Every field it uses
# to size or place anything is checked here first (imagecodecs 2026.3.6, SPERR 0.8.4).
#
#   header  byte 0 the major version (0); byte 1 flags: 0x80 a portion (progressive access),
#           0x40 3-D, 0x20 float32, 0x10 3-D in several chunks
#           2-D: uint32 x, y extents; the one chunk is the rest of the stream
#           3-D: uint32 x, y, z; in chunks: uint16 chunk extents; then a uint32 length per
#           chunk (SPERR cuts each axis in chunk extents, a remainder of at most half of one
#           joining the last; a chunk extent of 1 SPERR can neither write nor read)
#   chunk   17 conditioner bytes: flags (SPERR 0.8 writes 0x80, mean subtracted, or 0x81,
#           constant; any other value is damage), then the mean
#           and the quantization step q (float64); a constant chunk has the value count (uint64)
#           and the value instead, and nothing more
#           a SPECK section: uint8 bit planes, uint64 bits, the bits (at fixed rate SPERR may
#           stop before them all: the section then runs to the end of the chunk)
#           an optional outlier section, again a SPECK section, to the end of the chunk
#
# chunkpress seals its own streams: it sets conditioner flag 0x02 (unused by SPERR, which
# ignores it) and puts its CRC-32C trailer (see _frame) at the end of the last section,
# whose bit count it extends by the trailer's 64 bits. SPERR decodes every bit plane without
# reaching those bits, so the stream decodes to the same values with any SPERR decoder. A
# constant chunk (fixed length) and a fixed-rate section cut at its budget (every byte of it
# is read) cannot carry the trailer: those streams stay unsealed.

_3D, _FLOAT32, _CHUNKED = 0x40, 0x20, 0x10  # (0x80, a portion, is refused: never whole)
_MEAN, _CONSTANT, _SEALED = 0x80, 0x01, 0x02
_CONDITIONER = 17
_SECTION = struct.Struct("<BQ")  # a SPECK section's header: bit planes, bits
#: SPERR's peak memory when decoding, per value, measured at 31-43 bytes: reserving this much
#: first turns a size SPERR could not allocate (and would abort on) into an error
_BYTES_PER_VALUE = 64


def _segments(extent, size):
    """The extents of SPERR's chunks along one axis (a short remainder joins the last one)."""
    count = max(extent // size + (extent % size > size // 2), 1)
    if count > 1 << 20:
        raise SperrError("sperr: the header claims more chunks than a stream can hold; "
                         "the stream is corrupt")
    return [size] * (count - 1) + [extent - size * (count - 1)]


def _section(buf, start, end, count, what):
    """Return (length, complete) of the SPECK section at ``start`` of a chunk ending at ``end``."""
    if end - start < _SECTION.size:
        raise SperrError(f"sperr: SPERR {what} section truncated")
    planes, bits = _SECTION.unpack_from(buf, start)
    # a bit plane costs at most a few bits per value (set tests, sign, refinement)
    if planes > 64 or bits > count * (8 * planes + 8) + 1024:
        raise SperrError(f"sperr: SPERR {what} section header damaged ({planes} bit planes, "
                         f"{bits} bits for {count} values)")
    length = _SECTION.size + (bits + 7) // 8
    return length, length <= end - start


def _chunk(buf, start, end, count):
    """Check one chunk; return whether its sections are complete (not constant, not cut)."""
    if end - start < _CONDITIONER:
        raise SperrError("sperr: SPERR chunk truncated")
    flags = buf[start]
    if flags not in (_MEAN, _MEAN | _CONSTANT, _MEAN | _SEALED):  # all SPERR 0.8 and we write
        raise SperrError(f"sperr: SPERR chunk header damaged (flags {flags:#x})")
    if flags & _CONSTANT:
        if end - start != _CONDITIONER or struct.unpack_from("<Q", buf, start + 1)[0] != count:
            raise SperrError("sperr: SPERR constant chunk damaged (length or value count)")
        return False
    q = struct.unpack_from("<d", buf, start + 9)[0]
    if not 0 < q < float("inf"):
        raise SperrError(f"sperr: SPERR chunk header damaged (quantization step {q!r})")
    pos = start + _CONDITIONER
    length, complete = _section(buf, pos, end, count, "SPECK")
    if not complete:
        return False  # a fixed-rate stream SPERR stopped early: the rest of the chunk is it
    pos += length
    if pos < end and pos + _section(buf, pos, end, count, "outlier")[0] != end:
        raise SperrError("sperr: SPERR outlier section does not fill its chunk; the stream is "
                         "truncated or damaged")
    return True


def _layout(stream):
    """Return [(start, end, value count)] of a stream's chunks, after checking the header."""
    n = len(stream)
    head = bytes(stream[:20])
    flags = head[1] if n > 1 else 0
    if n < 10 or head[0] != 0 or flags & ~(_3D | _FLOAT32 | _CHUNKED) or (
            flags & _CHUNKED and not flags & _3D):
        raise SperrError("sperr: not a SPERR stream (unknown header) or truncated")
    itemsize = 4 if flags & _FLOAT32 else 8
    if not flags & _3D:
        extents = struct.unpack_from("<2I", head, 2)
        _check_size(extents, itemsize, n)
        return [(10, n, extents[0] * extents[1])]
    if n < 14:
        raise SperrError(f"sperr: SPERR stream truncated ({n} bytes)")
    extents = struct.unpack_from("<3I", head, 2)
    _check_size(extents, itemsize, n)
    pos, sizes = 14, extents
    if flags & _CHUNKED:
        if n < 20:
            raise SperrError(f"sperr: SPERR stream truncated ({n} bytes)")
        sizes = struct.unpack_from("<3H", head, 14)
        if 0 in sizes:
            raise SperrError("sperr: SPERR 3-D header damaged (zero chunk extent)")
        pos = 20
    xs, ys, zs = (_segments(extent, size) for extent, size in zip(extents, sizes))
    count = len(xs) * len(ys) * len(zs)
    if (count > 1) != bool(flags & _CHUNKED) or pos + 4 * count > n:
        raise SperrError(f"sperr: SPERR stream truncated or its header damaged ({n} bytes, "
                         f"{count} chunks)")
    lengths = np.frombuffer(stream, "<u4", count, pos)
    start = pos + 4 * count
    if start + int(lengths.sum(dtype=np.uint64)) != n:
        raise SperrError(f"sperr: SPERR stream truncated or extended: {n} bytes, its header "
                         f"says {start + int(lengths.sum(dtype=np.uint64))}")
    if 1 in xs + ys + zs:  # SPERR writes none (it aborts on them) and aborts reading them
        raise SperrError("sperr: SPERR 3-D header damaged (a chunk extent of 1)")
    chunks = []
    for (z, y, x), length in zip(((z, y, x) for z in zs for y in ys for x in xs), lengths):
        chunks.append((start, start + int(length), x * y * z))
        start += int(length)
    return chunks


def _check_size(extents, itemsize, n):
    size = itemsize
    for extent in extents:
        size *= extent
    if size == 0 or size > _frame.MAX_BLOCK_BYTES:
        raise SperrError(f"sperr: the header claims a {size}-byte array; the {n}-byte stream "
                         "is corrupt")


def _guard(stream):
    """Return a SPERR stream after checking everything SPERR sizes or places anything by.

    A stream chunkpress sealed has its checksum verified; any other stream (imagecodecs', or
    chunkpress's constant and cut fixed-rate ones) is checked for its structure only.
    """
    stream = memoryview(stream).cast("B")
    chunks = _layout(stream)
    complete = [_chunk(stream, *chunk) for chunk in chunks]
    if any(stream[start] & _SEALED for start, _, _ in chunks):
        if len(chunks) != 1 or not complete[0] or bytes(stream[-4:]) != _frame.TRAILER_MAGIC:
            raise SperrError("sperr: the stream is marked as holding a chunkpress checksum but "
                             "does not; it is truncated or damaged")
        _frame.strip_trailer(stream, "sperr", SperrError)  # checks the CRC-32C
    _frame.reserve(_BYTES_PER_VALUE * sum(count for _, _, count in chunks), "sperr", SperrError)
    return stream


def _seal(stream):
    """Return a SPERR stream carrying chunkpress's checksum, if it has room for one."""
    chunks = _layout(stream)
    if len(chunks) != 1 or not _chunk(stream, *chunks[0]):
        return stream  # several chunks (not chunkpress's), constant, or cut at its bit budget
    start, end, _ = chunks[0]
    section = start + _CONDITIONER
    after = section + _SECTION.size + (_SECTION.unpack_from(stream, section)[1] + 7) // 8
    if after < end:
        section = after  # the outlier section is the last
    sealed = bytearray(stream)
    sealed[start] |= _SEALED
    planes, bits = _SECTION.unpack_from(sealed, section)
    _SECTION.pack_into(sealed, section, planes, 8 * ((bits + 7) // 8) + 64)
    if sealed[1] & _3D:
        struct.pack_into("<I", sealed, 14, end - start + 8)  # the one chunk's length
    return _frame.add_trailer(sealed)


_SPEC = _lossy.Spec("sperr", SperrError, (2, 3), _encode, _decode, _plan, own_shape=_own_shape,
                    seal=_seal)


def sperr_encode(data, *, mode=None, quality=None, tolerance=None, out=None):
    """Return the SPERR stream of ``data``.

    ``mode`` is 'rate' (``quality`` bits per value), 'psnr' (``quality`` dB) or 'pwe' (point-wise
    error: ``tolerance``, or ``quality``); ``tolerance`` alone means 'pwe'.
    """
    mode, level, bound = _check_args(mode, quality, tolerance)
    return _lossy.encode(_SPEC, data, (mode, level), bound, out)


def sperr_decode(data, *, out=None):
    """Return the array in a SPERR stream (from sperr_encode or imagecodecs.sperr_encode)."""
    return _lossy.decode(_SPEC, data, None, None, out)


def sperr_check(data):
    """Return True for a chunkpress SPERR frame or a SPERR stream whose layout adds up."""
    framed = _frame.frame_codec(data)
    if framed:
        return framed == "sperr"
    try:
        buf = memoryview(data).cast("B")
        chunks = _layout(buf)
        for start, end, count in chunks:
            _chunk(buf, start, end, count)
    except SperrError:
        return None  # SPERR streams have no magic: not recognised is not "not SPERR"
    return True


# --- the registry's entry (see registry.py): the one place these parameters are checked -----


def _check_args(mode, quality, tolerance):
    """Return SPERR's (mode, level, bound) for sperr_encode's arguments, after checking them."""
    if mode is None:
        if tolerance is None:
            raise ValueError("sperr: give tolerance (point-wise error) or mode with quality")
        mode = "pwe"
    mode = _check_mode(mode)
    if mode == "pwe":
        if (tolerance is None) == (quality is None):
            raise ValueError("sperr: mode 'pwe' takes tolerance (or quality), exactly one of them")
        level = _check_tolerance(tolerance if tolerance is not None else quality)
        return mode, level, level
    if tolerance is not None:
        raise ValueError(f"sperr: tolerance is for mode 'pwe', not {mode!r}; give quality")
    limit = 64 if mode == "rate" else 400
    if not is_real(quality) or not 0 < quality <= limit:
        what = "bits per value in (0, 64]" if mode == "rate" else "dB in (0, 400]"
        raise ValueError(f"sperr: quality for mode {mode!r} must be {what}, got {quality!r}")
    return mode, float(quality), None


def _check_tolerance(tolerance, dtype=None):
    return check_tolerance("sperr", tolerance)


def _check_rate(rate, dtype=None):
    return check_number("sperr", "rate", rate, 0, 64, "bits per value")


def _check_mode(mode, dtype=None):
    mode = getattr(mode, "value", mode)  # SPERR.MODE
    if not isinstance(mode, str) or mode not in _NATIVE_MODE:
        raise ValueError(f"sperr: mode must be one of 'rate', 'psnr', 'pwe', got {mode!r}")
    return mode


def _check_quality(quality, dtype=None):
    if not is_real(quality):
        raise TypeError(f"sperr: quality must be a number (dB, bits per value or the max "
                        f"error, by mode), got {quality!r}")
    return float(quality)


def _target(given, dtype=None):
    """The global target: mode 'pwe' with tolerance, or mode 'rate'/'psnr' with quality."""
    if "rate" in given:
        if set(given) - {"rate"} - ({"mode"} if given.get("mode") == "rate" else set()):
            raise ValueError("sperr: rate= is mode='rate' with quality=rate; give one or the other")
        _check_rate(given["rate"])
        return {"mode": "rate", "quality": given["rate"]}
    mode = given.get("mode")
    if mode is None:
        if "tolerance" not in given or "quality" in given:
            raise ValueError("sperr: give tolerance (max absolute error), rate (bits per value) "
                             "or mode ('rate', 'psnr', 'pwe') with quality")
        target = {"mode": "pwe", "tolerance": given["tolerance"]}
    elif _check_mode(mode) == "pwe":
        tolerance = given.get("tolerance", given.get("quality"))
        if tolerance is None or ("tolerance" in given and "quality" in given):
            raise ValueError("sperr: mode 'pwe' takes tolerance (or quality), exactly one of them")
        target = {"mode": "pwe", "tolerance": tolerance}
    else:
        mode = _check_mode(mode)
        if "tolerance" in given:
            raise ValueError(f"sperr: tolerance is for mode 'pwe', not {mode!r}; give quality")
        if "quality" not in given:
            what = "bits per value" if mode == "rate" else "the PSNR in dB of the whole array"
            raise ValueError(f"sperr: mode {mode!r} needs quality ({what})")
        target = {"mode": mode, "quality": given["quality"]}
    _check_args(target["mode"], target.get("quality"), target.get("tolerance"))
    return target


DESCRIPTOR = Descriptor(
    name="sperr", kind="array", encode=sperr_encode, decode=sperr_decode, error=SperrError,
    dtypes=FLOAT_DTYPES, ndims=(2, 3),
    params=(Param("tolerance", _check_tolerance, "max absolute error, > 0 (mode 'pwe')"),
            Param("rate", _check_rate, "bits per value, (0, 64]: mode 'rate'"),
            Param("mode", _check_mode, "'rate', 'psnr' or 'pwe', with quality"),
            Param("quality", _check_quality,
                  "bits per value (rate), dB of the whole array (psnr), max error (pwe)")),
    check=sperr_check, available=SPERR.available, frame_id=2, prefer=256, prefer_ndims=(3,),
    target=_target, psnr=True, speed=65, auto=("lossy",), recognised="layout", rank=3,
    example={"tolerance": 1e-3}, fill=_SPEC.fill,
    doc="SPERR: wavelets; a max error, a rate, or a PSNR of the whole array")
