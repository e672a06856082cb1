"""Review 19 (break-it review of session 19's changes): what a user met, each test failing
on the code before its fix."""

import numpy as np
import pytest
import xarray as xr

import chunkpress  # noqa: F401 — registers the accessor


def _dataset():
    x = np.random.default_rng(19).normal(size=(4, 20, 30)).astype("f4")
    return xr.Dataset({"t": (("time", "y", "x"), x),
                       "i": (("time", "y", "x"), (x * 100).astype("i4"))})


@pytest.mark.parametrize("given", [
    dict(codec="zfp", tolerance={"t": 0.1, "i": 1}),
    dict(codec={"t": "zfp", "i": "pcodec"}, tolerance={"t": 0.1}),
])
def test_setting_for_a_variable_kept_exact_is_refused(tmp_path, given):
    """tolerance={"i": 1} (or codec={"i": "pcodec"}) on an int32 variable wrote it exact
    without a word, as variables= leaving it out did before 861fe7a; variables=["i"] and the
    command (--codec i=sz3) refuse it. Now a ValueError naming the variable and the setting,
    and nothing written."""
    ds = _dataset()
    key = "tolerance" if isinstance(given["codec"], str) else "codec"
    with pytest.raises(ValueError, match=rf"'i' is stored as int32.*drop it from {key}"):
        ds.chunkpress.to_zarr(tmp_path / "out.zarr", **given)
    assert not (tmp_path / "out.zarr").exists()
    # a setting of None for it says nothing: it is kept exact, as a variable left out is
    ds.chunkpress.to_zarr(tmp_path / "ok.zarr", tolerance={"t": 0.1, "i": None})
    back = xr.open_zarr(tmp_path / "ok.zarr")
    np.testing.assert_array_equal(back["i"].values, ds["i"].values)


def test_packed_integer_variable_named_in_a_dict_is_refused(tmp_path):
    """A variable packed to int16 (scale_factor) named in tolerance={...} was kept exact,
    silently, though the commit of 861fe7a said the non-portable write refuses it."""
    ds = _dataset()[["t"]]
    ds["pk"] = ds["t"].copy()
    ds["pk"].encoding.update(scale_factor=0.01, add_offset=0.0, dtype="i2")
    with pytest.raises(ValueError, match=r"'pk' is stored as int16.*drop it from tolerance"):
        ds.chunkpress.to_zarr(tmp_path / "out.zarr", tolerance={"t": 0.1, "pk": 0.1})
    assert not (tmp_path / "out.zarr").exists()


def test_accessor_to_zarr_names_itself_for_a_misspelt_parameter(tmp_path):
    """ds.chunkpress.to_zarr(store, tolerence=0.1) said "encode() got an unexpected keyword
    argument", a function the user did not call."""
    with pytest.raises(TypeError, match=r"^to_zarr\(\) got an unexpected keyword argument "
                                        r"'tolerence'"):
        _dataset().chunkpress.to_zarr(tmp_path / "out.zarr", tolerence=0.1)
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("values, stored", [("float64", "float32"), ("float32", "float64"),
                                            ("float32", "float16")])
def test_portable_refuses_an_encoding_dtype_other_than_the_values(tmp_path, values, stored):
    """portable=True on float64 values whose encoding stores float32 (or the reverse) wrote a
    store zarr could not read: a float64 fixedscaleoffset on float32 chunks ('cannot reshape
    array of size 2400'). Now a ValueError naming the variable and both dtypes, nothing
    written."""
    x = np.random.default_rng(1).normal(size=(8, 20, 30)) * 10 + 280
    ds = xr.Dataset({"t": (("time", "y", "x"), x.astype(values))})
    ds["t"].encoding["dtype"] = stored
    with pytest.raises(ValueError, match=rf"'t'.*stores it as {stored}, its values are {values}"):
        ds.chunkpress.to_zarr(tmp_path / "p.zarr", portable=True, tolerance=0.5)
    assert not (tmp_path / "p.zarr").exists()
    # as the error says: values of the stored dtype are written, and read back in the bound
    ds["t"] = ds["t"].astype(stored)
    ds.chunkpress.to_zarr(tmp_path / "p.zarr", portable=True, tolerance=0.5)
    back = xr.open_zarr(tmp_path / "p.zarr")["t"].values
    assert np.max(np.abs(back.astype("f8") - ds["t"].values.astype("f8"))) <= 0.5


@pytest.mark.parametrize("order", ["<", ">"])
def test_portable_with_a_big_endian_encoding_reads_back_its_values(tmp_path, order):
    """An encoding of '>f4' (set for values of a big-endian file) kept that dtype for
    the zarr array while numcodecs' filter was made for native float32: the store read back
    values far off the bound (max error inf at tolerance 0.01). Byte order is now the
    values' native one, as portable=True writes big-endian values."""
    x = (np.random.default_rng(2).normal(size=(8, 20, 30)) * 10 + 280).astype(order + "f4")
    ds = xr.Dataset({"t": (("time", "y", "x"), x)})
    ds["t"].encoding["dtype"] = ">f4"
    ds.chunkpress.to_zarr(tmp_path / "p.zarr", portable=True, tolerance=0.01)
    back = xr.open_zarr(tmp_path / "p.zarr")["t"].values
    assert np.max(np.abs(back.astype("f8") - x.astype("f8"))) <= 0.01


def _months(start, values):
    return xr.Dataset({"t": (("time", "y", "x"), values)},
                      coords={"time": np.arange(start, start + len(values))})


@pytest.mark.parametrize("written", [dict(tolerance=0.01), dict(portable=True, tolerance=0.01),
                                     dict(codec="sz3", rel_tolerance=1e-6)])
