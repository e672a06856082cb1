"""Bit rounding and quantization above the kernels: compress, to_zarr, the accessor, the command.

keepbits given, or chosen from ``information=`` once per variable (per-block counts added up);
NaN/±Inf kept bit for bit to the store and back; the relative bound 2^-(keepbits+1) on every
finite value; what was chosen shown in the CompressedArray, report(), info and the store's
attributes; bad arguments refused before any task runs.
"""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

import chunkpress
from chunkpress.cli import main
from chunkpress.graph import information
from chunkpress.kernels import bitinfo
from chunkpress.kernels.bitround import bitround_encode

from common import raw_bits, with_nonfinite

ROUNDING = information.ATTRIBUTE


def field(shape=(24, 40, 64), seed=0, dtype="float32") -> np.ndarray:
    """A smooth field (a wave along each axis plus a random walk along the last) with noise
    at 1e-4: a few mantissa bits of real information, the rest noise."""
    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*(np.linspace(0, 3, n) for n in shape), indexing="ij")
    x = 280 + 10 * sum(np.sin(a * (i + 1)) for i, a in enumerate(axes))
    x = x + np.cumsum(rng.standard_normal(shape), axis=-1) * 0.05
    return (x + 1e-4 * rng.standard_normal(shape)).astype(dtype)


def relative_error(x, y) -> float:
    """max |x - y| / max(|x|, tiny) over the finite values (the bound's own form)."""
    finite = np.isfinite(x)
    a, b = x[finite].astype(np.float64), y[finite].astype(np.float64)
    if x.dtype == np.float64:  # exact: the difference of a float64 and its rounding is exact
        a, b = x[finite], y[finite]
    scale = np.maximum(np.abs(a), np.finfo(x.dtype).tiny)
    return float((np.abs(a - b) / scale).max(initial=0.0))


def assert_nonfinite_kept(x, y):
    bad = ~np.isfinite(x)
    assert bad.any()
    assert np.array_equal(raw_bits(x)[bad], raw_bits(y)[bad]), "NaN/Inf cells changed"
    assert np.isfinite(y[~bad]).all()


def counted(x, chunks):
    """A dask array of ``x`` that counts how often each of its blocks is read."""
    reads, lock = [], threading.Lock()

    def read(block, block_info=None):
        with lock:
            reads.append(tuple(block_info[0]["chunk-location"]))
        return block
    lazy = da.from_array(x, chunks=chunks).map_blocks(read, dtype=x.dtype,
                                                       meta=np.empty((0,) * x.ndim, x.dtype))
    return lazy, reads


# --- compress ------------------------------------------------------------------------------


@pytest.mark.parametrize("codec, params", [
    ("bitround", {"keepbits": 7}),
    ("bitround+pcodec", {"keepbits": 12}),
    ("bitround", {"information": 0.99}),
    ("quantize", {"digits": 3, "method": "granularbr"}),
    ("quantize+pcodec", {"digits": 4, "method": "bitgroom"}),
    ("quantize", {"digits": 9, "method": "bitround"}),
])
def test_nan_and_inf_kept_through_compress(codec, params):
    x = with_nonfinite(field((16, 20, 24)), seed=4)
    x[3, :5, :5] = np.nan  # a patch of land
    c = chunkpress.compress(x, codec, chunks=(8, 8, 8), **params)
    y = chunkpress.decompress(c).compute()
    assert y.dtype == x.dtype and y.shape == x.shape
    assert_nonfinite_kept(x, y)
    bound = c.relative_bound
    if bound is not None:
        assert relative_error(x, y) <= bound
    assert c.error_bound is None  # no absolute bound is claimed


