"""codec="auto": the choice keeps the bound, says what it chose and why, wins where it should,
mixes codecs per block where that pays, and its stores open anywhere chunkpress is installed."""

from __future__ import annotations

import doctest
import importlib.util
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr.codecs import Crc32cCodec

import chunkpress
from chunkpress import auto
from chunkpress.demo import ocean_field
from chunkpress.graph import codecs, dispatch, sample
from chunkpress.kernels import ChunkpressError, registry, relative, split_nonfinite
from chunkpress.storage.codecs import AutoCodec

from test_zarr import _installed_env

RNG = np.random.default_rng(6)
OCEAN = ocean_field((8, 64, 128))  # smooth, 30% land (NaN)


def steps_and_smooth():
    """Integer-valued noise (LERC's kind of data) on top of a smooth field (SZ3's), in blocks."""
    z, y, x = np.meshgrid(np.linspace(0, 1, 64), np.linspace(0, 1, 64), np.linspace(0, 1, 64),
                          indexing="ij")
    steps = np.round(RNG.standard_normal((64, 64, 64)) * 3)
    smooth = np.sin(6 * x + 3 * y) * np.cos(4 * z) * 10
    return np.concatenate([steps, smooth]).astype("float32")


MIXED = steps_and_smooth()
MIXED_CHUNKS = (32, 64, 64)


def finite_error(x, y):
    finite = np.isfinite(x)
    assert np.array_equal(np.isfinite(y), finite)
    assert np.array_equal(x[~finite], y[~finite], equal_nan=True)
    return float(np.max(np.abs(x[finite].astype(np.float64) - y[finite]), initial=0.0))


def single_ratios(x, tolerance, chunks="auto"):
    names = [c.name for c in sample.candidates(x.dtype, x.ndim, tolerance)]
    params = {} if tolerance is None else {"tolerance": tolerance}
    return {n: chunkpress.compress(x, n, chunks=chunks, **params).ratio for n in names}


def test_auto_keeps_the_bound_and_says_what_it_chose():
    c = chunkpress.compress(OCEAN, "auto", tolerance=0.05, verify=True)
    assert c.max_error <= 0.05
    assert finite_error(OCEAN, chunkpress.decompress(c).compute()) <= 0.05
    choice = c.choice
    assert set(choice.ratios) == {"zfp", "sz3", "sperr", "lerc"}  # every float candidate
    assert choice.codec == max(choice.ratios, key=choice.ratios.get)
    assert choice.params == {"tolerance": 0.05}
    assert c.codec in (choice.codec, "auto")
    assert choice.codec in choice.summary() and "sampled ratios" in choice.summary()
    assert "auto: " in repr(c)
    back = json.loads(auto.attribute(choice))
    assert back["codec"] == choice.codec and set(back["sampled_ratios"]) == set(choice.ratios)


@pytest.mark.parametrize("what", ["smooth", "steps"])
def test_auto_ratio_is_near_the_best_single_codec(what):
    x = MIXED[64:] if what == "smooth" else MIXED[:64]
    tolerance = 0.1
    ratios = single_ratios(x, tolerance)
    c = chunkpress.compress(x, "auto-array", tolerance=tolerance)
    assert c.choice.blocks is None and c.codec == c.choice.codec
    assert c.ratio >= 0.98 * max(ratios.values()), (c.choice.summary(), ratios)


def test_blocks_take_different_codecs_where_that_pays():
    c = chunkpress.compress(MIXED, "auto", tolerance=0.1, chunks=MIXED_CHUNKS, verify=True)
    assert c.codec == "auto"
    codecs = c.choice.codecs
    assert len(codecs) == 2 and sum(codecs.values()) == 4, c.choice.summary()
    # the noisy half and the smooth half each took their own codec
    assert c.choice.blocks[0, 0, 0] == c.choice.blocks[1, 0, 0]
    assert c.choice.blocks[2, 0, 0] == c.choice.blocks[3, 0, 0] != c.choice.blocks[0, 0, 0]
    assert c.max_error <= 0.1
    assert finite_error(MIXED, chunkpress.decompress(c).compute()) <= 0.1
    # better than any one codec over the whole array with the same blocks
    ratios = single_ratios(MIXED, 0.1, chunks=MIXED_CHUNKS)
    assert c.ratio > max(ratios.values()), (c.choice.summary(), ratios)
    # each stored block says its codec
    computed = c.compute()
    graph = dict(computed.__dask_graph__())
    for key in graph:
        encoded = getattr(graph[key], "value", graph[key])
        assert dispatch.identify(encoded.data, np.float32) == c.choice.blocks[key[1:]]


