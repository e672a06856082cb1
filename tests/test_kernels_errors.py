"""Bad arguments get a clear error naming the argument and what is allowed (STYLE.md rule 5):
TypeError for a wrong type, ValueError for a wrong value, for every codec."""

from __future__ import annotations

import re

import numpy as np
import pytest

import chunkpress as cp
from common import CODECS, NAMES, LOSSY, SHAPES, sample

ALL = [CODECS[n] for n in NAMES]


def _valid(codec):
    """A block and parameters the codec takes."""
    ndim = 2 if 2 in codec.ndims else codec.ndims[0]
    return sample(SHAPES[ndim], codec.dtype), dict(codec.first_mode.params)


# --- data -----------------------------------------------------------------------------------


BAD_DTYPES = ["complex64", "bool", "int8", "int64", "float16", "uint64", "datetime64[s]", "U3",
              "object"]


@pytest.mark.parametrize("codec, dtype", [
    pytest.param(codec, dtype, id=f"{codec}-{dtype}") for codec in ALL for dtype in BAD_DTYPES
    if np.dtype(dtype).name not in codec.dtypes  # only the dtypes this codec refuses
])
def test_wrong_dtype(codec, dtype):
    array, params = _valid(codec)
    bad = np.zeros(array.shape, dtype)
    allowed = codec.dtypes[0]
    got = re.escape(str(np.dtype(dtype)))
    with pytest.raises(ValueError, match=rf"{codec.name}: dtype .*{allowed}.*got {got}"):
        codec.encode(bad, **params)


@pytest.mark.parametrize("codec", ALL, ids=str)
def test_wrong_ndim(codec):
    _, params = _valid(codec)
    allowed = ", ".join(str(n) for n in codec.ndims)
    for ndim in range(1, 10):
        if ndim in codec.ndims:
            continue
        bad = np.zeros((2,) * ndim, codec.dtype)
        with pytest.raises(ValueError, match=rf"{codec.name}: .*ndim.*{allowed}.*got ndim={ndim}"):
            codec.encode(bad, **params)


@pytest.mark.parametrize("data", [b"\x00" * 16, bytearray(16), memoryview(b"abcd"), "text", None,
                                  object(), {"a": 1}],
                         ids=["bytes", "bytearray", "memoryview", "str", "None", "object", "dict"])
@pytest.mark.parametrize("codec", ALL, ids=str)
def test_non_array_data(codec, data):
    _, params = _valid(codec)
    with pytest.raises(TypeError, match=rf"{codec.name}: data must be a numpy array"):
        codec.encode(data, **params)


@pytest.mark.parametrize("codec", ALL, ids=str)
def test_array_like_data_is_taken(codec):
    """Nested lists are arrays to numpy: they encode like the array they make."""
    array, params = _valid(codec)
    listed = array.tolist()
    if np.asarray(listed).dtype.name not in codec.dtypes:  # Python ints make int64
        with pytest.raises(ValueError, match=rf"{codec.name}: dtype must be one of"):
            codec.encode(listed, **params)
        return
    assert bytes(codec.encode(listed, **params)) == bytes(
        codec.encode(np.asarray(listed), **params)
    )


@pytest.mark.parametrize("data", [None, 3, 2.5, object(), [1, 2], "text"],
                         ids=["None", "int", "float", "object", "list", "str"])
@pytest.mark.parametrize("codec", ALL, ids=str)
def test_decode_non_bytes(codec, data):
    with pytest.raises(TypeError, match=rf"{codec.name}: .*bytes-like"):
        codec.decode(data)


# --- tolerance ------------------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", [-1.0, -1e-30, float("nan"), float("inf"), float("-inf")],
                         ids=["-1", "-tiny", "nan", "inf", "-inf"])
@pytest.mark.parametrize("codec", [CODECS[n] for n in LOSSY], ids=str)
def test_bad_tolerance_value(codec, tolerance):
    array, _ = _valid(codec)
    with pytest.raises(ValueError, match=rf"{codec.name}: tolerance must be finite and >=? 0"):
        codec.encode(array, tolerance=tolerance)


@pytest.mark.parametrize("codec", ["zfp", "sperr", "sz3"])
def test_zero_tolerance_only_where_lossless(codec):
    codec = CODECS[codec]
    array, _ = _valid(codec)
    with pytest.raises(ValueError, match=rf"{codec.name}: tolerance must be finite and > 0"):
        codec.encode(array, tolerance=0)


