"""Bit rounding, netCDF quantization and bitwise real information: the kernels of issue 13.

bitround is numcodecs' BitRound bit for bit (NaN and overflow aside, see the module), within
half a unit in the last kept bit; quantize is imagecodecs.quantize_encode on finite values and
keeps NaN/Inf; bitinfo's counts are those of a plain numpy reference and add up over blocks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import imagecodecs
import numcodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from chunkpress.kernels._common import ChunkpressError
from chunkpress.kernels.bitinfo import (
    FORMATS,
    bit_information,
    bitinfo_counts,
    combine_counts,
    keepbits_for,
    keepbits_from_counts,
)
from chunkpress.kernels.bitround import (
    BITROUND,
    MANTISSA_BITS,
    BitroundError,
    bitround_check,
    bitround_decode,
    bitround_encode,
)
from chunkpress.kernels.quantize import (
    METHODS,
    QUANTIZE,
    QuantizeError,
    digit_range,
    quantize_check,
    quantize_decode,
    quantize_encode,
)

WIDTHS = ("float16", "float32", "float64")


def word(dtype) -> np.dtype:
    return np.dtype(np.dtype(dtype).str.replace("f", "u"))


def floats(dtype, max_side=12):
    """Arrays of any bit patterns (every NaN payload, subnormals) mixed with hypothesis' floats."""
    dtype = np.dtype(dtype)
    bits = 8 * dtype.itemsize
    as_word = st.floats(width=bits).map(lambda v: int(np.array(v, dtype).view(word(dtype))))
    edges = st.sampled_from([np.finfo(dtype).max, -np.finfo(dtype).max, np.finfo(dtype).tiny,
                             np.finfo(dtype).smallest_subnormal, 0.0, -0.0, np.nan, np.inf])
    elements = st.one_of(st.integers(0, 2**bits - 1), as_word,
                         edges.map(lambda v: int(np.array(v, dtype).view(word(dtype)))))
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=max_side)
    return hnp.arrays(word(dtype), shapes, elements=elements).map(lambda w: w.view(dtype))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(word(a.dtype)), b.view(word(b.dtype)))


def exponent_of(x: np.ndarray) -> np.ndarray:
    """Return floor(log2|x|) of each normal value, the least normal exponent for subnormals."""
    emin = np.finfo(x.dtype).minexp
    _, e = np.frexp(x.astype(np.float64))
    return np.maximum(e - 1, emin)


# --- bitround --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(WIDTHS))
def test_bitround_is_numcodecs_bitround_bit_for_bit(data, dtype):
    x = data.draw(floats(dtype))
    keepbits = data.draw(st.integers(0, MANTISSA_BITS[np.dtype(dtype)]))
    ours = bitround_encode(x, keepbits=keepbits)
    theirs = numcodecs.BitRound(keepbits).encode(x.copy()).view(dtype).reshape(x.shape)
    finite = np.isfinite(x)
    overflow = finite & ~np.isfinite(theirs)  # numcodecs rounds these up to +-Inf
    kept = ~finite | overflow
    assert same_bits(ours[~kept], theirs[~kept])
    # NaN (any payload) and Inf pass unchanged; a finite value never becomes Inf
    assert same_bits(ours[kept], x[kept])
    assert ours.dtype == x.dtype and ours.shape == x.shape


@settings(max_examples=300, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(WIDTHS))
def test_bitround_error_is_within_half_a_unit_in_the_last_kept_bit(data, dtype):
    x = data.draw(floats(dtype))
    keepbits = data.draw(st.integers(0, MANTISSA_BITS[np.dtype(dtype)]))
    y = bitround_encode(x, keepbits=keepbits)
    finite = np.isfinite(x)
    assert np.isfinite(y[finite]).all()
    x, y = x[finite], y[finite]
    # same sign and within a factor two, so x - y is exact in the type itself (Sterbenz)
    error = np.abs(x - y).astype(np.float64)
    bound = np.ldexp(1.0, exponent_of(x) - keepbits - 1)
    assert (error <= bound).all()
    normal = np.abs(x) >= np.finfo(x.dtype).tiny
    assert (error[normal] <= 2.0 ** -(keepbits + 1) * np.abs(x[normal]).astype(np.float64)).all()
    assert (np.signbit(y) == np.signbit(x)).all() and (y[x == 0] == 0).all()


