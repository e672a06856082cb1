"""Hostile bytes for every decoder: seed streams, their mutations, and what a decode must do.

Shared by ``tests/test_fuzz.py`` (a bounded run, hypothesis drawing the mutations) and
``benchmarks/fuzz.py`` (the long run, in worker processes). A *target* is one decoder: each
per-codec ``NAME_decode`` and the Zarr codec path (``chunkpress.storage.codecs.decode_chunk``, which
also reads batch blocks and lossless chains). Its seeds are streams chunkpress and imagecodecs
make; a mutation truncates, flips bits, sets bytes, forges a length or size field, forges
header bytes, appends, inserts, deletes or splices, and may then recompute every checksum it
knows (frames, trailers, batch headers, LERC's own), so that the damage reaches the codec.

What a decode of a mutated stream may do (:func:`outcome`): raise a ChunkpressError subclass
("refused"), or return exactly the seed's values ("same"), or, where nothing vouched for the
bytes (a stream without a checksum, or one a forger re-sealed), any array ("accepted"). A
damaged stream that still carries its checksum and decodes to other values is "wrong";
one whose checksum marks the damage itself destroyed (a ZFP trailer's magic hit along with
the data: two faults, see README "Known limits") is "unvouched"; any other exception is
"error:<type>". A crash or hang is seen by whoever runs the decode in a child.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import google_crc32c
import imagecodecs
import numpy as np

import chunkpress as cp
from common import raw_bits, sample, with_nonfinite

TARGETS = ("zfp", "sperr", "sz3", "lerc", "szip", "pcodec", "floatpred", "jetraw", "zarr")

FRAME, BATCH, TRAILER, CHAIN = b"\x89CPK", b"\x89CPB", b"CPK\x01", b"CPC\x01"


@dataclass(frozen=True)
class Seed:
    """A stream to mutate and how to decode it."""

    name: str
    data: bytes
    checked: bool  # True: it carries a checksum, damage must be refused or harmless
    args: tuple = ()  # decode arguments as (name, value) pairs


# --- the seeds ------------------------------------------------------------------------------


def _f(shape, dtype="float32", kind="smooth", seed=3):
    return sample(shape, dtype, kind, seed=seed)


def _own(name, data, checked=None):
    data = bytes(data)
    if checked is None:
        checked = data[:4] == FRAME or data[-4:] == TRAILER or data[:6] == b"Lerc2 "
    return Seed(name, data, checked)


def _zfp():
    return [
        _own("zfp-2d-f4", cp.zfp_encode(_f((9, 7)), tolerance=1e-3)),
        _own("zfp-3d-f8-rate", cp.zfp_encode(_f((5, 6, 7), "float64"), rate=12)),
        _own("zfp-1d-precision", cp.zfp_encode(_f((37,)), precision=20)),
        _own("zfp-nonfinite", cp.zfp_encode(with_nonfinite(_f((6, 7))), tolerance=1e-2)),
        _own("zfp-patched", cp.zfp_encode(_f((6, 7), kind="huge_range"), tolerance=1e-3)),
        _own("zfp-0d", cp.zfp_encode(np.float32(2.5), tolerance=0.1)),
        _own("zfp-imagecodecs-2d", imagecodecs.zfp_encode(_f((9, 7)), 1e-3, mode="a"), False),
        _own("zfp-imagecodecs-4d", imagecodecs.zfp_encode(_f((3, 5, 4, 6), "float64"), 16,
                                                          mode="r"), False),
    ]


def _sperr():
    noisy = _f((12, 13), kind="noisy")
    return [
        _own("sperr-2d-pwe-outliers", cp.sperr_encode(noisy, tolerance=1e-3)),
        _own("sperr-3d-f8", cp.sperr_encode(_f((5, 6, 7), "float64"), tolerance=1e-2)),
        _own("sperr-2d-psnr", cp.sperr_encode(_f((16, 9)), mode="psnr", quality=70)),
        _own("sperr-2d-rate", cp.sperr_encode(_f((16, 9)), mode="rate", quality=4), False),
        _own("sperr-constant", cp.sperr_encode(np.full((5, 6), 1.5, "float32"), tolerance=0.1),
             False),
        _own("sperr-nonfinite", cp.sperr_encode(with_nonfinite(_f((6, 7))), tolerance=1e-2)),
        _own("sperr-stored", cp.sperr_encode(_f((6, 7), kind="huge_range"), tolerance=1e-3)),
        _own("sperr-imagecodecs-2d", imagecodecs.sperr_encode(noisy, 1e-3, "pwe"), False),
        _own("sperr-imagecodecs-3d-chunks",
             imagecodecs.sperr_encode(_f((12, 11, 10), "float64"), 1e-3, "pwe", chunks=(4, 5, 6)),
             False),
    ]


def _sz3():
    bare = _f((9, 7))
    bare3 = _f((4, 5, 6), "float64")
    return [
        _own("sz3-2d-f4", cp.sz3_encode(bare, tolerance=1e-3)),
        _own("sz3-1d-f8", cp.sz3_encode(_f((40,), "float64", "noisy"), tolerance=1e-4)),
        _own("sz3-4d", cp.sz3_encode(_f((3, 5, 4, 6)), tolerance=1e-2)),
        _own("sz3-nonfinite", cp.sz3_encode(with_nonfinite(_f((6, 7))), tolerance=1e-2)),
        Seed("sz3-imagecodecs-2d", bytes(imagecodecs.sz3_encode(bare, mode="abs", abs=1e-3)),
             False, (("shape", bare.shape), ("dtype", "float32"))),
        Seed("sz3-imagecodecs-3d", bytes(imagecodecs.sz3_encode(bare3, mode="abs", abs=1e-3)),
             False, (("shape", bare3.shape), ("dtype", "float64"))),
    ]


def _lerc():
    ints = sample((9, 7), "int16")
    return [
        _own("lerc-2d-f4", cp.lerc_encode(_f((9, 7)), tolerance=1e-3)),
        _own("lerc-2d-i16-lossless", cp.lerc_encode(ints)),
        _own("lerc-1d-framed", cp.lerc_encode(_f((37,)), tolerance=1e-2)),
        _own("lerc-nonfinite", cp.lerc_encode(with_nonfinite(_f((6, 7))), tolerance=1e-2)),
        _own("lerc-imagecodecs-3d", imagecodecs.lerc_encode(_f((4, 5, 3), "float64"), 1e-3)),
    ]


def _szip():
    return [
        _own("szip-u16-nn", cp.szip_encode(sample((9, 7), "uint16"))),
        _own("szip-i64-3d", cp.szip_encode(sample((3, 4, 5), "int64", "noisy"))),
        _own("szip-f4-ec-nan", cp.szip_encode(with_nonfinite(_f((6, 7))), coding="ec",
                                              pixels_per_block=8)),
    ]


def _pcodec():
    return [
        _own("pcodec-i32", cp.pcodec_encode(sample((9, 7), "int32"))),
        _own("pcodec-f8-nan", cp.pcodec_encode(with_nonfinite(_f((6, 7), "float64")), level=12)),
        _own("pcodec-f2-1d", cp.pcodec_encode(_f((37,), "float16"), level=0)),
    ]


def _floatpred():
    # a stream is a header byte (dtype, dist, axis) and the predicted bytes of a 2-D array
    seeds = []
    for code, (dtype, dist, axis) in enumerate([("float16", 1, -1), ("float32", 2, 0),
                                                ("float64", 1, 0)]):
        predicted = cp.floatpred_encode(_f((6, 8), dtype), axis=axis, dist=dist)
        seeds.append(Seed(f"floatpred-{dtype}", bytes([code]) + predicted.tobytes(), False))
    return seeds


def _jetraw():
    return [Seed("jetraw-bytes", bytes(range(64)), True)]


#: (name, codec for the graph layer, block, kernel arguments, Zarr chunk shape)
ZARR_BLOCKS = (
    ("zarr-zfp-edge", "zfp", ((6, 7), "float32"), {"tolerance": 1e-2}, (8, 8)),
    ("zarr-zfp-batch", "zfp", ((2, 1, 3, 4, 4, 5), "float32"), {"tolerance": 1e-2}, None),
    ("zarr-sperr-batch", "sperr", ((2, 4, 5, 6), "float64"), {"tolerance": 1e-2}, None),
    ("zarr-sz3", "sz3", ((6, 7), "float32"), {"tolerance": 1e-3}, None),
    ("zarr-lerc", "lerc", ((6, 7), "float64"), {"tolerance": 1e-3}, None),
    ("zarr-pcodec-batch", "pcodec", ((2, 3, 4), "int32"), {}, None),
    ("zarr-floatpred-zstd", "floatpred+zstd", ((6, 7), "float32"), {}, None),
    ("zarr-zlib", "zlib", ((6, 7), "int16"), {}, None),
)


def _zarr():
    from chunkpress.graph import codecs, dispatch

    seeds = []
    for name, codec, (shape, dtype), kwargs, chunk in ZARR_BLOCKS:
        block = sample(shape, dtype, "smooth", seed=4)
        data = dispatch.encode(block, codecs.get_codec(codec), kwargs).data
        args = (("codec", codec), ("shape", chunk or shape), ("dtype", dtype))
        seeds.append(Seed(name, bytes(data), True, args))
    return seeds


@functools.lru_cache(maxsize=None)
def seeds(target) -> tuple:
    """The seed streams of a target, always the same."""
    return tuple(globals()[f"_{target}"]())


# --- decoding -------------------------------------------------------------------------------


def decode(target, seed: Seed, data):
    """Decode ``data`` as ``seed`` is decoded (the target's decoder and arguments)."""
    args = dict(seed.args)
    if target == "zarr":
        from chunkpress.storage import codecs as cpzarr
        from chunkpress.graph import codecs

        return cpzarr.decode_chunk(data, codecs.get_codec(args["codec"]), args["shape"],
                                   args["dtype"], 0)
    if target == "floatpred":
        return _floatpred_decode(data)
    return getattr(cp, f"{target}_decode")(data, **args)


def _floatpred_decode(data):
    """Undo the predictor on a floatpred seed-like stream; any bytes make some array."""
    if not data:
        raise cp.FloatpredError("floatpred: empty input")
    dtype, dist, axis = [("float16", 1, -1), ("float32", 2, 0), ("float64", 1, 0)][data[0] % 3]
    itemsize = np.dtype(dtype).itemsize
    count = (len(data) - 1) // itemsize
    values = np.frombuffer(data[1 : 1 + count * itemsize], dtype)
    width = 8 if count % 8 == 0 and count else 1
    predicted = values.reshape(-1, width)
    decoded = cp.floatpred_decode(predicted, axis=axis, dist=dist)
    # the predictor is a bijection: predicting the decoded array gives the input back
    if cp.floatpred_encode(decoded, axis=axis, dist=dist).tobytes() != predicted.tobytes():
        raise AssertionError("floatpred: decode is not the inverse of encode")
    return decoded


@functools.lru_cache(maxsize=None)
def _clean(target, seed: Seed):
    if target == "jetraw":
        return None
    decoded = decode(target, seed, seed.data)
    return raw_bits(decoded).tobytes(), decoded.shape, decoded.dtype.str


def outcome(target, seed: Seed, data, forged: bool) -> str:
    """What decoding a mutation of ``seed`` did: refused, same, accepted, wrong or error:..."""
    try:
        decoded = decode(target, seed, data)
    except cp.ChunkpressError:
        return "refused"
    except ValueError as exc:
        if seed.args and "given, the stream holds" in str(exc):
            return "refused"  # the shape or dtype given (bare SZ3) is not the stream's
        return f"error:{type(exc).__name__}"
    except Exception as exc:  # what the harness counts: every other exception is a finding
        return f"error:{type(exc).__name__}"
    got = (raw_bits(decoded).tobytes(), decoded.shape, decoded.dtype.str)
    if got == _clean(target, seed) or any(got == _clean(target, other)
                                          for other in seeds(target)):
        return "same"  # (a splice can give back another seed whole)
    if target == "lerc" and decoded.ndim == 2 and decoded.shape[0] == 1 and any(
            (got[0], got[1][1:], got[2]) == _clean(target, other) for other in seeds(target)):
        return "same"  # a 1-D block's LERC blob lifted whole out of its frame: LERC's one row
    if not seed.checked or forged:
        return "accepted"
    return "wrong" if carries_checksum(seed, data) else "unvouched"


def carries_checksum(seed: Seed, data) -> bool:
    """Whether ``data`` still has the marks of the checksum ``seed`` carried: a frame's or batch
    block's magic, a trailer's magic (and for a SPERR stream, its seal flag), LERC's magic."""
    clean = seed.data
    if clean[:4] == BATCH:  # the batch header's, and each stream's own
        from chunkpress.kernels import formats

        if data[:4] != BATCH or len(data) != len(clean):
            return data[:4] == BATCH
        _, streams = formats.batch_unpack(clean)
        pos = len(clean) - sum(len(stream) for stream in streams)
        for stream in streams:
            part = data[pos : pos + len(stream)]
            if not carries_checksum(Seed("", bytes(stream), True), part):
                return False
            pos += len(stream)
        return True
    for head in (FRAME, b"Lerc2 "):
        if clean[: len(head)] == head:
            return data[: len(head)] == head
    if clean[-4:] in (TRAILER, CHAIN) and data[-4:] != clean[-4:]:
        return False
    if clean[:4] != b"zfp\x05" and clean[-4:] == TRAILER:  # a SPERR stream: its seal flag
        start = 18 if len(data) > 1 and data[1] & 0x40 else 10
        return len(data) > start and bool(data[start] & 0x02)
    return True


# --- mutations ------------------------------------------------------------------------------

_INTERESTING = (0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 63, 64, 127, 128, 255, 256,
                1 << 15, (1 << 16) - 1, 1 << 16, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32,
                1 << 40, 1 << 48, 1 << 62, 1 << 63, (1 << 64) - 1)
_WIDTHS = {"B": 1, "<H": 2, "<I": 4, "<i": 4, "<Q": 8, "<d": 8}
KINDS = ("truncate", "flip", "bytes", "length", "header", "append", "insert", "delete",
         "splice")


def mutate(rng, seed: Seed, others) -> tuple[str, bytes, bool]:
    """Return (label, mutated bytes, whether checksums were recomputed) of one mutation."""
    data = bytearray(seed.data)
    kind = rng.choice(KINDS)
    n = len(data)
    if kind == "truncate":
        cut = rng.choice([rng.randrange(n + 1), n - rng.randrange(1, 17), rng.randrange(33)])
        del data[max(cut, 0):]
        label = f"truncate to {len(data)}"
    elif kind == "flip":
        bits = [rng.randrange(8 * n) for _ in range(rng.choice([1, 1, 1, 2, 3, 8]))]
        for bit in bits:
            data[bit // 8] ^= 1 << (bit % 8)
        label = f"flip bits {bits}"
    elif kind == "bytes":
        spots = [rng.randrange(n) for _ in range(rng.choice([1, 2, 4]))]
        for spot in spots:
            data[spot] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        label = f"set bytes at {spots}"
    elif kind == "length":
        offset, fmt = rng.choice(fields(bytes(data)))
        width = _WIDTHS[fmt]
        current = int.from_bytes(data[offset : offset + width], "little")
        value = rng.choice(_INTERESTING + (current + 1, current - 1, current * 2, current // 2,
                                           rng.getrandbits(8 * width)))
        value %= 1 << (8 * width)
        data[offset : offset + width] = value.to_bytes(width, "little")
        label = f"forge {fmt} at {offset}: {current} -> {value}"
    elif kind == "header":
        spots = [rng.randrange(min(n, 64)) for _ in range(rng.choice([1, 2, 4]))]
        for spot in spots:
            data[spot] = rng.randrange(256)
        label = f"forge header bytes {spots}"
    elif kind == "append":
        extra = rng.choice([b"\x00", bytes(8), b"garbage!" * 3, TRAILER, FRAME,
                            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))])
        data += extra
        label = f"append {len(extra)} bytes"
    elif kind == "insert":
        at = rng.randrange(n + 1)
        extra = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 8, 17])))
        data[at:at] = extra
        label = f"insert {len(extra)} bytes at {at}"
    elif kind == "delete":
        at = rng.randrange(n)
        count = rng.choice([1, 4, 8, 17])
        del data[at : at + count]
        label = f"delete {count} bytes at {at}"
    else:
        other = rng.choice(others).data
        at = rng.randrange(n + 1)
        data = data[:at] + other[rng.randrange(len(other) + 1):]
        label = f"splice at {at}"
    forged = rng.random() < 0.4
    if forged:
        data = reseal(data)
        label += ", checksums recomputed"
    return label, bytes(data), forged


