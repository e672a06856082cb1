"""Numbers a user meets: constant blocks, all-NaN and ±Inf blocks, subnormals, float values
near overflow, integer extremes; and every codec from 8 threads at once.

Each block round-trips within its bound (bit-exact for lossless modes, NaN payloads and ±Inf
kept); the few blocks a codec itself cannot take (MAY_REFUSE, each with its reason) may
instead be refused up front, with the codec's error naming the codec. The round trips
run in a child interpreter (common.run_isolated): a codec that crashes on a value fails the
test that found it.
"""

from __future__ import annotations

import dataclasses
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import chunkpress as cp
from common import CODECS, assert_all_ok, check_roundtrip, raw_bits, run_isolated, sample

SHAPES = {1: (37,), 2: (9, 7), 3: (5, 6, 7)}
FLOAT_CASES = ("constant", "all_nan", "inf", "nan_and_inf", "subnormal", "near_overflow",
               "overflow_and_tiny", "signed_zeros")
INT_CASES = ("constant", "extremes", "alternating_extremes")


def extreme(case, dtype, shape) -> np.ndarray:
    """A block of ``case`` values, the same for the same arguments."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    rng = np.random.default_rng(abs(hash((case, dtype.str, shape))) % 2**32)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if case == "constant":
            values = np.full(n, info.max, dtype)
        elif case == "extremes":
            values = rng.choice(np.array([info.min, info.max, 0, 1, info.max - 1], dtype), n)
        else:
            values = np.where(np.arange(n) % 2, info.min, info.max).astype(dtype)
        return values.reshape(shape)
    info = np.finfo(dtype)
    if case == "constant":
        values = np.full(n, -1234.5678)
    elif case == "all_nan":
        values = np.full(n, np.nan)
    elif case == "inf":
        values = np.where(np.arange(n) % 3, np.inf, -np.inf)
    elif case == "nan_and_inf":
        values = rng.choice(np.array([np.nan, np.inf, -np.inf]), n)
    elif case == "subnormal":
        values = rng.integers(-1000, 1000, n) * float(info.smallest_subnormal)
    elif case == "near_overflow":
        values = float(info.max) * rng.uniform(0.5, 1.0, n) * rng.choice([-1, 1], n)
    elif case == "overflow_and_tiny":
        values = rng.choice(np.array([float(info.max), -float(info.max), 1e-30, -2.5, 0.0]), n)
    else:
        values = np.where(np.arange(n) % 2, 0.0, -0.0)
    return np.asarray(values, dtype).reshape(shape)


def _cases():
    cases = []
    for codec in CODECS.values():
        ndim = 2 if 2 in codec.ndims else codec.ndims[0]
        for dtype in codec.dtypes:
            kinds = FLOAT_CASES if np.dtype(dtype).kind == "f" else INT_CASES
            if np.dtype(dtype).kind != "f" and np.dtype(dtype).itemsize < 4:
                continue  # the widest integers carry the extremes
            for mode in codec.modes(dtype):
                for case in kinds:
                    cases.append([codec.name, mode.label, dtype, case, list(SHAPES[ndim])])
    return cases


#: (codec, mode, dtype, case) -> why the encoder may refuse that block; every other block must
#: round-trip. libsperr itself (imagecodecs.sperr_encode alike) returns 'other error' from
#: sperr_comp_2d in its PSNR and rate modes on a block of float64 subnormals (|x| < 5e-321);
#: chunkpress passes that on as SperrError.
MAY_REFUSE = {
    ("sperr", "psnr", "float64", "subnormal"): "libsperr refuses: PSNR mode, float64 subnormals",
    ("sperr", "rate", "float64", "subnormal"): "libsperr refuses: rate mode, float64 subnormals",
}


def check_extreme(codec_name, mode_label, dtype, case, shape):
    """Round trip within the bound; only the MAY_REFUSE blocks may be refused, by the codec's
    error or a ValueError whose message names the codec."""
    codec = CODECS[codec_name]
    mode = next(m for m in codec.modes(dtype) if m.label == mode_label)
    array = extreme(case, dtype, tuple(shape))
    what = f"{codec_name} {mode_label} {dtype} {case}"
    try:
        codec.encode(array, **mode.params)
    except (ValueError, cp.ChunkpressError) as exc:
        assert (codec_name, mode_label, dtype, case) in MAY_REFUSE, (
            f"{what}: refused a block it must encode: {type(exc).__name__}: {exc}")
        assert isinstance(exc, (codec.error, ValueError)), (
            f"{what}: refused with {type(exc).__name__}, not {codec.error.__name__}")
        assert str(exc).startswith(f"{codec_name}:"), f"{what}: refused without saying why: {exc}"
        return
    if mode.tolerance is None:  # no bound promised: shape, dtype, NaN/Inf kept, finite finite
        mode = dataclasses.replace(mode, check=None)
    check_roundtrip(codec, array, mode, what)


def test_refusals_allowed_are_cases_that_run():
    """Each block allowed a refusal is one the battery encodes (no stale entry hides a gap)."""
    cases = {(name, mode, dtype, case) for name, mode, dtype, case, _ in _cases()}
    assert set(MAY_REFUSE) <= cases


def test_extreme_values_round_trip_or_are_refused():
    """Every codec, mode and dtype: constant, all-NaN, ±Inf, subnormal, near-overflow and
    integer-extreme blocks keep their bound (exact where lossless); only MAY_REFUSE's blocks
    may be refused up front, with the codec's error naming it."""
    cases = _cases()
    results = run_isolated("check_extreme", cases, module="test_extremes", max_crashes=5,
                           max_failures=100)
    assert_all_ok(cases, results, show=30)


