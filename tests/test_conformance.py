"""Every codec of the registry, at every layer: kernel, graph, Zarr (plain and sharded),
codec="auto", the command. The cases are read from ``chunkpress.kernels.registry``: a codec
gets every check here by being registered once (a DESCRIPTOR at the end of its kernel module).
A codec this build lacks is skipped with the kernel's own reason, never left out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

import chunkpress
from chunkpress import auto
from chunkpress.cli import main
from chunkpress.graph import codecs, dispatch, sample
from chunkpress.kernels import ChunkpressError, chains, registry
from chunkpress.storage import codecs as zarr_codecs

from common import FIXTURES, fixture_manifest, raw_bits, with_nonfinite


@dataclass(frozen=True)
class Case:
    """One codec name as compress takes it, with what a typical call of it keeps."""

    name: str
    chain: chains.Chain
    params: dict  # the parts' examples, as compress takes them
    dtype: np.dtype
    ndim: int

    def __str__(self):
        return self.name

    @property
    def target(self) -> dict:
        return self.chain.check_target(self.params, self.dtype)

    @property
    def bound(self):
        return self.chain.max_error(self.target)

    @property
    def relative(self):
        """The relative bound r: |x - y| <= r * max(|x|, tiny), or None."""
        return self.chain.max_relative_error(self.target)

    def data(self, shape=None) -> np.ndarray:
        """A smooth field with NaN/Inf cells (floats), ragged against 8^d chunks."""
        shape = shape or (12, 10, 9)[3 - self.ndim:] if self.ndim <= 3 else (3, 4, 5, 6)
        rng = np.random.default_rng(7)
        x = np.cumsum(rng.standard_normal(shape), axis=0)
        if self.dtype.kind in "iu":
            return np.round((x - x.min()) * 3).astype(self.dtype)
        return with_nonfinite(x.astype(self.dtype), seed=3)


def _terminals(f: registry.Descriptor) -> list:
    """The codecs a filter is checked before: the first bytes codec and lossless array codec
    that take its dtypes."""
    out = []
    for kind in ("bytes", "array"):
        for d in registry.descriptors():
            if d.kind == kind and d.lossless and d.available and set(f.dtypes) & set(d.dtypes):
                out.append(d.name)
                break
    return out


def _case(name: str):
    chain = chains.resolve(name)
    params = {k: v for part in chain.parts for k, v in part.example.items()}
    dtype = np.dtype("float32") if np.dtype("float32") in chain.dtypes else chain.dtypes[0]
    ndim = 3 if 3 in chain.ndims else max(chain.ndims)
    marks = [] if chain.available else [pytest.mark.skip(reason=chain.unavailable)]
    return pytest.param(Case(name, chain, params, dtype, ndim), id=name, marks=marks)


NAMES = [n for d in registry.descriptors()
         for n in ([f"{d.name}+{t}" for t in _terminals(d)] if d.kind == "filter" else [d.name])]
CASES = [_case(n) for n in NAMES]
#: the codecs codec="auto" may choose (a descriptor's ``auto`` roles)
AUTO = [c for c in CASES if c.values[0].name == codecs.auto_chain(c.values[0].dtype) or
        (not c.values[0].chain.is_chain and c.values[0].chain.terminal.auto)]


def assert_kept(x, y, bound, what="", relative=None):
    """Shape and dtype kept, NaN/Inf kept bit for bit, the bound held on the finite values
    (``relative``: |x - y| <= relative * max(|x|, tiny) too, tiny the smallest normal)."""
    assert y.shape == x.shape and y.dtype == x.dtype, what
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        assert np.array_equal(raw_bits(x)[bad], raw_bits(y)[bad]), f"{what}: NaN/Inf changed"
    if bound == 0:
        assert np.array_equal(raw_bits(x), raw_bits(y)), f"{what}: not bit for bit"
    elif bound is not None:
        finite = np.isfinite(x)
        error = np.abs(x[finite].astype(float) - y[finite].astype(float)).max()
        assert error <= bound, f"{what}: max error {error} over {bound}"
    if relative and x.dtype.kind == "f":
        finite = np.isfinite(x)
        a, b = x[finite].astype(float), y[finite].astype(float)
        scale = np.maximum(np.abs(a), float(np.finfo(x.dtype).tiny))
        worst = (np.abs(a - b) / scale).max(initial=0.0)
        assert worst <= relative, f"{what}: max relative error {worst} over {relative}"


def test_the_readme_table_is_the_registry():
    """README.md's table of codecs is chunkpress.kernels.registry.markdown_table()."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = text.index("<!-- codecs: chunkpress.kernels.registry.markdown_table() -->\n")
    table = text[text.index("\n", start) + 1:text.index("<!-- /codecs -->")]
    assert table == registry.markdown_table(), (
        "README.md's table of codecs is not the registry's; put this in its place:\n"
        + registry.markdown_table())