def _crc(data) -> bytes:
    return struct.pack("<I", google_crc32c.value(bytes(data)))


def reseal(data: bytearray) -> bytearray:
    """Recompute every checksum of ``data`` chunkpress (and LERC) would check, where found."""
    data = bytearray(data)
    if data[:4] == FRAME and len(data) >= 8:
        inner = _frame_payload(data)
        if inner is not None:
            start, end = inner
            data[start:end] = reseal(data[start:end])
        data[-4:] = _crc(data[:-4])
    elif data[:4] == BATCH and len(data) >= 12:
        batch = data[5]
        try:
            extents = struct.unpack_from(f"<{batch}Q", data, 8)
            end = 8 + 8 * batch + 8 * int(np.prod(extents, dtype=object))
            if end + 4 <= len(data):
                data[end : end + 4] = _crc(data[:end])
        except (struct.error, OverflowError, ValueError):
            pass
    elif data[-4:] in (TRAILER, CHAIN) and len(data) >= 8:
        data[-8:-4] = _crc(data[:-8])
    elif data[:6] == b"Lerc2 ":
        _reseal_lerc(data)
    return data


def _reseal_lerc(data: bytearray):
    """Recompute a LERC blob's own Fletcher-32 checksum (versions 3 and 4)."""
    if len(data) < 38:
        return
    version = struct.unpack_from("<i", data, 6)[0]
    if version not in (3, 4):
        return
    size = struct.unpack_from("<i", data, 34 if version == 4 else 30)[0]
    if not 14 <= size <= len(data):
        return
    body = data[14:size]
    sum1 = sum2 = 0xFFFF
    for start in range(0, len(body) - 1, 718):
        for i in range(start, min(start + 718, len(body) - 1), 2):
            sum1 += (body[i] << 8) + body[i + 1]
            sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    if len(body) & 1:
        sum1 += body[-1] << 8
        sum2 += sum1
    sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
    sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    struct.pack_into("<I", data, 10, (sum2 << 16 | sum1) & 0xFFFFFFFF)


