"""chunkpress.kernels.floatpred: bit-identical to imagecodecs, round trips, errors, threads."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from chunkpress.kernels._common import ChunkpressError
from chunkpress.kernels._numba import kernel
from chunkpress.kernels.floatpred import (
    _DECODERS,
    _ENCODERS,
    FLOATPRED,
    FloatpredError,
    floatpred_check,
    floatpred_decode,
    floatpred_encode,
)

import imagecodecs  # noqa: E402

DTYPES = ["float16", "float32", "float64"]
# even sides, so that imagecodecs accepts dist=2 along every axis
SHAPES = {1: (36,), 2: (6, 10), 3: (4, 4, 6), 4: (2, 4, 2, 6)}
LAYOUTS = ["C", "F", "strided", "big-endian"]
CASES = [
    (dtype, ndim, axis, dist, layout)
    for dtype in DTYPES
    for ndim in SHAPES
    for axis in range(-ndim, ndim)
    for dist in (1, 2)
    for layout in LAYOUTS
]


def field(shape, dtype, seed=0) -> np.ndarray:
    """Return a smooth field with noise, NaN, infinities, signed zeros and subnormals."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float64).sum(axis=0)
    values = (np.sin(grid / 3) * 100 + rng.normal(size=shape)).astype(dtype)
    tiny = np.finfo(dtype).smallest_subnormal
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, tiny, -3 * tiny], dtype)
    flat = values.reshape(-1)
    count = min(flat.size, specials.size)
    flat[rng.choice(flat.size, size=count, replace=False)] = specials[:count]
    return values


def unsigned(dtype) -> np.dtype:
    return np.dtype(np.dtype(dtype).str.replace("f", "u"))