@pytest.mark.parametrize("tolerance", [[0.1], object(), {"t": 1}], ids=["list", "object", "dict"])
@pytest.mark.parametrize("codec", [CODECS[n] for n in LOSSY], ids=str)
def test_tolerance_not_a_number(codec, tolerance):
    array, _ = _valid(codec)
    with pytest.raises(TypeError, match=rf"{codec.name}: tolerance must be a number"):
        codec.encode(array, tolerance=tolerance)


# --- each codec's own parameters ------------------------------------------------------------


ZFP_ONE_OF = r"zfp: give exactly one of rate .*precision .*tolerance"


@pytest.mark.parametrize("params", [
    {}, {"rate": 8, "tolerance": 1e-3}, {"rate": 8, "precision": 10},
    {"precision": 10, "tolerance": 1e-3}, {"rate": 8, "precision": 10, "tolerance": 1e-3},
], ids=["none", "rate+tolerance", "rate+precision", "precision+tolerance", "all"])
def test_zfp_exactly_one_of_rate_precision_tolerance(params):
    with pytest.raises(ValueError, match=ZFP_ONE_OF):
        cp.zfp_encode(np.ones((4, 4), np.float32), **params)


@pytest.mark.parametrize("rate", [0, -1, 65, float("nan"), True, "8"], ids=repr)
def test_zfp_bad_rate(rate):
    with pytest.raises((ValueError, TypeError), match=r"zfp: rate must be .*\(0, 64\]"):
        cp.zfp_encode(np.ones((4, 4), np.float32), rate=rate)


@pytest.mark.parametrize("precision", [0, 65, 2.5, True, "8"], ids=repr)
def test_zfp_bad_precision(precision):
    match = r"zfp: precision must be an integer in 1\.\.64"
    with pytest.raises((ValueError, TypeError), match=match):
        cp.zfp_encode(np.ones((4, 4), np.float32), precision=precision)


@pytest.mark.parametrize("mode", ["fixed", "PWE", "", 3], ids=repr)
def test_sperr_unknown_mode(mode):
    with pytest.raises(ValueError, match=r"sperr: mode must be one of 'rate', 'psnr', 'pwe'"):
        cp.sperr_encode(np.ones((4, 4), np.float32), mode=mode, quality=10)


@pytest.mark.parametrize("params, match", [
    ({}, r"sperr: give tolerance"),
    ({"mode": "psnr"}, r"sperr: quality for mode 'psnr' must be dB in \(0, 400\]"),
    ({"mode": "psnr", "quality": -3}, r"quality for mode 'psnr' must be dB in \(0, 400\]"),
    ({"mode": "psnr", "quality": float("nan")}, r"quality for mode 'psnr'"),
    ({"mode": "rate", "quality": 0},
     r"quality for mode 'rate' must be bits per value in \(0, 64\]"),
    ({"mode": "rate", "quality": 100}, r"quality for mode 'rate' must be bits per value"),
    ({"mode": "rate", "quality": 4, "tolerance": 1e-3}, r"tolerance is for mode 'pwe'"),
    ({"mode": "pwe", "quality": 1e-3, "tolerance": 1e-3}, r"mode 'pwe' takes tolerance"),
    ({"mode": "pwe"}, r"mode 'pwe' takes tolerance"),
], ids=["nothing", "psnr-no-quality", "psnr-negative", "psnr-nan", "rate-0", "rate-100",
        "rate-with-tolerance", "pwe-both", "pwe-neither"])
def test_sperr_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        cp.sperr_encode(np.ones((4, 4), np.float32), **params)


def test_sz3_needs_tolerance():
    with pytest.raises(ValueError, match=r"sz3: tolerance .* is required"):
        cp.sz3_encode(np.ones((4, 4), np.float32))


@pytest.mark.parametrize("version", [1, 5, "4", 2.5], ids=repr)
def test_lerc_bad_version(version):
    with pytest.raises(ValueError, match=r"lerc: version must be 2, 3 or 4"):
        cp.lerc_encode(np.ones((4, 4), np.float32), version=version)


@pytest.mark.parametrize("coding", ["EC", "rice", "", 4], ids=repr)
def test_szip_unknown_coding(coding):
    with pytest.raises(ValueError, match=r"szip: coding must be 'ec' or 'nn'"):
        cp.szip_encode(np.ones((4, 4), np.uint16), coding=coding)


@pytest.mark.parametrize("ppb", [0, 1, 3, 34, 64, -2, 8.0, True], ids=repr)
def test_szip_bad_pixels_per_block(ppb):
    match = r"szip: pixels_per_block must be an even integer in 2\.\.32"
    with pytest.raises(ValueError, match=match):
        cp.szip_encode(np.ones((4, 4), np.uint16), pixels_per_block=ppb)