def _frame_payload(data):
    """(start, end) of a frame's codec stream, or None where the frame does not parse."""
    try:
        ndim = data[7]
        pos = 12 + 8 * ndim
        pos += 2 + struct.unpack_from("<H", data, pos)[0]
        length = struct.unpack_from("<Q", data, pos)[0]
        pos += 8
    except (struct.error, IndexError):
        return None
    return (pos, pos + length) if pos + length <= len(data) - 4 else None


def fields(data: bytes) -> list:
    """(offset, struct format) of the length, size and count fields found in ``data``."""
    found = [(0, "B")]
    if data[:4] == FRAME:
        found += _frame_fields(data)
        inner = _frame_payload(data)
        if inner is not None:
            found += [(inner[0] + offset, fmt) for offset, fmt in
                      _codec_fields(data[inner[0]:inner[1]])]
    elif data[:4] == BATCH and len(data) >= 8:
        batch = min(data[5], 8)
        found += [(5, "B")] + [(8 + 8 * i, "<Q") for i in range(batch + 4)]
    else:
        found += _codec_fields(data)
    return [(offset, fmt) for offset, fmt in found if offset + _WIDTHS[fmt] <= len(data)]


def _frame_fields(data):
    found = [(4, "B"), (5, "B"), (6, "B"), (7, "B"), (8, "<I")]
    ndim = min(data[7], 8) if len(data) > 7 else 0
    found += [(12 + 8 * i, "<Q") for i in range(ndim)]
    pos = 12 + 8 * ndim
    found.append((pos, "<H"))
    try:
        pos += 2 + struct.unpack_from("<H", data, pos)[0]
        for _ in range(5):  # the payload and the mask and patch sections
            found.append((pos, "<Q"))
            pos += 8 + struct.unpack_from("<Q", data, pos)[0]
    except struct.error:
        pass
    return found