@pytest.mark.parametrize("sharded", [False, True], ids=["plain", "sharded"])
@pytest.mark.parametrize("codec, params", [
    ("bitround", {"information": 0.99}),
    ("bitround+pcodec", {"keepbits": 5}),
    ("quantize", {"digits": 2, "method": "granularbr"}),
])
def test_nan_and_inf_kept_through_a_zarr_store(tmp_path, codec, params, sharded):
    x = with_nonfinite(field((12, 20, 30)), seed=5)  # 30: a ragged edge chunk along x
    store = str(tmp_path / "a.zarr")
    chunkpress.to_zarr(x, store, codec=codec, chunks=(4, 8, 8),
                       shards={"chunks": (2, 2, 2)} if sharded else None, **params)
    for y in (chunkpress.from_zarr(store).compute(), zarr.open_array(store, mode="r")[...]):
        assert_nonfinite_kept(x, y)
        attributes = zarr.open_array(store, mode="r").attrs[ROUNDING]
        if attributes["relative_bound"] is not None:
            assert relative_error(x, y) <= attributes["relative_bound"]


def test_keepbits_from_information_is_the_same_for_one_block_and_many():
    """The counts of blocks cut across other axes than the last add up to the whole array's,
    exactly; cut across the last too, the keepbits chosen is still the whole array's."""
    x = field((24, 40, 64))
    whole = bitinfo.bitinfo_counts(x)
    one = chunkpress.compress(x, "bitround", information=0.99, chunks=x.shape)
    expected = bitinfo.keepbits_from_counts(whole, information=0.99)
    assert one.params["keepbits"] == expected
    assert 0 < expected < 23  # a real choice, not a fallback
    cut = chunkpress.graph.pipeline.blocked(x, one.spec, (8, 10, 64))
    cells = information.counts_array(cut).compute()
    assert np.array_equal(bitinfo.combine_counts(*cells.flat), whole)
    for chunks in ((8, 10, 64), (4, 8, 16), (24, 40, 8)):
        many = chunkpress.compress(x, "bitround", information=0.99, chunks=chunks)
        assert many.numblocks != (1, 1, 1)
        assert many.params["keepbits"] == expected, chunks
        assert many.attributes[ROUNDING]["information"] == 0.99


def test_information_counts_once_then_rounds_every_block_alike():
    """One pass reads every block for the counts, the compression reads each once more; every
    block is rounded with the one keepbits (the decoded array is the whole array rounded)."""
    x = field((16, 24, 32))
    lazy, reads = counted(x, (4, 8, 32))
    c = chunkpress.compress(lazy, "bitround", information=0.9)
    blocks = int(np.prod(lazy.numblocks))
    assert len(reads) == blocks and len(set(reads)) == blocks  # the counts: each block once
    y = chunkpress.decompress(c).compute()
    assert len(reads) == 2 * blocks
    whole = bitround_encode(x, keepbits=c.params["keepbits"])
    assert np.array_equal(raw_bits(y), raw_bits(whole))


def test_information_on_the_threads_and_on_a_cluster(tmp_path, scheduler):
    """The counts are tasks like any other: a distributed cluster chooses the same keepbits and
    writes the same bytes."""
    x = with_nonfinite(field((16, 24, 32)), seed=6)
    store = str(tmp_path / "a.zarr")
    array = chunkpress.to_zarr(da.from_array(x, chunks=(4, 12, 32)), store, codec="bitround",
                               information=0.99)
    expected = chunkpress.compress(x, "bitround", information=0.99, chunks=(4, 12, 32))
    assert array.attrs[ROUNDING]["keepbits"] == expected.params["keepbits"]
    y = chunkpress.from_zarr(store).compute()
    assert np.array_equal(raw_bits(y), raw_bits(chunkpress.decompress(expected).compute()))


def test_nothing_significant_keeps_every_bit():
    """Noise (no bit tells a neighbour anything) or a constant: no rounding on no evidence."""
    rng = np.random.default_rng(3)
    for x in (rng.random((8, 64)).astype("float32"), np.full((8, 64), 3.7, "float64")):
        c = chunkpress.compress(x, "bitround", information=0.99)
        most = 23 if x.dtype == np.float32 else 52
        assert c.params["keepbits"] == most
        assert np.array_equal(chunkpress.decompress(c).compute(), x)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["float32", "float64"]),
       st.integers(0, 23))