@pytest.mark.parametrize("dtype", WIDTHS)
def test_bitround_keeps_values_that_would_round_to_infinity(dtype):
    top = np.finfo(dtype).max
    x = np.array([top, -top, np.nextafter(top, 0, dtype=dtype), 1.0], dtype)
    y = bitround_encode(x, keepbits=3)
    assert same_bits(y[:3], x[:3])  # BitRound gives +-Inf here
    assert np.isinf(numcodecs.BitRound(3).encode(x.copy()).view(dtype)[:2]).all()
    assert y[3] == 1.0


def test_bitround_rounds_ties_to_even():
    # 1 + 2**-23 * m at keepbits=21 drops two bits: m = 2 is a tie (last kept bit 0, down),
    # m = 6 a tie with last kept bit 1 (up), m = 3 above half (up), m = 1 below (down)
    ulp = np.float32(2.0**-23)
    x = np.float32(1) + ulp * np.array([2, 6, 3, 1], np.float32)
    expected = np.float32(1) + ulp * np.array([0, 8, 4, 0], np.float32)
    assert same_bits(bitround_encode(x, keepbits=21), expected)


@pytest.mark.parametrize("layout", ["F", "strided", "big-endian", "in place", "0-d", "empty"])
def test_bitround_layouts_and_out_give_the_plain_result(layout):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 8)).astype(np.float32) * 1e3
    x.reshape(-1).view(np.uint32)[[0, 9]] = [0x7FC01234, 0xFF800001]  # NaN payloads
    plain = bitround_encode(x, keepbits=5)
    if layout == "F":
        got, want = bitround_encode(np.asfortranarray(x), keepbits=5), plain
    elif layout == "strided":
        got, want = bitround_encode(x[:, ::2], keepbits=5), plain[:, ::2]
    elif layout == "big-endian":
        big = x.astype(">f4")
        got = bitround_encode(big, keepbits=5, out=np.empty((6, 8), ">f4"))
        assert got.dtype == np.dtype(">f4")
        got, want = got.astype("<f4"), plain
    elif layout == "in place":
        got = x.copy()
        assert bitround_encode(got, keepbits=5, out=got) is got
        want = plain
    elif layout == "0-d":
        got, want = bitround_encode(x[:1, :1].reshape(()), keepbits=5), plain[:1, :1].reshape(())
    else:
        got, want = bitround_encode(x[:0], keepbits=5), plain[:0]
    assert same_bits(got, want)


def test_bitround_decode_is_the_identity_and_check_refuses_everything():
    x = bitround_encode(np.linspace(-3, 3, 50, dtype=np.float64), keepbits=7)
    assert bitround_decode(x) is x
    out = np.empty_like(x)
    assert bitround_decode(x, out=out) is out and same_bits(out, x)
    assert bitround_check(x.tobytes()) is False
    assert BITROUND.available and issubclass(BitroundError, ChunkpressError)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(keepbits=-1), ValueError, "keepbits must be in 0..23"),
        (dict(keepbits=24), ValueError, "keepbits must be in 0..23"),
        (dict(keepbits=2.0), TypeError, "keepbits must be an integer"),
        (dict(keepbits=True), TypeError, "keepbits must be an integer"),
        (dict(keepbits="3"), TypeError, "keepbits must be an integer"),
        (dict(keepbits=3, out=np.empty(4, np.float32)), ValueError, "out must have the shape"),
        (dict(keepbits=3, out=b"1234"), TypeError, "out must be a numpy array"),
    ],
)
def test_bitround_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        bitround_encode(np.ones(3, np.float32), **kwargs)


def test_bitround_bad_data():
    with pytest.raises(ValueError, match="keepbits must be in 0..10 for float16"):
        bitround_encode(np.ones(3, np.float16), keepbits=11)
    with pytest.raises(ValueError, match="dtype must be float16, float32 or float64"):
        bitround_encode(np.ones(3, np.int32), keepbits=3)
    with pytest.raises(TypeError, match="data must be a numpy array"):
        bitround_encode([1.0, 2.0], keepbits=3)
    frozen = np.ones(3, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        bitround_encode(np.ones(3, np.float32), keepbits=3, out=frozen)


# --- quantize --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(["float32", "float64"]),
       method=st.sampled_from(METHODS))
