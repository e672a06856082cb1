"""The chunkpress command: happy paths, and each user error as one line and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from chunkpress.cli import main
from chunkpress.demo import demo_dataset

from test_zarr import _installed_env


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A small netCDF file (sea-surface temperature with land, wind, times)."""
    path = tmp_path_factory.mktemp("cli") / "in.nc"
    demo_dataset((4, 36, 72)).to_netcdf(path)
    return str(path)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_compress_info_decompress(tmp_path, capsys, source):
    out = tmp_path / "out.zarr"
    code, stdout, err = run(capsys, "compress", source, out, "--codec", "zfp", "--tolerance",
                            "0.01", "--workers", "2")
    assert code == 0, err
    assert "sst" in stdout and "zfp" in stdout
    original = xr.open_dataset(source)
    back = xr.open_zarr(out)
    assert float(abs(back.sst - original.sst).max()) <= 0.01
    assert bool((back.sst.isnull() == original.sst.isnull()).all())
    assert back.sst.encoding["_FillValue"] == original.sst.encoding["_FillValue"]

    code, stdout, err = run(capsys, "info", out)
    assert code == 0, err
    line = next(l for l in stdout.splitlines() if l.startswith("sst"))
    assert "zfp" in line and "tolerance=0.01" in line

    nc = tmp_path / "back.nc"
    code, stdout, err = run(capsys, "decompress", out, nc)
    assert code == 0, err
    again = xr.open_dataset(nc)
    assert float(abs(again.sst - original.sst).max()) <= 0.01
    assert again.sst.attrs == original.sst.attrs
    assert np.array_equal(again.land.values, original.land.values)


def test_compress_selected_variables_with_verify(tmp_path, capsys, source):
    out = tmp_path / "out.zarr"
    code, stdout, err = run(capsys, "compress", source, out, "--tolerance", "0.1",
                            "--var", "wind", "--verify")
    assert code == 0, err
    rows = {l.split()[0]: l for l in stdout.splitlines() if l[:4] in ("sst ", "wind")}
    assert "zfp" in rows["wind"] and "exact" in rows["sst"]
    back = xr.open_zarr(out)
    assert back.sst.encoding["serializer"].to_dict()["name"] != "chunkpress.zfp"
    assert np.array_equal(back.sst.values, xr.open_dataset(source).sst.values, equal_nan=True)


def test_compress_with_auto_and_info_shows_the_choice(tmp_path, capsys, source):
    out = tmp_path / "auto.zarr"
    code, stdout, err = run(capsys, "compress", source, out, "--codec", "auto", "--tolerance",
                            "0.01")
    assert code == 0, err
    original = xr.open_dataset(source)
    back = xr.open_zarr(out)
    assert float(abs(back.sst - original.sst).max()) <= 0.01
    assert bool((back.sst.isnull() == original.sst.isnull()).all())
    code, stdout, err = run(capsys, "info", out)
    assert code == 0, err
    line = next(l for l in stdout.splitlines() if l.startswith("sst"))
    assert "tolerance=0.01" in line  # what auto chose and why: below the table (100 columns)
    assert any(l.split()[:1] == ["sst"] and "sampled ratios" in l for l in stdout.splitlines())


def test_evaluate_prints_the_table_and_draws_it(tmp_path, capsys, source):
    png = tmp_path / "rd.png"
    code, stdout, err = run(capsys, "evaluate", source, "--var", "sst", "--codecs", "zfp,sz3",
                            "--tolerances", "0.1,0.01", "--plot", png)
    assert code == 0, err
    rows = [l for l in stdout.splitlines() if "tolerance=" in l]
    assert len(rows) == 4 and "zfp" in stdout and "sz3" in stdout
    with Image.open(png) as image:  # curves, the original and the error of one variable
        assert image.format == "PNG" and image.size == (3 * 520, 420)
    code, stdout, err = run(capsys, "evaluate", source, "--plot", png)
    assert code == 1 and "--overwrite" in err


def test_demo_runs_the_complete_example(tmp_path, capsys):
    code, stdout, err = run(capsys, "demo", "--out", tmp_path)
    assert code == 0, err
    assert "sst" in stdout and "the same cells" in stdout
    assert os.path.isdir(tmp_path / "ocean.zarr")


@pytest.mark.parametrize("argv, code, words", [
    (["compress", "missing.nc", "{tmp}/o.zarr", "--tolerance", "0.1"], 1, "no such file"),
    (["compress", "{src}", "{tmp}/o.zarr", "--codec", "nope", "--tolerance", "0.1"], 1,
     "codec must be one of"),
    (["compress", "{src}", "{tmp}/o.zarr", "--tolerance", "-1"], 2, "tolerance"),
    (["compress", "{src}", "{tmp}/o.zarr", "--tolerance", "abc"], 2, "must be a number"),
    (["compress", "{src}", "{tmp}/o.zarr"], 1, "tolerance"),
    (["compress", "{src}", "{tmp}/o.zarr", "--tolerance", "0.1", "--var", "nope"], 1,
     "'nope'"),
    (["compress", "{src}", "{tmp}/o.zarr", "--tolerance", "0.1", "--workers", "0"], 2,
     "at least 1"),
    (["compress", "{src}", "{src}", "--tolerance", "0.1"], 1,
     "compress writes a Zarr store, not netCDF"),
    (["decompress", "{tmp}/none.zarr", "{tmp}/o.nc"], 1, "no such file"),
    (["info", "{tmp}/none.zarr"], 1, "no such file"),
    (["frobnicate"], 2, "invalid choice"),
    (["evaluate", "{src}", "--codecs", "zfp,nope"], 1, "codec must be one of"),
    (["evaluate", "{src}", "--tolerances", "0.1,x"], 2, "must be a number"),
    (["evaluate", "{src}", "--var", "nope"], 1, "'nope'"),
    (["evaluate", "{tmp}/none.nc"], 1, "no such file"),
])
def test_user_errors_are_one_line_and_exit_non_zero(tmp_path, capsys, source, argv, code, words):
    argv = [a.format(tmp=tmp_path, src=source) for a in argv]
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        got = exc.code
    out, err = capsys.readouterr()
    assert got == code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert words in lines[0] and "Traceback" not in err