@pytest.mark.parametrize("value", [1e39, 1e8 + 0.5])
def test_float64_appended_to_a_float32_store_is_refused(tmp_path, written, value):
    """Appending float64 values to a float32 store cast them unchecked (xarray's cast, before
    the codec and its certificate): 1e39 was stored as Inf, 1e8 + 0.5 read back 1e8 (error
    0.5, the store claiming tolerance 0.01). Now a ValueError naming the variable and both
    dtypes, and the store as it was."""
    x = (np.random.default_rng(3).normal(size=(8, 20, 30)) * 10 + 280).astype("f4")
    store = tmp_path / "s.zarr"
    _months(0, x).chunkpress.to_zarr(store, **written)
    more = x.astype("f8")
    more[0, 10, 10] = value
    with pytest.raises(ValueError, match=r"'t': its values are float64, the store keeps float32"):
        _months(8, more).chunkpress.to_zarr(store, append_dim="time")
    back = xr.open_zarr(store)
    assert back.sizes["time"] == 8
    # as the error says: given as float32, the values appended read back within the bound
    _months(8, more.astype("f4")).chunkpress.to_zarr(store, append_dim="time")
    back = xr.open_zarr(store)["t"].values[8:].astype("f8")
    appended = more.astype("f4").astype("f8")
    if value > 1e38:  # beyond float32: Inf as the user's own cast makes it, not silently
        appended[0, 10, 10] = back[0, 10, 10] = 0.0
    err = np.abs(back - appended)
    bound = written.get("tolerance") or written["rel_tolerance"] * np.abs(appended)
    assert np.all(err <= bound)


def test_float64_values_with_a_float32_encoding_are_refused(tmp_path):
    """A float64 variable whose encoding says float32 was cast unchecked before compression:
    1e39 stored as Inf, the tolerance certified on the cast values only."""
    x = np.random.default_rng(4).normal(size=(8, 20, 30)) * 10 + 280
    x[0, 10, 10] = 1e39
    ds = _months(0, x)
    ds["t"].encoding["dtype"] = "float32"
    with pytest.raises(ValueError, match=r"'t': its values are float64, its encoding stores "
                                         r"float32"):
        ds.chunkpress.to_zarr(tmp_path / "s.zarr", tolerance=0.01)
    assert not (tmp_path / "s.zarr").exists()


def test_array_region_of_another_dtype(tmp_path):
    """chunkpress.to_zarr(x64, store, region=...) onto a float32 chunkpress array wrote float64
    ZFP streams into it: the region could no longer be read ('the stored stream holds float64
    values, the array is float32'), its old values gone. Now a ValueError, the store as it
    was; a dtype the array's holds exactly (float16 into float32) is cast and written."""
    import zarr

    x = (np.random.default_rng(5).normal(size=(8, 20, 30)) * 10 + 280).astype("f4")
    store = str(tmp_path / "a.zarr")
    chunkpress.to_zarr(x, store, tolerance=0.01, chunks=(4, 20, 30))
    region = (slice(0, 4), slice(None), slice(None))
    with pytest.raises(ValueError, match=r"dtype float64 for an array of float32"):
        chunkpress.to_zarr(x[:4].astype("f8") + 0.25, store, region=region)
    assert np.max(np.abs(zarr.open_array(store)[:] - x)) <= 0.01
    half = (x[:4] - 280).astype("f2")
    chunkpress.to_zarr(half, store, region=region)
    assert np.max(np.abs(zarr.open_array(store)[:4] - half.astype("f4"))) <= 0.01


def test_encoded_float64_dataset_appended_to_a_float32_store(tmp_path):
    """ds.chunkpress.encode(...).to_zarr(store, append_dim=...) with float64 values reused
    their blocks (codec, target and chunks the store's) and published float64 ZFP streams in
    the float32 array: reading the variable failed (ZfpError). Now refused as the values
    are, the store as it was."""
    x = (np.random.default_rng(6).normal(size=(8, 20, 30)) * 10 + 280).astype("f4")
    store = tmp_path / "s.zarr"
    _months(0, x).chunkpress.to_zarr(store, tolerance=0.01)
    encoded = _months(8, x.astype("f8")).chunkpress.encode("zfp", tolerance=0.01)
    with pytest.raises(ValueError, match=r"'t': its values are float64, the store keeps float32"):
        encoded.to_zarr(store, append_dim="time")
    back = xr.open_zarr(store)["t"].values
    assert back.shape == x.shape and np.max(np.abs(back - x)) <= 0.01


def test_append_with_the_information_the_store_was_written_with(tmp_path):
    """An append loop repeating the first write's arguments (codec="bitround",
    information=0.99) was refused: 'written with chunkpress.chain with keepbits=23; given
    information=0.99', though the store records that its keepbits came from that share. The
    same share is the store's (its keepbits); another is still refused."""
    x = np.random.default_rng(7).normal(size=(8, 20, 30)).astype("f4")
    store = tmp_path / "s.zarr"
    _months(0, x).chunkpress.to_zarr(store, codec="bitround", information=0.99)
    _months(8, x).chunkpress.to_zarr(store, append_dim="time", codec="bitround",
                                     information=0.99)
    back = xr.open_zarr(store)["t"].values
    kept = xr.open_zarr(store)["t"].attrs["chunkpress_rounding"]["keepbits"]
    assert back.shape == (16, 20, 30)
    assert np.all(np.abs(back[8:] - x) <= np.abs(x) * 2.0 ** -(kept + 1))
    with pytest.raises(ValueError, match=r"given information=0.5"):
        _months(16, x).chunkpress.to_zarr(store, append_dim="time", information=0.5)