def test_quantize_is_imagecodecs_on_finite_values_and_keeps_nan_inf(data, dtype, method):
    x = data.draw(floats(dtype))
    digits = data.draw(st.sampled_from(digit_range(method, dtype)))
    ours = quantize_encode(x, digits=digits, method=method)
    theirs = imagecodecs.quantize_encode(x, method, digits).reshape(x.shape)
    finite = np.isfinite(x)
    kept = ~finite | ~np.isfinite(theirs)  # NaN/Inf, and finite values imagecodecs made Inf
    assert same_bits(ours[~kept], theirs[~kept])
    assert same_bits(ours[kept], x[kept])


@pytest.mark.parametrize("method", METHODS)
def test_quantize_keeps_nan_and_infinities_where_imagecodecs_loses_them(method):
    x = np.array([1.5, np.nan, 2.5, np.inf, 3.5, -np.inf, np.finfo(np.float32).max, 7.0],
                 np.float32)
    y = quantize_encode(x, digits=3, method=method)
    assert np.isnan(y[1]) and y[3] == np.inf and y[5] == -np.inf
    assert np.isfinite(y[[0, 2, 4, 6, 7]]).all()
    if method != "bitgroom":  # granularbr and bitround round the largest float up to Inf
        assert np.isinf(imagecodecs.quantize_encode(x, method, 3)[6])
        assert y[6] == np.finfo(np.float32).max
    if method == "granularbr":  # the defect this module repairs
        assert not np.isnan(imagecodecs.quantize_encode(x, method, 3)[1])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_quantize_error_shrinks_with_digits(method, dtype):
    # a smooth field of several magnitudes: the relative error at each digits is the method's
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(4000) * 10.0 ** rng.uniform(-5, 5, 4000)).astype(dtype)
    errors = [float(np.max(np.abs(quantize_encode(x, digits=d, method=method) - x) / np.abs(x)))
              for d in digit_range(method, dtype)]
    assert errors[0] < 0.5 and errors[-1] < 1e-5
    assert all(later <= earlier for earlier, later in zip(errors, errors[1:]))


@pytest.mark.parametrize("layout", ["big-endian", "strided", "in place"])
def test_quantize_layouts_and_out_give_the_plain_result(layout):
    x = np.random.default_rng(5).standard_normal((5, 6)) * 100
    x.reshape(-1).view(np.uint64)[[8, 9]] = [0x7FF8000000001234, 0xFFF0000000000001]  # NaNs
    plain = quantize_encode(x, digits=3, method="granularbr")
    if layout == "big-endian":
        got, want = quantize_encode(x.astype(">f8"), digits=3, method="granularbr"), plain
        assert got.dtype == np.dtype(">f8")
        got = got.astype("<f8")
    elif layout == "strided":
        got = quantize_encode(x[:, ::2], digits=3, method="granularbr")
        want = quantize_encode(np.ascontiguousarray(x[:, ::2]), digits=3, method="granularbr")
    else:
        got = x.copy()
        assert quantize_encode(got, digits=3, method="granularbr", out=got) is got
        want = plain
    assert same_bits(got, want)


def test_quantize_decode_is_the_identity():
    x = quantize_encode(np.linspace(1, 2, 10, dtype=np.float32), digits=2)
    assert quantize_decode(x) is x and quantize_check(x) is False
    assert QUANTIZE.available and issubclass(QuantizeError, ChunkpressError)


