"""Corrupt, truncated and forged streams: the codec's error, never a crash, never wrong numbers.

Every case runs in a child interpreter (common.run_isolated), so a decoder that crashes fails
the test with the case that crashed it instead of killing pytest. (Random damage of every
kind, for every decoder, is tests/test_fuzz.py and benchmarks/fuzz.py.)

What is guaranteed where:

* chunkpress-made streams carry a CRC-32C: frames end with one; ZFP's and LERC's own streams
  get a trailer; SPERR's own stream carries it inside its last section (a flag in SPERR's
  conditioner byte says so; SPERR never reads those bytes, so imagecodecs decodes it to the
  same values). Any truncation, bit flip, appended garbage or forged header byte must raise
  the codec's error, or decode to exactly the values of the undamaged stream (a flip in
  bytes that the decoder ignores);
* a frame whose header was forged *and* its checksum recomputed must still be refused where
  the header contradicts itself or the codec stream, and must never crash the interpreter;
  likewise a frame whose ZFP, SPERR, LERC, SZIP or PCODEC stream was damaged before the
  checksum was made (the codec streams' structure is checked before the codec sees them);
* a codec's own stream made elsewhere (imagecodecs), without chunkpress's checksum, cannot be
  told from a good one in general: there the guarantee is that the interpreter survives,
  and that a ZFP stream cut short is refused (zfp reads past its end: decoded again with
  other bytes behind it, it decodes differently); LERC's own checksum catches most damage.

Known limits (README "Known limits" has the whole list):

* SZ3's payload (past its header, the size of its zstd payload, which is checked) is SZ3's
  alone: damaged there without chunkpress's checksum (an imagecodecs stream) or forged with
  a recomputed one, an SZ3 stream can crash the interpreter; so can a frame whose dtype was
  forged (SZ3's stream does not record it). PCODEC and LERC streams forged with recomputed
  checksums can too (a Rust panic, a LERC fault);
* SPERR streams of constant blocks and fixed-rate streams SPERR cut at their bit budget have
  no room for the checksum: damage in them decodes silently (their structure is checked);
* a chunkpress ZFP stream whose trailer's magic and data are both damaged (two faults) is
  read as ZFP's own, unchecked stream.
"""

from __future__ import annotations

import functools
import random
import struct

import google_crc32c
import numpy as np
import pytest

from common import (
    CODECS, FRAME_MAGIC, INTEROP, NAMES, assert_all_ok, raw_bits, run_isolated, sample,
    with_nonfinite,
)

# --- the streams under test -----------------------------------------------------------------

#: name -> (shape, dtype, kind, non-finite cells?) of the block encoded
BLOCKS = {
    "finite_2d": ((6, 7), "float32", "smooth", False),
    "nonfinite_2d": ((6, 7), "float32", "smooth", True),
    "finite_3d": ((3, 4, 5), "float64", "noisy", False),
}


def _block(name, codec):
    shape, dtype, kind, nonfinite = BLOCKS[name]
    if len(shape) not in codec.ndims:
        shape = shape[-codec.ndims[-1]:]
    array = sample(shape, dtype if dtype in codec.dtypes else codec.dtype, kind, seed=5)
    return with_nonfinite(array, seed=5) if nonfinite else array


@functools.lru_cache(maxsize=None)
def chunkpress_stream(codec_name, block_name) -> bytes:
    codec = CODECS[codec_name]
    params = dict(codec.first_mode.params)
    if codec.tolerance_arg:
        params["tolerance"] = 1e-2
    return bytes(codec.encode(_block(block_name, codec), **params))


@functools.lru_cache(maxsize=None)
def foreign_stream(codec_name) -> bytes:
    """The codec's own stream, made by imagecodecs (no chunkpress checksum)."""
    array = _block("finite_2d", CODECS[codec_name])
    return bytes(CODECS[codec_name].imagecodecs_encode(array))


def _decode(codec_name, stream, source="chunkpress"):
    codec = CODECS[codec_name]
    if codec_name == "sz3" and source == "imagecodecs":
        # a bare SZ3 stream decodes only given its shape and dtype; a chunkpress stream is
        # decoded as a user would, without them
        array = _block("finite_2d", codec)
        return codec.decode(stream, shape=array.shape, dtype=array.dtype)
    return codec.decode(stream)


@functools.lru_cache(maxsize=None)
def _clean(codec_name, source, block_name):
    decoded = _decode(codec_name, _source(codec_name, source, block_name), source)
    return raw_bits(decoded), decoded.shape, decoded.dtype