def test_relative_bound_holds_on_every_finite_value(seed, dtype, keepbits):
    """Magnitudes over the whole exponent range, both signs, subnormals and zeros included:
    |x - y| <= 2^-(keepbits+1) * max(|x|, tiny) after compress and decompress."""
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    exponents = rng.uniform(np.log2(float(info.smallest_subnormal)), np.log2(float(info.max)),
                            (6, 50))
    x = (rng.choice([-1.0, 1.0], exponents.shape) * 2.0 ** exponents).astype(dtype)
    x.flat[::17] = 0.0
    x = with_nonfinite(x, seed=seed % 1000)
    c = chunkpress.compress(x, "bitround", keepbits=keepbits, chunks=(3, 25))
    y = chunkpress.decompress(c).compute()
    assert c.relative_bound == 2.0 ** -(keepbits + 1)
    assert relative_error(x, y) <= c.relative_bound
    assert_nonfinite_kept(x, y)
    assert np.array_equal(np.signbit(x[np.isfinite(x)]), np.signbit(y[np.isfinite(x)]))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["float32", "float64"]),
       st.sampled_from(["bitgroom", "bitround"]), st.integers(1, 52))
def test_quantize_relative_bound_holds_on_any_bit_pattern(seed, dtype, method, digits):
    """The bound quantize claims (BitGroom: 2^-(ceil(digits log2 10)+1); BitRound:
    2^-(digits+1)) holds on every finite value of arrays of random bit patterns."""
    most = {("bitgroom", "float32"): 6, ("bitgroom", "float64"): 15,
            ("bitround", "float32"): 23, ("bitround", "float64"): 52}[method, dtype]
    digits = 1 + digits % most
    word = np.dtype(dtype.replace("float", "uint"))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, np.iinfo(word).max, 400, dtype=word, endpoint=True).view(dtype)
    x = x.reshape(20, 20)
    c = chunkpress.compress(x, "quantize", digits=digits, method=method, chunks=(10, 20))
    y = chunkpress.decompress(c).compute()
    assert c.relative_bound is not None
    assert relative_error(x, y) <= c.relative_bound
    bad = ~np.isfinite(x)
    assert np.array_equal(raw_bits(x)[bad], raw_bits(y)[bad])


# --- what was chosen, where a user looks ---------------------------------------------------


def dataset() -> xr.Dataset:
    """sst with a land mask (NaN, written with a _FillValue), a noisy wind, time."""
    sst = field((6, 20, 32), seed=1)
    sst[:, 5:12, 8:20] = np.nan
    wind = np.random.default_rng(2).standard_normal((6, 20, 32)).astype("float32")
    ds = xr.Dataset({"sst": (("time", "lat", "lon"), sst),
                     "wind": (("time", "lat", "lon"), wind)},
                    coords={"time": np.arange(6), "lat": np.linspace(-60, 60, 20),
                            "lon": np.linspace(0, 350, 32)})
    ds["sst"].encoding["_FillValue"] = np.float32(-999.0)
    return ds


def test_report_info_and_attributes_show_what_was_chosen(tmp_path):
    ds = dataset()
    enc = ds.chunkpress.encode(codec={"sst": "bitround", "wind": "quantize"},
                               information={"sst": 0.99}, digits={"wind": 3},
                               method={"wind": "granularbr"})
    report = enc.report()
    keepbits = enc.arrays["sst"].params["keepbits"]
    assert keepbits == chunkpress.compress(ds.sst.values, "bitround",
                                           information=0.99).params["keepbits"]
    assert f"keepbits={keepbits}" in report.loc["sst", "parameters"]
    assert "information=0.99" in report.loc["sst", "parameters"]
    assert report.loc["sst", "rel_bound"] == 2.0 ** -(keepbits + 1)
    assert np.isnan(report.loc["sst", "error_bound"])  # no absolute bound claimed
    assert report.loc["wind", "parameters"] == "digits=3, method=granularbr"
    assert np.isnan(report.loc["wind", "error_bound"]) and np.isnan(report.loc["wind",
                                                                                 "rel_bound"])
    store = str(tmp_path / "ds.zarr")
    enc.to_zarr(store)
    info = chunkpress.info(store)
    assert info.loc["sst", "parameters"] == f"keepbits={keepbits}, information=0.99"
    assert info.loc["sst", "rel_bound"] == 2.0 ** -(keepbits + 1)
    assert np.isnan(info.loc["sst", "error_bound"])
    group = zarr.open_group(store, mode="r")
    assert group["sst"].attrs[ROUNDING] == {"keepbits": keepbits, "information": 0.99,
                                            "relative_bound": 2.0 ** -(keepbits + 1)}
    assert group["wind"].attrs[ROUNDING]["digits"] == 3
    back = xr.open_zarr(store)
    assert_nonfinite_kept(ds.sst.values, back.sst.values)
    assert relative_error(ds.sst.values, back.sst.values) <= 2.0 ** -(keepbits + 1)