def test_every_codec_is_a_case():
    """Each registered codec is checked: alone, or (a filter) before a lossless codec."""
    named = {p for n in NAMES for p in n.split("+")}
    assert named == set(registry.names())
    for d in registry.descriptors():
        assert d.doc and issubclass(d.error, ChunkpressError), d.name


# --- kernel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_kernel_round_trip_keeps_the_bound_and_nan(case):
    x = case.data()
    stream = case.chain.encode(x, **case.target)
    assert_kept(x, case.chain.decode(stream, x.shape, x.dtype), case.bound, case.name,
                case.relative)
    if case.chain.holds_shape:  # its stream says the shape
        assert_kept(x, case.chain.decode(stream), case.bound, case.name,
                    case.relative)
    if case.chain.is_chain or case.chain.terminal.recognised == "magic":
        assert case.chain.check(stream) is True


@pytest.mark.parametrize("case", CASES)
def test_kernel_damaged_stream_is_the_codecs_error(case):
    x = case.data()
    damaged = bytearray(case.chain.encode(x, **case.target))
    damaged[len(damaged) // 2] ^= 0x10
    with pytest.raises(case.chain.error):
        case.chain.decode(bytes(damaged), x.shape, x.dtype)


@pytest.mark.parametrize("codec", registry.names(available=True))
def test_frozen_fixtures_decode(codec):
    """Each codec's streams written once (tests/fixtures) still decode to their arrays."""
    entries = [e for e in fixture_manifest() if codec in e["codec"].split("+")]
    assert entries, f"no fixture of {codec} in tests/fixtures (make_fixtures.py --add)"
    for entry in entries:
        original = np.load(FIXTURES / entry["original"])
        stream = (FIXTURES / entry["stream"]).read_bytes()
        assert hashlib.sha256(stream).hexdigest() == entry["sha256"], entry["stream"]
        spec = codecs.get_codec(entry["codec"])
        decoded = dispatch.decode(stream, spec, original.shape, original.dtype)
        assert_kept(original, decoded, entry["tolerance"], entry["stream"])


# --- graph ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_compress_decompress(case):
    x = case.data()
    c = chunkpress.compress(x, case.name, chunks=(8,) * x.ndim, verify=True, **case.params)
    assert c.codec == case.name and c.error_bound == case.bound
    assert_kept(x, chunkpress.decompress(c).compute(), case.bound, case.name, case.relative)
    assert c.max_error <= (case.bound if case.bound is not None else np.inf)


@pytest.mark.parametrize("case", CASES)
def test_every_parameter_is_checked_by_its_kernel_at_every_layer(tmp_path, case):
    """A string or a bool for any parameter: TypeError/ValueError naming it, from compress,
    to_zarr, the accessor (float variables), the Zarr codec and the kernel, before anything is
    encoded; each says what the kernel's own check says (every layer takes every parameter of
    the registry by its name: a codec's new parameter needs no new argument anywhere)."""
    x = case.data()
    dims = ("z", "y", "x")[3 - x.ndim:] if x.ndim <= 3 else None
    for param in case.chain.params:
        for bad in ("1", True):
            given = {param.name: bad}
            said = {}  # what the kernel's check says, given the dtype and not (a Zarr codec)
            for dtype in (x.dtype, None):
                with pytest.raises((TypeError, ValueError), match=param.name) as kernel:
                    param.check(bad, dtype)
                said[dtype] = kernel.value
            layers = {
                "compress": lambda: chunkpress.compress(x, case.name, **given),
                "to_zarr": lambda: chunkpress.to_zarr(x, str(tmp_path / "a.zarr"),
                                                      codec=case.name, **given),
                "Zarr codec": lambda: zarr_codecs.zarr_codec(case.name, given),
                "chain": lambda: case.chain.check_target(given, x.dtype),
            }
            if x.dtype.kind == "f" and dims:
                ds = xr.Dataset({"t": (dims, x)})
                layers["accessor"] = lambda: ds.chunkpress.encode(codec=case.name, **given)
            for layer, call in layers.items():
                expected = said[None if layer == "Zarr codec" else x.dtype]
                with pytest.raises(type(expected)) as got:
                    call()
                assert str(expected) in str(got.value), (layer, str(got.value))
            assert not (tmp_path / "a.zarr").exists()


def test_a_name_no_codec_takes_is_refused_naming_it():
    x = np.zeros((8, 8), "float32")
    for call in (lambda: chunkpress.compress(x, "zfp", tolerence=0.1),
                 lambda: chunkpress.compress(x, "auto", tolerence=0.1),
                 lambda: chunkpress.to_zarr(x, "unused.zarr", codec="zfp", tolerence=0.1),
                 lambda: xr.Dataset({"t": (("y", "x"), x)}).chunkpress.encode(tolerence=0.1)):
        with pytest.raises(TypeError, match="unexpected keyword argument 'tolerence'"):
            call()


@pytest.mark.parametrize("codec, params, error, words", [
    ("sperr", {"mode": "psnr", "quality": -5}, ValueError,
     r"quality for mode 'psnr' must be dB in \(0, 400\]"),
    ("zfp", {"tolerance": 0.1, "chunks": 0}, ValueError, r"chunks=0: a block extent must be"),
    ("zfp", {"tolerance": 0.1, "chunks": (8, -3)}, ValueError, r"got -3"),
    ("floatpred+zstd", {"level": 99}, ValueError, r"level must be an integer in 1\.\.22"),
    ("floatpred+zstd", {"level": -1}, ValueError, r"level must be an integer in 1\.\.22"),
    ("floatpred+zstd", {"level": 2.5}, TypeError, r"level must be an integer in 1\.\.22"),
    ("floatpred+zstd", {"level": "8"}, TypeError, r"level must be an integer in 1\.\.22"),
    ("zfp", {"tolerance": "0.1"}, TypeError, r"tolerance must be a number"),
    ("zfp", {"tolerance": True}, TypeError, r"tolerance must be a number"),
    ("auto", {"tolerance": "0.1"}, TypeError, r"tolerance must be a number"),
    ("auto", {"tolerance": True}, TypeError, r"tolerance must be a number"),
    ("sz3", {"tolerance": np.float32(-1)}, ValueError, r"tolerance must be finite and > 0"),
])
def test_bad_arguments_fail_before_any_task(codec, params, error, words):
    """Each value is refused by the one check of its kernel, wherever it is given: compress
    (before a task runs, the input lazy or not) and the Zarr codec."""
    ran = []
    x = np.zeros((16, 16), "float32")
    lazy = da.from_array(x, chunks=8).map_blocks(lambda b: ran.append(1) or b, dtype=x.dtype,
                                                 meta=np.empty((0, 0), x.dtype))
    for data in (x, lazy):
        with pytest.raises(error, match=words):
            chunkpress.compress(data, codec, **params)
    assert not ran
    target = {k: v for k, v in params.items() if k != "chunks"}
    if target != params:
        return
    with pytest.raises(error, match=words):
        zarr_codecs.zarr_codec(codec, target)


# --- Zarr -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_zarr_codec_configuration_round_trips(case):
    zc = zarr_codecs.zarr_codec(case.name, case.target)
    config = zc.to_dict()
    assert config["name"] == ("chunkpress.chain" if case.chain.is_chain else
                              f"chunkpress.{case.name}")
    assert json.loads(json.dumps(config)) == config
    again = type(zc).from_dict(config)
    assert again == zc and hash(again) == hash(zc)
    assert zarr.registry.get_codec_class(config["name"]) is type(zc)


@pytest.mark.parametrize("sharded", [False, True], ids=["plain", "sharded"])
@pytest.mark.parametrize("case", CASES)
def test_zarr_codec_inside_a_zarr_array(tmp_path, case, sharded):
    """Plain zarr writes and reads through the codec, in chunks and inside shards."""
    x = case.data()
    chunks = (8,) * x.ndim
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=x.shape, dtype=x.dtype,
                              chunks=chunks, shards=(16,) * x.ndim if sharded else None,
                              serializer=zarr_codecs.zarr_codec(case.name, case.target),
                              compressors=None, fill_value=0)
    array[...] = x
    back = zarr.open_array(str(tmp_path / "a.zarr"), mode="r")
    assert_kept(x, back[...], case.bound, case.name, case.relative)


