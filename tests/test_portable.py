"""Stores anyone can open: the numcodecs filters chosen for a bound keep it, or say they can't."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkpress.storage import portable

FLOATS = ["float32", "float64"]


def magnitudes(dtype, size, seed):
    """Values of random signs spanning the dtype's finite range, zeros and subnormals."""
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    exponents = rng.uniform(math.log10(info.smallest_subnormal), math.log10(info.max) - 1, size)
    values = (10.0 ** exponents * rng.choice([-1.0, 1.0], size)).astype(dtype)
    values[rng.random(size) < 0.05] = 0
    return values


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(FLOATS),
       rel=st.floats(1e-12, 0.4))
def test_bit_rounding_keeps_the_relative_bound_on_any_magnitude(seed, dtype, rel):
    values = magnitudes(dtype, 2000, seed)
    amin = float(np.abs(values[values != 0]).min())
    chosen = portable.choose(dtype, rel_tolerance=rel, amin=amin)
    back = portable.apply(values, chosen)
    a, b = values.astype(np.float64), back.astype(np.float64)
    assert np.all(np.abs(a - b) <= rel * np.abs(a))  # zeros stay zero, signs kept
    assert np.array_equal(np.signbit(a[a != 0]), np.signbit(b[a != 0]))
    portable.certify(values, chosen)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(FLOATS),
       tolerance=st.floats(1e-6, 10.0), scale=st.floats(1e-3, 1e4))
def test_scaling_keeps_the_absolute_bound_and_nan(seed, dtype, tolerance, scale):
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal((40, 50)) * scale).astype(dtype)
    values[rng.random(values.shape) < 0.3] = np.nan  # land
    chosen = portable.choose(dtype, tolerance=tolerance)
    assert "fixedscaleoffset" in chosen.description
    back = portable.apply(values, chosen)
    assert np.array_equal(np.isnan(back), np.isnan(values))
    finite = ~np.isnan(values)
    assert np.max(np.abs(back[finite].astype(float) - values[finite])) <= tolerance
    assert portable.certify(values, chosen)[0] <= tolerance


def test_both_bounds_together_hold_together():
    values = magnitudes("float32", 5000, 1)
    values = values[np.abs(values) < 1e6]
    amax = float(np.abs(values).max())
    amin = float(np.abs(values[values != 0]).min())
    chosen = portable.choose("float32", tolerance=0.01, rel_tolerance=1e-2, amax=amax, amin=amin)
    max_abs, max_rel = portable.certify(values, chosen)
    assert max_abs <= 0.01 and max_rel <= 1e-2


def test_the_coarsest_step_that_keeps_the_bound_is_chosen():
    for tolerance in (0.5, 0.01, 1e-3, 3e-7, 40.0):
        step = portable.scale_step(tolerance)
        assert step / 2 <= tolerance < step and math.log2(step).is_integer()


def test_what_the_filters_cannot_keep_is_an_error_naming_it():
    near_max = np.array([np.finfo("float32").max, 1.0], "float32")
    with pytest.raises(portable.PortableBoundError, match="largest float"):
        portable.certify(near_max, portable.choose("float32", rel_tolerance=0.1))
    if np.dtype(np.longdouble).itemsize > 8:
        with pytest.raises(portable.PortableBoundError, match="float16, float32 and float64"):
            portable.choose(np.longdouble, tolerance=0.1)
    with pytest.raises(ValueError, match="amax"):
        portable.choose("float32", tolerance=0.1, rel_tolerance=0.1)


def test_exact_variables_get_no_filter():
    chosen = portable.choose("int16", tolerance=0.5)
    assert chosen.filters == () and portable.certify(np.arange(10, dtype="int16"), chosen) == \
        (0.0, 0.0)


# --- stores anyone can open -------------------------------------------------------------

#: a child that cannot import chunkpress: what a colleague without it has
NO_CHUNKPRESS = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "chunkpress" or name.startswith("chunkpress."):
            raise ImportError("chunkpress is not installed here")
sys.meta_path.insert(0, Refuse())
try:
    import chunkpress
except ImportError:
    pass
else:
    raise SystemExit("chunkpress imported")
import json, warnings
warnings.simplefilter("ignore")
import numpy as np, xarray as xr, zarr
"""


def read_without_chunkpress(code: str, *args) -> str:
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", NO_CHUNKPRESS + code, *map(str, args)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    return child.stdout


def ocean(shape=(6, 40, 80)):
    import xarray as xr

    from chunkpress.demo import demo_dataset

    return demo_dataset(shape)


def test_a_portable_dataset_opens_with_xarray_where_chunkpress_cannot_be_imported(tmp_path):
    import xarray as xr

    ds = ocean()
    store = tmp_path / "portable.zarr"
    ds.chunkpress.to_zarr(store, tolerance={"sst": 0.01}, rel_tolerance={"wind": 1e-3},
                          portable=True)
    np.save(tmp_path / "sst.npy", ds.sst.values)
    np.save(tmp_path / "wind.npy", ds.wind.values)
    out = read_without_chunkpress("""
ds = xr.open_zarr(sys.argv[1])
sst, wind = np.load(sys.argv[2]), np.load(sys.argv[3])
a, b = ds.sst.values, ds.wind.values
print(json.dumps({"sst": float(np.nanmax(np.abs(a - sst))),
                  "nan_kept": bool(np.array_equal(np.isnan(a), np.isnan(sst))),
                  "wind_rel": float(np.nanmax(np.abs(b - wind) / np.abs(wind))),
                  "slp_exact": bool(np.array_equal(ds.slp.values, np.asarray(ds.slp.values))),
                  "codecs": [c["name"] for c in json.load(open(sys.argv[1] + "/sst/zarr.json"))["codecs"]]}))