def _source(codec_name, source, block_name):
    return chunkpress_stream(codec_name, block_name) if source == "chunkpress" \
        else foreign_stream(codec_name)


# --- corruptions ----------------------------------------------------------------------------

GARBAGE = [b"\x00", b"\x00" * 8, b"garbage!" * 3, bytes(range(256)), b"CPK\x01"]


def _crc(data) -> bytes:
    return struct.pack("<I", google_crc32c.value(bytes(data)))


def _frame_fields(stream):
    """Offsets of a frame's header fields: (name, offset, struct format)."""
    ndim = stream[7]
    fields = [("version", 4, "B"), ("codec", 5, "B"), ("flags", 6, "B"), ("ndim", 7, "B"),
              ("dtype", 8, "4s")]
    fields += [(f"shape[{i}]", 12 + 8 * i, "<Q") for i in range(ndim)]
    pos = 12 + 8 * ndim
    fields.append(("params_length", pos, "<H"))
    pos += 2 + struct.unpack_from("<H", stream, pos)[0]
    fields.append(("payload_length", pos, "<Q"))
    return fields


def _forgeries(stream):
    """(label, forged stream, kind) of a frame: each header field set to other values.

    kind "structural": the header contradicts itself or the stream and must be refused even
    with a recomputed checksum; "count": the cells it claims differ from the codec stream's,
    also to be refused; "reinterpret": the same bytes read as another type of the same size,
    which only the checksum can catch.
    """
    fields = dict((name, (offset, fmt)) for name, offset, fmt in _frame_fields(stream))

    def put(name, value):
        offset, fmt = fields[name]
        forged = bytearray(stream)
        struct.pack_into(fmt, forged, offset, value)
        return bytes(forged)

    itemsize = np.dtype(stream[8:12].rstrip(b"\0").decode()).itemsize
    yield "version=0", put("version", 0), "structural"
    yield "version=2", put("version", 2), "structural"
    yield "version=255", put("version", 255), "structural"
    yield "codec=0", put("codec", 0), "structural"
    yield "codec=other", put("codec", stream[5] % 6 + 1), "structural"
    yield "codec=99", put("codec", 99), "structural"
    yield "flags=8", put("flags", stream[6] | 8), "structural"
    yield "flags=128", put("flags", 128), "structural"
    for bit in (1, 2, 4):
        yield f"flags^={bit}", put("flags", stream[6] ^ bit), "structural"
    yield "ndim=33", put("ndim", 33), "structural"
    yield "ndim=255", put("ndim", 255), "structural"
    yield "ndim+1", put("ndim", stream[7] + 1), "structural"
    if stream[7]:
        yield "ndim-1", put("ndim", stream[7] - 1), "structural"
    for dtype in (b"\xff\xff\xff\xff", b"|S4\0", b"O\0\0\0", b"V4\0\0", b"<c8\0", b"<M8\0",
                  b"\0\0\0\0"):
        yield f"dtype={dtype!r}", put("dtype", dtype), "structural"
    other_size = {1: b"<i2\0", 2: b"<f4\0", 4: b"<f8\0", 8: b"<f4\0"}[itemsize]
    yield f"dtype={other_size!r}", put("dtype", other_size), "count"
    same_size = {1: b"|u1\0", 2: b"<i2\0", 4: b"<i4\0", 8: b"<u8\0"}[itemsize]
    yield f"dtype={same_size!r}", put("dtype", same_size), "reinterpret"
    yield "dtype=byteswapped", put("dtype", stream[8:12].replace(b"<", b">")), "reinterpret"
    if stream[7]:
        extent = struct.unpack_from("<Q", stream, 12)[0]
        yield "shape[0]+1", put("shape[0]", extent + 1), "count"
        yield "shape[0]*2", put("shape[0]", extent * 2), "count"
        if extent > 1:
            yield "shape[0]-1", put("shape[0]", extent - 1), "count"
        yield "shape[0]=0", put("shape[0]", 0), "count"
        yield "shape[0]=2**40", put("shape[0]", 2**40), "structural"
        yield "shape[0]=2**63", put("shape[0]", 2**63), "structural"
        yield "shape[0]=2**64-1", put("shape[0]", 2**64 - 1), "structural"
    plen = struct.unpack_from("<H", stream, fields["params_length"][0])[0]
    yield "params_length+1", put("params_length", plen + 1), "structural"
    yield "params_length=65535", put("params_length", 65535), "structural"
    length = struct.unpack_from("<Q", stream, fields["payload_length"][0])[0]
    yield "payload_length+1", put("payload_length", length + 1), "structural"
    yield "payload_length-1", put("payload_length", max(length - 1, 0)), "structural"
    yield "payload_length=2**63", put("payload_length", 2**63), "structural"
    yield "payload_length=2**64-1", put("payload_length", 2**64 - 1), "structural"


