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