def in_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """Return an array with the elements (the stored bytes of each) of ``a`` in ``layout``."""
    words = a.view(unsigned(a.dtype))  # copies of integers keep every NaN payload
    if layout == "F":
        return np.asfortranarray(words).view(a.dtype)
    if layout == "strided":
        big = np.zeros(tuple(2 * n for n in a.shape), words.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = words
        return view.view(a.dtype)
    if layout == "big-endian":
        return words.astype(words.dtype.newbyteorder(">")).view(a.dtype.newbyteorder(">"))
    return a


def big_endian_values(a: np.ndarray) -> np.ndarray:
    """Return ``a`` with the same values stored big-endian."""
    words = a.view(unsigned(a.dtype)).astype(unsigned(a.dtype).newbyteorder(">"))
    return words.view(a.dtype.newbyteorder(">"))


def reference_encode(x: np.ndarray, axis: int, dist: int) -> np.ndarray:
    """imagecodecs' stream; axes after ``axis`` merged when it is not one of the last two."""
    axis %= x.ndim
    if axis < x.ndim - 2:  # imagecodecs takes the last two axes only: merge the trailing ones
        x = np.reshape(x, x.shape[:axis] + (x.shape[axis], -1))
        axis = x.ndim - 2
    return imagecodecs.floatpred_encode(x, axis=axis, dist=dist)


def stored_bytes(a: np.ndarray) -> bytes:
    """Return the stored bytes of the elements of ``a`` in C order."""
    return np.ascontiguousarray(a.view(unsigned(a.dtype))).tobytes()


def native_bytes(a: np.ndarray) -> bytes:
    """Return the bytes of the values of ``a`` stored native-endian in C order."""
    native = unsigned(a.dtype).newbyteorder("=")
    return np.ascontiguousarray(a.view(unsigned(a.dtype)), dtype=native).tobytes()


@pytest.mark.parametrize("dtype, ndim, axis, dist, layout", CASES)
def test_bit_identical_to_imagecodecs(dtype, ndim, axis, dist, layout):
    values = field(SHAPES[ndim], dtype)
    x = big_endian_values(values) if layout == "big-endian" else in_layout(values, layout)
    expected = reference_encode(x, axis, dist)

    encoded = floatpred_encode(x, axis=axis, dist=dist)
    assert encoded.shape == x.shape and encoded.dtype == x.dtype
    assert stored_bytes(encoded) == stored_bytes(expected)

    stream = in_layout(encoded, "C" if layout == "big-endian" else layout)
    decoded = floatpred_decode(stream, axis=axis, dist=dist)
    assert decoded.shape == x.shape and decoded.dtype == x.dtype
    assert stored_bytes(decoded) == stored_bytes(x)
    if axis % ndim >= ndim - 2:  # imagecodecs decodes C-ordered streams on the last two axes
        theirs = imagecodecs.floatpred_decode(np.ascontiguousarray(encoded), axis=axis, dist=dist)
        assert stored_bytes(decoded) == stored_bytes(theirs)


def test_big_endian_gives_the_stream_of_native_values():
    values = field((5, 8), "float32")
    native = floatpred_encode(values)
    swapped = floatpred_encode(big_endian_values(values))
    assert swapped.dtype == np.dtype(">f4")
    assert swapped.tobytes() == native.tobytes()
    assert native_bytes(floatpred_decode(swapped)) == values.tobytes()


@pytest.mark.parametrize("shape, axis, dist", [((7,), -1, 2), ((3, 5), 0, 2), ((1, 9), 0, 2)])
def test_lengths_imagecodecs_refuses_still_round_trip(shape, axis, dist):
    # imagecodecs needs shape[axis] % dist == 0; the same definition continues here
    x = field(shape, "float64")
    decoded = floatpred_decode(floatpred_encode(x, axis=axis, dist=dist), axis=axis, dist=dist)
    assert decoded.tobytes() == x.tobytes()


def test_long_rows_and_long_distances_round_trip():
    # rows longer than a cache block and distances spanning several blocks
    x = field((4, 2, 2100), "float32", seed=3)
    for axis in range(-3, 3):
        for dist in (1, 2):
            encoded = floatpred_encode(x, axis=axis, dist=dist)
            assert encoded.tobytes() == reference_encode(x, axis, dist).tobytes()
            assert floatpred_decode(encoded, axis=axis, dist=dist).tobytes() == x.tobytes()


@st.composite
def float_arrays(draw):
    """Arrays of arbitrary bit patterns: every NaN payload, infinities, subnormals."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if draw(st.booleans()):
        dtype = dtype.newbyteorder(">")
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=7))
    words = draw(hnp.arrays(unsigned(dtype), shape))
    return words.view(dtype)


@settings(max_examples=300, deadline=None)
@given(x=float_arrays(), data=st.data())
def test_round_trip_keeps_every_bit(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1), label="axis")
    dist = data.draw(st.sampled_from([1, 2]), label="dist")
    encoded = floatpred_encode(x, axis=axis, dist=dist)
    decoded = floatpred_decode(encoded, axis=axis, dist=dist)
    assert decoded.dtype == x.dtype and decoded.shape == x.shape
    assert decoded.tobytes() == x.tobytes()
    if x.size and axis % x.ndim >= x.ndim - 2 and x.shape[axis] % dist == 0:
        expected = imagecodecs.floatpred_encode(x, axis=axis, dist=dist)
        assert encoded.tobytes() == expected.tobytes()


@pytest.mark.parametrize("shape", [(0,), (0, 0), (3, 0), (0, 3), (2, 0, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_size_round_trips(shape, dtype):
    x = np.zeros(shape, dtype)
    for axis in range(-len(shape), len(shape)):
        encoded = floatpred_encode(x, axis=axis)
        decoded = floatpred_decode(encoded, axis=axis)
        assert encoded.shape == decoded.shape == shape
        assert encoded.dtype == decoded.dtype == x.dtype


def test_zero_dimensional_is_a_clear_error():
    with pytest.raises(ValueError, match="data must have at least 1 dimension"):
        floatpred_encode(np.array(1.5, "f4"))
    with pytest.raises(ValueError, match="data must have at least 1 dimension"):
        floatpred_decode(np.zeros((), "f8"))


@pytest.mark.parametrize("codec", [floatpred_encode, floatpred_decode])
@pytest.mark.parametrize("layout", ["C", "F", "strided", "big-endian"])
def test_out_is_filled_and_returned(codec, layout):
    x = field((4, 6, 8), "float32", seed=1)
    expected = codec(x, axis=1)
    out = in_layout(np.zeros_like(x), layout)
    result = codec(x, axis=1, out=out)
    assert result is out
    if codec is floatpred_encode:  # a stream: the stored bytes of each element
        assert stored_bytes(out) == expected.tobytes()
    else:  # values, whatever the byte order of out
        assert native_bytes(out) == expected.tobytes()


@pytest.mark.parametrize("codec", [floatpred_encode, floatpred_decode])
def test_out_may_be_the_input(codec):
    x = field((5, 7), "float64", seed=2)
    expected = codec(x.copy(), axis=0, dist=2)
    result = codec(x, axis=0, dist=2, out=x)
    assert result is x
    assert x.tobytes() == expected.tobytes()


def test_read_only_and_unaligned_inputs_work():
    x = field((6, 5), "float32", seed=4)
    read_only = np.frombuffer(x.tobytes(), "f4").reshape(x.shape)
    assert floatpred_encode(read_only).tobytes() == floatpred_encode(x).tobytes()
    raw = np.zeros(x.nbytes + 1, np.uint8)
    unaligned = raw[1:].view("f4").reshape(x.shape)
    unaligned[...] = x
    assert floatpred_decode(floatpred_encode(unaligned)).tobytes() == x.tobytes()


@pytest.mark.parametrize("codec", [floatpred_encode, floatpred_decode])
@pytest.mark.parametrize(
    "out, error, message",
    [
        (np.zeros((4, 5), "f4"), ValueError, "out must have the shape and dtype of data"),
        (np.zeros(12, "f4"), ValueError, "out must have the shape and dtype of data"),
        (np.zeros((4, 3), "f8"), ValueError, "out must have the shape and dtype of data"),
        (np.zeros((4, 3), "i4"), ValueError, "out must have the shape and dtype of data"),
        (bytearray(48), TypeError, "out must be a numpy array"),
    ],
)
def test_bad_out_is_rejected(codec, out, error, message):
    with pytest.raises(error, match=message):
        codec(np.zeros((4, 3), "f4"), out=out)


@pytest.mark.parametrize("codec", [floatpred_encode, floatpred_decode])
def test_read_only_out_is_rejected(codec):
    out = np.zeros((4, 3), "f4")
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        codec(np.zeros((4, 3), "f4"), out=out)


@pytest.mark.parametrize("codec", [floatpred_encode, floatpred_decode])
@pytest.mark.parametrize(
    "data, kwargs, error, message",
    [
        ([1.0, 2.0], {}, TypeError, "data must be a numpy array"),
        (b"\x00" * 8, {}, TypeError, "data must be a numpy array"),
        (np.float32(1.0), {}, TypeError, "data must be a numpy array"),
        (np.zeros(4, "i4"), {}, ValueError, "data dtype must be float16, float32 or float64"),
        (np.zeros(4, "c8"), {}, ValueError, "data dtype must be float16, float32 or float64"),
        (np.zeros((2, 3), "f4"), {"axis": 2}, ValueError, r"axis must be in \[-2, 1\]"),
        (np.zeros((2, 3), "f4"), {"axis": -3}, ValueError, r"axis must be in \[-2, 1\]"),
        (np.zeros((2, 3), "f4"), {"axis": 1.0}, TypeError, "axis must be an integer"),
        (np.zeros(4, "f4"), {"dist": 0}, ValueError, "dist must be 1 or 2, got 0"),
        (np.zeros(4, "f4"), {"dist": 4}, ValueError, "dist must be 1 or 2, got 4"),
        (np.zeros(4, "f4"), {"dist": 2.0}, TypeError, "dist must be an integer, 1 or 2"),
    ],
)
def test_bad_arguments_name_the_argument(codec, data, kwargs, error, message):
    with pytest.raises(error, match=message):
        codec(data, **kwargs)


def test_module_face():
    assert FLOATPRED.available is True
    assert issubclass(FloatpredError, ChunkpressError)
    assert floatpred_check(floatpred_encode(field((3, 4), "float32"))) is None
    assert floatpred_check(b"anything") is None


def _ran_at_once(call, attempts=5, calls=32) -> bool:
    """Whether two threads, started together, were ever both inside ``calls`` calls of
    ``call(thread)`` at once.

    The switch interval is raised for the measurement: a thread holding the GIL then keeps it
    until it blocks, so calls that hold it cannot overlap at all, while calls that release it
    overlap as soon as the OS runs the second thread during the first's ~40 ms (one core is
    enough). No timing is asserted, only the order of the four instants."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    try:
        for _ in range(attempts):
            start = threading.Barrier(2)
            spans = [None, None]

            def run(i):
                start.wait()
                begin = time.perf_counter()
                for _ in range(calls):
                    call(i)
                spans[i] = (begin, time.perf_counter())

            threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if max(b for b, _ in spans) < min(e for _, e in spans):
                return True
        return False
    finally:
        sys.setswitchinterval(interval)


