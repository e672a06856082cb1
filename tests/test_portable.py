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
def test_quantize_keeps_the_absolute_bound_and_nan(seed, dtype, tolerance, scale):
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal((40, 50)) * scale).astype(dtype)
    values[rng.random(values.shape) < 0.3] = np.nan  # land
    chosen = portable.choose(dtype, tolerance=tolerance)
    assert "quantize" in chosen.description
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


def test_the_fewest_digits_are_chosen():
    for tolerance in (0.5, 0.01, 1e-3, 3e-7):
        digits = portable.quantize_digits(tolerance)
        assert portable.quantize_step(digits) / 2 <= tolerance
        assert digits == 0 or portable.quantize_step(digits - 1) / 2 > tolerance


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
