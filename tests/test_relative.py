"""Pointwise-relative bounds (``rel_tolerance``): |x - y| <= r |x| on every finite value.

Every codec that takes it is found in the registry (``relative.codecs()``: the lossy array
codecs through the log transform, bit rounding by its keepbits), and each is held to the
bound on magnitudes from 1e-30 to 1e30 in one block, subnormals, the largest floats, zeros of
both signs, NaN and ±Inf, in float32 and float64, alone and with an absolute ``tolerance``; at
the kernel, through compress/decompress (verify=True certifies it), through a Zarr store
(chunkpress's reader and plain zarr), the accessor and the command.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct

import numpy as np
import pytest
import xarray as xr
import zarr
from hypothesis import HealthCheck, given, settings, strategies as st

import chunkpress
from chunkpress.cli import main
from chunkpress.demo import demo_dataset, ocean_field
from chunkpress.graph import codecs, measure
from chunkpress.kernels import chains, formats, registry, relative
from chunkpress.storage.codecs import zarr_codec

from common import FIXTURES, assert_nonfinite_kept, raw_bits

#: every codec that takes rel_tolerance, as the registry says
CODECS = relative.codecs()
FLOATS = (np.float32, np.float64)


def test_the_registry_names_every_lossy_codec():
    """The lossy array codecs bounded by a tolerance, and bit rounding, take rel_tolerance;
    the lossless ones do not (their error is 0 already)."""
    for d in registry.descriptors():
        if d.kind == "array" and d.available:
            assert (d.name in CODECS) == (not d.lossless and "tolerance" in d.param_names)
    assert {"zfp", "sz3", "sperr", "lerc", "bitround"} <= set(CODECS)


# --- the bound ------------------------------------------------------------------------------


def shape_for(chain, size=6):
    """A small block of a dimensionality the codec takes (2-D where it can)."""
    ndim = 2 if 2 in chain.ndims else chain.ndims[0]
    return {1: (size * 7,), 2: (size, 7), 3: (3, size, 4)}[ndim]


def assert_relative(x, y, r, t=None, what=""):
    """|x - y| <= r |x| (and <= t) on every finite cell, signs and zeros kept, NaN/Inf exact."""
    assert y.shape == x.shape and y.dtype == x.dtype, what
    assert_nonfinite_kept(x, y, what)
    finite = np.isfinite(x)
    a, b = x[finite].astype(np.float64), y[finite].astype(np.float64)
    limit = r * np.abs(a)
    if t is not None:
        limit = np.minimum(limit, t)
    outside = ~(np.abs(a - b) <= limit)
    assert not outside.any(), (
        f"{what}: {int(outside.sum())} of {a.size} values outside the bound, e.g. "
        f"{a[outside][:3]} -> {b[outside][:3]} (r={r}, t={t})")
    assert np.array_equal(np.signbit(x[finite]), np.signbit(y[finite])), f"{what}: a sign"
    assert np.all(b[a == 0] == 0), f"{what}: a zero is not zero"


def values(dtype):
    """Floats of every kind the bound must hold on, with a sign."""
    info = np.finfo(dtype)
    magnitude = st.floats(-30, 30).map(lambda e: 10.0 ** e)
    subnormal = st.floats(0, 1).map(lambda f: f * float(info.tiny))
    special = st.sampled_from([0.0, np.nan, np.inf, float(info.max), float(info.tiny),
                               float(info.smallest_subnormal), 1.0])
    return st.tuples(st.one_of(magnitude, magnitude, subnormal, special),
                     st.sampled_from([1.0, -1.0])).map(lambda v: v[0] * v[1])


def blocks(chain, dtype):
    shape = shape_for(chain)
    n = math.prod(shape)
    return st.lists(values(dtype), min_size=n, max_size=n).map(
        lambda v: np.array(v).astype(dtype).reshape(shape))


RELATIVE = st.one_of(st.sampled_from([0.5, 1e-1, 1e-3, 1e-5, 1e-7]), st.floats(1e-6, 0.9))
ABSOLUTE = st.one_of(st.none(), st.floats(-35, 35).map(lambda e: 10.0 ** e))


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", CODECS)
def test_bound_holds_on_any_values(name, dtype):
    """Property: random magnitudes (1e-30..1e30), signs, zeros, subnormals, the largest
    floats, NaN/±Inf, any r in (0, 1), with or without an absolute tolerance."""
    chain = chains.resolve(name)
    if np.dtype(dtype) not in chain.dtypes:
        pytest.skip(f"{name} takes no {np.dtype(dtype)}")

    @settings(max_examples=30, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(x=blocks(chain, dtype), r=RELATIVE, t=ABSOLUTE)
    def check(x, r, t):
        stream = chain.encode(x, rel_tolerance=r, **({} if t is None else {"tolerance": t}))
        y = chain.decode(stream, x.shape, x.dtype)
        assert_relative(x, y, r, t, f"{name} {x.dtype} r={r} t={t}")

    check()


def wide_block(shape, dtype, seed=0):
    """One block spanning 1e-30..1e30 with zeros, subnormals, the largest floats, NaN, ±Inf."""
    rng = np.random.default_rng(seed)
    x = (10.0 ** rng.uniform(-30, 30, shape) * rng.choice([-1.0, 1.0], shape)).astype(dtype)
    flat = x.reshape(-1)
    info = np.finfo(dtype)
    specials = [0.0, -0.0, np.nan, np.inf, -np.inf, info.max, -info.max, info.tiny,
                info.tiny / 3, -info.smallest_subnormal, 777 * info.smallest_subnormal]
    flat[: len(specials)] = np.array(specials, dtype)
    return x


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("t", [None, 1e-3, 1e20])
def test_bound_holds_on_sixty_decades_in_one_block(name, dtype, t):
    chain = chains.resolve(name)
    if np.dtype(dtype) not in chain.dtypes:
        pytest.skip(f"{name} takes no {np.dtype(dtype)}")
    x = wide_block(shape_for(chain, 24), dtype)
    stream = chain.encode(x, rel_tolerance=1e-3, **({} if t is None else {"tolerance": t}))
    assert_relative(x, chain.decode(stream, x.shape, x.dtype), 1e-3, t, name)


@pytest.mark.parametrize("name", [n for n in CODECS if relative.takes(registry.get(n))])
def test_stream_is_a_relative_frame_of_the_codec(name):
    """The transform is recorded in the stream: a frame of the codec with the relative flag,
    which the codec's own decoder reads."""
    d = registry.get(name)
    x = ocean_field((4, 32, 32))[0]
    stream = relative.relative_encode(x, name, rel_tolerance=1e-3)
    assert relative.relative_check(stream) and formats.frame_codec(stream) == name
    assert d.check(stream)
    assert_relative(x, d.decode(stream), 1e-3)
    assert_relative(x, relative.relative_decode(stream), 1e-3)
    # a stream without the transform is not taken for one
    assert not relative.relative_check(d.encode(np.nan_to_num(x), tolerance=0.01))


