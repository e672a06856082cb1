"""verify --against holds every array to the bound its store claims: absolute, relative (both
where both are claimed), or exact; portable arrays (numcodecs' filters) by the bounds their
attributes record. Values altered through plain zarr beyond a bound are a problem naming the
variable, the worst error, the bound and where; within it, none."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from chunkpress.cli import EXIT_PROBLEMS, main

CHUNKS = {"t": 4, "y": 16, "x": 16}


def field(seed=0):
    """Magnitudes from 0.01 to 1000, both signs, a zero and a NaN."""
    rng = np.random.default_rng(seed)
    v = np.sign(rng.standard_normal((8, 32, 32))) * 10 ** rng.uniform(-2, 3, (8, 32, 32))
    v = v.astype("float32")
    v[0, 0, 0] = 0.0
    v[1, 2, 3] = np.nan
    v[2, 5, 5] = 500.0
    v[2, 6, 6] = 0.5
    return xr.Dataset({"v": (("t", "y", "x"), v)}, coords={"y": np.arange(32.0)})


def write(tmp_path, name, **kwargs):
    """The source as netCDF, and the store chunkpress writes from it."""
    ds = field()
    source = str(tmp_path / "source.nc")
    if not (tmp_path / "source.nc").exists():
        ds.to_netcdf(source)
    store = str(tmp_path / f"{name}.zarr")
    if kwargs.get("portable"):
        ds.chunk(CHUNKS).chunkpress.to_zarr(store, **kwargs)
    else:
        ds.chunkpress.to_zarr(store, chunks=CHUNKS, **kwargs)
    return store, source, ds


def alter(store, index, value, name="v"):
    """Write ``value`` at ``index`` through plain zarr (its own codecs, as anyone can)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = zarr.open_group(store, mode="r+")[name]
        array[index] = value


def verify(capsys, store, source, *more):
    code = main(["verify", store, "--against", source, *more])
    return code, capsys.readouterr().out


PORTABLE = {
    "portable tolerance": dict(tolerance=0.01, portable=True),
    "portable rel_tolerance": dict(rel_tolerance=1e-4, portable=True),
    "portable both": dict(tolerance=0.01, rel_tolerance=1e-4, portable=True),
}
CHUNKPRESS = {
    "sz3 rel_tolerance": dict(codec="sz3", rel_tolerance=1e-3),
    "zfp rel_tolerance and tolerance": dict(codec="zfp", rel_tolerance=1e-3, tolerance=0.01),
    "bitround keepbits": dict(codec="bitround", keepbits=10),
    "quantize digits": dict(codec="quantize", digits=3),
}


@pytest.mark.parametrize("kind", [*PORTABLE, *CHUNKPRESS])
def test_a_store_as_written_verifies_clean_and_says_what_it_checked(tmp_path, capsys, kind):
    store, source, _ = write(tmp_path, "s", **{**PORTABLE, **CHUNKPRESS}[kind])
    code, out = verify(capsys, store, source)
    assert code == 0, out
    assert "no problem found" in out
    if "rel_tolerance" in kind or kind.startswith(("bitround", "quantize")) or "both" in kind:
        assert "relative" in out, out
    if "tolerance" in kind and "rel_tolerance" not in kind or "both" in kind \
            or "and tolerance" in kind:
        assert "absolute" in out, out
    assert "exact" in out, out  # the coordinate y


@pytest.mark.parametrize("kind", [*PORTABLE, *CHUNKPRESS])
def test_a_value_changed_by_seven_percent_is_caught(tmp_path, capsys, kind):
    store, source, ds = write(tmp_path, "s", **{**PORTABLE, **CHUNKPRESS}[kind])
    original = float(ds.v[2, 5, 5])
    alter(store, (2, 5, 5), original * 1.067)
    code, out = verify(capsys, store, source)
    assert code == EXIT_PROBLEMS, out
    assert "v:" in out and "exceeds the bound" in out and "(2, 5, 5)" in out, out
    assert "no problem found" not in out


@pytest.mark.parametrize("kind", [*PORTABLE, *CHUNKPRESS])
def test_values_rewritten_through_zarr_within_the_bound_are_no_problem(tmp_path, capsys, kind):
    store, source, _ = write(tmp_path, "s", **{**PORTABLE, **CHUNKPRESS}[kind])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = zarr.open_group(store, mode="r+")["v"]
        array[4:8, 0:16, 0:16] = array[4:8, 0:16, 0:16]  # a chunk written anew by zarr
    code, out = verify(capsys, store, source)
    assert code == 0, out


