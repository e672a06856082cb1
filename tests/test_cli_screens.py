"""What the chunkpress command shows: the progress bar on a real terminal (a pseudo-terminal),
plain log lines in a file or a pipe (also with a dask.distributed scheduler), `info` in 100
columns and as JSON, `verify --json`, `--version`, and an example in each `--help`."""

from __future__ import annotations

import fcntl
import glob
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pytest
import xarray as xr
import zarr

import chunkpress
from chunkpress.cli import COMMANDS, main
from chunkpress.demo import demo_dataset

from test_zarr import _installed_env

COMMAND = [sys.executable, "-m", "chunkpress.cli"]
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # any control character but \t and \n


@pytest.fixture(scope="module")
def monthly(tmp_path_factory):
    """Three monthly netCDF files of an ocean as archives hold it: sst with land missing
    (_FillValue -1e34), wind in m s-1, sea-level pressure in hPa packed as int16 with
    scale_factor/add_offset, an int8 land mask."""
    folder = tmp_path_factory.mktemp("screens")
    ds = demo_dataset((6, 90, 180))
    for month in range(3):
        part = ds.isel(time=slice(2 * month, 2 * month + 2))
        part.sst.encoding.update(_FillValue=np.float32(-1e34))
        part.to_netcdf(folder / f"ocean_{month + 1:02d}.nc", unlimited_dims=["time"])
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = _installed_env(tmp_path_factory.mktemp("site"))
    env.pop("COLUMNS", None)
    return env