def test_the_choice_survives_persist_and_compute_and_the_graph_is_deterministic():
    c = chunkpress.compress(MIXED, "auto", tolerance=0.1, chunks=MIXED_CHUNKS)
    again = chunkpress.compress(MIXED, "auto", tolerance=0.1, chunks=MIXED_CHUNKS)
    assert again.name == c.name
    assert np.array_equal(again.choice.blocks, c.choice.blocks)
    persisted = c.persist()
    computed = c.compute()
    assert persisted.choice is c.choice and computed.choice is c.choice
    assert persisted.nbytes == computed.nbytes == c.nbytes


def test_lossless_for_integers_and_without_a_tolerance():
    counts = RNG.poisson(np.linspace(0, 40, 64 * 48 * 40)).astype("int16").reshape(64, 48, 40)
    c = chunkpress.compress(counts, "auto")
    assert c.choice.codec in ("pcodec", "szip", "lerc", "zstd")
    assert np.array_equal(chunkpress.decompress(c).compute(), counts)
    x = OCEAN.copy()
    x[0, 0, :3] = [np.inf, -np.inf, np.float32(np.nan) * -1]
    c = chunkpress.compress(x, "auto", chunks=(4, 64, 128))
    assert set(c.choice.ratios) == {"pcodec", "szip", "lerc", "floatpred+zstd"}
    y = chunkpress.decompress(c).compute()
    assert np.array_equal(y.view("u4"), x.view("u4"))  # every bit, NaN payloads too


def test_a_lossless_chain_never_takes_a_ragged_edge_block():
    # a chain's stream does not say its shape: zarr could not read a ragged edge from it
    x = np.cumsum(RNG.standard_normal((30, 50)), axis=1).astype("float32")
    c = chunkpress.compress(x, "auto", chunks=(8, 50))
    ragged = c.choice.blocks[-1, 0] if c.choice.blocks is not None else c.codec
    assert ragged != "floatpred+zstd"
    c = auto.compress(x, "auto-array", candidates=["floatpred+zstd"], chunks=(8, 50))
    assert c.choice.blocks[-1, 0] == "szip" and c.choice.blocks[0, 0] == "floatpred+zstd"
    assert np.array_equal(chunkpress.decompress(c).compute(), x)