def test_information_per_variable_is_each_variables_own():
    ds = dataset()
    enc = ds.chunkpress.encode(codec="bitround", information={"sst": 0.99, "wind": 0.5})
    for name, share in (("sst", 0.99), ("wind", 0.5)):
        alone = chunkpress.compress(ds[name].values, "bitround", information=share)
        assert enc.arrays[name].params["keepbits"] == alone.params["keepbits"]
    assert enc.arrays["sst"].params["keepbits"] != enc.arrays["wind"].params["keepbits"]


def test_quantize_through_to_zarr_and_the_accessor(tmp_path):
    ds = dataset()
    store = str(tmp_path / "q.zarr")
    ds.chunkpress.to_zarr(store, codec="quantize", digits=4, method="bitgroom")
    back = xr.open_zarr(store)
    bound = 2.0 ** -(np.ceil(4 * np.log2(10)) + 1)
    assert_nonfinite_kept(ds.sst.values, back.sst.values)
    for name in ("sst", "wind"):
        assert relative_error(ds[name].values, back[name].values) <= bound
    assert chunkpress.info(store).loc["wind", "rel_bound"] == bound


# --- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize("codec, params, error, words", [
    ("bitround", {"information": 0}, ValueError, r"information must be in \(0, 1\]"),
    ("bitround", {"information": 1.5}, ValueError, r"information must be in \(0, 1\]"),
    ("bitround", {"information": -0.1}, ValueError, r"information must be in \(0, 1\]"),
    ("bitround", {"information": float("nan")}, ValueError, r"information must be in"),
    ("bitround", {"information": "0.99"}, TypeError, r"information must be a number"),
    ("bitround", {"information": True}, TypeError, r"information must be a number"),
    ("bitround", {"information": 0.99, "keepbits": 5}, ValueError,
     r"keepbits or information, not both"),
    ("zfp", {"information": 0.99}, ValueError, r"zfp: information= chooses bit rounding"),
    ("auto", {"information": 0.99}, ValueError, r"information is not for this codec"),
    ("bitround", {}, ValueError, r"keepbits .* is required"),
    ("bitround", {"keepbits": 24}, ValueError, r"keepbits must be in 0\.\.23 for float32"),
    ("bitround", {"keepbits": 2.0}, TypeError, r"keepbits must be an integer"),
    ("bitround+pcodec", {"keepbits": 5, "level": 13}, ValueError, r"level must be"),
    ("quantize", {"digits": 7}, ValueError, r"digits must be in 1\.\.6 .*bitgroom on float32"),
    ("quantize", {"digits": 3, "method": "round"}, ValueError, r"method must be one of"),
    ("quantize", {"method": "bitround"}, ValueError, r"digits .* is required"),
    ("quantize", {"digits": 3, "keepbits": 4}, ValueError, r"keepbits is not for this codec"),
])
def test_bad_arguments_fail_before_any_task(codec, params, error, words):
    x = field((8, 16, 16))
    lazy, reads = counted(x, (4, 8, 16))
    for data in (x, lazy):
        with pytest.raises(error, match=words):
            chunkpress.compress(data, codec, **params)
    assert not reads