@pytest.mark.parametrize("name", CODECS)
def test_a_smooth_field_compresses(name):
    """The transform costs little: a sea-surface temperature field (float32, land missing)
    compresses at least 2x at r=1e-3 with every codec."""
    x = ocean_field((4, 64, 128))
    c = chunkpress.compress(x, name, rel_tolerance=1e-3, verify=True)
    assert c.ratio >= 2.0, f"{name}: ratio {c.ratio:.3g}"
    assert c.max_rel_error <= 1e-3
    assert_relative(x, chunkpress.decompress(c).compute(), 1e-3)


def test_bit_rounding_keeps_the_least_bits_within_the_bound():
    """bitround at rel_tolerance r keeps k bits with 2**-(k+1) <= r: 9 at 1e-3 (one fewer
    would leave 2**-9 ~ 2e-3), so a float32 field loses its last 14 bits; subnormals, whose
    error would be absolute, are kept exact."""
    x = ocean_field((2, 32, 32))[0]
    x[0, :4] = np.array([1e-40, -3e-42, 1e-45, 5e-39], np.float32)  # subnormals
    stream = chains.resolve("bitround").encode(x, rel_tolerance=1e-3)
    y = chains.resolve("bitround").decode(stream, x.shape, x.dtype)
    normal = np.isfinite(x) & (np.abs(x) >= np.finfo(np.float32).tiny)
    assert np.all(raw_bits(y)[normal] & 0x3FFF == 0)  # 23 - 9 bits dropped
    assert not np.all(raw_bits(y)[normal] & 0x7FFF == 0)  # and not one more
    assert np.array_equal(raw_bits(y)[0, :4], raw_bits(x)[0, :4])
    assert_relative(x, y, 1e-3)