@pytest.mark.parametrize("dtype, bpp, match", [
    ("uint16", 40, r"bits_per_pixel for uint16 must be an integer in 9\.\.16, got 40"),
    ("uint16", 4, r"bits_per_pixel for uint16 must be an integer in 9\.\.16, got 4"),
    ("uint8", 0, r"bits_per_pixel for uint8 must be an integer in 1\.\.8, got 0"),
    ("float32", 12, r"bits_per_pixel for float32 must be an integer in 17\.\.32, got 12"),
    ("int32", 2.5, r"bits_per_pixel for int32 must be an integer"),
    ("uint8", 3, r"values of data need more than bits_per_pixel=3 bits"),
])
def test_szip_bad_bits_per_pixel(dtype, bpp, match):
    data = (np.arange(16).reshape(4, 4) * 10).astype(dtype)
    with pytest.raises(ValueError, match=r"szip: " + match):
        cp.szip_encode(data, bits_per_pixel=bpp)


@pytest.mark.parametrize("level", [-1, 13, 2.5, True, "8"], ids=repr)
def test_pcodec_bad_level(level):
    match = r"pcodec: level must be an integer in 0\.\.12"
    with pytest.raises((ValueError, TypeError), match=match):
        cp.pcodec_encode(np.ones((4, 4), np.int32), level=level)


# --- out= -----------------------------------------------------------------------------------


@pytest.mark.parametrize("out", [3, "text", object()], ids=["int", "str", "object"])
@pytest.mark.parametrize("codec", ALL, ids=str)
def test_encode_out_wrong_type(codec, out):
    array, params = _valid(codec)
    with pytest.raises(TypeError, match=rf"{codec.name}: out must be a writable buffer"):
        codec.encode(array, **params, out=out)


@pytest.mark.parametrize("codec", ALL, ids=str)
def test_encode_out_read_only(codec):
    array, params = _valid(codec)
    frozen = np.zeros(10000, np.uint8)
    frozen.flags.writeable = False
    for out in (bytes(10000), frozen):
        with pytest.raises(ValueError, match=rf"{codec.name}: out is read-only"):
            codec.encode(array, **params, out=out)


@pytest.mark.parametrize("codec", ALL, ids=str)
def test_decode_out_wrong_type_or_dtype(codec):
    array, params = _valid(codec)
    stream = codec.encode(array, **params)
    with pytest.raises(TypeError, match=rf"{codec.name}: out must be a numpy array"):
        codec.decode(stream, out=bytearray(10000))
    with pytest.raises(ValueError, match=rf"{codec.name}: out .*wrong type"):
        codec.decode(stream, out=np.zeros(array.shape, np.float64))


# --- streams that are not the codec's -------------------------------------------------------


@pytest.mark.parametrize("codec", ALL, ids=str)
def test_decode_another_codecs_frame(codec):
    """A frame of another codec is refused with the codec's error naming both codecs."""
    for other in CODECS.values():
        if other is codec or other.own != "frame":
            continue
        array = sample(SHAPES[2] if 2 in other.ndims else SHAPES[1], other.dtype)
        stream = other.encode(array, **other.first_mode.params)
        with pytest.raises(codec.error, match=rf"{codec.name}: .*{other.name}"):
            codec.decode(stream)


@pytest.mark.parametrize("codec", [CODECS[n] for n in ("szip", "pcodec")], ids=str)
def test_bare_stream_of_a_frame_only_codec(codec):
    with pytest.raises(codec.error, match=rf"{codec.name}: not a chunkpress"):
        codec.decode(b"\x00" * 64)


def test_decode_shape_or_dtype_not_matching_the_stream():
    array = sample((9, 7), "float32")
    stream = cp.zfp_encode(array, tolerance=1e-3)
    with pytest.raises(ValueError, match=r"zfp: shape \(7, 9\) given, the stream holds \(9, 7\)"):
        cp.zfp_decode(stream, shape=(7, 9))
    with pytest.raises(ValueError, match=r"zfp: dtype float64 given, the stream holds"):
        cp.zfp_decode(stream, dtype=np.float64)
    frame = cp.sz3_encode(array, tolerance=1e-3)
    with pytest.raises(ValueError, match=r"sz3: shape \(63,\) given"):
        cp.sz3_decode(frame, shape=(63,), dtype=np.float32)