def test_kernels_run_in_two_threads_at_once():
    """Dask worker threads encode and decode blocks at the same time: two threads are inside
    the float32 encoder (and decoder) together; the same measurement of a GIL-holding build of
    the encoder sees them one after the other, so it can tell."""
    import numba

    values = np.random.default_rng(0).integers(0, 2**32, (16, 1 << 16), dtype=np.uint32)
    streams = [np.empty((16, 1 << 18), np.uint8) for _ in range(2)]
    decoded = [np.empty_like(values) for _ in range(2)]
    encode, decode = _ENCODERS[4], _DECODERS[4]
    assert _ran_at_once(lambda i: encode(values, 1, streams[i])), "encoder: one thread at a time"
    assert _ran_at_once(lambda i: decode(streams[0], 1, decoded[i])), (
        "decoder: one thread at a time")
    assert np.array_equal(decoded[0], values) and np.array_equal(decoded[1], values)
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        return  # no GIL to hold: the control below means nothing
    holding = numba.njit(list(encode.signatures), nogil=False, error_model="numpy")(
        encode.py_func)
    assert not _ran_at_once(lambda i: holding(values, 1, streams[i]), attempts=2)


def _add_one(values, out):
    for i in range(values.size):
        out[i] = values[i] + 1


def test_first_call_from_eight_threads_compiles_once():
    # dask worker threads may all hit a kernel before it is compiled
    add_one = kernel("void(float64[::1], float64[::1])")(_add_one)
    values = np.arange(100.0)
    outs = [np.zeros_like(values) for _ in range(8)]
    start = threading.Barrier(len(outs))

    def run(out):
        start.wait()
        add_one(values, out)
        return add_one.compile()

    with ThreadPoolExecutor(max_workers=len(outs)) as pool:
        dispatchers = list(pool.map(run, outs))
    assert all(d is dispatchers[0] for d in dispatchers)
    assert all(np.array_equal(out, values + 1) for out in outs)
    with pytest.raises(TypeError):  # undeclared types are refused, not compiled silently
        add_one(values.astype("f4"), outs[0].astype("f4"))


def test_eight_threads_give_the_bytes_of_one():
    jobs = [
        (field(shape, dtype, seed=i), axis, dist)
        for i, (shape, dtype, axis, dist) in enumerate(
            [
                ((64, 96), "float32", -1, 1),
                ((32, 16, 24), "float64", 0, 2),
                ((40, 50), "float16", 0, 1),
                ((8, 8, 8, 8), "float32", 1, 2),
                ((3000,), "float64", -1, 2),
                ((20, 30, 10), "float32", -2, 1),
                ((50, 60), "float64", 1, 1),
                ((10, 10, 30), "float16", 2, 2),
            ]
        )
    ]

    def run(job):
        x, axis, dist = job
        encoded = floatpred_encode(x, axis=axis, dist=dist)
        return encoded.tobytes(), floatpred_decode(encoded, axis=axis, dist=dist).tobytes()

    expected = [run(job) for job in jobs]
    start = threading.Barrier(len(jobs))

    def run_together(job):
        start.wait()
        return [run(job) for _ in range(20)]

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(run_together, jobs))
    for (x, _, _), want, got in zip(jobs, expected, results):
        assert want[1] == x.tobytes()
        assert all(result == want for result in got)