@pytest.fixture(scope="module")
def stores(monthly, env):
    """A zfp store written with --verify and a codec="auto" store, both of the monthly files."""
    paths = {"zfp": monthly / "zfp.zarr", "auto": monthly / "auto.zarr"}
    for codec, path in paths.items():
        extra = ["--verify"] if codec == "zfp" else []
        result = subprocess.run(COMMAND + ["compress", str(monthly / "ocean_*.nc"), str(path),
                                           "--codec", codec, "--tolerance", "0.01"] + extra,
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    return paths


def _original(monthly):
    return xr.open_mfdataset(sorted(glob.glob(str(monthly / "ocean_*.nc"))))


def _compressed_variables(store):
    """The variables chunkpress compressed, and the chunks they have."""
    group = zarr.open_group(store, mode="r")
    out = {}
    for name, array in group.arrays():
        if array.metadata.codecs[0].to_dict()["name"].startswith("chunkpress."):
            out[name] = array
    return out


# --- the progress display --------------------------------------------------------------------


def run_in_terminal(argv, env, columns=100, timeout=120) -> str:
    """Run ``argv`` on a pseudo-terminal of ``columns`` columns; return all it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
        os.execvpe(argv[0], argv, env)
    output, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child is gone: EIO
                break
            if not data:
                break
            output += data
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")
    return output.decode()


def screen(text: str) -> list:
    """The lines a terminal shows after ``text``: a carriage return goes back to the start of
    the line and what follows overwrites it."""
    lines, line, column = [], [], 0
    for char in text:
        if char == "\n":
            lines.append("".join(line).rstrip())
            line, column = [], 0
        elif char == "\r":
            column = 0
        else:
            if column < len(line):
                line[column] = char
            else:
                line.append(char)
            column += 1
    if line:
        lines.append("".join(line).rstrip())
    return lines


def test_a_terminal_shows_a_live_bar_with_the_variable_blocks_and_speed(monthly, env,
                                                                         tmp_path):
    out = tmp_path / "out.zarr"
    text = run_in_terminal(COMMAND + ["compress", str(monthly / "ocean_*.nc"), str(out),
                                      "--tolerance", "0.01", "--workers", "2"], env)
    compressed = _compressed_variables(out)
    blocks = sum(a.nchunks for a in compressed.values())
    megabytes = sum(a.nbytes for a in compressed.values()) / 1e6
    # the bar is redrawn in place: frames separated by carriage returns, on one line
    before_done = text[: text.index("writing: done")]
    frames = [f for f in before_done.split("\r") if "[" in f and "blocks" in f]
    assert frames, text
    for frame in frames:
        match = re.search(r"writing (\w+(, \w+)*): +\[[#-]+\] +(\d+)/(\d+) blocks +"
                          r"[0-9.]+ MB/s +\d+:\d\d", frame)
        assert match, frame
        assert set(match.group(1).split(", ")) <= set(compressed)
        assert int(match.group(4)) == blocks and int(match.group(3)) <= blocks
        assert len(frame.rstrip()) < 100  # never wraps onto a second line
    # what stays on the screen: the last frame overwritten by the final line, then the table
    shown = screen(text)
    final = next(line for line in shown if line.startswith("writing: done"))
    match = re.fullmatch(r"writing: done, (\d+) blocks of ([\w, ]+), ([0-9.]+) MB in "
                         r"[0-9.]+ s \(([0-9.]+) MB/s\)", final)
    assert match, final
    assert int(match.group(1)) == blocks
    assert set(match.group(2).split(", ")) == set(compressed)
    assert float(match.group(3)) == pytest.approx(megabytes, abs=0.051)
    assert not any("blocks" in line and "[" in line for line in shown)  # no bar left behind
    assert all(len(line) <= 100 for line in shown), shown
    original = _original(monthly)
    back = xr.open_zarr(out)
    assert float(abs(back.sst - original.sst).max()) <= 0.01


def test_piped_to_a_file_the_log_is_plain_lines(monthly, env, tmp_path):
    out = tmp_path / "out.zarr"
    log = tmp_path / "log.txt"
    quick = dict(env, CHUNKPRESS_PROGRESS_INTERVAL="0.001")  # a line at every look
    with open(log, "wb") as file:
        result = subprocess.run(COMMAND + ["compress", str(monthly / "ocean_*.nc"), str(out),
                                           "--tolerance", "0.01", "--verify"],
                                env=quick, stdout=file, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    assert result.returncode == 0, text
    assert "\r" not in text and "\x1b" not in text and not CONTROL.search(text)
    lines = text.splitlines()
    blocks = sum(a.nchunks for a in _compressed_variables(out).values())
    for step in ("compressing", "writing"):
        assert f"{step}: {blocks} blocks of " in text  # what is to be done, first
        final = [line for line in lines if line.startswith(f"{step}: done, {blocks} blocks")]
        assert len(final) == 1 and "MB/s" in final[0]
    for line in lines:
        match = re.match(r"(compressing|writing) \w+.*: (\d+)/(\d+) blocks \(\d+%\)", line)
        if match:
            assert int(match.group(3)) == blocks and "MB/s" in line
    assert all(len(line) <= 100 for line in lines), text


def test_stdout_to_a_file_and_stderr_on_a_terminal(monthly, env, tmp_path):
    """`chunkpress compress ... > log`: the bar on the terminal, the log plain."""
    out = tmp_path / "out.zarr"
    log = tmp_path / "log.txt"
    shown = stderr_on_terminal(COMMAND + ["compress", str(monthly / "ocean_01.nc"), str(out),
                                          "--tolerance", "0.01"], env, log)
    text = log.read_text()
    assert "\r" in shown and re.search(r"writing \w+.*\[[#-]+\] +\d+/\d+ blocks", shown)
    assert "\r" not in text and not CONTROL.search(text)
    assert re.search(r"^writing: done, \d+ blocks", text, re.M)


def stderr_on_terminal(argv, env, log, columns=100) -> str:
    """Run ``argv`` with stdout to the file ``log`` and stderr on a pseudo-terminal of
    ``columns`` columns; return what the terminal got."""
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    with open(log, "wb") as file:
        process = subprocess.Popen(argv, env=env, stdout=file, stderr=terminal)
        os.close(terminal)
        shown = b""
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # the child is gone: EIO
                break
            if not data:
                break
            shown += data
        assert process.wait(timeout=120) == 0, shown
    os.close(main)
    return shown.decode()


def _frames(shown: str) -> list:
    """The bar's frames (redrawn in place) before the final line."""
    return [f for f in shown[: shown.index("writing: done")].split("\r") if f.strip()]


@pytest.mark.parametrize("where", ["stdout", "stderr"])
def test_a_narrow_terminal_gets_a_shorter_bar_never_a_wrapped_one(monthly, env, tmp_path,
                                                                 where):
    """On 50 columns every frame fits one line and keeps blocks done/total and MB/s (a
    shorter bar, or none); with stdout to a file, the width is stderr's terminal's."""
    out = tmp_path / "out.zarr"
    argv = COMMAND + ["compress", str(monthly / "ocean_*.nc"), str(out), "--tolerance",
                      "0.01", "--workers", "2"]
    if where == "stdout":
        shown = run_in_terminal(argv, env, columns=50)
    else:
        shown = stderr_on_terminal(argv, env, tmp_path / "log.txt", columns=50)
    frames = _frames(shown)
    assert frames, shown
    for frame in frames:
        assert len(frame.rstrip()) < 50, frame
        assert re.search(r"\d+/\d+ blocks +[0-9.]+ MB/s +\d+:\d\d$", frame.rstrip()), frame


# --- info and verify -----------------------------------------------------------------------


def _run(env, *argv):
    """Run the command in this process (what it prints is the same; no interpreter start)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # --help, --version
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("codec", ["zfp", "auto"])
def test_info_fits_100_columns_and_long_keeps_every_field(stores, env, codec):
    code, text, err = _run(env, "info", stores[codec])
    assert code == 0, err
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    row = next(line for line in lines if line.startswith("sst "))
    assert codec in row or codec == "auto"
    assert "tolerance=0.01" in row
    if codec == "auto":  # what it chose and why, below the table, wrapped
        chosen = json.loads(zarr.open_group(stores[codec], mode="r")["sst"].attrs[
            "chunkpress_auto"])
        below = " ".join(line.strip() for line in lines[lines.index(row):])
        assert "sampled ratios" in below and chosen["codec"] in below
    code, wide, err = _run(env, "info", stores[codec], "--long")
    assert code == 0, err
    row = next(line for line in wide.splitlines() if line.startswith("sst "))
    assert str(zarr.open_group(stores[codec], mode="r")["sst"].nbytes) in row  # exact bytes
    if codec == "auto":
        assert "sampled ratios" in row and len(row) > 100


@pytest.mark.parametrize("kind", ["portable", "bitround"])
def test_info_of_portable_and_bitround_stores_fits_100_columns(monthly, env, tmp_path, kind):
    """A portable store's chains (fixedscaleoffset+blosc+crc32c) and a bitround store's
    relative bounds made lines of 103 to 113 columns."""
    store = tmp_path / f"{kind}.zarr"
    given = ["--portable", "--tolerance", "0.01"] if kind == "portable" else \
        ["--codec", "bitround", "--information", "0.99"]
    code, _, err = _run(env, "compress", monthly / "ocean_*.nc", store, *given)
    assert code == 0, err
    code, text, err = _run(env, "info", store)
    assert code == 0, err
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    row = " ".join(lines[next(i for i, line in enumerate(lines) if line.startswith("sst ")):][:2])
    table = chunkpress.info(str(store))
    if kind == "portable":
        assert "fixedscaleoffset" in row and "tolerance=0.01" in row
        assert "crc32c" in text  # said once below the table, when every array has it
    else:
        assert f"{100 * table['rel_bound']['sst']:.4g}%" in row and "relative" in text
        _, wide, _ = _run(env, "info", store, "--json")
        sst = next(v for v in json.loads(wide)["variables"] if v["name"] == "sst")
        assert sst["rel_bound"] == table["rel_bound"]["sst"]


@pytest.mark.parametrize("codec", ["zfp", "auto"])
def test_info_json_is_what_the_store_holds(stores, env, monthly, codec):
    code, text, err = _run(env, "info", stores[codec], "--json")
    assert code == 0, err
    report = json.loads(text)
    group = zarr.open_group(stores[codec], mode="r")
    variables = {v["name"]: v for v in report["variables"]}
    assert set(variables) == {name for name, _ in group.arrays()}
    for name, entry in variables.items():
        array = group[name]
        assert entry["shape"] == list(array.shape) and entry["dtype"] == str(array.dtype)
        assert entry["original_bytes"] == array.nbytes
        folder = stores[codec] / name
        on_disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder)
                      for f in files if f != "zarr.json")
        assert entry["stored_bytes"] == on_disk
        assert entry["ratio"] == pytest.approx(array.nbytes / on_disk)
    sst = variables["sst"]
    assert sst["claimed_bound"] == 0.01 and sst["parameters"]["tolerance"] == 0.01
    original = _original(monthly).sst.values
    back = xr.open_zarr(stores[codec]).sst.values
    if codec == "zfp":  # written with --verify: the error measured on every value
        assert sst["codec"] == "zfp" and sst["auto"] is None
        assert 0 < sst["measured_error"] <= 0.01
        assert sst["measured_error"] == pytest.approx(np.nanmax(abs(back - original)),
                                                      rel=1e-6)
    else:
        assert sst["auto"]["choice"]["codec"] == sst["codec"]
        assert "sampled ratios" in sst["auto"]["summary"]
        assert sst["measured_error"] is None
        assert np.nanmax(abs(back - original)) <= 0.01
    total = report["total"]
    assert total["stored_bytes"] == sum(v["stored_bytes"] for v in variables.values())


def test_verify_json_reports_a_damaged_chunk(stores, env, tmp_path):
    import shutil

    code, text, err = _run(env, "verify", stores["zfp"], "--json")
    assert code == 0, err
    sound = json.loads(text)
    assert sound["problems"] == [] and {a["array"] for a in sound["arrays"]} >= {"sst"}
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(stores["zfp"], damaged)
    chunk = next(os.path.join(d, f) for d, _, files in os.walk(damaged / "sst") for f in files
                 if f != "zarr.json")
    data = bytearray(open(chunk, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(chunk, "wb").write(bytes(data))
    code, text, err = _run(env, "verify", damaged, "--json")
    assert code == 3, err
    report = json.loads(text)
    assert [p["array"] for p in report["problems"]] == ["sst"]
    assert report["problems"][0]["chunk"] is not None


@pytest.mark.parametrize("argv", [["info"], ["info", "--json"], ["info", "--long"],
                                  ["verify"], ["verify", "--json"]])
def test_a_reader_that_goes_away_is_not_an_error(stores, env, argv):
    """`chunkpress info STORE | head -1`: here the reader has gone before anything is
    written, so every line written meets a broken pipe."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(COMMAND + [argv[0], str(stores["auto"]), *argv[1:]],
                                stdout=write, stderr=subprocess.PIPE, env=env, text=True,
                                timeout=120)
    finally:
        os.close(write)
    assert result.returncode in (0, 141), result.stderr
    assert result.stderr == ""