# --- compress, verify -----------------------------------------------------------------------


@pytest.mark.parametrize("name", CODECS)
def test_compress_certifies_both_bounds(name):
    x = wide_block((16, 24, 24), np.float32)
    c = chunkpress.compress(x, name, rel_tolerance=1e-2, tolerance=1e10, verify=True,
                            chunks=(8, 24, 24) if name != "sperr" else "auto")
    assert c.params == {"rel_tolerance": 1e-2, "tolerance": 1e10}
    assert c.error_bound == 1e10 and c.relative_bound == 1e-2
    assert c.max_rel_error <= 1e-2 and c.max_error <= 1e10
    assert "max relative error" in repr(c)
    assert_relative(x, chunkpress.decompress(c).compute(), 1e-2, 1e10, name)


def test_relative_alone_claims_no_absolute_bound():
    c = chunkpress.compress(ocean_field((4, 16, 16)), "lerc", rel_tolerance=1e-3, verify=True)
    assert c.error_bound is None and c.relative_bound == 1e-3
    assert 0 < c.max_rel_error <= 1e-3


def test_verify_refuses_a_block_outside_the_relative_bound():
    """The certification is not the kernel's word: a decoded block off by more than r|x|
    somewhere is the codec's error, naming the value."""
    spec = codecs.get_codec("zfp")
    x = np.array([[1.0, -2.0, 0.0, 1e-30]], np.float32)
    fine = x * np.float32(1 + 1e-4)
    assert measure.measure(x, fine, b"", spec, None, 1e-3).max_rel_error <= 1e-3
    for bad in (x * np.float32(1.01), np.where(x == 0, np.float32(1e-38), x)):
        with pytest.raises(chunkpress.ZfpError, match="rel_tolerance"):
            measure.measure(x, bad, b"", spec, None, 1e-3)


def test_compress_runs_on_the_cluster(client):
    x = ocean_field((8, 64, 64))
    c = chunkpress.compress(x, "sz3", rel_tolerance=1e-3, verify=True, chunks=(4, 32, 32))
    c = c.persist()
    assert c.max_rel_error <= 1e-3
    assert_relative(x, chunkpress.decompress(c).compute(), 1e-3)


# --- bad arguments --------------------------------------------------------------------------


@pytest.mark.parametrize("value, error", [
    ("0.01", TypeError), (True, TypeError), ([0.01], TypeError), (0, ValueError),
    (-0.1, ValueError), (1, ValueError), (1.5, ValueError), (math.nan, ValueError),
    (math.inf, ValueError)])
def test_bad_rel_tolerance_is_refused_before_any_task(value, error):
    with pytest.raises(error, match="rel_tolerance"):
        chunkpress.compress(np.ones((8, 8), np.float32), "zfp", rel_tolerance=value)
    with pytest.raises(error, match="rel_tolerance"):
        zarr_codec("zfp", {"rel_tolerance": value})
    with pytest.raises(error, match="rel_tolerance"):
        relative.relative_encode(np.ones((8, 8), np.float32), "zfp", rel_tolerance=value)


@pytest.mark.parametrize("codec, extra, message", [
    ("zfp", {"rate": 8}, "rel_tolerance goes with tolerance alone"),
    ("sperr", {"mode": "psnr", "quality": 60}, "rel_tolerance goes with tolerance alone"),
    ("pcodec", {}, "does not take rel_tolerance"),
    ("floatpred+zstd", {}, "does not take rel_tolerance"),
    ("quantize", {}, "does not take rel_tolerance"),
    ("bitround", {"keepbits": 8}, "keepbits is chosen from rel_tolerance"),
    ("zfp", {"tolerance": -1.0}, "tolerance"),
])
def test_rel_tolerance_with_what_does_not_take_it_is_refused(codec, extra, message):
    with pytest.raises(ValueError, match=message):
        chunkpress.compress(np.ones((8, 8), np.float32), codec, rel_tolerance=1e-3, **extra)


