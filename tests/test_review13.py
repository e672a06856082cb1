"""Break-it review of issue 13 (bit rounding, quantization, rel_tolerance, portable stores):
each test is a defect a climate scientist met, held fixed.

Bounds are checked in exact rational arithmetic where float64 rounding could hide a breach
(r |x| of a subnormal float64 rounds to a multiple of 5e-324, up to twice r |x|).
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import xarray as xr

import chunkpress
from chunkpress.kernels import relative


def exact_relative_errors(x, y):
    """|x - y| / |x| of every finite nonzero cell, as exact fractions."""
    out = []
    for a, b in zip(x.reshape(-1).tolist(), y.reshape(-1).tolist()):
        if a != 0 and np.isfinite(a):
            out.append(abs(Fraction(a) - Fraction(b)) / abs(Fraction(a)))
    return out


# --- the relative bound on float64 subnormals ------------------------------------------------


@pytest.mark.parametrize("codec", [c for c in ("sperr", "lerc", "zfp", "sz3", "bitround")
                                   if c in relative.codecs()])
@pytest.mark.parametrize("rel", [1e-6, 1e-3])
def test_float64_subnormals_keep_the_relative_bound_exactly(codec, rel):
    """Before: values around 1e-318 came back with up to 1.7 r relative error (r |x| rounds
    up among subnormals), and verify=True reported max_rel_error above rel_tolerance."""
    rng = np.random.default_rng(0)
    magnitude = 10.0 ** rng.uniform(-323, -290, 4000)
    x = (magnitude * rng.choice([-1.0, 1.0], magnitude.size)).reshape(40, 100)
    c = chunkpress.compress(x, codec, rel_tolerance=rel, verify=True)
    y = np.asarray(chunkpress.decompress(c))
    assert np.array_equal(np.signbit(x), np.signbit(y))
    assert max(exact_relative_errors(x, y)) <= Fraction(rel)
    assert c.max_rel_error <= rel


# --- information= on noise ----------------------------------------------------------------


def test_information_on_a_noisy_wind_keeps_every_bit():
    """Before: a monthly wind anomaly of pure noise got keepbits=0 from information=0.99
    (one exponent bit passed the 99% test by chance): every value came back within 50%,
    where no evidence means no rounding."""
    x = (10 * np.random.default_rng(20).standard_normal((12, 45, 90))).astype("float32")
    c = chunkpress.compress(x, "bitround", information=0.99, chunks=(4, 45, 90))
    assert c.params["keepbits"] == 23
    assert np.array_equal(chunkpress.decompress(c).compute(), x)


def test_information_rounds_noise_rarely():
    """Sixty noise fields: a rounding on no evidence at most as often as the 99% confidence
    allows (before: 14 of 60 rounded, to anything from 0 to 21 bits)."""
    from chunkpress.graph.information import choose_keepbits
    from chunkpress.kernels import bitinfo

    rounded = 0
    for seed in range(60):
        x = (10 * np.random.default_rng(seed).standard_normal((12, 45, 90))).astype("float32")
        rounded += choose_keepbits([bitinfo.bitinfo_counts(x)], 0.99, x.dtype) != 23
    assert rounded <= 2


# --- updates of a portable store ------------------------------------------------------------


def _months(values, start):
    import pandas as pd
    import xarray as xr

    values = np.asarray(values, np.float32)
    time = pd.date_range("2000-01-01", periods=start + len(values), freq="MS")[start:]
    return xr.Dataset({"v": (("time", "x"), values)}, coords={"time": time})


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("bounds, new", [
    ({"tolerance": 0.01}, 1e37),  # through fixedscaleoffset's scale of 64: Inf
    ({"rel_tolerance": 1e-3}, 1e-42),  # a subnormal through 9 kept bits: 0
    ({"tolerance": 0.01, "rel_tolerance": 1e-3}, 9176.0),  # keepbits for amax 10: error 8
])
@pytest.mark.parametrize("how", ["append", "region"])
def test_an_update_of_a_portable_store_keeps_its_bound_or_writes_nothing(
        tmp_path, bounds, new, lazy, how):
    """Before: ds.chunkpress.to_zarr(append_dim=...) onto a portable store wrote the new
    months through the store's filters unchecked: 1e37 read back as Inf, 1e-42 as 0, 9176
    as 9184 under a tolerance of 0.01, and the store still claimed its bound."""
    import xarray as xr

    from chunkpress.storage.portable import PortableBoundError

    store = str(tmp_path / "p.zarr")
    first = _months(np.full((4, 8), 10.0), 0)
    first.chunk({"time": 2}).chunkpress.to_zarr(store, portable=True, **bounds)
    before = xr.open_zarr(store).v.values
    update = _months(np.full((2, 8), new), 4 if how == "append" else 2)
    update = update.chunk({"time": 1}) if lazy else update
    where = {"append_dim": "time"} if how == "append" else {"region": {"time": slice(2, 4)}}
    with pytest.raises(PortableBoundError, match="'v': portable .* write a new store"):
        update.chunkpress.to_zarr(store, **where)
    assert np.array_equal(xr.open_zarr(store).v.values, before)
    # values the bound holds on are written, and hold it (within the first write's binade)
    good = _months(np.full((2, 8), 11.0 + 1 / 3), 4 if how == "append" else 2)
    good.chunkpress.to_zarr(store, **where)
    got = xr.open_zarr(store).v.values[-2:] if how == "append" else \
        xr.open_zarr(store).v.values[2:4]
    error = np.abs(got.astype(np.float64) - np.float32(11.0 + 1 / 3))
    assert (error <= bounds.get("tolerance", np.inf)).all()
    assert (error <= bounds.get("rel_tolerance", np.inf) * 11.33).all()


@pytest.mark.parametrize("bad", ["0.001", True, [1e-3]])
def test_a_portable_rel_tolerance_of_the_wrong_type_is_called_relative(tmp_path, bad):
    """Before: to_zarr(portable=True, rel_tolerance="0.001") said rel_tolerance must be 'the
    max absolute error'."""
    with pytest.raises(TypeError, match="rel_tolerance must be a number in .* relative"):
        chunkpress.to_zarr(np.ones(8, np.float32), str(tmp_path / "p.zarr"), portable=True,
                           rel_tolerance=bad)
    assert not (tmp_path / "p.zarr").exists()