# --- codec="auto" ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", AUTO)
def test_auto_takes_it_and_reads_its_streams(case):
    x = case.data()
    lossy = case.bound != 0 and "tolerance" in case.target
    tolerance = case.target["tolerance"] if lossy else None
    names = [c.name for c in sample.candidates(x.dtype, x.ndim, tolerance)]
    assert case.name in names
    c = auto.compress(x, "auto", tolerance=tolerance, candidates=[case.name])
    assert c.choice.codec == case.name
    assert_kept(x, chunkpress.decompress(c).compute(), case.bound, case.name, case.relative)
    graph = dict(c.persist().__dask_graph__())
    for index in np.ndindex(*c.numblocks):
        encoded = getattr(graph[(c.name, *index)], "value", graph[(c.name, *index)])
        assert dispatch.identify(encoded.data, x.dtype) == case.name


def test_auto_chooses_only_among_codecs_registered_for_it():
    flagged = {d.name for d in registry.descriptors() if d.auto}
    for dtype, tolerance in (("float32", 0.01), ("float32", None), ("int16", None)):
        for candidate in sample.candidates(np.dtype(dtype), 3, tolerance):
            assert set(candidate.name.split("+")) <= flagged


# --- the command ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_command_compresses_a_netcdf_file_with_it(tmp_path, capsys, case):
    x = case.data()
    source, out = tmp_path / "in.nc", tmp_path / "out.zarr"
    xr.Dataset({"t": (("z", "y", "x")[3 - x.ndim:], x)}).to_netcdf(source)
    if x.dtype.kind != "f":  # a codec of integers alone: the command keeps integers exact
        code = main(["compress", str(source), str(out), "--var", "t", "--codec", case.name])
        assert code == 1 and "which chunkpress keeps exact" in capsys.readouterr().err
        assert not out.exists()
        return
    # every parameter has its option: --NAME, from the registry where the command had none
    flags = [a for k, v in case.params.items() for a in ("--" + k.replace("_", "-"), str(v))]
    code = main(["compress", str(source), str(out), "--var", "t", "--codec", case.name,
                 *flags, "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    back = chunkpress.from_zarr(str(out), "t").compute()
    assert_kept(x, back, case.bound, case.name, case.relative)


# --- what compress takes --------------------------------------------------------------------


@pytest.mark.parametrize("name", chunkpress.CODECS)
def test_every_name_in_chunkpress_codecs_compresses(name):
    spec = codecs.get_codec(name)
    dtype = np.dtype("float32") if np.dtype("float32") in spec.dtypes else spec.dtypes[0]
    x = (np.arange(4 * 8 * 8).reshape(4, 8, 8) % 23).astype(dtype)
    params = {} if spec.is_auto else {k: v for p in spec.chain.parts
                                      for k, v in p.example.items()}
    c = chunkpress.compress(x, name, **params)
    bound = codecs.bound(spec, c.params)
    assert_kept(x, chunkpress.decompress(c).compute(), bound, name)


def test_chunkpress_codecs_is_what_compress_takes():
    """A filter alone is taken where its descriptor names the codec after it (it is then that
    chain: "bitround" is "bitround+zstd"), refused otherwise; an unavailable codec never."""
    unavailable = registry.names(available=False)
    filters = registry.names("filter")
    for name in unavailable + filters:
        d = registry.get(name)
        if d.kind == "filter" and d.terminal and d.available:
            assert name in chunkpress.CODECS
            x = np.linspace(1, 2, 16, dtype=d.dtypes[0]).reshape(4, 4)
            c = chunkpress.compress(x, name, **d.example)
            assert c.codec == f"{name}+{d.terminal}" and c.spec == codecs.get_codec(c.codec)
            continue
        assert name not in chunkpress.CODECS
        with pytest.raises(ValueError):
            chunkpress.compress(np.zeros((4, 4), "uint16"), name)


# --- a codec added by its kernel module alone ------------------------------------------------

#: two real codecs, LZ4F framing from imagecodecs, in one new kernel module: an array codec
#: that writes chunkpress frames and a bytes codec, with a parameter no codec had before
ADDED_MODULE = '''"""LZ4F (imagecodecs): an array codec (lz4fa) and a bytes codec (lz4fb)."""

import imagecodecs
import numpy as np

from . import _frame, _lossy
from ._common import ChunkpressError, check_integer
from .registry import Descriptor, Param


class LZ4FA:
    available = bool(imagecodecs.LZ4F.available)


class Lz4faError(ChunkpressError):
    pass


def _check(value, dtype=None):
    return check_integer("lz4f", "blocksizeid", value, 4, 7)


def _encode(block, blocksizeid, out=None):
    return imagecodecs.lz4f_encode(block.tobytes(), blocksizeid=blocksizeid)


def _decode(stream, shape, dtype, params):
    return np.frombuffer(imagecodecs.lz4f_decode(stream), dtype).reshape(shape)


_SPEC = _lossy.Spec("lz4fa", Lz4faError, (1, 2, 3), _encode, _decode, own_stream=False,
                    dtypes=tuple(map(np.dtype, ("int16", "float32", "float64"))), mask=False,
                    writes_into=False, decode_bare=lambda *args: _frame.frame_codec(b""))


def lz4fa_encode(data, *, blocksizeid=None, out=None):
    return _lossy.encode(_SPEC, data, None if blocksizeid is None else _check(blocksizeid),
                         None, out)


def lz4fa_decode(data, *, out=None):
    return _lossy.decode(_SPEC, data, None, None, out)


def lz4fa_check(data):
    return _frame.frame_codec(data) == "lz4fa"


def _bytes_encode(data, *, blocksizeid=None):
    return imagecodecs.lz4f_encode(data, blocksizeid=blocksizeid)


def _bytes_decode(stream, nbytes):
    return imagecodecs.lz4f_decode(stream, out=max(nbytes, 1))


_PARAMS = (Param("blocksizeid", _check, "LZ4F block size id, 4..7"),)
DESCRIPTORS = (
    Descriptor(name="lz4fa", kind="array", encode=lz4fa_encode, decode=lz4fa_decode,
               error=Lz4faError, dtypes=_SPEC.dtypes, ndims=_SPEC.ndims, params=_PARAMS,
               check=lz4fa_check, lossless=True, available=LZ4FA.available, frame_id=250,
               auto=("lossless",), example={"blocksizeid": 5}, doc="LZ4F frames, lossless"),
    Descriptor(name="lz4fb", kind="bytes", encode=_bytes_encode, decode=_bytes_decode,
               error=Lz4faError, dtypes=_SPEC.dtypes, params=_PARAMS, lossless=True,
               available=LZ4FA.available, recognised="none", doc="LZ4F, lossless"),
)
'''

ADDED_CHECKS = '''
import sys
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

import chunkpress
from chunkpress import auto
from chunkpress.cli import main
from chunkpress.graph import sample

here = Path.cwd()
assert Path(chunkpress.__file__).is_relative_to(here), chunkpress.__file__
x = np.cumsum(np.random.default_rng(1).standard_normal((16, 12, 8)), axis=0).astype("float32")
x[0, 0, :3] = np.nan
names = {"lz4fa": {"blocksizeid": 5}, "lz4fb": {"blocksizeid": 6},
         "floatpred+lz4fb": {"blocksizeid": 4}, "bitround+lz4fb": {"blocksizeid": 7, "keepbits": 9}}
assert set(names) <= set(chunkpress.CODECS), chunkpress.CODECS
assert chunkpress.lz4fa_encode is sys.modules["chunkpress.kernels.lz4f"].lz4fa_encode
ds = xr.Dataset({"t": (("z", "y", "x"), x)})
nc = here / "in.nc"
ds.to_netcdf(nc)
for name, params in names.items():
    exact = not name.startswith("bitround")
    def same(y, what):
        assert y.shape == x.shape and y.dtype == x.dtype, what
        err = np.nanmax(np.abs(y - x)) if not exact else 0
        assert (np.array_equal(y, x, equal_nan=True) if exact else err <= 2.0**-10 * np.nanmax(np.abs(x))), (what, err)
    c = chunkpress.compress(x, name, chunks=(8, 6, 4), verify=True, **params)
    assert c.codec == name and c.params.get("blocksizeid") == params["blocksizeid"], c.params
    same(chunkpress.decompress(c).compute(), f"compress {name}")
    path = str(here / f"{name}.zarr")
    chunkpress.to_zarr(x, path, codec=name, chunks=(8, 6, 4), **params)
    same(zarr.open_array(path, mode="r")[...], f"to_zarr {name}")
    config = zarr.open_array(path, mode="r").metadata.codecs[0].to_dict()["configuration"]
    assert config["blocksizeid"] == params["blocksizeid"], config
    ds.chunkpress.to_zarr(path + "2", codec=name, chunks=(8, 6, 4), **params)
    same(xr.open_zarr(path + "2")["t"].values, f"accessor {name}")
    code = main(["compress", str(nc), path + "3", "--codec", name, "--workers", "1",
                 "--blocksizeid", str(params["blocksizeid"]),
                 *(["--keepbits", "9"] if not exact else [])])
    assert code == 0, name
    same(chunkpress.from_zarr(path + "3", "t").compute(), f"command {name}")
    config = zarr.open_group(path + "3", mode="r")["t"].metadata.codecs[0].to_dict()
    assert config["configuration"]["blocksizeid"] == params["blocksizeid"], config
# the command's option for the new parameter, generated from the registry
import contextlib
import io


def command(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            code = main(["compress", *map(str, argv)])
        except SystemExit as exc:  # the parser's usage errors
            code = exc.code
    return code, err.getvalue() + out.getvalue()


def stored(path):
    return zarr.open_group(path, mode="r")["t"].metadata.codecs[0].to_dict()["configuration"]


code, text = command("--help")
assert code == 0 and "--blocksizeid [VAR=]BLOCKSIZEID" in text, text
assert "LZ4F block size id, 4..7 (lz4fa, lz4fb)" in " ".join(text.split()), text
assert "[variables.NAME] tables of codec, tolerance," in " ".join(text.split()), text
assert "digits, method, blocksizeid; the command line's" in " ".join(text.split()), text
for bad, words in (("9", "got 9"), ("abc", "got 'abc'"), ("t=4.5", "got 4.5")):
    code, err = command(nc, here / "bad.zarr", "--codec", "lz4fa", "--blocksizeid", bad)
    where = " for t" if "=" in bad else ""
    assert code == 2, (bad, code, err)
    assert f"--blocksizeid{where}: lz4f: blocksizeid must be an integer in 4..7, {words}" in err, err
    assert not (here / "bad.zarr").exists()
code, err = command(nc, here / "bad.zarr", "--tolerance", "0.1", "--blocksizeid", "5")
assert code == 1 and "--blocksizeid 5: no variable's codec takes it (zfp takes" in err, err
assert not (here / "bad.zarr").exists()
code, err = command(nc, here / "per.zarr", "--codec", "floatpred+lz4fb", "--blocksizeid",
                    "t=7", "--workers", "1")
assert code == 0 and stored(here / "per.zarr")["blocksizeid"] == 7, (err, stored(here / "per.zarr"))
toml = here / "bounds.toml"
toml.write_text("""[defaults]
codec = "lz4fa"
blocksizeid = 6
[variables.t]
blocksizeid = 4
""")
code, err = command(nc, here / "toml.zarr", "--config", toml, "--workers", "1")
assert code == 0 and stored(here / "toml.zarr")["blocksizeid"] == 4, err
same = chunkpress.from_zarr(str(here / "toml.zarr"), "t").compute()
assert np.array_equal(same, x, equal_nan=True)
toml.write_text("""[defaults]
codec = "lz4fa"
[variables.t]
blocksizeid = 8
""")
code, err = command(nc, here / "bad.zarr", "--config", toml)
assert code == 1 and ("bounds.toml: [variables.t] blocksizeid: lz4f: blocksizeid must be an "
                      "integer in 4..7, got 8") in err, err
toml.write_text("""[defaults]
codec = "zfp"
tolerance = 0.1
blocksizeid = 5
""")
code, err = command(nc, here / "toml2.zarr", "--config", toml, "--workers", "1")
assert code == 0, err  # a file's [defaults] may serve several codecs: for those that take it
code, err = command(nc, here / "bad.zarr", "--tolerance", "0.1", "--blocksizeid", "t=5")
assert code == 1 and "blocksizeid" in err and "zfp" in err, err
assert not (here / "bad.zarr").exists()

assert "lz4fa" in [c.name for c in sample.candidates(x.dtype, 3, None)]
assert auto.compress(x, "auto", candidates=["lz4fa"]).choice.codec == "lz4fa"
sys.path.insert(0, sys.argv[1])
import make_fixtures
made = {case[1]: case[-1] for case in make_fixtures.registry_fixtures(
    make_fixtures.json.loads((make_fixtures.HERE / "manifest.json").read_text())["fixtures"])}
assert made == {"lz4fa": "kernel", "lz4fb": "graph"}, made
print("added codec works at every layer")
'''


def test_a_codec_added_by_its_kernel_module_alone_works_at_every_layer(tmp_path):
    """README "Adding a codec": a copy of the package with one more kernel module (and nothing
    else) compresses with its codecs, and their new parameter, through compress, to_zarr, the
    accessor, chains, auto and the command, and make_fixtures.py --add finds them."""
    import shutil
    import subprocess
    import sys

    package = Path(chunkpress.__file__).resolve().parent
    copy = tmp_path / "chunkpress"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "kernels" / "lz4f.py").write_text(ADDED_MODULE)
    (tmp_path / "checks.py").write_text(ADDED_CHECKS)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "checks.py"), str(FIXTURES)], cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)}, capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "added codec works at every layer" in result.stdout