def test_a_mixed_store_opens_in_a_new_process_without_importing_chunkpress(tmp_path):
    path = str(tmp_path / "mixed.zarr")
    chunkpress.to_zarr(MIXED, path, codec="auto", tolerance=0.1, chunks=MIXED_CHUNKS)
    out = str(tmp_path / "out.npy")
    script = textwrap.dedent(f"""
        import sys, numpy as np, zarr
        array = zarr.open_array({path!r}, mode="r")
        print(array.metadata.to_dict()["codecs"][0]["name"])
        np.save({out!r}, array[20:100, 3:60, :])
    """)
    result = subprocess.run([sys.executable, "-c", script], env=_installed_env(tmp_path),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "chunkpress.auto"
    assert finite_error(MIXED[20:100, 3:60, :], np.load(out)) <= 0.1
    back = chunkpress.from_zarr(path).compute()
    assert finite_error(MIXED, back) <= 0.1
    # the choice and the sampled ratios it was made by are in the store
    recorded = json.loads(zarr.open_array(path, mode="r").attrs[auto.ATTRIBUTE])
    assert recorded["codec"] in recorded["sampled_ratios"] and len(recorded["sampled_ratios"]) >= 2


def test_zarr_writing_chunks_itself_chooses_per_chunk(tmp_path):
    array = zarr.create_array(str(tmp_path / "z.zarr"), shape=MIXED.shape, chunks=MIXED_CHUNKS,
                              dtype="float32", serializer=AutoCodec(tolerance=0.1),
                              compressors=[Crc32cCodec()])
    array[:] = MIXED
    again = zarr.open_array(str(tmp_path / "z.zarr"), mode="r")
    assert again.serializer == AutoCodec(tolerance=0.1)
    assert finite_error(MIXED, again[:]) <= 0.1
    assert AutoCodec.from_dict(AutoCodec(candidates=["zfp", "sz3"]).to_dict()) == \
        AutoCodec(candidates=("zfp", "sz3"))


def test_a_damaged_auto_chunk_is_an_error_not_wrong_numbers(tmp_path):
    path = tmp_path / "mixed.zarr"
    chunkpress.to_zarr(MIXED, str(path), codec="auto", tolerance=0.1, chunks=MIXED_CHUNKS)
    chunk = next(p for p in path.rglob("*") if p.is_file() and p.parent.name == "0"
                 and p.name == "0")
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))
    with pytest.raises(ChunkpressError):
        chunkpress.from_zarr(str(path)).compute()
    with pytest.raises(codecs.AutoError, match="none of the streams"):
        dispatch.identify(b"\x00" * 64, np.float32)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"tolerance": -1}, ValueError, "tolerance must be finite and >= 0"),
    ({"tolerance": "0.1"}, TypeError, "tolerance must be a number"),
    ({"tolerance": 0.1, "rate": 8}, ValueError, "auto: takes tolerance; rate is not"),
    ({"tolerance": 0.1, "chunks": (6, 64, 128)}, ValueError, "multiples of 4"),
])
def test_bad_arguments_say_what_is_allowed(kwargs, error, words):
    with pytest.raises(error, match=words):
        chunkpress.compress(OCEAN, "auto", **kwargs)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"candidates": ["zfp", "nope"]}, ValueError, "codec must be one of"),
    ({"candidates": "zfp"}, TypeError, "list of codec names"),
    ({"candidates": ["zfp"], "tolerance": None}, ValueError, "zfp keeps a bound only with a "
                                                             "tolerance"),
    ({"candidates": ["floatpred+zlib"]}, ValueError, "one lossless chain"),
    ({"sample_fraction": 0}, ValueError, "sample_fraction must be a number in"),
    ({"codec": "automatic"}, ValueError, "'auto' .* or 'auto-array'"),
])
def test_bad_auto_options_say_what_is_allowed(kwargs, error, words):
    kwargs = {"tolerance": 0.1, **kwargs}
    with pytest.raises(error, match=words):
        auto.compress(OCEAN, **kwargs)


def test_candidates_restrict_the_choice():
    c = auto.compress(OCEAN, tolerance=0.05, candidates=["zfp", "lerc"])
    assert set(c.choice.ratios) == {"zfp", "lerc"} and c.codec in ("zfp", "lerc", "auto")
    assert finite_error(OCEAN, chunkpress.decompress(c).compute()) <= 0.05