def test_the_installed_command_and_python_m(tmp_path, source):
    env = _installed_env(tmp_path)
    result = subprocess.run([sys.executable, "-m", "chunkpress.cli", "info", "nowhere.zarr"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("chunkpress info: error: nowhere.zarr")
    out = tmp_path / "o.zarr"
    result = subprocess.run([sys.executable, "-m", "chunkpress.cli", "compress", source, str(out),
                             "--tolerance", "0.5"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "wind" in result.stdout


def test_refusals_speak_of_the_command_option(tmp_path, capsys, source):
    """The store layer's refusal names its keyword (overwrite=True); the command's says the
    option the user types, and the directory it refused keeps its file."""
    out = tmp_path / "mine.zarr"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert main(["compress", str(source), str(out), "--tolerance", "0.1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and "overwrite=True" not in err, err
    assert (out / "notes.txt").read_text() == "my notes"


@pytest.mark.parametrize("nbytes, said", [
    (512, "512"), (999, "999"), (1000, "0.977K"), (1024, "1K"), (41472, "40.5K"),
    (1010 * 1024, "0.986M"), (999.96 * 1024, "0.977M"), (5 * 2**20, "5M"), (3 * 2**40, "3T"),
])
def test_sizes_are_three_digits_at_most(nbytes, said):
    """info's sizes as ls -h says them: never 1.01e+03K."""
    from chunkpress.cli._common import size

    assert size(nbytes) == said


def test_the_log_has_no_library_warnings(tmp_path):
    """A packed int16 without a _FillValue and a text variable: the command's stderr holds
    its own lines only (xarray and zarr warned three times on such a file)."""
    rng = np.random.default_rng(0)
    ds = xr.Dataset({"p": (("time", "y", "x"), (rng.random((4, 20, 30)) * 100).astype("f4")),
                     "station": (("time",), np.array(["a", "bb", "c", "d"]))},
                    coords={"time": np.arange(4)})
    ds["p"].encoding.update(dtype="int16", scale_factor=0.01, add_offset=0.0)
    ds.to_netcdf(tmp_path / "w.nc")
    result = subprocess.run([sys.executable, "-m", "chunkpress.cli", "compress",
                             str(tmp_path / "w.nc"), str(tmp_path / "w.zarr"), "--tolerance",
                             "0.1"], env=_installed_env(tmp_path), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    back = xr.open_zarr(tmp_path / "w.zarr")
    assert list(back["station"].values) == ["a", "bb", "c", "d"]


def test_every_codec_parameter_has_its_option_and_config_key(capsys):
    """Each parameter an available registered codec declares is an option of `chunkpress
    compress` (--NAME, generated from the registry where the command had none) and a key of
    --config: a codec added by its kernel module alone reaches the command (README "Adding a
    codec"; tests/test_conformance.py adds one with a new parameter and runs it)."""
    from chunkpress.cli import bounds
    from chunkpress.kernels import registry

    with pytest.raises(SystemExit) as exit:
        main(["compress", "--help"])
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    config = text.split("[variables.NAME] tables of ")[1].split(";")[0].split(", ")
    for d in registry.descriptors():
        for param in d.params if d.available else ():
            assert f"--{param.name.replace('_', '-')} [VAR=]" in text, (d.name, param.name)
            assert param.name in config and param.name in bounds.keys(), (d.name, param.name)


def test_a_codec_given_to_an_integer_variable_is_named_in_the_error(tmp_path, capsys):
    """--codec i=sz3 on an int32 variable said "--codec i=: 'i' is stored as int32": the
    error shows what was given, for every option given as VAR=VALUE."""
    source = tmp_path / "in.nc"
    xr.Dataset({"i": (("y", "x"), np.arange(64, dtype="int32").reshape(8, 8)),
                "t": (("y", "x"), np.linspace(0, 1, 64, dtype="float32").reshape(8, 8))}
               ).to_netcdf(source)
    for argv, said in ((["--codec", "i=sz3", "--tolerance", "0.1"], "--codec i=sz3: "),
                       (["--tolerance", "i=0.5"], "--tolerance i=0.5: "),
                       (["--tolerance", "0.1", "--tolerance", "i=2%"], "--tolerance i=2%: "),
                       (["--codec", "pcodec", "--level", "i=3"], "--level i=3: ")):
        code, _, err = run(capsys, "compress", source, tmp_path / "out.zarr", *argv)
        assert code == 1 and f"{said}'i' is stored as int32" in err, (argv, err)
        assert not (tmp_path / "out.zarr").exists()