# --- the command ----------------------------------------------------------------------------


def test_the_command_takes_rel_tolerance_with_codec_auto(tmp_path, capsys):
    """Before: `chunkpress compress --codec auto --rel-tolerance 1e-3` was refused ('no
    variable's codec takes it (auto takes --tolerance)'), though compress(codec="auto",
    rel_tolerance=...) and the accessor take it."""
    import xarray as xr

    from chunkpress.cli import main
    from chunkpress.demo import demo_dataset

    ds = demo_dataset((4, 32, 64))
    source, out = tmp_path / "in.nc", tmp_path / "out.zarr"
    ds.to_netcdf(source, engine="h5netcdf")
    code = main(["compress", str(source), str(out), "--codec", "auto", "--rel-tolerance",
                 "1e-3", "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    back = xr.open_zarr(out)
    for name in ("sst", "wind"):  # (slp is packed, land int8: both kept exact)
        x, y = ds[name].values.astype(np.float64), back[name].values.astype(np.float64)
        finite = np.isfinite(x)
        assert np.array_equal(np.isnan(x), np.isnan(y))
        assert (np.abs(x - y)[finite] <= 1e-3 * np.abs(x[finite])).all(), name
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    variables = {v["name"]: v for v in json.loads(capsys.readouterr().out)["variables"]}
    assert variables["sst"]["rel_bound"] == variables["wind"]["rel_bound"] == 1e-3


# --- portable float16 -------------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", [0.01, 0.3, 1e10])
def test_a_portable_float16_pressure_keeps_an_absolute_tolerance(tmp_path, tolerance):
    """Before: surface pressure in hPa as float16 (land NaN) with tolerance=0.01 was refused
    ('values near the largest float'): 1000 over a step of 1/64 overflows float16, though
    the portable codecs keep it (there float16 is exact to 0.5 anyway); tolerance=1e10
    asked for bit rounding at keepbits=0, which turns NaN into Inf or -0.0."""
    import zarr

    rng = np.random.default_rng(0)
    x = (1000 + 30 * rng.standard_normal((24, 40))).astype(np.float16)
    x[:, :6] = np.nan
    chunkpress.to_zarr(x, str(tmp_path / "p.zarr"), portable=True, tolerance=tolerance)
    y = zarr.open_array(str(tmp_path / "p.zarr"), mode="r")[...]
    assert y.dtype == np.float16
    assert np.array_equal(np.isnan(x), np.isnan(y))
    finite = np.isfinite(x)
    assert np.isfinite(y[finite]).all()
    assert (np.abs(x[finite].astype(np.float64) - y[finite]) <= tolerance).all()


# --- what verify measures against what is claimed ----------------------------------------------


def test_bit_rounding_with_subnormals_measures_what_it_claims(tmp_path, capsys):
    """Before: keepbits=5 on a field with subnormals, verify=True, measured a relative error
    of 1.0 (a subnormal rounded to 0, whose error bit rounding bounds by 2**-6 times the
    smallest normal number, as it claims) and `chunkpress info` said the measured relative
    error 1 exceeds the claimed 0.01562. Measured and claimed are now the same quantity."""
    from chunkpress.cli import main

    x = np.array([1.0, 2.5, 3e-39, 1e-40, 7e-45, 12.0] * 10, np.float32)
    bound = 2.0**-6
    c = chunkpress.compress(x, "bitround", keepbits=5, verify=True)
    assert c.max_rel_error <= bound
    y = chunkpress.decompress(c).compute()
    tiny = float(np.finfo(np.float32).tiny)
    assert (np.abs(x.astype(float) - y) <= bound * np.maximum(np.abs(x), tiny)).all()
    store = tmp_path / "s.zarr"
    chunkpress.to_zarr(x, str(store), codec="bitround", keepbits=5, verify=True)
    attributes = json.loads((store / "zarr.json").read_text())["attributes"]
    assert attributes["chunkpress_measured_max_rel_error"] <= \
        attributes["chunkpress_rounding"]["relative_bound"] == bound
    capsys.readouterr()
    assert main(["info", str(store)]) == 0
    assert "exceeds" not in capsys.readouterr().out


def test_verify_refuses_a_float64_subnormal_over_the_relative_bound():
    """The certificate is exact where r |x| rounds among subnormals: a decoded value one
    unit off (5e-324 on 4.3e-318: 1.15e-6 relative) is over rel_tolerance=1e-6. Before, it
    was certified (the same rounding hid the kernel's breach fixed above)."""
    from chunkpress.graph import codecs, measure

    x = np.array([4.3e-318, 1.0, -2.0])
    over = x.copy()
    over[0] = np.nextafter(x[0], 1.0)
    assert Fraction(float(over[0])) - Fraction(float(x[0])) > Fraction(1e-6) * Fraction(x[0])
    codec = codecs.get_codec("sz3")
    with pytest.raises(codec.error, match="over the rel_tolerance"):
        measure.measure(x, over, b"", codec, None, 1e-6)
    within = x.copy()
    within[1] = 1.0 + 1e-7
    assert 0 < measure.measure(x, within, b"", codec, None, 1e-6).max_rel_error <= 1e-6


@pytest.mark.parametrize("codec, bounds, limit", [
    ("zfp", {"tolerance": 0.1}, 0.1), ("bitround", {"rel_tolerance": 1e-3}, 1e-3 * 400),
    ("bitround", {"keepbits": 5}, 2.0**-6 * 400), ("quantize", {"digits": 3}, 2.0**-11 * 400),
    ("zstd", {}, 0.0)])
def test_verify_takes_a_big_endian_field(tmp_path, codec, bounds, limit):
    """A GrADS binary read with np.fromfile(dtype=">f4"). Before: verify=True refused every
    block ('NaN/Inf cells do not decode exactly', 'a lossless block does not decode to its
    original values', bitround 'over the rel_tolerance'): it decoded the check in the
    input's byte order and compared bits across byte orders."""
    rng = np.random.default_rng(0)
    x = (280 + 10 * rng.standard_normal((24, 32))).astype(">f4")
    x[:, :4] = np.nan
    c = chunkpress.compress(x, codec, verify=True, **bounds)
    y = chunkpress.decompress(c).compute()
    assert np.array_equal(np.isnan(x), np.isnan(y))
    error = np.abs(y.astype(np.float64) - x.astype(np.float64))[np.isfinite(x)]
    assert c.max_error == error.max()
    assert error.max() <= limit  # (values under 400)
    chunkpress.to_zarr(x, str(tmp_path / "x.zarr"), codec=codec, verify=True, **bounds)
    assert np.array_equal(chunkpress.from_zarr(str(tmp_path / "x.zarr")).compute(), y,
                          equal_nan=True)


@pytest.mark.parametrize("bounds", [{"rel_tolerance": 1e-3}, {"tolerance": 0.01},
                                    {"tolerance": 0.01, "rel_tolerance": 1e-3}])
def test_a_big_endian_field_writes_portable(tmp_path, bounds):
    """Before: to_zarr(np.fromfile(..., ">f4"), portable=True) failed with numcodecs'
    KeyError '>f4' (its BitRound knows native types only), the dataset's write likewise."""
    import xarray as xr
    import zarr

    rng = np.random.default_rng(0)
    x = (280 + 10 * rng.standard_normal((20, 32))).astype(">f4")
    x[:, :4] = np.nan
    finite = np.isfinite(x)
    limit = np.minimum(bounds.get("tolerance", np.inf),
                       bounds.get("rel_tolerance", np.inf) * np.abs(x[finite].astype(float)))
    chunkpress.to_zarr(x, str(tmp_path / "a.zarr"), portable=True, **bounds)
    xr.Dataset({"v": (("y", "x"), x)}).chunkpress.to_zarr(str(tmp_path / "d.zarr"),
                                                          portable=True, **bounds)
    for y in (zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[...],
              xr.open_zarr(str(tmp_path / "d.zarr")).v.values):
        assert np.array_equal(np.isnan(x), np.isnan(y))
        assert (np.abs(y[finite].astype(float) - x[finite].astype(float)) <= limit).all()


# --- numpy scalars as parameters ------------------------------------------------------------


@pytest.mark.parametrize("codec, params", [
    ("bitround", {"keepbits": np.int64(5)}),  # as xbitinfo's get_keepbits gives it
    ("bitround+pcodec", {"keepbits": np.uint8(5), "level": np.int64(8)}),
    ("bitround", {"rel_tolerance": np.float32(1e-3)}),
    ("zfp", {"rel_tolerance": np.float32(1e-3), "tolerance": np.float16(0.1)}),
    ("sz3", {"tolerance": np.float32(0.1)}),
])
def test_numpy_scalars_as_parameters_write_a_store(tmp_path, codec, params):
    """Before: compress took keepbits=np.int64(5) but to_zarr failed writing zarr.json
    ('Object of type int64 is not JSON serializable'), the accessor's write too."""
    import xarray as xr

    x = (280 + 10 * np.random.default_rng(0).standard_normal((20, 32))).astype("f4")
    store = tmp_path / "x.zarr"
    chunkpress.to_zarr(x, str(store), codec=codec, **params)
    configuration = json.loads((store / "zarr.json").read_text())["codecs"][0]["configuration"]
    for name, value in params.items():
        assert configuration[name] == value.item()
    expected = chunkpress.decompress(chunkpress.compress(x, codec, **params)).compute()
    assert np.array_equal(chunkpress.from_zarr(str(store)).compute(), expected)
    ds = xr.Dataset({"t": (("y", "x"), x)})
    ds.chunkpress.to_zarr(str(tmp_path / "d.zarr"), codec=codec,
                          **{k: {"t": v} for k, v in params.items()})
    assert np.array_equal(xr.open_zarr(str(tmp_path / "d.zarr")).t.values, expected)


@pytest.mark.parametrize("flags, named", [(["--keepbits", "5"], "--keepbits"),
                                          (["--information", "0.99", "--rate", "4"],
                                           "--rate, --information"),
                                          (["--tolerance", "0.01", "--level", "3"], "--level")])
def test_the_command_says_what_portable_takes(tmp_path, capsys, flags, named):
    """Before: `--portable --keepbits 5` said 'no variable's codec takes it (zfp takes
    --tolerance, --rate, --precision, --rel-tolerance)': zfp has nothing to do with a
    portable store, and --rate is refused with --portable too."""
    from chunkpress.cli import main
    from chunkpress.demo import demo_dataset

    source, out = tmp_path / "in.nc", tmp_path / "out.zarr"
    demo_dataset((4, 16, 32)).to_netcdf(source, engine="h5netcdf")
    capsys.readouterr()
    assert main(["compress", str(source), str(out), "--portable", *flags]) == 1
    err = capsys.readouterr().err
    assert f"--portable takes --tolerance and --rel-tolerance only; drop {named}" in err
    assert "zfp" not in err and not out.exists()


@pytest.mark.parametrize("given", [{"tolerance": 0.001}, {"tolerance": 0.5},
                                   {"rel_tolerance": 1e-3}, {"codec": "zfp"},
                                   {"keepbits": 5}])
def test_an_update_of_a_portable_store_refuses_another_bound(tmp_path, given):
    """Before: an append onto a store written portable with tolerance=0.01 took
    tolerance=0.001 (or codec="zfp") without a word and wrote the new months within 0.01
    only; a chunkpress array refuses a parameter that is not the store's, naming both."""
    import xarray as xr

    store = str(tmp_path / "p.zarr")
    _months(np.full((4, 8), 10.0), 0).chunk({"time": 2}).chunkpress.to_zarr(
        store, portable=True, tolerance=0.01)
    before = xr.open_zarr(store).v.values
    with pytest.raises(ValueError, match=r"'v': the store's array is portable \(.*tolerance="
                                         r"0\.01\); given " + list(given)[0]):
        _months(np.full((2, 8), 11.0), 4).chunkpress.to_zarr(store, append_dim="time", **given)
    assert np.array_equal(xr.open_zarr(store).v.values, before)
    # the store's own bound, given or not, is taken
    _months(np.full((2, 8), 11.0), 4).chunkpress.to_zarr(store, append_dim="time",
                                                         tolerance=0.01)
    assert xr.open_zarr(store).sizes["time"] == 6


# --- settings for variables the write leaves out (lead, after the review) --------------------


def test_a_bound_for_a_variable_left_out_of_variables_is_refused(tmp_path):
    # tolerance={"u": ...} with variables=["sst"] wrote both exact without a word
    from chunkpress.demo import ocean_field

    ds = xr.Dataset({"sst": (("t", "y", "x"), ocean_field((2, 16, 32))),
                     "u": (("t", "y", "x"), ocean_field((2, 16, 32), seed=2))})
    for portable in (False, True):
        path = tmp_path / f"a{portable}.zarr"
        with pytest.raises(ValueError, match=r"tolerance names 'u', which is not among "
                                             r"variables=\['sst'\]"):
            ds.chunkpress.to_zarr(str(path), tolerance={"u": 0.01}, variables=["sst"],
                                  portable=portable)
        assert not path.exists()


def test_a_portable_bound_named_for_a_packed_variable_is_refused(tmp_path):
    # portable=True kept a packed int16 variable as stored while its bound was named for it;
    # the non-portable write refuses the same
    p = np.linspace(950, 1050, 2 * 16 * 32).reshape(2, 16, 32)
    ds = xr.Dataset({"p": (("t", "y", "x"), p), "q": (("t", "y", "x"), p.astype("f4"))})
    ds["p"].encoding.update(dtype="int16", scale_factor=0.01, add_offset=1000.0)
    source = tmp_path / "in.nc"
    ds.to_netcdf(source)
    opened = xr.open_dataset(source)
    path = tmp_path / "out.zarr"
    with pytest.raises(ValueError, match="variable 'p' is packed"):
        opened.chunkpress.to_zarr(str(path), tolerance={"p": 0.01, "q": 0.01}, portable=True)
    assert not path.exists()
    # a bound for every variable: the packed one is kept as stored, the others compressed
    opened.chunkpress.to_zarr(str(path), tolerance=0.01, portable=True)
    back = xr.open_zarr(path)
    np.testing.assert_array_equal(back["p"].values, opened["p"].values)
    assert np.max(np.abs(back["q"].values - opened["q"].values)) <= 0.01