def test_a_run_that_fails_says_how_far_it_got_in_plain_lines(stores, env, tmp_path):
    import shutil

    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(stores["zfp"], damaged)
    for folder, _, files in os.walk(damaged / "sst"):
        for name in files:
            if name != "zarr.json":
                with open(os.path.join(folder, name), "r+b") as file:
                    file.write(b"\0" * 64)
    result = subprocess.run(COMMAND + ["decompress", str(damaged), str(tmp_path / "o.nc")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert re.search(r"^writing: failed after \d+/\d+ tasks, [0-9.]+ s$", result.stdout,
                     re.M), result.stdout
    assert not CONTROL.search(result.stdout)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not os.path.exists(tmp_path / "o.nc")


# --- --version and --help ------------------------------------------------------------------


def test_the_main_job_says_which_chunks_had_their_place_checked(env, tmp_path):
    """verify checks the place of the chunks that record one (those chunkpress compressed);
    the others (exact variables, coordinates: written by zarr) only by checksum. The screen
    said "151 chunks, checksums and places good"; the exact variables' "0" error was a
    literal, now verify's measure against ocean.nc."""
    code, text, err = _run(env, "demo", "--out", tmp_path)
    assert code == 0, err
    checked = chunkpress.verify(str(tmp_path / "ocean.zarr"), against=str(tmp_path / "ocean.nc"))
    arrays = checked.attrs["arrays"].set_index("array")
    placed = arrays.loc[arrays["checks"].str.contains("place"), "chunks"].sum()
    line = next(line for line in text.splitlines() if line.startswith("chunkpress.verify("))
    total = checked.attrs["summary"]["chunks"]
    assert f"{total} chunks: checksums, and places where recorded ({placed})" in line, line
    assert 0 < placed < total
    for name in ("slp", "land"):
        row = next(line for line in text.splitlines() if line.startswith(f"{name} "))
        assert row.split()[1] == "exact" and float(row.split()[-1]) == arrays.loc[name,
                                                                                  "max_error"]


def test_version(env):
    result = subprocess.run(COMMAND + ["--version"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"chunkpress {chunkpress.__version__}"


@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
def test_each_subcommand_help_shows_an_example(env, command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    code, text, err = _run(env, command, "--help")
    assert code == 0, err
    examples = text[text.index("\nexamples:\n"):]
    assert re.search(rf"^  chunkpress {command}\b|^  chunkpress\b", examples, re.M)
    assert all(len(line) <= 100 for line in text.splitlines()), text


# --- last: the cluster of the `client` fixture is the default client until the module ends


def test_with_a_distributed_scheduler_the_log_has_no_escape_codes(monthly, env, tmp_path,
                                                                     client):
    address = client.scheduler.address
    out, nc = tmp_path / "out.zarr", tmp_path / "back.nc"
    quick = dict(env, CHUNKPRESS_PROGRESS_INTERVAL="0.001")
    logs = []
    for argv in (["compress", str(monthly / "ocean_*.nc"), str(out), "--tolerance", "0.01",
                  "--verify"],
                 ["decompress", str(out), str(nc)]):
        result = subprocess.run(COMMAND + argv + ["--scheduler", address], env=quick,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stdout
        logs.append(result.stdout)
        assert "\x1b" not in result.stdout and "\r" not in result.stdout
        assert not CONTROL.search(result.stdout)
        assert re.search(r"^writing: done", result.stdout, re.M), result.stdout
    blocks = sum(a.nchunks for a in _compressed_variables(out).values())
    assert f"compressing: done, {blocks} blocks of " in logs[0]
    assert f"writing: done, {blocks} blocks of " in logs[0]
    original = _original(monthly)
    back = xr.open_dataset(nc)
    assert float(abs(back.sst - original.sst).max()) <= 0.01
    assert bool((back.sst.isnull() == original.sst.isnull()).all())