def test_portable_relative_breach_names_the_variable_error_bound_and_index(tmp_path, capsys):
    store, source, ds = write(tmp_path, "s", **PORTABLE["portable rel_tolerance"])
    alter(store, (2, 6, 6), 0.5 * 1.067)
    code, out = verify(capsys, store, source)
    assert code == EXIT_PROBLEMS
    line = next(line for line in out.splitlines() if line.startswith("v:"))
    assert re.search(r"relative error 0\.06\d+ exceeds the bound 0\.0001\b", line), line
    assert "rel_tolerance=0.0001" in line, line
    assert "at (2, 6, 6)" in line, line
    code = main(["verify", store, "--against", source, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == EXIT_PROBLEMS
    assert [p["array"] for p in report["problems"]] == ["v"]
    assert "at (2, 6, 6)" in report["problems"][0]["problem"]
    row = next(a for a in report["arrays"] if a["array"] == "v")
    assert row["rel_bound"] == 1e-4 and row["max_rel_error"] == pytest.approx(0.067, rel=1e-3)
    assert "relative" in row["checks"]


def test_portable_absolute_breach(tmp_path, capsys):
    store, source, ds = write(tmp_path, "s", **PORTABLE["portable tolerance"])
    alter(store, (2, 6, 6), 0.5 + 0.05)  # a multiple of the step 1/64 away: 0.046875
    code, out = verify(capsys, store, source)
    assert code == EXIT_PROBLEMS, out
    line = next(line for line in out.splitlines() if line.startswith("v:"))
    assert "exceeds the bound 0.01" in line and "at (2, 6, 6)" in line, line


@pytest.mark.parametrize("kind", ["portable both", "zfp rel_tolerance and tolerance"])
def test_both_bounds_must_hold(tmp_path, capsys, kind):
    store, source, ds = write(tmp_path, "s", **{**PORTABLE, **CHUNKPRESS}[kind])
    # 500 + 0.25: relatively 5e-4 (outside 1e-4, inside 1e-3), absolutely 0.25 > 0.01
    alter(store, (2, 5, 5), 500.25)
    code, out = verify(capsys, store, source)
    assert code == EXIT_PROBLEMS, out
    assert "exceeds the bound 0.01" in out, out
    store, source, ds = write(tmp_path, "t", **{**PORTABLE, **CHUNKPRESS}[kind])
    # 0.5 + 0.004: absolutely within 0.01, relatively 8e-3: outside both relative bounds
    alter(store, (2, 6, 6), 0.504)
    code, out = verify(capsys, store, source)
    assert code == EXIT_PROBLEMS, out
    assert "relative error" in out and "exceeds" in out, out


@pytest.mark.parametrize("kind", ["portable rel_tolerance", "sz3 rel_tolerance",
                                  "bitround keepbits"])
def test_a_zero_stays_zero_under_a_relative_bound(tmp_path, capsys, kind):
    store, source, _ = write(tmp_path, "s", **{**PORTABLE, **CHUNKPRESS}[kind])
    alter(store, (0, 0, 0), 1e-30)
    code, out = verify(capsys, store, source)
    assert code == EXIT_PROBLEMS, out
    assert "at (0, 0, 0)" in out, out


@pytest.mark.parametrize("kind", ["portable rel_tolerance", "portable tolerance"])
def test_nan_must_match_exactly_in_a_portable_array(tmp_path, capsys, kind):
    store, source, _ = write(tmp_path, "s", **PORTABLE[kind])
    alter(store, (3, 3, 3), np.nan)
    code, out = verify(capsys, store, source)
    assert code == EXIT_PROBLEMS, out
    assert "non-finite" in out, out


def test_an_exact_coordinate_changed_is_caught(tmp_path, capsys):
    store, source, _ = write(tmp_path, "s", **PORTABLE["portable tolerance"])
    alter(store, (7,), np.nextafter(7.0, 8.0), name="y")  # one unit in the last place
    code, out = verify(capsys, store, source)
    assert code == EXIT_PROBLEMS, out
    line = next(line for line in out.splitlines() if line.startswith("y:"))
    assert "exact" in line and "at (7,)" in line, line


def test_a_bitround_subnormal_floor(tmp_path, capsys):
    """bit rounding's bound is r * max(|x|, tiny): a subnormal's error is absolute there."""
    ds = field()
    v = ds.v.values.copy()
    v[3, 0, 0] = 1e-40  # subnormal in float32
    ds["v"] = (("t", "y", "x"), v)
    source = str(tmp_path / "sub.nc")
    ds.to_netcdf(source)
    store = str(tmp_path / "sub.zarr")
    ds.chunkpress.to_zarr(store, codec="bitround", keepbits=4, chunks=CHUNKS)
    assert zarr.open_group(store)["v"][3, 0, 0] == 0  # relatively, all of it is lost
    code, out = verify(capsys, store, source)
    assert code == 0, out
    alter(store, (3, 0, 0), 1e-36)  # a normal number: r max(|x|, tiny) no longer holds
    code, out = verify(capsys, store, source)
    assert code == EXIT_PROBLEMS and "at (3, 0, 0)" in out, out


def test_a_portable_array_against_a_numpy_array(tmp_path):
    """A store of one portable array is compared with an array, as a chunkpress one is."""
    import chunkpress

    x = field().v.values[0]
    store = str(tmp_path / "p.zarr")
    chunkpress.to_zarr(x, store, rel_tolerance=1e-4, portable=True, chunks=(16, 16))
    table = chunkpress.verify(store, against=x)
    assert table.empty
    row = table.attrs["arrays"].iloc[0]
    assert row.compared == "relative" and 0 < row.max_rel_error <= 1e-4
    alter_array = zarr.open_array(store, mode="r+")
    alter_array[20, 20] = x[20, 20] * 1.067
    table = chunkpress.verify(store, against=x)
    assert len(table) == 1 and "at (20, 20)" in table.problem[0]
