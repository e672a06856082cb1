"""compress/decompress on the local schedulers: every codec, chunkings, global targets."""

import math
import pickle

import dask
import dask.array as da
import imagecodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chunkpress
from chunkpress.graph import codecs, pipeline
from chunkpress.graph.compressed import CompressedArray

RNG = np.random.default_rng(20260823)


def smooth(shape, dtype="float32", seed=0):
    """A smooth field of range about 4 (a sum of separable waves) of ``shape``."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.float64)
    for k in range(3):
        term = 1.0
        for axis, n in enumerate(shape):
            f = rng.uniform(0.5, 3)
            wave = np.sin(2 * np.pi * f * np.linspace(0, 1, n) + k + axis)
            term = term * wave.reshape((-1,) + (1,) * (len(shape) - axis - 1))
        out = out + term
    return out.astype(dtype)


FIELD = smooth((40, 36, 30))
FIELD_NAN = FIELD.copy()
FIELD_NAN[3, 4, 5] = np.nan
FIELD_NAN[20, 0, :3] = np.inf

# codec, compress() arguments, the max error every value keeps (0: lossless; None: no bound)
CASES = [
    ("zfp", {"tolerance": 0.01}, 0.01),
    ("zfp", {"rate": 12}, None),
    ("zfp", {"precision": 14}, None),
    ("sperr", {"tolerance": 0.01}, 0.01),
    ("sperr", {"mode": "psnr", "quality": 70}, None),
    ("sperr", {"rate": 6}, None),
    ("sz3", {"tolerance": 0.01}, 0.01),
    ("lerc", {"tolerance": 0.01}, 0.01),
    ("lerc", {}, 0),
    ("szip", {}, 0),
    ("pcodec", {"level": 4}, 0),
    ("floatpred+zstd", {"level": 3}, 0),
    ("floatpred+zlib", {}, 0),
    ("zstd", {}, 0),
]
IDS = [f"{c}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, kw, _ in CASES]


def finite_error(x, y):
    f = np.isfinite(x)
    return float(np.max(np.abs(x[f].astype(np.float64) - y[f]), initial=0.0))


def same_bits(x, y):
    return np.array_equal(x.view(f"u{x.itemsize}"), y.view(f"u{y.itemsize}"))


def measured_psnr(x, y):
    f = np.isfinite(x)
    a, b = x[f].astype(np.float64), y[f].astype(np.float64)
    return 20 * math.log10(a.max() - a.min()) - 10 * math.log10(np.mean((a - b) ** 2))


@pytest.mark.parametrize("codec,kwargs,bound", CASES, ids=IDS)
@pytest.mark.parametrize("chunking", ["numpy", "dask-aligned", "dask-misaligned", "auto"])
def test_round_trip(codec, kwargs, bound, chunking):
    x = FIELD_NAN
    chunks = "auto"
    if chunking == "numpy":
        data, chunks = x, (16, 20, 30)
    elif chunking == "dask-aligned":
        data, chunks = da.from_array(x, chunks=(8, 12, 30)), (8, 12, 30)
    elif chunking == "dask-misaligned":
        data = da.from_array(x, chunks=(7, 13, 11))  # rechunked once, to aligned blocks
    else:
        data = x
    c = chunkpress.compress(data, codec, chunks=chunks, **kwargs)
    y = chunkpress.decompress(c)
    assert isinstance(y, da.Array) and y.shape == x.shape and y.dtype == x.dtype
    assert y.chunks == c.chunks
    assert codecs.get_codec(codec).align == 1 or all(
        e % 4 == 0 for axis in c.chunks for e in axis[:-1]
    )
    y = y.compute()
    assert same_bits(np.isfinite(x), np.isfinite(y))
    nonfinite = ~np.isfinite(x)
    assert same_bits(x[nonfinite], y[nonfinite])  # NaN and Inf kept exactly
    if bound == 0:
        assert same_bits(x, y)
    elif bound is not None:
        assert finite_error(x, y) <= bound
    assert 0 < c.nbytes == c.block_nbytes.sum() and c.ratio == pytest.approx(x.nbytes / c.nbytes)


@pytest.mark.parametrize("codec,kwargs,bound", CASES, ids=IDS)
def test_verify_figures_equal_a_direct_measurement(codec, kwargs, bound):
    x = FIELD_NAN
    c = chunkpress.compress(x, codec, chunks=(16, 24, 30), verify=True, **kwargs).persist()
    y = chunkpress.decompress(c).compute()
    assert c.max_error == finite_error(x, y)  # the same float64 differences, exactly
    expected = np.empty(c.numblocks)
    for index in np.ndindex(*c.numblocks):
        region = tuple(slice(sum(ch[:i]), sum(ch[: i + 1])) for ch, i in zip(c.chunks, index))
        expected[index] = finite_error(x[region], y[region])
    assert np.array_equal(c.block_max_error, expected)
    if bound == 0:
        assert c.max_error == 0 and c.psnr == math.inf
    else:
        assert c.psnr == pytest.approx(measured_psnr(x, y), rel=1e-9)
    assert c.corrected == 0 or bound  # only a tolerance corrects values
    text = repr(c)
    assert codec in text and "ratio" in text and "max error" in text and "corrected" in text


def test_tolerance_holds_for_every_value_and_counts_corrections():
    # LERC rounds its result to float32 and slips past a tolerance within a few ulps of the
    # values; the kernel stores those values exactly and the figures say how many
    x = (1000 + RNG.standard_normal((24, 24, 24)) * 1000).astype("float32")
    tolerance = 1e-4
    c = chunkpress.compress(x, "lerc", tolerance=tolerance, chunks=(8, 24, 24), verify=True)
    y = chunkpress.decompress(c).compute()
    assert finite_error(x, y) <= tolerance and c.max_error <= tolerance
    missed = 0  # what LERC alone leaves outside the bound, block by block
    for i in range(0, 24, 8):
        block = x[i:i + 8]
        raw = imagecodecs.lerc_decode(imagecodecs.lerc_encode(block, tolerance))
        missed += int(np.sum(np.abs(block.astype(np.float64) - raw) > tolerance))
    assert missed > 0 and c.corrected == missed
    assert f"{missed} values corrected" in repr(c)


def test_sperr_psnr_is_the_psnr_of_the_whole_array():
    # blocks of very different ranges: the same dB on every block would keep the quiet block
    # far too finely; a global target spends the error where the range is
    x = smooth((32, 32, 32), "float64")
    x[:16] *= 0.01
    for chunks in [(16, 32, 32), (8, 16, 32)]:
        c = chunkpress.compress(x, "sperr", mode="psnr", quality=60, chunks=chunks, verify=True)
        y = chunkpress.decompress(c).compute()
        assert measured_psnr(x, y) >= 60 - 1e-9
        assert c.psnr == pytest.approx(measured_psnr(x, y), rel=1e-9)
        assert measured_psnr(x, y) < 75  # not wasted on the quiet half


def test_fixed_rate_is_the_rate_overall():
    x = smooth((32, 32, 32))
    for chunks in [(8, 32, 32), (16, 16, 32), (32, 32, 32)]:
        c = chunkpress.compress(x, "zfp", rate=8, chunks=chunks)
        whole = len(imagecodecs.zfp_encode(x, 8, mode="r"))
        assert c.nbytes == pytest.approx(whole, rel=0.02)
        assert c.bits_per_value == pytest.approx(8, rel=0.02)


ZFP_TARGETS = [{"tolerance": 1e-3}, {"rate": 10}, {"precision": 16}]


@pytest.mark.parametrize("kwargs", ZFP_TARGETS, ids=["tolerance", "rate", "precision"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_zfp_chunk_invariance(kwargs, dtype):
    # any aligned chunking gives, bit for bit, what imagecodecs gives on the whole array
    x = smooth((44, 37, 23), dtype)
    (level, mode), = [(v, {"tolerance": "a", "rate": "r", "precision": "p"}[k])
                      for k, v in kwargs.items()]
    whole = imagecodecs.zfp_decode(imagecodecs.zfp_encode(x, level, mode=mode))
    for chunks in [(44, 37, 23), (8, 12, 23), (4, 4, 4), (12, 36, 20), ((20, 24), (16, 21), (23,))]:
        c = chunkpress.compress(x, "zfp", chunks=chunks, **kwargs)
        assert same_bits(chunkpress.decompress(c).compute(), whole), chunks
    c = chunkpress.compress(da.from_array(x, chunks=(9, 10, 11)), "zfp", **kwargs)
    assert same_bits(chunkpress.decompress(c).compute(), whole)


def test_zfp_chunk_invariance_in_4d_and_batches():
    x = smooth((6, 9, 10, 11))
    whole = imagecodecs.zfp_decode(imagecodecs.zfp_encode(x, 1e-3, mode="a"))
    c = chunkpress.compress(x, "zfp", tolerance=1e-3, chunks=(4, 8, 4, 11))
    assert same_bits(chunkpress.decompress(c).compute(), whole)
    # 5-D: a batch of 4-D blocks over the leading axis, each the whole-array round trip
    x5 = np.stack([x, 2 * x, -x])
    c = chunkpress.compress(x5, "zfp", tolerance=1e-3, chunks=(2, 4, 8, 4, 11), verify=True)
    y = chunkpress.decompress(c).compute()
    for i in range(3):
        expected = imagecodecs.zfp_decode(imagecodecs.zfp_encode(x5[i], 1e-3, mode="a"))
        assert same_bits(y[i], expected)
    assert c.max_error <= 1e-3


@pytest.mark.parametrize("codec,kwargs", [("sperr", {"tolerance": 1e-3}),
                                          ("sz3", {"tolerance": 1e-3}), ("pcodec", {})])
def test_more_dimensions_than_the_codec_takes_are_a_batch(codec, kwargs):
    x = smooth((3, 2, 8, 9, 10))
    c = chunkpress.compress(x, codec, chunks=(2, 1, 8, 9, 10), verify=True, **kwargs)
    y = chunkpress.decompress(c).compute()
    assert y.shape == x.shape and finite_error(x, y) <= kwargs.get("tolerance", 0)


@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0, 4)])
@pytest.mark.parametrize("codec,kwargs", [("zfp", {"tolerance": 0.1}), ("sz3", {"tolerance": 0.1}),
                                          ("pcodec", {}), ("floatpred+zstd", {})])
def test_zero_size_arrays_round_trip(shape, codec, kwargs):
    for data in (np.zeros(shape, "float32"), da.zeros(shape, dtype="float32")):
        c = chunkpress.compress(data, codec, verify=True, **kwargs)
        y = chunkpress.decompress(c).compute()
        assert y.shape == shape and y.dtype == np.float32


@pytest.mark.parametrize("codec,kwargs", [("zfp", {"tolerance": 0.1}), ("pcodec", {}),
                                          ("floatpred+zstd", {})])
def test_zero_dimensional_arrays_round_trip(codec, kwargs):
    c = chunkpress.compress(np.float32(2.5), codec, verify=True, **kwargs)
    y = chunkpress.decompress(c).compute()
    assert y.shape == () and abs(float(y) - 2.5) <= kwargs.get("tolerance", 0)


def test_integer_arrays_with_lossless_codecs():
    x = RNG.integers(-1000, 1000, (50, 40)).astype("int32")
    for codec in ("szip", "pcodec", "lerc", "zstd"):
        c = chunkpress.compress(x, codec, chunks=(16, 40), verify=True)
        assert np.array_equal(chunkpress.decompress(c).compute(), x) and c.max_error == 0


def test_lists_and_array_likes_are_accepted():
    c = chunkpress.compress([[1.0, 2.0], [3.0, 4.0]], "pcodec")
    assert chunkpress.decompress(c).compute().tolist() == [[1.0, 2.0], [3.0, 4.0]]


# --- fail fast -----------------------------------------------------------------------------


@pytest.mark.parametrize("data,codec,kwargs,match", [
    (FIELD, "nope", {}, "codec must be one of"),
    (FIELD, "zfp", {}, "exactly one of"),
    (FIELD, "zfp", {"tolerance": 0.1, "rate": 4}, "exactly one of"),
    (FIELD, "zfp", {"tolerance": -0.1}, "tolerance"),
    (FIELD, "zfp", {"tolerance": float("nan")}, "tolerance"),
    (FIELD, "zfp", {"precision": 100}, "precision"),
    (FIELD, "zfp", {"level": 3}, "level is not for this codec"),
    (FIELD, "sperr", {"mode": "psnr"}, "quality"),
    (FIELD, "sperr", {"mode": "fast", "quality": 3}, "mode must be one of"),
    (FIELD, "sperr", {"tolerance": 0.1, "mode": "psnr", "quality": 40}, "tolerance is for mode"),
    (FIELD, "sz3", {}, "tolerance"),
    (FIELD, "pcodec", {"level": 99}, "level"),
    (FIELD.astype("int32"), "zfp", {"tolerance": 0.1}, "dtype"),
    (FIELD.astype("int32"), "floatpred+zstd", {}, "dtype"),
    (FIELD.astype("complex64"), "pcodec", {}, "dtype"),
    (FIELD[0, 0], "sperr", {"tolerance": 0.1}, "dimensions"),
    (FIELD, "zfp", {"tolerance": 0.1, "chunks": (6, 36, 30)}, "multiple of 4"),
    (FIELD, "zfp", {"tolerance": 0.1, "chunks": ((20, 20), (18, 18), (30,))}, "multiple of 4"),
    (FIELD, "zfp", {"tolerance": 0.1, "verify": "yes"}, "verify"),
    (FIELD.astype("uint16"), "jetraw", {}, "jetraw"),
])
def test_bad_input_fails_when_compress_is_called(data, codec, kwargs, match):
    calls = []

    def no_task(*args, **kw):  # pragma: no cover - must never run
        calls.append(args)
        raise AssertionError("a task ran")

    lazy = da.from_array(data, chunks=-1).map_blocks(
        lambda b: (no_task(), b)[1], dtype=data.dtype, meta=np.empty((0,) * data.ndim, data.dtype))
    for source in (data, lazy):
        with pytest.raises((ValueError, TypeError), match=match):
            chunkpress.compress(source, codec, **kwargs)
    assert not calls


def test_misaligned_chunks_message_says_why_and_how():
    with pytest.raises(ValueError) as info:
        chunkpress.compress(FIELD, "zfp", tolerance=0.1, chunks=(6, 36, 30))
    text = str(info.value)
    assert "axis 0" in text and "extent 6" in text and "chunks=(8, 36, 30)" in text


def test_codec_errors_name_the_block():
    c = chunkpress.compress(FIELD, "zfp", tolerance=0.1, chunks=(16, 36, 30)).compute()
    graph = dict(c.__dask_graph__())
    key = (c.name, 1, 0, 0)
    node = graph[key]
    data = bytearray(node.value.data)
    data[len(data) // 2] ^= 0xFF
    damaged = node.value._replace(data=bytes(data))
    graph[key] = type(node)(key, damaged)
    from dask.highlevelgraph import HighLevelGraph
    blocks = da.Array(HighLevelGraph.from_collections(c.name, graph, ()), c.name, c.chunks,
                      meta=np.empty((0, 0, 0), object))
    broken = CompressedArray(blocks, c.dtype, c._codec, c.params)
    with pytest.raises(chunkpress.ZfpError, match=r"block \(1, 0, 0\): .*checksum"):
        chunkpress.decompress(broken).compute()


# --- the collection ------------------------------------------------------------------------


def test_same_call_same_graph():
    a = chunkpress.compress(FIELD, "zfp", tolerance=0.01)
    b = chunkpress.compress(FIELD, "zfp", tolerance=0.01)
    assert a.name == b.name and a.name.startswith("chunkpress-encode-")
    assert chunkpress.compress(FIELD, "zfp", tolerance=0.02).name != a.name
    assert chunkpress.compress(FIELD + 1, "zfp", tolerance=0.01).name != a.name
    assert chunkpress.decompress(a).name == chunkpress.decompress(b).name
    d = da.from_array(FIELD, chunks=(8, 36, 30))
    assert chunkpress.compress(d, "sz3", tolerance=0.1).name == \
        chunkpress.compress(d, "sz3", tolerance=0.1).name


def test_numpy_input_is_not_copied_into_the_graph():
    c = chunkpress.compress(FIELD, "zfp", tolerance=0.01, chunks=(8, 36, 30))
    graph = dict(c.__dask_graph__())
    views = [v for k, v in graph.items() if k[0].startswith("chunkpress-input-")]
    views = [getattr(v, "value", v) for v in views]
    assert len(views) == 5 and all(np.shares_memory(v, FIELD) for v in views)


def test_compute_persist_and_pickle():
    lazy = chunkpress.compress(FIELD, "zfp", tolerance=0.01, chunks=(8, 36, 30))
    assert "not computed yet" in repr(lazy)
    (done,) = dask.compute(lazy)
    persisted = lazy.persist()
    for c in (done, persisted):
        assert isinstance(c, CompressedArray) and c.name == lazy.name
        assert "not computed yet" not in repr(c)
        assert c.nbytes < FIELD.nbytes
        small = pickle.dumps(c)
        assert len(small) < c.nbytes + 4096  # the compressed bytes, nothing of the input
        back = pickle.loads(small)
        assert same_bits(chunkpress.decompress(back).compute(),
                         chunkpress.decompress(lazy).compute())
        assert back.block_nbytes.tolist() == c.block_nbytes.tolist()
    assert done.block_nbytes.shape == (5, 1, 1) and done.codec == "zfp"
    assert done.params == {"tolerance": 0.01} and done.max_error is None


def test_figures_of_a_lazy_array_compress_it_once():
    calls = []
    source = da.from_array(FIELD, chunks=(8, 36, 30)).map_blocks(
        lambda b: (calls.append(1), b)[1], dtype=FIELD.dtype, meta=np.empty((0, 0, 0), "f4"))
    c = chunkpress.compress(source, "zfp", tolerance=0.01)
    assert c.nbytes > 0 and c.ratio > 1 and len(calls) == 5
    assert repr(c).count("ratio") == 1
    chunkpress.decompress(c).compute()
    c.compute()
    assert len(calls) == 5  # the blocks were kept, nothing compressed twice


def test_repr_reads_like_a_dask_array():
    c = chunkpress.compress(FIELD, "sz3", tolerance=0.01, chunks=(8, 36, 30), verify=True)
    c = c.persist()
    text = repr(c)
    for part in ["sz3", "tolerance=0.01", "shape=(40, 36, 30)", "float32", "chunksize=(8, 36, 30)",
                 "blocks=5", "ratio", "max error", "<= 0.01", "PSNR", "corrected"]:
        assert part in text, part


def test_auto_chunks_are_aligned_for_the_scheduler(monkeypatch):
    monkeypatch.setattr(pipeline, "workers", lambda: 2)
    x = np.zeros((256, 64, 64), "float32")  # 4 MiB: 2 blocks of 2 MiB at least
    c = chunkpress.compress(x, "zfp", tolerance=0.1)
    assert len(c.chunks[0]) >= 2 and all(e % 4 == 0 for e in c.chunks[0][:-1])
    assert c.chunks[1:] == ((64,), (64,))  # contiguous slabs


def test_threaded_and_synchronous_runs_give_identical_bytes():
    c = chunkpress.compress(FIELD_NAN, "sz3", tolerance=0.01, chunks=(8, 36, 30))
    with dask.config.set(scheduler="sync"):
        a = c.compute()
    with dask.config.set(scheduler="threads", num_workers=2):
        b = c.compute()
    ga, gb = dict(a.__dask_graph__()), dict(b.__dask_graph__())
    assert all(ga[k].value.data == gb[k].value.data for k in ga)


def test_big_endian_and_fortran_ordered_input():
    x = smooth((20, 24, 28), "float64")
    for data in (x.astype(">f8"), np.asfortranarray(x), x[:, ::-1, :]):
        c = chunkpress.compress(data, "zfp", tolerance=1e-6, chunks=(8, 24, 28))
        y = chunkpress.decompress(c).compute()
        assert y.dtype == np.dtype("float64") and finite_error(np.asarray(data, "f8"), y) <= 1e-6


def test_unknown_chunk_sizes_are_refused():
    x = da.from_array(FIELD.reshape(-1), chunks=1000)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        chunkpress.compress(x[x > 0], "sz3", tolerance=0.1)


@st.composite
def aligned_chunkings(draw):
    shape = tuple(draw(st.lists(st.integers(1, 19), min_size=1, max_size=3)))
    chunks = []
    for extent in shape:
        pieces, left = [], extent
        while left:
            piece = min(left, 4 * draw(st.integers(1, 3)))
            pieces.append(piece)
            left -= piece
        chunks.append(tuple(pieces))
    return shape, tuple(chunks)


@settings(max_examples=25, deadline=None)
@given(aligned_chunkings(), st.sampled_from([{"tolerance": 1e-2}, {"rate": 9}]))
def test_zfp_chunk_invariance_for_any_aligned_chunking(shape_chunks, kwargs):
    shape, chunks = shape_chunks
    x = smooth(shape, "float64")
    (level, mode), = [(v, {"tolerance": "a", "rate": "r"}[k]) for k, v in kwargs.items()]
    whole = imagecodecs.zfp_decode(imagecodecs.zfp_encode(x, level, mode=mode))
    c = chunkpress.compress(da.from_array(x, chunks=chunks), "zfp", chunks=chunks, **kwargs)
    assert same_bits(chunkpress.decompress(c).compute(), whole)