def test_rel_tolerance_on_integers_is_refused():
    with pytest.raises(ValueError, match="rel_tolerance bounds float values"):
        chunkpress.compress(np.ones((8, 8), np.int16), "lerc", rel_tolerance=1e-3)


# --- the stored format ----------------------------------------------------------------------


def relative_fixtures():
    return json.loads((FIXTURES / "relative" / "manifest.json").read_text())["fixtures"]


@pytest.mark.parametrize("entry", relative_fixtures(), ids=lambda e: e["stream"])
def test_frozen_relative_streams_decode(entry):
    """Streams written once (tests/fixtures/relative) decode within their bounds for ever."""
    stream = (FIXTURES / "relative" / entry["stream"]).read_bytes()
    assert hashlib.sha256(stream).hexdigest() == entry["sha256"], "fixtures are never rewritten"
    assert relative.relative_check(stream)
    x = np.load(FIXTURES / "relative" / entry["original"])
    y = registry.get(entry["codec"]).decode(stream)
    assert_relative(x, y, entry["rel_tolerance"], entry["tolerance"], entry["stream"])


def test_every_relative_codec_has_a_frozen_stream():
    frozen = {e["codec"] for e in relative_fixtures()}
    assert {n for n in CODECS if relative.takes(registry.get(n))} <= frozen


def test_damaged_or_forged_relative_streams_are_errors():
    """A flipped bit fails the checksum; a forged frame (checksum recomputed) with bad
    transform parameters or sections is the codec's error, never wrong numbers."""
    x = ocean_field((4, 32, 32))[0]
    stream = bytearray(relative.relative_encode(x, "zfp", rel_tolerance=1e-3))
    damaged = bytearray(stream)
    damaged[len(damaged) // 2] ^= 0x10
    with pytest.raises(chunkpress.ZfpError, match="checksum"):
        chunkpress.zfp_decode(damaged)
    params_at = 12 + 8 * 2 + 2  # magic..dtype, two extents, the parameters' length
    for offset, value in ((0, 2), (4, 0), (4, 0x3FF00000)):  # transform 2; r = 0; r = 1
        forged = bytearray(stream)
        if offset == 0:
            forged[params_at] = value
        else:  # the high word of rel_tolerance
            struct.pack_into("<I", forged, params_at + offset + 4, value)
            struct.pack_into("<I", forged, params_at + offset, 0)
        forged[-4:] = struct.pack("<I", _crc(forged[:-4]))
        with pytest.raises(chunkpress.ZfpError, match="relative frame"):
            chunkpress.zfp_decode(forged)
    # the sign section cut short
    forged = bytearray(stream)
    signs = params_at + struct.unpack_from("<H", forged, params_at - 2)[0] + 8
    struct.pack_into("<Q", forged, signs, 10**9)
    forged[-4:] = struct.pack("<I", _crc(forged[:-4]))
    with pytest.raises(chunkpress.ZfpError, match="relative frame"):
        chunkpress.zfp_decode(forged)


def _crc(data) -> int:
    import google_crc32c

    return google_crc32c.value(bytes(data))


# --- Zarr, the accessor, the command --------------------------------------------------------


@pytest.mark.parametrize("name", CODECS)
def test_zarr_store_keeps_the_bound_for_every_reader_and_writer(tmp_path, name):
    """to_zarr, from_zarr and plain zarr; zarr writing a chunk on its own keeps the bound
    too: the codec's configuration carries rel_tolerance."""
    x = ocean_field((4, 48, 40))
    path = str(tmp_path / "a.zarr")
    chunkpress.to_zarr(x, path, codec=name, rel_tolerance=1e-3, verify=True,
                       chunks=(4, 16, 16) if name != "sperr" else "auto")
    document = json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())
    configuration = document["codecs"][0]["configuration"]
    assert configuration["rel_tolerance"] == 1e-3
    assert document["attributes"]["chunkpress_measured_max_rel_error"] <= 1e-3
    assert_relative(x, chunkpress.from_zarr(path).compute(), 1e-3)
    plain = zarr.open_array(path, mode="r+")
    assert_relative(x, plain[:], 1e-3)
    new = (x[:, :16, :16] * np.float32(1e-20)).astype(np.float32)  # other magnitudes
    plain[:, :16, :16] = new
    assert_relative(new, plain[:, :16, :16], 1e-3)
    info = chunkpress.info(path)
    assert info.loc["/", "rel_bound"] == 1e-3 and info.loc["/", "measured_rel_error"] <= 1e-3