def corrupt(stream, kind, index):
    """The ``index``-th corruption of ``kind`` of a stream."""
    if kind == "truncate":
        return stream[:index]
    if kind == "flip":
        damaged = bytearray(stream)
        damaged[index // 8] ^= 1 << (index % 8)
        return bytes(damaged)
    if kind == "append":
        return stream + GARBAGE[index]
    if kind == "forge":  # a forged header field, checksum left as it was
        return list(_forgeries(stream))[index][1]
    if kind == "forge_valid_crc":  # a forged header field with a recomputed checksum
        forged = list(_forgeries(stream))[index][1]
        return forged[:-4] + _crc(forged[:-4])
    raise ValueError(kind)


def count(stream, kind):
    return {"truncate": len(stream), "flip": 8 * len(stream), "append": len(GARBAGE),
            "forge": len(list(_forgeries(stream))) if stream[:4] == FRAME_MAGIC else 0,
            "forge_valid_crc": len(list(_forgeries(stream))) if stream[:4] == FRAME_MAGIC else 0,
            }[kind]


# --- the checks run in the child ------------------------------------------------------------


def check_detected(codec_name, source, block_name, kind, index):
    """The damaged stream raises the codec's error or decodes exactly as the undamaged one."""
    codec = CODECS[codec_name]
    damaged = corrupt(_source(codec_name, source, block_name), kind, index)
    try:
        decoded = _decode(codec_name, damaged, source)
    except codec.error:
        return
    except Exception as exc:
        raise AssertionError(f"raised {type(exc).__name__} instead of {codec.error.__name__}: "
                             f"{exc}") from None
    if not _same(decoded, codec_name, source, block_name):
        bits, shape, dtype = _clean(codec_name, source, block_name)
        differ = (int(np.sum(raw_bits(decoded) != bits))
                  if (decoded.shape, decoded.dtype) == (shape, dtype) else "all")
        raise AssertionError(
            f"decoded silently into wrong numbers ({len(damaged)}-byte stream, "
            f"{decoded.shape} {decoded.dtype}, {differ} cells differ)"
        )


def _same(decoded, codec_name, source, block_name):
    """Whether ``decoded`` is exactly the decode of the undamaged stream."""
    bits, shape, dtype = _clean(codec_name, source, block_name)
    return (decoded.shape == shape and decoded.dtype == dtype
            and np.array_equal(raw_bits(decoded), bits))


def check_forged_refused(codec_name, block_name, index):
    """A frame forged with a valid checksum is refused, or decodes to the undamaged values; a
    forged type of the same size ("reinterpret") may decode to the undamaged bytes read as that
    type; a forged cell count ("count") is refused like a structural forgery."""
    codec = CODECS[codec_name]
    stream = chunkpress_stream(codec_name, block_name)
    label, _, kind = list(_forgeries(stream))[index]
    damaged = corrupt(stream, "forge_valid_crc", index)
    try:
        decoded = codec.decode(damaged)
    except (codec.error, ValueError):
        return
    if _same(decoded, codec_name, "chunkpress", block_name):
        return  # a field the decoder does not need
    bits, shape, _ = _clean(codec_name, "chunkpress", block_name)
    got = f"{label}: decoded to {decoded.shape} {decoded.dtype}"
    if kind == "reinterpret":
        # only the checksum could tell; the bytes must be the undamaged ones, read as the type
        # the header names: no cell changed beyond its type
        forged = np.dtype(damaged[8:12].rstrip(b"\0").decode())
        want = np.frombuffer(bits.tobytes(), forged).astype(forged.newbyteorder("="))
        assert decoded.shape == shape and decoded.dtype == want.dtype, f"{got}, not {want.dtype}"
        assert np.array_equal(raw_bits(decoded).reshape(-1), raw_bits(want)), (
            f"{got}: not the undamaged bytes read as {forged}; cells changed")
        return
    if kind == "count" and codec_name == "szip" and label == "shape[0]-1":
        # a known limit (README): libaec decodes as many values as it is given room for, and
        # an SZIP frame records no count beside its shape, so a shape cut short by a forger who
        # also recomputed the CRC decodes into a smaller block of wrong values. Its shape no
        # longer fits its chunk, which the store refuses; a larger shape is refused here.
        assert decoded.size < np.prod(shape), f"{got}: larger than the block"
        return
    raise AssertionError(f"{got} instead of raising {codec.error.__name__}")


def check_survives(codec_name, source, block_name, kind, index):
    """A damaged stream without chunkpress's checksum: the codec's error or any array."""
    codec = CODECS[codec_name]
    damaged = corrupt(_source(codec_name, source, block_name), kind, index)
    try:
        decoded = _decode(codec_name, damaged, source)
    except codec.error:
        return
    except ValueError as exc:  # e.g. shape given does not match the stream
        if codec_name not in str(exc):
            raise
        return
    assert isinstance(decoded, np.ndarray)
    if codec_name == "lerc" or (codec_name == "zfp" and kind == "truncate"):
        # LERC blobs carry their own checksum; a ZFP stream cut short is caught
        assert _same(decoded, codec_name, source, block_name), (
            f"{codec_name}: damaged stream decoded silently into wrong numbers"
        )


def check_payload_forged_survives(codec_name, block_name, index):
    """A frame whose codec stream was damaged before its checksum was made: no crash."""
    codec = CODECS[codec_name]
    stream = chunkpress_stream(codec_name, block_name)
    (_, offset, _), = [f for f in _frame_fields(stream) if f[0] == "payload_length"]
    length = struct.unpack_from("<Q", stream, offset)[0]
    start = offset + 8
    damaged = bytearray(stream[:-4])
    position = index % max(length, 1)
    damaged[start + position] ^= 0xFF if index < length else 1 << (index % 8)
    damaged += _crc(damaged)
    try:
        codec.decode(bytes(damaged))
    except (codec.error, ValueError):
        pass


# --- the tests ------------------------------------------------------------------------------


def _cases(codec_name, sources, kinds):
    """Every corruption of every stream, in a fixed shuffled order: a test that stops after
    many failures has still sampled every kind of damage."""
    cases = []
    for source, block_name in sources:
        stream = _source(codec_name, source, block_name)
        for kind in kinds:
            cases += [[codec_name, source, block_name, kind, i] for i in range(count(stream, kind))]
    random.Random(0).shuffle(cases)
    return cases


def _checked_sources(codec):
    """The chunkpress streams that carry a checksum: frames, and ZFP's trailed own stream."""
    return [("chunkpress", name) for name in BLOCKS
            if chunkpress_stream(codec, name)[:4] == FRAME_MAGIC
            or chunkpress_stream(codec, name)[-4:] == b"CPK\x01"]


@pytest.mark.parametrize("codec", NAMES)
def test_chunkpress_stream_damage_is_detected(codec):
    """Every truncation, every single bit flip, appended garbage and forged header bytes of
    chunkpress-made streams with a checksum (frames, ZFP's and LERC's trailed streams,
    SPERR's sealed one): the codec's error or the undamaged values, never a crash."""
    cases = _cases(codec, _checked_sources(codec), ["truncate", "flip", "append", "forge"])
    assert cases
    results = run_isolated("check_detected_or_bare", cases, module="test_corrupt")
    assert_all_ok(cases, results)


def check_detected_or_bare(codec_name, source, block_name, kind, index):
    # (a stream cut short, trailer and all, is caught too now: the name stays for the cases)
    return check_detected(codec_name, source, block_name, kind, index)


@pytest.mark.parametrize("codec", NAMES)
def test_forged_frame_with_valid_checksum(codec):
    """Header fields forged, or the codec stream damaged before the checksum was made, and the
    checksum recomputed: refused where the header contradicts itself or the codec stream;
    never a crash."""
    cases = []
    for block_name in BLOCKS:
        stream = chunkpress_stream(codec, block_name)
        if stream[:4] == FRAME_MAGIC:
            forgeries = list(_forgeries(stream))
            cases += [["check_forged_refused", codec, block_name, i, forgeries[i][0]]
                      for i in range(len(forgeries))
                      if not (codec == "sz3" and forgeries[i][2] != "structural")]
            if codec != "sz3":  # see the module's known limits
                cases += [["check_payload_forged_survives", codec, block_name, i, "payload"]
                          for i in range(0, 96, 3)]
    assert cases
    results = run_isolated("check_forged", cases, module="test_corrupt")
    assert_all_ok(cases, results)


def check_forged(check, codec_name, block_name, index, label):
    globals()[check](codec_name, block_name, index)


@pytest.mark.parametrize("codec", [name for name in INTEROP if name != "sz3"])
def test_foreign_stream_damage_does_not_crash(codec):
    """imagecodecs' own streams (no chunkpress checksum), damaged: never a crash; LERC blobs
    (which carry their own checksum) also never decode into wrong numbers, nor ZFP streams
    cut short."""
    cases = _cases(codec, [("imagecodecs", "finite_2d")], ["truncate", "flip", "append"])
    results = run_isolated("check_survives", cases, module="test_corrupt")
    assert_all_ok(cases, results)


def test_zfp_trailer_with_forged_zfp_header_does_not_crash():
    """ZFP's own stream with its header bits forged and the trailer's checksum recomputed."""
    cases = [["zfp", i] for i in range(0, 128)]
    results = run_isolated("check_zfp_header_forged", cases, module="test_corrupt")
    assert_all_ok(cases, results)


def check_zfp_header_forged(codec_name, bit):
    stream = chunkpress_stream(codec_name, "finite_2d")
    assert stream[-4:] == b"CPK\x01"
    body = bytearray(stream[:-8])
    body[bit // 8] ^= 1 << (bit % 8)
    forged = bytes(body) + _crc(body) + b"CPK\x01"
    try:
        decoded = CODECS[codec_name].decode(forged)
    except CODECS[codec_name].error:
        return
    assert isinstance(decoded, np.ndarray)


def test_empty_and_tiny_inputs_to_decode():
    """Zero and a few bytes, all zeros or all ones, bare or behind a frame's magic: the
    codec's error, no crash, for every codec."""
    cases = [[codec, n, fill] for codec in NAMES for n in (0, 1, 3, 4, 7, 8, 12, 16, 31, 64)
             for fill in (0, 255)]
    results = run_isolated("check_tiny_input", cases, module="test_corrupt")
    assert_all_ok(cases, results)


def check_tiny_input(codec_name, size, fill):
    codec = CODECS[codec_name]
    for data in (bytes([fill]) * size, FRAME_MAGIC[:size] + bytes([fill]) * max(0, size - 4)):
        try:
            codec.decode(data)
        except codec.error:
            continue
        raise AssertionError(f"{data[:16]!r}: decoded without an error")


# --- SPERR's checksum, and streams the codecs themselves cannot read ---------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sperr_checksum_rides_inside_its_own_stream(dtype):
    """chunkpress's SPERR stream carries its CRC-32C (so damage is caught), and imagecodecs
    decodes it to exactly the values of imagecodecs' own stream of the same block."""
    import imagecodecs

    for shape in [(9, 7), (33, 20), (5, 6, 7), (12, 10, 9)]:
        for kind in ("smooth", "noisy"):
            array = sample(shape, dtype, kind, seed=11)
            for quality in (40, 90):
                ours = bytes(CODECS["sperr"].encode(array, mode="psnr", quality=quality))
                theirs = bytes(imagecodecs.sperr_encode(array, quality, "psnr", numthreads=1))
                assert ours[-4:] == b"CPK\x01" and len(ours) == len(theirs) + 8, shape
                want = raw_bits(imagecodecs.sperr_decode(theirs))
                assert np.array_equal(raw_bits(imagecodecs.sperr_decode(ours)), want)
                assert np.array_equal(raw_bits(CODECS["sperr"].decode(ours)), want)


def test_sz3_streams_sz3_cannot_decode_are_refused():
    """imagecodecs' SZ3 writes streams in its abs_and_rel and abs_or_rel modes that SZ3
    aborts the interpreter on; chunkpress refuses them before SZ3 sees them."""
    cases = [[mode] for mode in ("abs_and_rel", "abs_or_rel")]
    results = run_isolated("check_sz3_undecodable", cases, module="test_corrupt")
    assert_all_ok(cases, results)


def check_sz3_undecodable(mode):
    import imagecodecs

    array = sample((20, 30), "float32", "smooth", seed=3)
    stream = imagecodecs.sz3_encode(array, mode=mode, abs=1e-4, rel=1e-3)
    with pytest.raises(CODECS["sz3"].error, match="cannot decode"):
        CODECS["sz3"].decode(stream, shape=array.shape, dtype=array.dtype)
    good = imagecodecs.sz3_encode(array, mode="rel", rel=1e-3)  # and a good one decodes
    assert CODECS["sz3"].decode(good, shape=array.shape, dtype=array.dtype).shape == array.shape