# --- threads --------------------------------------------------------------------------------


def _thread_tasks():
    """(encode, decode, block) for every codec and mode, floats and integers, and floatpred."""
    tasks = []
    for codec in CODECS.values():
        ndim = 3 if 3 in codec.ndims else codec.ndims[-1]
        for dtype in codec.dtypes:
            if dtype not in ("float32", "float64", "int16", "uint32", "int64"):
                continue
            for mode in codec.modes(dtype):
                for block in range(3):
                    array = sample((12, 10, 9)[:ndim] if ndim <= 3 else (3, 5, 4, 6), dtype,
                                   ("smooth", "noisy", "smooth")[block], seed=block)
                    if block == 2 and array.dtype.kind == "f":
                        array = array.copy()
                        array[1, ::3] = np.nan  # the frame and mask path too
                    tasks.append((lambda a, c=codec, m=mode: c.encode(a, **m.params),
                                  codec.decode, array, f"{codec} {mode} {dtype}"))
    for dtype in ("float16", "float32", "float64"):
        for axis in (0, -1):
            array = sample((64, 48), dtype, "smooth", seed=axis + 1)
            tasks.append((lambda a, axis=axis: cp.floatpred_encode(a, axis=axis, dist=2),
                          lambda p, axis=axis: cp.floatpred_decode(p, axis=axis, dist=2),
                          array, f"floatpred {dtype} axis={axis}"))
    return tasks


def test_threads_match_one_thread_every_codec_and_dtype():
    """8 threads encoding and decoding different blocks of every codec, mode and several
    dtypes at once, floatpred (numba) included: the same bytes and values as one thread."""
    tasks = _thread_tasks()

    def run(task):
        encode, decode, array, _ = task
        stream = encode(array)
        decoded = decode(stream)
        return bytes(np.ascontiguousarray(stream).view(np.uint8)) if isinstance(
            stream, np.ndarray) else bytes(stream), raw_bits(decoded).tobytes()

    expected = [run(task) for task in tasks]
    order = list(range(len(tasks))) * 4
    random.Random(1).shuffle(order)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: (i, run(tasks[i])), order))
    for i, (stream, values) in results:
        what = tasks[i][3]
        assert stream == expected[i][0], f"{what}: bytes differ from one thread"
        assert values == expected[i][1], f"{what}: values differ from one thread"


@pytest.mark.parametrize("codec", ["zfp", "sperr", "sz3", "lerc"])
def test_threads_decode_one_stream_at_once(codec):
    """8 threads decoding the same stream at once (a cache hit by many tasks) agree."""
    array = sample((24, 20, 18), "float64", "smooth")
    stream = bytes(getattr(cp, f"{codec}_encode")(array, tolerance=1e-3))
    expected = raw_bits(getattr(cp, f"{codec}_decode")(stream)).tobytes()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: raw_bits(getattr(cp, f"{codec}_decode")(stream)).tobytes(),
                            range(32)))
    assert all(g == expected for g in got)