def test_bad_arguments_through_to_zarr_and_the_accessor(tmp_path):
    ds = dataset()
    with pytest.raises(ValueError, match=r"variable 'sst'.*information must be in"):
        ds.chunkpress.encode(codec="bitround", information={"sst": 2})
    with pytest.raises(KeyError, match="'salinity'"):
        ds.chunkpress.encode(codec="bitround", information={"salinity": 0.99})
    with pytest.raises(ValueError, match="keepbits or information, not both"):
        chunkpress.to_zarr(ds.sst.values, str(tmp_path / "a.zarr"), codec="bitround",
                           keepbits=3, information=0.9)
    assert not (tmp_path / "a.zarr").exists()


# --- the command --------------------------------------------------------------------------


def test_command_on_a_netcdf_with_a_land_mask(tmp_path, capsys):
    ds = dataset()
    source, out = tmp_path / "in.nc", tmp_path / "out.zarr"
    ds.to_netcdf(source)
    code = main(["compress", str(source), str(out), "--codec", "bitround", "--information",
                 "0.99", "--codec", "wind=quantize", "--digits", "wind=3", "--method",
                 "wind=granularbr", "--workers", "1"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    back = xr.open_zarr(out)
    original = xr.open_dataset(source)
    assert back.sst.encoding["_FillValue"] == -999.0
    assert_nonfinite_kept(original.sst.values, back.sst.values)  # the land mask, as NaN
    keepbits = zarr.open_group(str(out), mode="r")["sst"].attrs[ROUNDING]["keepbits"]
    assert relative_error(original.sst.values, back.sst.values) <= 2.0 ** -(keepbits + 1)
    assert f"keepbits={keepbits}" in printed.out.replace("\n", " ")
    assert main(["info", str(out), "--json"]) == 0
    import json

    shown = {v["name"]: v for v in json.loads(capsys.readouterr().out)["variables"]}
    assert shown["sst"]["parameters"] == {"keepbits": keepbits, "information": 0.99}
    assert shown["sst"]["rel_bound"] == 2.0 ** -(keepbits + 1)
    assert shown["sst"]["claimed_bound"] is None
    assert shown["wind"]["parameters"] == {"method": "granularbr", "digits": 3}


def test_command_with_keepbits(tmp_path, capsys):
    ds = dataset()
    source, out = tmp_path / "in.nc", tmp_path / "out.zarr"
    ds.to_netcdf(source)
    assert main(["compress", str(source), str(out), "--codec", "bitround+pcodec",
                 "--keepbits", "9", "--keepbits", "wind=4", "--workers", "1"]) == 0, \
        capsys.readouterr().err
    group = zarr.open_group(str(out), mode="r")
    assert group["sst"].attrs[ROUNDING]["keepbits"] == 9
    assert group["wind"].attrs[ROUNDING]["keepbits"] == 4
    back = xr.open_zarr(out)
    assert relative_error(ds.wind.values, back.wind.values) <= 2.0 ** -5


@pytest.mark.parametrize("argv, words", [
    (["--codec", "bitround", "--information", "1.5"], "information must be in"),
    (["--codec", "bitround", "--information", "x"], "must be a number, got 'x'"),
    (["--codec", "bitround", "--information", "0"], "must be finite and > 0"),
    (["--codec", "quantize", "--digits", "3", "--method", "round"], "must be one of bitgroom"),
])
def test_command_refuses_bad_values(tmp_path, capsys, argv, words):
    source = tmp_path / "in.nc"
    dataset().to_netcdf(source)
    with pytest.raises(SystemExit) as exit_:
        main(["compress", str(source), str(tmp_path / "out.zarr"), *argv])
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out.zarr").exists()


def test_verify_certifies_the_relative_bound_keepbits_claims():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((16, 32, 32)) * np.logspace(-30, 30, 32)).astype("float32")
    x[0, 0, :4] = np.nan
    for keepbits in (0, 3, 11):
        c = chunkpress.compress(x, "bitround", keepbits=keepbits, verify=True).persist()
        assert c.relative_bound == 2.0 ** -(keepbits + 1)
        assert 0 < c.max_rel_error <= c.relative_bound  # measured on every value, not claimed