""", store, tmp_path / "sst.npy", tmp_path / "wind.npy")
    import json

    got = json.loads(out)
    assert got["sst"] <= 0.01 and got["nan_kept"] and got["wind_rel"] <= 1e-3
    assert all(not name.startswith("chunkpress") for name in got["codecs"])
    from xarray.conventions import encode_cf_variable

    with xr.open_zarr(store, decode_cf=False) as back:  # packed int16: kept as stored
        assert back.slp.dtype == np.int16
        assert np.array_equal(back.slp.values, encode_cf_variable(ds.slp.variable).values)
    with xr.open_zarr(store) as back:
        assert back.sst.attrs["chunkpress_portable"]["tolerance"] == 0.01


def test_a_portable_array_opens_with_zarr_alone(tmp_path):
    import chunkpress
    from chunkpress.demo import ocean_field

    x = ocean_field((4, 64, 128))
    store = tmp_path / "a.zarr"
    chunkpress.to_zarr(x, store, tolerance=0.05, portable=True, chunks=(2, 32, 64))
    np.save(tmp_path / "x.npy", x)
    out = read_without_chunkpress("""
a = zarr.open_array(sys.argv[1], mode="r")[:]
x = np.load(sys.argv[2])
print(float(np.nanmax(np.abs(a - x))), bool(np.array_equal(np.isnan(a), np.isnan(x))))
""", store, tmp_path / "x.npy")
    error, nan_kept = out.split()
    assert float(error) <= 0.05 and nan_kept == "True"


def test_a_bound_the_portable_codecs_cannot_keep_writes_nothing_and_says_so(tmp_path):
    import chunkpress

    x = np.ones((8, 8), "float32")
    x[3, 3] = np.finfo("float32").max  # bit rounding would take it past the largest float
    store = tmp_path / "a.zarr"
    with pytest.raises(portable.PortableBoundError, match="without portable=True"):
        chunkpress.to_zarr(x, store, rel_tolerance=0.1, portable=True, chunks=(4, 4))
    assert not store.exists()
    old = tmp_path / "old.zarr"
    chunkpress.to_zarr(np.zeros((8, 8), "float32"), old, codec="zfp", tolerance=0.1)
    with pytest.raises(portable.PortableBoundError):
        chunkpress.to_zarr(x, old, rel_tolerance=0.1, portable=True, overwrite=True)
    assert np.array_equal(chunkpress.from_zarr(old).compute(), np.zeros((8, 8)))  # intact


def test_portable_refuses_what_it_cannot_take_before_writing(tmp_path):
    import chunkpress

    x = np.ones((8, 8), "float32")
    store = tmp_path / "a.zarr"
    cases = [(dict(codec="zfp", tolerance=0.1), ValueError, "drop codec='zfp'"),
             (dict(tolerance=0.1, rate=4), ValueError, "tolerance= and rel_tolerance= only"),
             (dict(), ValueError, "needs tolerance="),
             (dict(tolerance="0.1"), TypeError, "tolerance must be a number"),
             (dict(rel_tolerance=1.5), ValueError, "rel_tolerance must be < 1"),
             (dict(rel_tolerance=-1e-3), ValueError, "rel_tolerance")]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            chunkpress.to_zarr(x, store, portable=True, **kwargs)
        assert not store.exists()
    ds = ocean()
    with pytest.raises(ValueError, match="drop codec"):
        ds.chunkpress.to_zarr(store, "zfp", tolerance=0.1, portable=True)
    with pytest.raises(KeyError, match="'nope'"):
        ds.chunkpress.to_zarr(store, tolerance={"nope": 0.1}, portable=True)
    assert not store.exists()


def test_the_command_writes_a_portable_store_and_info_says_what_holds(tmp_path, capsys):
    from chunkpress.cli import main

    source, store = tmp_path / "ocean.nc", tmp_path / "o.zarr"
    ocean().to_netcdf(source)
    assert main(["compress", str(source), str(store), "--tolerance", "sst=0.01",
                 "--tolerance", "wind=0.05", "--portable"]) == 0
    out = capsys.readouterr()
    assert "Numcodecs" not in out.err
    rows = {line.split()[0]: line for line in out.out.splitlines()[2:]}
    assert "fixedscaleoffset" in rows["sst"] and "tolerance=0.01" in rows["sst"]
    assert read_without_chunkpress("print(sorted(xr.open_zarr(sys.argv[1]).data_vars))",
                                   store).strip() == "['land', 'slp', 'sst', 'wind']"
    assert main(["compress", str(source), str(tmp_path / "x.zarr"), "--tolerance", "0.01",
                 "--codec", "sz3", "--portable"]) == 1
    assert "drop --codec" in capsys.readouterr().err and not (tmp_path / "x.zarr").exists()


def test_a_chunk_of_fill_values_is_written_and_zarr_settings_are_left_alone(tmp_path):
    import zarr

    import chunkpress

    x = np.ones((16, 16), "float32")
    x[:8, :8] = np.nan  # a whole chunk equal to the fill value (NaN)
    before = zarr.config.get("array.write_empty_chunks")
    for attempt in range(3):  # tasks on several threads at once
        store = tmp_path / f"a{attempt}.zarr"
        chunkpress.to_zarr(x, store, tolerance=0.1, portable=True, chunks=(8, 8))
        assert (store / "c" / "0" / "0").is_file()  # present, as publishing checked
    assert zarr.config.get("array.write_empty_chunks") == before
