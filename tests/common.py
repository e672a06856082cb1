"""Shared checks of the kernel suite, parametrised over every codec (STYLE.md rule 10).

A codec is listed once in ``CODECS`` and gets every check: round trips, error bounds,
non-finite cells, interop with imagecodecs, ``out=``, empty input, frozen format,
corrupt streams and threads. Checks that may crash the interpreter (a C decoder fed bad
bytes, a codec fed extreme data) run in a child interpreter through ``run_isolated``, so a
crash fails the test that caused it instead of killing pytest.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import chunkpress as cp
from chunkpress.kernels import registry

TESTS = Path(__file__).resolve().parent
#: where the chunkpress under test was imported from (site-packages once installed, the source
#: tree with an in-place build): child interpreters import the very same one
ROOT = Path(cp.__file__).resolve().parent.parent
FIXTURES = TESTS / "fixtures"

FLOATS = ("float32", "float64")
LAYOUTS = ("C", "F", "strided", "bigendian")
FRAME_MAGIC = b"\x89CPK"


# --- the codecs under test --------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """One way of calling a codec's encoder, and what its result must satisfy."""

    label: str
    params: dict
    #: the largest error allowed on finite cells: 0 means bit-exact, None no point-wise bound
    tolerance: float | None
    #: a further check of (original, stream, decoded) for modes without a point-wise bound
    check: Callable | None = None

    def __str__(self):
        return self.label


@dataclass(frozen=True)
class Codec:
    """A codec of chunkpress.kernels as the tests see it: the registry's facts (dtypes, ndims,
    error) and the ways the tests call it (modes, interop)."""

    name: str
    float_modes: tuple  # modes for float data
    int_modes: tuple = ()  # modes for integer data
    #: what a finite block of the codec's own dimensionality encodes to: "trailer" (the
    #: codec's own stream carrying the CRC trailer), "bare" (the codec's own stream), "frame"
    own: str = "frame"
    #: (ndarray) -> that array encoded by imagecodecs itself, for the codecs with interop
    imagecodecs_encode: Callable | None = None
    #: (stream) -> imagecodecs' own decode of a stream
    imagecodecs_decode: Callable | None = None

    def __str__(self):
        return self.name

    @property
    def descriptor(self):
        return registry.get(self.name)

    @property
    def dtypes(self) -> tuple:
        return tuple(d.name for d in self.descriptor.dtypes)

    @property
    def ndims(self) -> tuple:
        return self.descriptor.ndims

    @property
    def tolerance_arg(self) -> bool:
        """Whether the encoder takes tolerance=."""
        return "tolerance" in self.descriptor.param_names

    def encode(self, data, **params):
        return getattr(cp, f"{self.name}_encode")(data, **params)

    def decode(self, stream, **kwargs):
        return getattr(cp, f"{self.name}_decode")(stream, **kwargs)

    def check(self, stream):
        return getattr(cp, f"{self.name}_check")(stream)

    @property
    def error(self) -> type:
        return self.descriptor.error

    @property
    def constant(self):
        return getattr(cp, self.name.upper())

    def modes(self, dtype) -> tuple:
        return self.float_modes if np.dtype(dtype).kind == "f" else self.int_modes

    @property
    def dtype(self) -> str:
        """The dtype of the checks made with one: float32 where the codec takes it."""
        return "float32" if "float32" in self.dtypes else self.dtypes[0]

    @property
    def first_mode(self) -> Mode:
        """The first mode of ``dtype``."""
        return self.modes(self.dtype)[0]

    def tolerance_modes(self) -> tuple:
        """The modes with a point-wise bound given as tolerance= (0 included)."""
        return tuple(m for m in self.float_modes if "tolerance" in m.params)