def test_accessor_takes_rel_tolerance_per_variable(tmp_path):
    ds = demo_dataset((4, 32, 64))
    enc = ds.chunkpress.encode("sz3", rel_tolerance={"sst": 1e-3, "wind": 1e-2},
                               tolerance={"wind": 0.05}, verify=True)
    report = enc.report()
    assert report.loc["sst", "rel_bound"] == 1e-3 and report.loc["wind", "rel_bound"] == 1e-2
    assert report.loc["sst", "max_rel_error"] <= 1e-3
    assert report.loc["wind", "max_rel_error"] <= 1e-2 and report.loc["wind", "max_error"] <= 0.05
    enc.to_zarr(str(tmp_path / "ds.zarr"))
    back = xr.open_zarr(str(tmp_path / "ds.zarr")).load()
    assert_relative(ds.sst.values, back.sst.values, 1e-3)
    assert_relative(ds.wind.values, back.wind.values, 1e-2, 0.05)


def test_packed_float_variable_is_refused(tmp_path):
    ds = demo_dataset((2, 16, 16))[["wind"]]
    ds.wind.encoding = {"dtype": "float32", "scale_factor": 0.5}
    with pytest.raises(ValueError, match="packed"):
        ds.chunkpress.encode("zfp", rel_tolerance=1e-3)


def test_command_takes_rel_tolerance(tmp_path, capsys):
    ds = demo_dataset((4, 32, 64))
    source, out = tmp_path / "in.nc", tmp_path / "out.zarr"
    ds.to_netcdf(source)
    code = main(["compress", str(source), str(out), "--codec", "zfp", "--rel-tolerance",
                 "1e-3", "--rel-tolerance", "wind=0.01", "--tolerance", "wind=0.05",
                 "--verify", "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    variables = {v["name"]: v for v in json.loads(capsys.readouterr().out)["variables"]}
    assert variables["sst"]["rel_bound"] == 1e-3
    assert variables["sst"]["measured_rel_error"] <= 1e-3
    assert variables["wind"]["parameters"] == {"tolerance": 0.05, "rel_tolerance": 0.01}
    back = xr.open_zarr(str(out)).load()
    assert_relative(ds.sst.values, back.sst.values, 1e-3)
    assert_relative(ds.wind.values, back.wind.values, 1e-2, 0.05)
    with pytest.raises(SystemExit) as exit_:
        main(["compress", str(source), str(tmp_path / "x.zarr"), "--rel-tolerance", "1.5"])
    assert exit_.value.code == 2
    assert "rel_tolerance must be finite, > 0 and < 1" in capsys.readouterr().err


def test_auto_chooses_among_the_codecs_that_keep_a_relative_bound():
    rng = np.random.default_rng(2)
    x = (np.exp(rng.standard_normal((16, 64, 64)).cumsum(axis=2) * 0.3)
         * rng.choice([-1, 1], (16, 64, 64))).astype(np.float32)
    x[:, :8] = np.nan
    c = chunkpress.compress(x, "auto", rel_tolerance=1e-3, verify=True).persist()
    y = chunkpress.decompress(c).compute()
    finite = np.isfinite(x)
    assert np.array_equal(np.isnan(y), np.isnan(x))
    assert np.all(np.abs(y[finite] - x[finite]) <= 1e-3 * np.abs(x[finite]))
    assert c.choice.codec in relative.codecs() and c.max_rel_error <= 1e-3
