"""Zarr v3: the chunkpress codecs, to_zarr / from_zarr, every store kind, damaged chunks."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import tomllib

import dask
import dask.array as da
from dask.delayed import Delayed
import numpy as np
import pytest
import zarr
from zarr.storage import MemoryStore, ZipStore

import chunkpress
from chunkpress.storage import codecs as cpzarr
from chunkpress.graph import codecs, dispatch
from chunkpress.kernels import registry
from chunkpress.storage import from_zarr, info, integrity, to_zarr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: (codec, parameters, max error allowed, dtype): every codec of the registry but auto
CODEC_CASES = [
    ("zfp", {"tolerance": 0.01}, 0.01, "float32"),
    ("sperr", {"tolerance": 0.01}, 0.01, "float32"),
    ("sz3", {"tolerance": 0.01}, 0.01, "float32"),
    ("lerc", {"tolerance": 0.01}, 0.01, "float32"),
    ("szip", {}, 0.0, "float32"),
    ("pcodec", {}, 0.0, "float32"),
    ("jetraw", {}, 0.0, "uint16"),
    ("floatpred+zstd", {}, 0.0, "float32"),
]
#: a registered array codec not listed above: its descriptor's example, float32 where it takes it
CODEC_CASES += [(d.name, dict(d.example), d.max_error(d.check_target(d.example)),
                 "float32" if np.dtype("float32") in d.dtypes else d.dtypes[0].name)
                for d in registry.descriptors()
                if d.kind == "array" and d.name not in {c[0] for c in CODEC_CASES}]


def _unavailable(name):
    """Why the codec ``name`` cannot run in this build (the kernel's own reason), or None."""
    if name in registry.names(available=False):
        try:
            codecs.get_codec(name)
        except ValueError as exc:
            return str(exc)
        return f"{name}: not available in this build"
    codecs.get_codec(name)  # a misspelt name fails, it is not skipped
    return None


def _case(name, *args):
    """One codec's case, skipped with the kernel's reason where this build lacks the codec."""
    reason = _unavailable(name)
    marks = [pytest.mark.skip(reason=reason)] if reason else []
    return pytest.param(name, *args, id=name, marks=marks)


CODECS = [_case(*case) for case in CODEC_CASES]


def test_codec_cases_name_every_registered_codec():
    assert {c[0] for c in CODEC_CASES} >= set(registry.names("array"))


def field(shape=(40, 28, 20), dtype="float32", seed=0, nan=True):
    """A smooth field with a few missing values, and shapes that leave ragged edge chunks."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal(shape), axis=0)
    if np.dtype(dtype).kind in "iu":  # counts: no missing values
        return np.round((x - x.min()) * 100).astype(dtype)
    x = x.astype(dtype)
    if nan:
        x[3, 4, 5] = np.nan
        x[-1, -1, -1] = np.inf
    return x


def check_values(x, y, bound):
    finite = np.isfinite(x)
    assert np.array_equal(np.isfinite(y), finite)
    assert np.array_equal(x[~finite], y[~finite], equal_nan=True)
    assert np.max(np.abs(x[finite].astype(float) - y[finite])) <= bound


def flip_byte(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(path, "wb").write(bytes(data))


# --- the codecs ----------------------------------------------------------------------------


@pytest.mark.parametrize("codec, params, bound, dtype", CODECS)
def test_round_trip_through_a_directory_store(tmp_path, codec, params, bound, dtype):
    x = field(dtype=dtype)
    path = str(tmp_path / "a.zarr")
    to_zarr(x, path, codec=codec, chunks=(16, 12, 8), **params)
    y = zarr.open_array(path, mode="r")[:]
    check_values(x, y, bound)
    assert np.array_equal(from_zarr(path).compute(), y, equal_nan=True)
    # the stored values are exactly those of the compressed array
    c = chunkpress.compress(x, codec, chunks=(16, 12, 8), **params)
    assert np.array_equal(chunkpress.decompress(c).compute(), y, equal_nan=True)


@pytest.mark.parametrize("codec, params, bound, dtype", CODECS)
def test_codec_config_round_trips_and_is_namespaced(tmp_path, codec, params, bound, dtype):
    zc = cpzarr.zarr_codec(codec, codecs.normalize_targets(codecs.get_codec(codec), params))
    config = zc.to_dict()
    assert config["name"].startswith("chunkpress.")
    assert json.loads(json.dumps(config)) == config
    again = type(zc).from_dict(config)
    assert again == zc and hash(again) == hash(zc)
    assert zarr.registry.get_codec_class(config["name"]) is type(zc)
    path = str(tmp_path / "a.zarr")
    to_zarr(field(dtype=dtype), path, codec=codec, chunks=(16, 12, 8), **params)
    stored = json.load(open(os.path.join(path, "zarr.json")))["codecs"]
    # the write's identifier rides with the target: every chunk's place record names it
    write = stored[0]["configuration"].pop("write")
    assert len(write) == 16 and int(write, 16) >= 0
    assert stored == [config, {"name": "crc32c"}]


def test_codec_parameters_are_validated_when_made():
    with pytest.raises(ValueError, match="tolerance"):
        cpzarr.ZfpCodec(tolerance=-1.0)
    with pytest.raises(ValueError, match="exactly one"):
        cpzarr.ZfpCodec(tolerance=0.1, rate=8)
    with pytest.raises(ValueError, match="chain"):
        cpzarr.ChainCodec(chain="zfp")
    with pytest.raises(ValueError, match="zfp"):
        cpzarr.ZfpCodec.from_dict({"name": "chunkpress.zfp", "configuration": {}})
    with pytest.raises(dataclasses_frozen_error()):
        cpzarr.ZfpCodec(tolerance=0.1).tolerance = 1.0


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_zarr_itself_can_write_with_the_codec():
    x = field((21, 13, 9))
    array = zarr.create_array(MemoryStore(), shape=x.shape, chunks=(8, 8, 8), dtype=x.dtype,
                              serializer=cpzarr.ZfpCodec(tolerance=0.05),
                              compressors=[zarr.codecs.Crc32cCodec()])
    array[:] = x
    check_values(x, array[:], 0.05)
    with pytest.raises(ValueError, match="dtype"):
        zarr.create_array(MemoryStore(), shape=(8,), dtype="int16",
                          serializer=cpzarr.ZfpCodec(tolerance=0.05))


# --- to_zarr -------------------------------------------------------------------------------


def _stores(tmp_path):
    return {
        "directory": (str(tmp_path / "d.zarr"), lambda: str(tmp_path / "d.zarr")),
        "zip path": (str(tmp_path / "z.zip"), lambda: str(tmp_path / "z.zip")),
        "zip store": (ZipStore(tmp_path / "s.zip", mode="w"),
                      lambda: ZipStore(tmp_path / "s.zip", mode="r")),
        "memory": (MemoryStore(), None),
        "fsspec url": (f"memory://chunkpress-test/{tmp_path.name}.zarr",
                       lambda: f"memory://chunkpress-test/{tmp_path.name}.zarr"),
    }


@pytest.mark.parametrize("kind", ["directory", "zip path", "zip store", "memory", "fsspec url"])
def test_round_trip_through_every_store_kind(tmp_path, kind):
    x = field((24, 20, 12))
    store, reopen = _stores(tmp_path)[kind]
    to_zarr(x, store, tolerance=0.01, chunks=(8, 8, 8))
    if isinstance(store, ZipStore):
        store.close()
    read = reopen() if reopen else store
    y = from_zarr(read).compute()
    check_values(x, y, 0.01)
    read = reopen() if reopen else store
    if isinstance(read, str) and read.endswith(".zip"):
        read = ZipStore(read, mode="r")
    assert np.array_equal(zarr.open_array(read, mode="r")[:], y, equal_nan=True)


def test_existing_stores_are_refused_unless_overwrite(tmp_path):
    path = str(tmp_path / "a.zarr")
    to_zarr(field(), path, tolerance=0.01)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        to_zarr(field(), path, tolerance=0.01)
    to_zarr(field(), str(tmp_path / "a.zip"), tolerance=0.01)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        to_zarr(field(), str(tmp_path / "a.zip"), tolerance=0.01)
    x = field(seed=1)
    to_zarr(x, path, tolerance=0.5, overwrite=True)
    check_values(x, zarr.open_array(path, mode="r")[:], 0.5)


def test_every_block_is_encoded_once_and_written_as_its_chunk(tmp_path, monkeypatch):
    calls = []
    encode = dispatch.encode
    monkeypatch.setattr(dispatch, "encode", lambda *a, **k: calls.append(1) or encode(*a, **k))
    x = field((24, 20, 12), nan=False)
    path = str(tmp_path / "a.zarr")
    with dask.config.set(scheduler="threads"):
        to_zarr(x, path, tolerance=0.01, chunks=(8, 8, 8))
    assert len(calls) == 3 * 3 * 2
    # the chunk objects are the kernel streams (edge blocks hold their real extent) + CRC-32C
    stream = open(os.path.join(path, "c", "2", "2", "1"), "rb").read()
    assert chunkpress.zfp_decode(stream[:-4]).shape == (8, 4, 4)
    assert np.array_equal(chunkpress.zfp_decode(stream[:-4]),
                          chunkpress.zfp_decode(chunkpress.zfp_encode(x[16:, 16:, 8:],
                                                                      tolerance=0.01)))


@pytest.mark.parametrize("make, codec, params", [
    (lambda x: x, "zfp", {"tolerance": 0.01}),
    (lambda x: da.from_array(x, chunks=(8, 20, 12)), "zfp", {"tolerance": 0.01}),
    (lambda x: da.from_array(x, chunks=(16, 16, 8)), "sz3", {"tolerance": 0.01}),
    (lambda x: x, "sperr", {"mode": "psnr", "quality": 60}),  # each block its own arguments
], ids=["numpy", "dask", "dask-rechunked", "sperr-psnr"])
def test_the_chunks_written_are_the_blocks_compress_makes(tmp_path, make, codec, params):
    # to_zarr encodes several blocks per task; each chunk must still be exactly its block
    x = field((24, 20, 12), nan=True)
    path = str(tmp_path / "a.zarr")
    with dask.config.set(scheduler="threads", num_workers=2):
        to_zarr(make(x), path, codec=codec, chunks=(8, 8, 8), verify=True, **params)
        delayed = chunkpress.compress(x, codec, chunks=(8, 8, 8), **params).blocks.to_delayed()
        blocks = dask.compute(*delayed.flat)
    assert delayed.shape == (3, 3, 2)
    write = json.load(open(os.path.join(path, "zarr.json")))["codecs"][0]["configuration"][
        "write"]
    for index, block in zip(np.ndindex(*delayed.shape), blocks):
        stored = open(os.path.join(path, "c", *map(str, index)), "rb").read()
        # the block's stream, then the place record naming this index and write, then a CRC
        stream, place = integrity.split(integrity.unseal(stored), write, 3, index)
        assert bytes(stream) == block.data and place == index, index


def test_a_compressed_array_is_written_without_encoding_again(tmp_path, monkeypatch):
    x = field((24, 20, 12))
    c = chunkpress.compress(x, tolerance=0.01, chunks=(8, 8, 8)).persist()
    calls = []
    monkeypatch.setattr(dispatch, "encode", lambda *a, **k: calls.append(1))
    path = str(tmp_path / "a.zarr")
    to_zarr(c, path)
    assert calls == []
    check_values(x, from_zarr(path).compute(), 0.01)
    with pytest.raises(ValueError, match="already compressed"):
        to_zarr(c, str(tmp_path / "b.zarr"), tolerance=0.1)


def test_compute_false_returns_a_delayed(tmp_path):
    x = field((24, 20, 12))
    path = str(tmp_path / "a.zarr")
    delayed = to_zarr(da.from_array(x, chunks=(8, 8, 8)), path, tolerance=0.01, compute=False)
    assert isinstance(delayed, Delayed)
    assert not os.path.exists(os.path.join(path, "c"))  # only the metadata so far
    delayed.compute()
    check_values(x, from_zarr(path).compute(), 0.01)


def test_irregular_dask_chunks_become_a_chunk_grid(tmp_path):
    x = field((36, 20, 12))
    path = str(tmp_path / "a.zarr")
    to_zarr(da.from_array(x, chunks=((8, 16, 12), 20, 12)), path, tolerance=0.01)
    array = zarr.open_array(path, mode="r")
    check_values(x, array[:], 0.01)


def test_lossless_chains_pad_their_edge_blocks(tmp_path):
    x = field((21, 13, 9), dtype="float64")
    path = str(tmp_path / "a.zarr")
    to_zarr(x, path, codec="floatpred+zstd", chunks=(8, 8, 8))
    assert np.array_equal(from_zarr(path).compute(), x, equal_nan=True)
    c = chunkpress.compress(x, "floatpred+zstd", chunks=(8, 8, 8))
    with pytest.raises(ValueError, match="edge blocks"):
        to_zarr(c, str(tmp_path / "b.zarr"))


def test_from_zarr_is_lazy_and_reads_only_the_chunks_touched(tmp_path):
    x = field((24, 20, 12))
    path = str(tmp_path / "a.zarr")
    to_zarr(x, path, tolerance=0.01, chunks=(8, 8, 8))
    y = from_zarr(path)
    assert y.chunks == ((8, 8, 8), (8, 8, 4), (8, 4))
    for name in ("0/1/0", "2/2/1", "1/0/1"):
        flip_byte(os.path.join(path, "c", *name.split("/")))
    check_values(x[:8, :8, :8], y[:8, :8, :8].compute(), 0.01)
    check_values(x[8:16, 8:16], zarr.open_array(path, mode="r")[8:16, 8:16], 0.01)


# --- damaged chunks ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["stream", "checksum"])
def test_a_flipped_byte_is_an_error_naming_the_chunk(tmp_path, where):
    x = field((24, 20, 12))
    path = str(tmp_path / "a.zarr")
    to_zarr(x, path, tolerance=0.01, chunks=(8, 8, 8))
    chunk = os.path.join(path, "c", "1", "2", "0")
    if where == "stream":
        flip_byte(chunk)
    else:
        data = bytearray(open(chunk, "rb").read())
        data[-1] ^= 1
        open(chunk, "wb").write(bytes(data))
    with pytest.raises(chunkpress.ZfpError, match=r"chunk \(1, 2, 0\).*damaged"):
        from_zarr(path).compute()
    with pytest.raises(ValueError, match="checksum"):
        zarr.open_array(path, mode="r")[:]


# --- info ----------------------------------------------------------------------------------


def test_info_reports_codec_parameters_sizes_and_bound(tmp_path):
    x = field()
    path = str(tmp_path / "a.zarr")
    to_zarr(x, path, tolerance=0.01, chunks=(16, 12, 8))
    table = info(path)
    row = table.iloc[0]
    assert (row.codec, row.parameters, row.error_bound) == ("zfp", "tolerance=0.01", 0.01)
    sizes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path + "/c")
                for f in fs)
    assert row.stored_bytes == sizes and row.original_bytes == x.nbytes
    assert row.ratio == pytest.approx(x.nbytes / sizes)


# --- a new process where chunkpress is installed but never imported ------------------------


def _installed_env(tmp_path) -> dict:
    """The environment of a new process that sees chunkpress as installed.

    Under CI chunkpress is pip-installed and its entry points are in its metadata. In a source
    tree that is not installed, a dist-info with the entry points of pyproject.toml stands in
    for the installation (entry points are read from metadata, never from the package).
    """
    env = dict(os.environ)
    names = {e.name for e in importlib.metadata.entry_points(group="zarr.codecs")}
    if "chunkpress.zfp" in names:
        return env
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as file:
        points = tomllib.load(file)["project"]["entry-points"]["zarr.codecs"]
    info_dir = tmp_path / "site" / "chunkpress-0.0.0.dist-info"
    info_dir.mkdir(parents=True)
    (info_dir / "METADATA").write_text("Metadata-Version: 2.1\nName: chunkpress\nVersion: 0.0.0\n")
    (info_dir / "entry_points.txt").write_text(
        "[zarr.codecs]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), ROOT])
    return env


NEW_PROCESS = """
import sys, numpy as np, zarr
array = zarr.open_array({path!r}, mode="r")
print(array.metadata.to_dict()["codecs"][0]["name"])
np.save({out!r}, array[8:16, :, 4:])
"""


def test_a_store_opens_in_a_new_process_without_importing_chunkpress(tmp_path):
    x = field((24, 20, 12))
    path = str(tmp_path / "a.zarr")
    to_zarr(x, path, tolerance=0.01, chunks=(8, 8, 8))
    out = str(tmp_path / "part.npy")
    script = textwrap.dedent(NEW_PROCESS.format(path=path, out=out))
    result = subprocess.run([sys.executable, "-c", script], env=_installed_env(tmp_path),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "chunkpress.zfp"
    assert np.array_equal(np.load(out), from_zarr(path)[8:16, :, 4:].compute(), equal_nan=True)
