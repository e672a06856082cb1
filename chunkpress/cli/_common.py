"""What every subcommand shares: user errors, exit codes, the scheduler, tables, arguments."""

from __future__ import annotations

import argparse
import contextlib
import os

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_PROBLEMS = 3  # verify found problems in the store


class UserError(Exception):
    """A mistake the user can fix; its message says how."""


#: names of netCDF files, which compress (it writes Zarr) does not write
NETCDF_SUFFIXES = (".nc", ".nc4", ".cdf", ".netcdf", ".h5", ".hdf5")


def check_output(path, overwrite, kind="zarr"):
    """Refuse, before any work, an OUT of the wrong kind (a netCDF name for a Zarr store, a
    Zarr name for a netCDF file), in a directory that is not there or not writable, that
    exists (without --overwrite), or that --overwrite would not replace: a Zarr store
    replaces only a Zarr store, a file only a file."""
    text = str(path)
    name = text.rstrip("/").lower()
    if kind == "zarr" and name.endswith(NETCDF_SUFFIXES):
        raise UserError(f"{path}: compress writes a Zarr store, not netCDF; name it "
                        f"{_stem(text)}.zarr (or .zip), then run `chunkpress decompress "
                        f"{_stem(text)}.zarr {os.path.basename(text)}` for a netCDF file")
    if kind == "file" and name.endswith((".zarr", ".zip")):
        raise UserError(f"{path}: decompress writes a netCDF file, not a Zarr store; name it "
                        f"{_stem(text)}.nc")
    if "://" in text:
        return
    _check_directory(os.path.dirname(os.path.abspath(text.rstrip("/") or text)))
    if not os.path.lexists(path):
        return
    if kind == "file":
        if os.path.isdir(path):
            raise UserError(f"{path} is a directory; give the name of the file to write")
    elif not (os.path.isdir(path) and not os.listdir(path)):  # an empty directory: written
        from ..storage.publish import check_replaceable

        check_replaceable(path)  # says what is there when it is not a Zarr store
    else:
        return
    if not overwrite:
        raise UserError(f"{path} exists; choose another name or pass --overwrite")


def _stem(path: str) -> str:
    return os.path.splitext(path.rstrip("/"))[0]


def _check_directory(directory: str) -> None:
    """The output is written beside its name (a temporary, then a rename): its directory must
    be there, a directory, and writable."""
    if not os.path.exists(directory):
        parent = directory
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if parent and not os.path.isdir(parent):
            raise UserError(f"{parent} is a file, not a directory; choose an output path "
                            "in a directory")
        raise UserError(f"{directory}: no such directory; create it first (mkdir -p "
                        f"{directory}) or choose another output path")
    if not os.path.isdir(directory):
        raise UserError(f"{directory} is a file, not a directory; choose an output path in "
                        "a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            raise UserError(f"{directory}: read-only file system; choose an output path on "
                            "a writable one")
        raise UserError(f"{directory}: permission denied (this user cannot write there); "
                        "choose an output path in a directory you can write to")


#: the width tables and notes fit by default
WIDTH = 100
#: a text column whose values run longer than this is printed below the table
LONG_TEXT = 40


def print_table(table, *, width=WIDTH, long=False):
    """Print a DataFrame in at most ``width`` columns: numbers to 4 significant digits, "-"
    where there is no value, texts wrapped in their column, and a text column longer than
    LONG_TEXT printed below the table, row by row. ``long``: pandas' table, unwrapped."""
    import pandas as pd

    if long:
        with pd.option_context("display.width", None, "display.max_columns", None,
                               "display.max_colwidth", None,
                               "display.float_format", "{:.4g}".format):
            print(table.to_string())
        return
    for line in table_lines(table, width):
        print(line)


def table_lines(table, width=WIDTH) -> list:
    """The lines :func:`print_table` prints; byte counts as sizes (40.5K) when the table would
    not fit otherwise."""
    flat = table.reset_index() if any(n is not None for n in table.index.names) else table
    lines = _fit(flat, width)
    sizes = [c for c in flat.columns if str(c).endswith("bytes")
             and all(_is_number(v) for v in flat[c])]
    if sizes and max(map(len, lines), default=0) > width:
        flat = flat.assign(**{str(c): [_cell(v) if _cell(v) == "-" else size(v)
                                       for v in flat[c]] for c in sizes})
        lines = _fit(flat, width)
    if max(map(len, lines), default=0) > width:  # the last resort: columns one space apart
        lines = _fit(flat, width, gap=1)
    return lines


def size(nbytes) -> str:
    """Bytes as ls -h prints them: 512, 40.5K, 11.9M, 3.2G."""
    value = float(nbytes)
    for unit in ("", "K", "M", "G"):
        text = f"{value:.0f}" if not unit else f"{value:.3g}{unit}"
        if float(text.rstrip(unit)) < 1000:  # three digits at most: 1010K is 0.986M
            return text
        value /= 1024
    return f"{value:.3g}T" if value < 1000 else f"{value:.0f}T"