def _zfp_rate_size(original, stream, decoded, rate):
    """Fixed rate: the stream holds rate bits per value of the 4**d blocks, plus headers."""
    blocks = np.prod([-(-extent // 4) for extent in original.shape])
    payload = blocks * 4 ** original.ndim * rate / 8
    assert len(stream) <= payload + 16 + 8 + 8, (
        f"zfp rate={rate}: {len(stream)} bytes for {original.shape}, at most "
        f"{payload:.0f} + header, trailer and word padding expected"
    )
    _assert_close_relative(original, decoded, 2.0**-7, f"zfp rate={rate}")


def _zfp_precision(original, decoded, precision):
    _assert_close_relative(original, decoded, 2.0 ** -(precision - 8), f"zfp precision={precision}")


def _sperr_psnr(original, decoded, target):
    a, b = original.astype(np.float64), decoded.astype(np.float64)
    span = float(a.max() - a.min())
    mse = float(np.mean((a - b) ** 2))
    psnr = np.inf if mse == 0 else 20 * np.log10(span) - 10 * np.log10(mse)
    assert psnr >= target - 1, f"sperr psnr={target}: measured {psnr:.2f} dB"


def _sperr_rate_size(original, stream, rate):
    # slack: SPERR's header and a chunkpress frame's (needed where SPERR loses the shape)
    assert len(stream) <= original.size * rate / 8 + 64 + 24 + 8 * original.ndim, (
        f"sperr rate={rate}: {len(stream)} bytes for {original.size} values"
    )


def _assert_close_relative(original, decoded, relative, what):
    """A sanity bound for modes without one: error below ``relative`` of the largest value."""
    a, b = original.astype(np.float64), decoded.astype(np.float64)
    scale = float(np.abs(a).max()) or 1.0
    error = float(np.abs(a - b).max())
    assert error <= relative * scale, f"{what}: max error {error:g} > {relative * scale:g}"


ZFP_RATE, ZFP_PRECISION = 16, 24
SPERR_PSNR, SPERR_RATE = 80, 8

CODECS = {
    "zfp": Codec(
        "zfp",
        (
            Mode("tolerance", {"tolerance": 1e-3}, 1e-3),
            Mode("rate", {"rate": ZFP_RATE}, None,
                 lambda a, s, d: _zfp_rate_size(a, s, d, ZFP_RATE)),
            Mode("precision", {"precision": ZFP_PRECISION}, None,
                 lambda a, s, d: _zfp_precision(a, d, ZFP_PRECISION)),
        ),
        own="trailer",
        imagecodecs_encode=lambda a: __import__("imagecodecs").zfp_encode(a, 1e-3, mode="a"),
        imagecodecs_decode=lambda s: __import__("imagecodecs").zfp_decode(s),
    ),
    "sperr": Codec(
        "sperr",
        (
            Mode("pwe", {"tolerance": 1e-3}, 1e-3),
            Mode("psnr", {"mode": "psnr", "quality": SPERR_PSNR}, None,
                 lambda a, s, d: _sperr_psnr(a, d, SPERR_PSNR)),
            Mode("rate", {"mode": "rate", "quality": SPERR_RATE}, None,
                 lambda a, s, d: _sperr_rate_size(a, s, SPERR_RATE)),
        ),
        own="trailer",  # inside SPERR's last section; constant and cut fixed-rate: bare
        imagecodecs_encode=lambda a: __import__("imagecodecs").sperr_encode(a, 1e-3, "pwe"),
        imagecodecs_decode=lambda s: __import__("imagecodecs").sperr_decode(s),
    ),
    "sz3": Codec(
        "sz3",
        (Mode("tolerance", {"tolerance": 1e-3}, 1e-3),),
        imagecodecs_encode=lambda a: __import__("imagecodecs").sz3_encode(a, mode="abs", abs=1e-3),
    ),
    "lerc": Codec(
        "lerc",
        (
            Mode("tolerance", {"tolerance": 1e-3}, 1e-3),
            Mode("lossless", {"tolerance": 0}, 0),
        ),
        (
            Mode("lossless", {"tolerance": 0}, 0),
            Mode("tolerance", {"tolerance": 2}, 2),
        ),
        own="trailer",
        imagecodecs_encode=lambda a: __import__("imagecodecs").lerc_encode(a, 1e-3),
        imagecodecs_decode=lambda s: __import__("imagecodecs").lerc_decode(s),
    ),
    "szip": Codec(
        "szip",
        (Mode("nn", {"coding": "nn"}, 0), Mode("ec", {"coding": "ec", "pixels_per_block": 8}, 0)),
        (Mode("nn", {"coding": "nn"}, 0), Mode("ec", {"coding": "ec", "pixels_per_block": 8}, 0)),
    ),
    "pcodec": Codec(
        "pcodec",
        (Mode("level8", {}, 0), Mode("level0", {"level": 0}, 0), Mode("level12", {"level": 12}, 0)),
        (Mode("level8", {}, 0), Mode("level0", {"level": 0}, 0), Mode("level12", {"level": 12}, 0)),
    ),
}



def _registered(d) -> Codec:
    """A registered array codec without modes above: called with its descriptor's example."""
    mode = Mode("example", dict(d.example), d.max_error(d.check_target(d.example)))
    kinds = {t.kind for t in d.dtypes}
    return Codec(d.name, (mode,) if "f" in kinds else (), (mode,) if kinds & {"i", "u"} else ())


CODECS.update({d.name: _registered(d) for d in registry.descriptors()
               if d.kind == "array" and d.available and d.name not in CODECS})
#: the codecs whose streams can be made and decoded here: every available array codec of the
#: registry (JETRAW is not; FLOATPRED, a filter, has its own tests in test_floatpred.py)
NAMES = tuple(CODECS)
LOSSY = tuple(name for name, codec in CODECS.items() if codec.tolerance_arg)
#: the codecs whose own streams imagecodecs makes and chunkpress decodes
INTEROP = tuple(name for name, codec in CODECS.items() if codec.imagecodecs_encode)


def codec_modes(dtypes=None):
    """(codec, mode) pairs over every codec and mode, for parametrize."""
    pairs = []
    for codec in CODECS.values():
        seen = set()
        for dtype in dtypes or codec.dtypes:
            if np.dtype(dtype).name not in codec.dtypes:
                continue
            for mode in codec.modes(dtype):
                key = (np.dtype(dtype).kind == "f", mode.label)
                if key not in seen:
                    seen.add(key)
                    pairs.append((codec, mode))
    return pairs


# --- data -------------------------------------------------------------------------------

#: shapes of each dimensionality, none a multiple of 4 along every axis
SHAPES = {1: (37,), 2: (9, 7), 3: (5, 6, 7), 4: (3, 5, 4, 6), 5: (2, 3, 2, 3, 5),
          8: (2, 1, 2, 1, 2, 3, 1, 2)}


def sample(shape, dtype, kind="smooth", seed=0) -> np.ndarray:
    """Return a C-ordered test array of ``kind``, the same for the same arguments."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng([seed, zlib.crc32(f"{kind}{shape}{dtype}".encode())])
    shape = tuple(shape)
    grid = np.indices(shape, dtype=np.float64) if shape else np.zeros((0,))
    wave = sum((np.sin(0.37 * (k + 1) * grid[k] + k) for k in range(len(shape))),
               np.zeros(shape))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if kind == "noisy":
            return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
        lo, hi = float(info.min), float(info.max)
        mid, half = (lo + hi) / 2, (hi - lo) * 0.2
        return np.clip(np.round(mid + half * wave / max(len(shape), 1)), lo, hi).astype(dtype)
    if kind == "smooth":
        values = 10 * wave + 0.01 * rng.standard_normal(shape)
    elif kind == "noisy":
        values = rng.standard_normal(shape)
    elif kind == "constant":
        values = np.full(shape, -3.25)
    elif kind == "huge_range":
        # magnitudes over 60 (float32) or 600 (float64) decades, both signs, zeros
        top = 30 if dtype.itemsize == 4 else 300
        values = rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(-top, top, shape)
        values.reshape(-1)[::7] = 0.0
    elif kind == "denormal":
        values = rng.standard_normal(shape) * float(np.finfo(dtype).smallest_subnormal) * 1000
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return np.asarray(values, dtype=dtype)


KINDS = ("smooth", "noisy", "constant", "huge_range", "denormal")


def with_nonfinite(array: np.ndarray, seed=0) -> np.ndarray:
    """Return a copy of a float array with NaNs (several payloads, both signs) and ±Inf."""
    out = np.array(array, copy=True, order="C")
    flat = out.reshape(-1)
    n = flat.size
    if n == 0 or out.dtype.kind != "f":  # integers have no non-finite values
        return out
    bits = flat.view(f"u{out.dtype.itemsize}")
    if out.dtype.itemsize == 2:
        nans = [0x7E00, 0xFE01, 0x7C01, 0x7D55]
    elif out.dtype.itemsize == 4:
        nans = [0x7FC00000, 0xFFC00ABC, 0x7F800001, 0x7FBFFFFF]
    else:
        nans = [0x7FF8000000000000, 0xFFF8000000000ABC, 0x7FF0000000000001, 0x7FF7FFFFFFFFFFFF]
    rng = np.random.default_rng(seed)
    cells = rng.permutation(n)
    for k, cell in enumerate(cells[: min(n, 6)]):
        if k < len(nans):
            bits[cell] = nans[k]
        else:
            flat[cell] = np.inf if k % 2 else -np.inf
    return out


def layout(array: np.ndarray, name: str) -> np.ndarray:
    """Return the same values in memory layout ``name`` (one of LAYOUTS)."""
    if name == "C":
        return np.ascontiguousarray(array)
    if name == "F":
        return np.asfortranarray(array)
    if name == "strided":
        # every other element of a larger array, the last axis reversed: neither C nor F
        big = np.zeros(tuple(2 * s for s in array.shape), array.dtype)
        index = tuple(slice(None, None, 2) for _ in array.shape)
        view = big[index]
        if array.ndim:
            view = view[..., ::-1]
            view[...] = array[..., ::-1]
            view = view[..., ::-1]
        else:
            view[...] = array
        assert array.ndim == 0 or not (view.flags.c_contiguous or view.flags.f_contiguous) \
            or array.size <= 1
        return view
    if name == "bigendian":
        return array.astype(array.dtype.newbyteorder(">"))
    raise ValueError(name)


def raw_bits(array: np.ndarray) -> np.ndarray:
    """The values' bit patterns, native order, C order."""
    a = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else a


# --- the checks -------------------------------------------------------------------------


def assert_same_kind(original, decoded, what=""):
    assert isinstance(decoded, np.ndarray), f"{what}: decode returned {type(decoded).__name__}"
    assert decoded.shape == original.shape, (
        f"{what}: shape {decoded.shape}, {original.shape} encoded"
    )
    assert decoded.dtype.newbyteorder("=") == original.dtype.newbyteorder("="), (
        f"{what}: dtype {decoded.dtype}, {original.dtype} encoded"
    )


def assert_nonfinite_kept(original, decoded, what=""):
    """Every non-finite cell is back bit for bit, and every finite one is finite."""
    if original.dtype.kind != "f":
        return
    bad = ~np.isfinite(original)
    got = raw_bits(decoded)[bad]
    want = raw_bits(original)[bad]
    if not np.array_equal(got, want):
        where = np.flatnonzero(got != want)[:5]
        raise AssertionError(
            f"{what}: non-finite cells changed: {[hex(int(w)) for w in want[where]]} -> "
            f"{[hex(int(g)) for g in got[where]]}"
        )
    finite_out = np.isfinite(decoded[~bad])
    assert finite_out.all(), f"{what}: {int((~finite_out).sum())} finite cells decode non-finite"


def assert_within(original, decoded, tolerance, what=""):
    """max |x - decoded| <= tolerance on every finite cell; tolerance 0: bit-exact."""
    if tolerance == 0:
        same = raw_bits(decoded) == raw_bits(original)
        if not same.all():
            i = int(np.flatnonzero(~same.reshape(-1))[0])
            raise AssertionError(
                f"{what}: lossless decode differs at flat index {i}: "
                f"{original.reshape(-1)[i]!r} -> {decoded.reshape(-1)[i]!r}"
            )
        return
    finite = np.isfinite(original)
    a = original[finite].astype(np.float64)
    b = decoded[finite].astype(np.float64)
    error = np.abs(a - b)
    ok = error <= tolerance
    if not ok.all():
        i = int(np.argmax(~ok))
        raise AssertionError(
            f"{what}: bound {tolerance!r} broken at {int((~ok).sum())} of {a.size} cells; "
            f"worst error {float(np.nanmax(np.where(np.isnan(error), np.inf, error))):g} "
            f"(e.g. {a[i]!r} -> {b[i]!r})"
        )


def check_roundtrip(codec: Codec, array: np.ndarray, mode: Mode, what=""):
    """Encode and decode ``array``; assert shape, dtype, bound, non-finite cells, input intact.

    Returns (stream, decoded).
    """
    what = what or f"{codec.name} {mode} {array.dtype} {array.shape}"
    before = array.copy(order="K")
    stream = codec.encode(array, **mode.params)
    assert np.array_equal(raw_bits(array), raw_bits(before)), f"{what}: encode changed its input"
    memoryview(stream)  # bytes-like
    decoded = codec.decode(stream)
    assert_same_kind(array, decoded, what)
    assert_nonfinite_kept(array, decoded, what)
    if mode.tolerance is not None:
        assert_within(array, decoded, mode.tolerance, what)
    if mode.check is not None and array.ndim and array.size:
        finite = np.isfinite(array) if array.dtype.kind == "f" else np.ones(array.shape, bool)
        if finite.all():
            mode.check(np.ascontiguousarray(array), bytes(stream), decoded)
    return stream, decoded


def check_bound(codec_name, dtype, shape, kind, layout_name, tolerance, nonfinite=False):
    """One case of the error-bound battery: a tolerance round trip (run in a child)."""
    codec = CODECS[codec_name]
    array = sample(tuple(shape), dtype, kind, seed=1)
    if nonfinite:
        array = with_nonfinite(array, seed=2)
    mode = Mode(f"tolerance={tolerance!r}", {"tolerance": tolerance}, tolerance)
    check_roundtrip(codec, layout(array, layout_name), mode,
                    f"{codec_name} {kind} {dtype} {tuple(shape)} {layout_name} t={tolerance!r}")


def check_mode_case(codec_name, mode_label, dtype, shape, kind, layout_name="C"):
    """One round trip of a codec's named mode (run in a child)."""
    codec = CODECS[codec_name]
    mode = next(m for m in codec.modes(dtype) if m.label == mode_label)
    array = sample(tuple(shape), dtype, kind, seed=1)
    check_roundtrip(codec, layout(array, layout_name), mode,
                    f"{codec_name} {mode_label} {kind} {dtype} {tuple(shape)} {layout_name}")


def property_bound(codec_name, dtype, max_examples, seed=0):
    """Hypothesis: any float array (NaN/Inf included), any tolerance: the bound holds."""
    from hypothesis import HealthCheck, given, settings, strategies as st
    from hypothesis.extra import numpy as hnp

    codec = CODECS[codec_name]
    width = np.dtype(dtype).itemsize * 8
    ndims = codec.ndims
    shapes = hnp.array_shapes(min_dims=ndims[0], max_dims=min(ndims[-1], 3), min_side=1,
                              max_side=9)
    elements = st.floats(width=width, allow_nan=True, allow_infinity=True,
                         allow_subnormal=True)
    tolerances = st.one_of(
        st.floats(min_value=1e-6, max_value=1e4),
        st.sampled_from([1e-30, 1e-12, 2.0**-20, 0.5, 1e3]),
    )
    arrays = hnp.arrays(dtype, shapes, elements=elements)

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(array=arrays, tolerance=tolerances, layout_name=st.sampled_from(LAYOUTS))
    def bound_holds(array, tolerance, layout_name):
        finite = array[np.isfinite(array)]
        print(f"example: {codec_name} {array.dtype} {array.shape} {layout_name} "
              f"t={tolerance!r} range=[{finite.min() if finite.size else None}, "
              f"{finite.max() if finite.size else None}] "
              f"nonfinite={array.size - finite.size}", file=sys.stderr, flush=True)
        mode = Mode("tolerance", {"tolerance": tolerance}, tolerance)
        check_roundtrip(codec, layout(array, layout_name), mode)

    bound_holds()


# --- isolation: run checks in a child interpreter ---------------------------------------

#: address space of a child: a decoder fed a forged size fails to allocate instead of
#: driving the machine into the OOM killer
CHILD_MEMORY = 3 << 30

_CHILD = r"""
import importlib, json, resource, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
sys.path[:0] = [{tests!r}, {root!r}]
module, function, cases_path, results_path, start, failures = sys.argv[1:7]
failures = int(failures)
func = getattr(importlib.import_module(module), function)
cases = json.load(open(cases_path))
with open(results_path, "a") as results:
    for i in range(int(start), len(cases)):
        if failures <= 0:
            break
        results.write(json.dumps({{"start": i}}) + "\n"); results.flush()
        try:
            func(*cases[i])
            out = {{"i": i, "ok": True}}
        except AssertionError as exc:
            out = {{"i": i, "ok": False, "error": str(exc) or traceback.format_exc(limit=2)}}
        except BaseException as exc:
            out = {{"i": i, "ok": False,
                   "error": f"{{type(exc).__name__}}: {{exc}}\n" + traceback.format_exc(limit=4)}}
        failures -= not out["ok"]
        results.write(json.dumps(out) + "\n"); results.flush()
"""


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def run_isolated(function: str, cases: list, *, module="common", max_crashes=3,
                 max_failures=40, timeout=120):
    """Run ``module.function(*case)`` for every case in child interpreters.

    Returns one dict per case: ``ok``, and ``error`` (the assertion or exception, or how the
    interpreter died). After a crash a new child goes on with the next case; after
    ``max_crashes`` crashes or ``max_failures`` failures the remaining cases are reported as
    not run (a broken codec is reported quickly, not case by case).
    """
    results: dict[int, dict] = {}
    crashes = 0
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory(prefix="chunkpress-test-") as tmp:
        cases_path = Path(tmp, "cases.json")
        cases_path.write_text(json.dumps(cases))
        start = 0
        while start < len(cases):
            results_path = Path(tmp, f"results-{start}.jsonl")
            results_path.touch()
            try:
                proc = subprocess.run(
                    [sys.executable, "-c", _CHILD.format(tests=str(TESTS), root=str(ROOT),
                                                      memory=CHILD_MEMORY),
                     module, function, str(cases_path), str(results_path), str(start),
                     str(max_failures - sum(not r["ok"] for r in results.values()))],
                    capture_output=True, timeout=timeout, env=env, cwd=tmp,
                    stdin=subprocess.DEVNULL,
                )
                code, stderr = proc.returncode, proc.stderr.decode(errors="replace")
            except subprocess.TimeoutExpired as exc:
                code = None
                stderr = (exc.stderr or b"").decode(errors="replace")
            last = None
            for line in results_path.read_text().splitlines():
                record = json.loads(line)
                if "start" in record:
                    last = record["start"]
                else:
                    results[record["i"]] = record
            if code == 0:
                for i in range(len(cases)):
                    results.setdefault(i, {"i": i, "ok": False, "skipped": True,
                                           "error": f"not run: stopped after {max_failures} "
                                                    "failures"})
                break
            died = ("timed out" if code is None
                    else f"crashed the interpreter ({_describe_exit(code)})")
            if last is None:
                raise AssertionError(
                    f"the child interpreter {died} before any case:\n{stderr[-3000:]}"
                )
            if last in results:
                # the case finished, then the interpreter died (e.g. freeing memory a decoder
                # had corrupted): blame the last case run, saying so
                died += " after this case had finished: it (or one before it) corrupted memory"
            lines = stderr.strip().splitlines()
            tail = "\n".join(lines[-12:])
            # a check that prints "input: ..." / "example: ..." before each try names the one
            named = [line for line in lines if line.startswith(("input: ", "example: "))]
            if named:
                tail = f"{named[-1]}\n{tail}"
            results[last] = {"i": last, "ok": False, "crash": True, "error": f"{died}\n{tail}"}
            crashes += 1
            start = last + 1
            if crashes >= max_crashes or code is None:
                for i in range(start, len(cases)):
                    results[i] = {"i": i, "ok": False, "skipped": True,
                                  "error": f"not run: stopped after {crashes} crash(es)"}
                break
    return [results.get(i, {"i": i, "ok": False, "error": "no result"}) for i in range(len(cases))]


def assert_all_ok(cases, results, *, show=12):
    """Fail with a readable list of the failing cases, crashes first."""
    failed = [(case, r) for case, r in zip(cases, results) if not r["ok"]]
    if not failed:
        return
    failed.sort(key=lambda item: (not item[1].get("crash"), bool(item[1].get("skipped"))))
    crashed = sum(1 for _, r in failed if r.get("crash"))
    skipped = sum(1 for _, r in failed if r.get("skipped"))
    lines = [f"{len(failed) - skipped} of {len(cases)} cases failed ({crashed} crashed the "
             f"interpreter), {skipped} not run after that:"]
    failed = [item for item in failed if not item[1].get("skipped")]
    for case, r in failed[:show]:
        lines.append(f"- {case}: {r['error'].strip()}")
    if len(failed) > show:
        lines.append(f"... and {len(failed) - show} more")
    raise AssertionError("\n".join(lines))


# --- frozen format ----------------------------------------------------------------------


def fixture_manifest() -> list[dict]:
    return json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]


def check_frozen_format(codec: Codec):
    """Every stored stream of ``codec`` decodes to its stored original within its tolerance."""
    entries = [e for e in fixture_manifest()
               if e["codec"] == codec.name and e.get("layer", "kernel") == "kernel"]
    assert entries, f"no fixtures for {codec.name}"
    for entry in entries:
        what = f"fixture {entry['stream']}"
        stream = (FIXTURES / entry["stream"]).read_bytes()
        assert hashlib.sha256(stream).hexdigest() == entry["sha256"], (
            f"{what}: the stored stream was changed; fixtures are written once, never regenerated"
        )
        original = np.load(FIXTURES / entry["original"])
        if stream[:4] == FRAME_MAGIC:
            assert stream[4] == entry["format_version"] == 1, f"{what}: format version"
        decoded = codec.decode(stream)
        assert_same_kind(original, decoded, what)
        assert_nonfinite_kept(original, decoded, what)
        assert_within(original, decoded, entry["tolerance"], what)


# --- stores: a field and an input that fails ----------------------------------------------


def walk_field(seed=0, shape=(64, 64, 32)) -> np.ndarray:
    """A float32 random walk along the first axis: smooth enough to compress, all different."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_normal(shape), axis=0).astype("float32")


def failing_blocks(x, chunks, bad=(2, 1, 1)):
    """A dask array of ``x`` whose block ``bad`` raises, as an input that cannot be read."""
    import dask.array as da

    def block(b, block_info=None):
        if tuple(block_info[0]["chunk-location"]) == bad:
            raise RuntimeError(f"input block {bad} could not be read")
        return b
    return da.from_array(x, chunks=chunks).map_blocks(block, dtype=x.dtype)