@pytest.mark.parametrize(
    "dtype, kwargs, error, words",
    [
        ("float32", dict(digits=7, method="bitgroom"), ValueError, "digits must be in 1..6"),
        ("float32", dict(digits=7, method="granularbr"), ValueError, "digits must be in 1..6"),
        ("float64", dict(digits=16, method="bitgroom"), ValueError, "digits must be in 1..15"),
        ("float32", dict(digits=24, method="bitround"), ValueError, "digits must be in 1..23"),
        ("float64", dict(digits=53, method="bitround"), ValueError, "digits must be in 1..52"),
        ("float32", dict(digits=0, method="bitround"), ValueError, "digits must be in 1..23"),
        ("float32", dict(digits=2.5), TypeError, "digits must be an integer"),
        ("float32", dict(digits=True), TypeError, "digits must be an integer"),
        ("float32", dict(digits=3, method="BitGroom"), ValueError, "method must be one of"),
        ("float32", dict(digits=3, method="scale"), ValueError, "method must be one of"),
        ("float32", dict(digits=3, method=1), TypeError, "method must be one of"),
        ("float16", dict(digits=3), ValueError, "dtype must be float32 or float64"),
        ("int32", dict(digits=3), ValueError, "dtype must be float32 or float64"),
    ],
)
def test_quantize_bad_arguments(dtype, kwargs, error, words):
    with pytest.raises(error, match=words):
        quantize_encode(np.ones(4, dtype), **kwargs)


# --- bitwise real information --------------------------------------------------------


def reference_counts(x: np.ndarray, axis: int) -> np.ndarray:
    """Count bit pairs of finite neighbours along ``axis`` with plain numpy (the definition)."""
    width = 8 * x.dtype.itemsize
    exponent_bits, mantissa_bits = FORMATS[width]
    x = np.moveaxis(x, axis, -1)
    a, b = x[..., :-1].reshape(-1), x[..., 1:].reshape(-1)
    both = np.isfinite(a) & np.isfinite(b)

    def signed_exponent(v):
        u = v[both].view(word(v.dtype)).astype(np.uint64)
        biased = (u >> np.uint64(mantissa_bits)) & np.uint64((1 << exponent_bits) - 1)
        e = np.maximum(biased.astype(np.int64), 1) - ((1 << (exponent_bits - 1)) - 1)
        field = np.where(e >= 0, e, (1 << (exponent_bits - 1)) | -e).astype(np.uint64)
        mask = np.uint64(((1 << exponent_bits) - 1) << mantissa_bits)
        return (u & ~mask) | (field << np.uint64(mantissa_bits))

    a, b = signed_exponent(a), signed_exponent(b)
    counts = np.zeros((width, 2, 2), np.int64)
    for position in range(width):
        shift = np.uint64(width - 1 - position)
        r, s = (a >> shift) & np.uint64(1), (b >> shift) & np.uint64(1)
        np.add.at(counts[position], (r.astype(np.intp), s.astype(np.intp)), 1)
    return counts


@settings(max_examples=150, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(WIDTHS))
def test_bitinfo_counts_are_the_definitions(data, dtype):
    x = data.draw(floats(dtype, max_side=9).filter(lambda a: a.ndim >= 1))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    assert np.array_equal(bitinfo_counts(x, axis=axis), reference_counts(x, axis))


def test_bitinfo_combined_blocks_are_the_whole():
    rng = np.random.default_rng(7)
    grid = np.indices((12, 40, 50)).sum(axis=0) / 9.0
    x = (np.sin(grid) * 30 + rng.standard_normal(grid.shape) * 0.1).astype(np.float32)
    x[2, 5:20, 7:30] = np.nan  # land
    whole = bitinfo_counts(x, axis=2)
    # blocks cut along the other axes hold every pair along axis 2
    blocks = [x[i:i + 5, j:j + 16] for i in range(0, 12, 5) for j in range(0, 40, 16)]
    assert np.array_equal(combine_counts(*[bitinfo_counts(b, axis=2) for b in blocks]), whole)
    # blocks cut across axis 2 lose only the pairs across the cuts
    cuts = [13, 31]
    edges = [0, *cuts, 50]
    parts = [bitinfo_counts(x[..., lo:hi], axis=2) for lo, hi in zip(edges, edges[1:])]
    seams = [bitinfo_counts(x[..., c - 1:c + 1], axis=2) for c in cuts]
    assert np.array_equal(combine_counts(*parts, *seams), whole)
    assert keepbits_from_counts(combine_counts(*parts)) == keepbits_from_counts(whole)