def climatology():
    """The salinity climatology of benchmarks/auto.py at one degree, 20 standard depths, land
    as NaN from 38% at the surface to 84% at 5000 m: the shape and kind of the held-out field
    on which auto chose SZ3 where SPERR was smaller (its windows saw land filled from their
    own edges, and 16 of 20 levels)."""
    path = Path(__file__).parents[1] / "benchmarks" / "auto.py"
    spec = importlib.util.spec_from_file_location("benchmark_auto", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.salinity(180, 360)


@pytest.mark.parametrize("tolerance", [0.01, 0.05])
def test_auto_holds_on_a_land_heavy_climatology_of_few_levels(tolerance):
    x = climatology()
    ratios = single_ratios(x, tolerance)
    c = chunkpress.compress(x, "auto-array", tolerance=tolerance)
    assert c.ratio >= 0.98 * max(ratios.values()), (c.choice.summary(), ratios)


def test_auto_holds_where_small_windows_read_sz3_short():
    # a year of half-degree SST: SZ3's blocks are 3 months of whole maps, and its prediction
    # gains with the extent of the map (windows of 49K values read it 22% short, SPERR's
    # about right): auto chose SPERR, 0.93x the best. Refined on windows as large as SZ3 can
    # encode in SPERR's time, it holds.
    x = ocean_field((12, 360, 720))
    ratios = {n: chunkpress.compress(x, n, tolerance=0.01).ratio for n in ("sz3", "sperr")}
    c = chunkpress.compress(x, "auto-array", tolerance=0.01)
    assert c.ratio >= 0.98 * max(ratios.values()), (c.choice.summary(), ratios)


def red_field(rng, shape, land=0.0):
    """A smooth (red along every axis) float32 field, unit variance, with ``land`` of the
    last two axes' cells NaN on every level."""
    f = rng.normal(size=shape)
    for axis in range(len(shape)):
        f = np.cumsum(f, axis=axis)
        f -= f.mean(axis=axis, keepdims=True)
    f = (f / f.std()).astype("f4")
    if land:
        mask = red_field(rng, shape[1:])
        f[:, mask > np.quantile(mask, 1 - land)] = np.nan
    return f


def test_per_block_choice_does_not_trade_a_fast_winner_for_a_slow_codec_on_windows():
    # six levels, half land: each block's two windows read SZ3 20-30% short against SPERR,
    # and both blocks went to SPERR in SZ3's blocks: 0.93x the best single codec
    rng = np.random.default_rng(6)
    x = (red_field(rng, (6, 360, 720)) * np.linspace(3, .1, 6)[:, None, None]
         + np.linspace(0, 30, 6)[:, None, None]).astype("f4")
    x[:, red_field(rng, (360, 720)) > 0] = np.nan
    best = max(chunkpress.compress(x, n, tolerance=0.005).ratio for n in ("sz3", "sperr"))
    c = chunkpress.compress(x, "auto", tolerance=0.005)
    assert c.ratio >= 0.98 * best, c.choice.summary()


def test_a_fast_leader_settled_ahead_spares_the_slow_codecs_second_round():
    # two years of half-degree SST: SZ3 leads the first windows by 5% and encodes 6x faster
    # than SPERR; refining SPERR to confirm it would cost a third of SZ3's whole compression
    x = ocean_field((24, 360, 720))
    choice = auto.choose(x, "auto-array", tolerance=0.01)
    assert choice.codec == "sz3" and choice.ratios["sperr"] < 0.96 * choice.ratios["sz3"]
    assert choice.sampled < 0.05  # the first windows alone (a second round: 9.5%)
    ratios = {n: chunkpress.compress(x, n, tolerance=0.01).ratio for n in ("sz3", "sperr")}
    assert ratios["sz3"] == max(ratios.values()), ratios


def test_auto_takes_a_big_endian_field_with_land():
    # np.fromfile(..., ">f4") of a GrADS or Fortran file: the trials' fill read native floats
    # only ("Big-endian buffer not supported"); the choice is the native field's
    x = OCEAN.astype(">f4")
    c = chunkpress.compress(x, "auto", tolerance=0.01)
    native = auto.choose(OCEAN, "auto", tolerance=0.01)
    assert c.choice.codec == native.codec and c.choice.ratios == native.ratios
    y = chunkpress.decompress(c).compute()
    assert finite_error(x, y) <= 0.01


def test_a_window_is_filled_as_the_kernel_fills_its_block():
    block = np.ascontiguousarray(climatology()[:10, 40:136, :160])
    count = int(np.count_nonzero(~np.isfinite(block)))
    local = (slice(0, 10), slice(32, 64), slice(56, 104))
    for fill in {d.fill for d in registry.descriptors()} - {None}:
        window = sample.seen(block, local, fill)
        kernel = split_nonfinite(block, count, fill)[0][local]
        assert np.isfinite(window.values).all() and window.mask > 0
        if fill == "mean":  # exactly what the kernel encodes
            assert np.array_equal(window.values, kernel)
        else:  # bridged within the window and its extent again around it, not from its edges
            alone = split_nonfinite(np.ascontiguousarray(block[local]),
                                    int(np.count_nonzero(~np.isfinite(block[local]))), fill)[0]
            assert np.abs(window.values - kernel).mean() < 0.5 * np.abs(alone - kernel).mean()
    # the finite cells are the block's own
    finite = np.isfinite(block[local])
    assert np.array_equal(window.values[finite], block[local][finite])


def test_auto_under_a_relative_bound_chooses_among_the_codecs_that_take_it():
    x = OCEAN.copy()
    x[0, 0, :4] = [0.0, -0.0, 1e-30, -3e20]  # zeros kept, any magnitude
    c = auto.compress(x, "auto", rel_tolerance=1e-3, verify=True)
    relative_codecs = {codecs.get_codec(n).name for n in relative.codecs()}
    assert set(c.choice.ratios) == relative_codecs and "bitround+zstd" in relative_codecs
    assert c.choice.blocks is None and c.codec == c.choice.codec  # one codec for the array
    assert c.max_rel_error <= 1e-3
    y = chunkpress.decompress(c).compute()
    finite = np.isfinite(x)
    assert np.array_equal(np.isfinite(y), finite)
    assert np.all(np.abs(y[finite].astype(np.float64) - x[finite]) <= 1e-3 * np.abs(x[finite]))
    ratios = {n: chunkpress.compress(x, n, rel_tolerance=1e-3).ratio for n in relative.codecs()}
    assert c.ratio >= 0.98 * max(ratios.values()), (c.choice.summary(), ratios)
    with pytest.raises(ValueError, match="auto: rel_tolerance must be finite"):
        auto.compress(x, rel_tolerance=2.0)


def test_sampling_samples_a_small_share_of_a_large_array():
    x = np.broadcast_to(OCEAN[:1], (256, 64, 128))  # 2M values, sampled without copying
    choice = auto.choose(x, "auto-array", tolerance=0.05)
    assert choice.sampled < 0.1  # of the values, per candidate
    assert choice.seconds > 0 and all(v > 0 for v in choice.speeds.values())


def test_doctests():
    for module in (sample, auto):
        failures, tried = doctest.testmod(module)
        assert tried and not failures


chunkings = st.lists(st.lists(st.integers(1, 24), min_size=1, max_size=4), min_size=1,
                     max_size=3).map(lambda axes: tuple(tuple(a) for a in axes))


@settings(max_examples=100, deadline=None)
@given(chunks=chunkings, fraction=st.floats(0.001, 0.1))
def test_windows_lie_in_the_array_alike_and_in_their_blocks(chunks, fraction):
    shape = tuple(sum(c) for c in chunks)
    windows = sample.array_windows(chunks, fraction, min_window=64)
    assert windows and len({tuple(s.stop - s.start for s in w) for w in windows}) == 1
    for w in windows:
        assert all(0 <= s.start < s.stop <= n for s, n in zip(w, shape))
        half = sample.half_window(w)
        assert all(a.start <= b.start < b.stop <= a.stop for a, b in zip(w, half))
        assert 2 * math.prod(s.stop - s.start for s in half) <= \
            math.prod(s.stop - s.start for s in w) or math.prod(n.stop - n.start for n in w) == 1
    for index in np.ndindex(*(len(c) for c in chunks)):
        start = [sum(c[:j]) for c, j in zip(chunks, index)]
        stop = [a + c[j] for a, c, j in zip(start, chunks, index)]
        for w in sample.block_windows(chunks, index, fraction, min_window=64):
            assert all(a <= s.start < s.stop <= b for s, a, b in zip(w, start, stop))