def _codec_fields(data):
    if data[:4] == b"zfp\x05":
        return [(4, "<I"), (8, "<I"), (4, "<Q"), (8, "<Q"), (12, "<I")]
    if data[:6] == b"Lerc2 ":
        return [(offset, "<i") for offset in range(6, 50, 4)]
    if len(data) > 12 and data[1:5] == b"\x10\xf3\x42\xf3":  # SZ3
        width = data[10]
        packed = (data[9] * width + 7) // 8
        return [(9, "B"), (10, "B"), (11, "<H"), (11 + packed, "<Q"), (data[0], "<Q")]
    if len(data) > 10 and data[0] == 0 and not data[1] & 0x8F:  # SPERR
        return _sperr_fields(data)
    return []


def _sperr_fields(data):
    found = [(1, "B"), (2, "<I"), (6, "<I")]
    start = 10
    if data[1] & 0x40:
        found += [(10, "<I"), (14, "<I"), (14, "<H"), (16, "<H"), (18, "<H"), (20, "<I")]
        start = 18
        if data[1] & 0x10 and len(data) >= 20:  # several chunks: lengths, then the first
            extents = struct.unpack_from("<3I", data, 2)
            sizes = struct.unpack_from("<3H", data, 14)
            count = 1
            for extent, size in zip(extents, sizes):
                count *= max(extent // size + (extent % size > size // 2), 1) if size else 1
            start = 20 + 4 * min(count, 1 << 20)
    found += [(start, "B"), (start + 1, "<Q"), (start + 9, "<d"), (start + 17, "B"),
              (start + 18, "<Q")]
    try:
        bits = struct.unpack_from("<Q", data, start + 18)[0]
        outlier = start + 26 + (bits + 7) // 8
        found += [(outlier, "B"), (outlier + 1, "<Q")]
    except struct.error:
        pass
    return found