def test_bit_information_of_a_known_pattern():
    # the first mantissa bit alternates 0, 1, 0, 1: fully predictable from a neighbour, 1 bit;
    # every other bit is constant: none
    x = np.where(np.arange(100_000) % 2 == 0, 1.0, 1.5).astype(np.float32)
    info = bit_information(bitinfo_counts(x))
    assert info[9] == pytest.approx(1.0)
    assert np.count_nonzero(info) == 1
    assert keepbits_for(x) == 1
    # that bit drawn at random: no real information, and nothing significant
    coin = np.where(np.random.default_rng(1).random(100_000) < 0.5, 1.0, 1.5).astype(np.float32)
    assert not bit_information(bitinfo_counts(coin)).any()


def test_keepbits_for_noise_and_smooth_fields():
    rng = np.random.default_rng(11)
    y, x = np.meshgrid(np.linspace(0, 6, 300), np.linspace(0, 12, 600), indexing="ij")
    smooth = (np.sin(y) * np.cos(x) * 20 + 280).astype(np.float32)
    noise = rng.standard_normal(smooth.shape).astype(np.float32)
    white = rng.random(smooth.shape).astype(np.float32)
    assert keepbits_for(white, axis=-1) <= 1
    assert keepbits_for(smooth, axis=-1) >= 8
    # noise takes the bits below its level: the more noise, the fewer bits, yet not none
    kept = [keepbits_for(smooth + noise * sigma, axis=-1) for sigma in (3.0, 0.3, 0.03)]
    assert 1 <= kept[0] < kept[1] < kept[2] <= keepbits_for(smooth, axis=-1)
    # more of the information takes no fewer bits
    shares = [0.5, 0.9, 0.99, 0.999, 1.0]
    kept = [keepbits_for(smooth, information=s) for s in shares]
    assert kept == sorted(kept) and kept[0] < kept[-1]


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda x: keepbits_for(x, information=0), ValueError, r"information must be in \(0, 1\]"),
        (lambda x: keepbits_for(x, information=1.5), ValueError, "information must be in"),
        (lambda x: keepbits_for(x, information=float("nan")), ValueError, "information"),
        (lambda x: keepbits_for(x, information=True), TypeError, "information must be a number"),
        (lambda x: keepbits_for(x, confidence=1.0), ValueError, r"confidence must be in \(0, 1\)"),
        (lambda x: keepbits_for(x, axis=2), ValueError, "axis must be in"),
        (lambda x: keepbits_for(x, axis=1.0), TypeError, "axis must be an integer"),
        (lambda x: keepbits_for(x[:1, :1].reshape(())), ValueError, "at least 1 dimension"),
        (lambda x: keepbits_for(x.astype(np.int32)), ValueError, "dtype must be float16"),
        (lambda x: keepbits_for(x.tolist()), TypeError, "data must be a numpy array"),
        (lambda x: combine_counts(), ValueError, "at least one counts"),
        (lambda x: combine_counts(bitinfo_counts(x), bitinfo_counts(x.astype(np.float64))),
         ValueError, "different float widths"),
        (lambda x: keepbits_from_counts(np.zeros((8, 2, 2), np.int64)), ValueError, "shape"),
        (lambda x: keepbits_from_counts(-bitinfo_counts(x)), ValueError, "non-negative"),
    ],
)
def test_bitinfo_bad_arguments(call, error, words):
    with pytest.raises(error, match=words):
        call(np.ones((3, 4), np.float32))


# --- threads -------------------------------------------------------------------------


def test_kernels_give_the_same_results_from_a_thread_pool():
    rng = np.random.default_rng(13)
    arrays = [(rng.standard_normal((64, 300)) * 10.0 ** rng.uniform(-3, 3)).astype(dtype)
              for dtype in ("float32", "float64") * 6]
    for a in arrays:
        a[0, :7] = [np.nan, np.inf, -np.inf, 0.0, -0.0, np.finfo(a.dtype).max, 1e-310]

    def work(a):
        return (bitround_encode(a, keepbits=6), quantize_encode(a, digits=3, method="granularbr"),
                bitinfo_counts(a, axis=0))

    serial = [work(a) for a in arrays]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(work, arrays * 3))
    for i, got in enumerate(threaded):
        want = serial[i % len(arrays)]
        assert same_bits(got[0], want[0]) and same_bits(got[1], want[1])
        assert np.array_equal(got[2], want[2])