def _fit(flat, width, gap=2) -> list:
    import textwrap

    columns = [str(c).replace("_", " ") for c in flat.columns]
    cells = [[_cell(v) for v in row] for row in flat.itertuples(index=False)]
    numeric = [all(_is_number(row[i]) or _is_quantity(row[i])
                   for row in flat.itertuples(index=False)) for i in range(len(columns))]
    long = [i for i in range(1, len(columns)) if not numeric[i]
            and max((len(row[i]) for row in cells), default=0) > LONG_TEXT]
    keep = [i for i in range(len(columns)) if i not in long]
    widths = {i: max([len(columns[i])] + [len(row[i]) for row in cells]) for i in keep}
    floors = {i: max([len(w) for w in columns[i].split()] +
                     [len(row[i]) if numeric[i] else len(w) for row in cells
                      for w in (row[i].split() or [""])]) for i in keep}

    def excess():
        return sum(widths.values()) + gap * (len(keep) - 1) - width

    while excess() > 0:
        wrappable = [i for i in keep if widths[i] > floors[i]]
        if not wrappable:
            break
        widest = max(wrappable, key=lambda i: widths[i])
        widths[widest] = max(floors[widest], widths[widest] - excess())
    lines = _rows([[columns[i] for i in keep]], [widths[i] for i in keep],
                  [numeric[i] for i in keep], gap, bottom=True)
    lines += _rows([[row[i] for i in keep] for row in cells], [widths[i] for i in keep],
                   [numeric[i] for i in keep], gap)
    for i in long:
        lines.append("")
        lines.append(f"{columns[i]}:")
        names = [row[0] for row in cells if row[i] and row[i] != "-"]
        indent = max((len(n) for n in names), default=0) + 4
        for row in cells:
            if row[i] and row[i] != "-":
                lines += textwrap.wrap(row[i], width, initial_indent=f"  {row[0]}".ljust(indent),
                                       subsequent_indent=" " * indent)
    return lines


def _rows(rows, widths, right, gap, bottom=False) -> list:
    """Lines of ``rows`` of texts, each wrapped in its column (aligned at the bottom: headers)."""
    import textwrap

    lines = []
    for row in rows:
        pieces = [textwrap.wrap(text, w) or [""] for text, w in zip(row, widths)]
        height = max(len(p) for p in pieces)
        if bottom:
            pieces = [[""] * (height - len(p)) + p for p in pieces]
        for n in range(height):
            parts = [(p[n] if n < len(p) else "") for p in pieces]
            lines.append((" " * gap).join(t.rjust(w) if r else t.ljust(w)
                                   for t, w, r in zip(parts, widths, right)).rstrip())
    return lines


def _cell(value) -> str:
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value) if value else "()"
    return str(value)


def _is_quantity(value) -> bool:
    """Whether a text is a number with a unit (40.5K, 3.2x, 12%): aligned as numbers."""
    import re

    return isinstance(value, str) and re.fullmatch(r"[-+]?[0-9.]+(e[-+]?[0-9]+)?[A-Za-z%]*",
                                                   value) is not None


def _is_number(value) -> bool:
    import numbers

    import pandas as pd

    return value is None or value is pd.NA or (isinstance(value, numbers.Number)
                                               and not isinstance(value, bool))


@contextlib.contextmanager
def scheduler(args):
    """The local threads (``--workers N``) or a distributed scheduler (``--scheduler``)."""
    import dask

    address = getattr(args, "scheduler", None)
    if address:
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - distributed is a dependency
            raise UserError("--scheduler needs the 'distributed' package") from None
        try:
            client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the scheduler at {address} ({exc}); check the "
                            "address, or use --workers N for this machine") from None
        with client:
            yield client
        return
    workers = getattr(args, "workers", None)
    config = {"scheduler": "threads"}
    if workers:
        config["num_workers"] = workers
    with dask.config.set(config):
        yield None


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def names(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must be codec names separated by commas, got {text!r}")
    return names


def tolerances(text):
    parts = [t for t in text.split(",") if t.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"must be numbers separated by commas, got {text!r}")
    return [tolerance(t) for t in parts]


def tolerance(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number (the max absolute error, e.g. 0.01), got {text!r}") from None
    from ..kernels import check_tolerance

    try:
        return check_tolerance("", value)  # the kernels' one check: finite and > 0
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_scheduler(sub) -> None:
    """--workers N | --scheduler ADDRESS."""
    group = sub.add_mutually_exclusive_group()
    group.add_argument("--workers", type=positive_int, metavar="N",
                       help="threads on this machine (default: one per core)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="a dask.distributed scheduler, e.g. tcp://host:8786")
