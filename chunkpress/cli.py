"""The ``chunkpress`` command: compress, decompress, info, evaluate, demo (thin: the API).

    chunkpress compress IN OUT.zarr --codec zfp --tolerance 0.01 [--var t --var u]
                        [--workers N | --scheduler tcp://host:8786]
    chunkpress compress IN OUT.zarr --codec auto --tolerance 0.01      # chosen on samples
    chunkpress decompress IN.zarr OUT.nc
    chunkpress info STORE
    chunkpress verify STORE [--against ORIGINAL] [--json]              # exits 3 if damaged
    chunkpress evaluate IN [--var t] [--codecs zfp,sz3] [--tolerances 0.1,0.01] [--plot rd.png]
    chunkpress demo [--out DIR]

A user's mistake (a missing file, an unknown codec, a bad tolerance, a variable not found)
prints one line saying what to do and exits with status 1 (2 for a malformed command line),
without a traceback; ``--traceback`` shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_PROBLEMS = 3  # verify found problems in the store


class UserError(Exception):
    """A mistake the user can fix; its message says how."""


def main(argv=None) -> int:
    """Run the command; ``argv`` defaults to ``sys.argv[1:]`` (none: ``demo``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["demo"]
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("chunkpress: interrupted", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, FileExistsError, IsADirectoryError, KeyError,
            ValueError, TypeError) as exc:
        if args.traceback:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        if isinstance(exc, OSError) and exc.filename:
            message = f"{exc.filename}: {exc.strerror}"
        print(f"chunkpress {args.command}: error: {message}".splitlines()[0], file=sys.stderr)
        return EXIT_USER_ERROR


# --- the commands --------------------------------------------------------------------------


def _compress(args) -> int:
    import xarray as xr

    import chunkpress.accessor  # noqa: F401 - the accessor

    _check_input(args.input)
    _check_output(args.output, args.overwrite)  # a store replaced only once the new one is whole
    params = {"tolerance": args.tolerance, "rate": args.rate, "precision": args.precision,
              "level": args.level}
    params = {k: v for k, v in params.items() if v is not None}
    with _scheduler(args):
        ds = _open(args.input, xr)
        enc = ds.chunkpress.encode(args.codec, variables=args.var or None, verify=args.verify,
                                   **params)
        if args.verify:
            enc = _run(enc.persist, "compressing")
        job = enc.to_zarr(args.output, overwrite=args.overwrite, compute=False)
        _run(job, "writing")  # published here: this process checks every chunk is there
        report = enc.report() if args.verify else _info_table(args.output)
    _print_table(report)
    return 0


def _decompress(args) -> int:
    import xarray as xr

    from .storage.publish import replacing_file

    _check_input(args.input)
    _check_output(args.output, args.overwrite, kind="file")
    with _scheduler(args):
        ds = _open(args.input, xr)
        for var in ds.variables.values():  # the zarr codecs mean nothing to netCDF
            var.encoding = {k: v for k, v in var.encoding.items() if k in _NETCDF_ENCODINGS}
        with replacing_file(args.output) as temporary:  # OUT is replaced once whole
            _run(ds.to_netcdf(temporary, compute=False), "writing")
    print(f"wrote {args.output}")
    return 0


def _info(args) -> int:
    _check_input(args.store)
    table = _info_table(args.store)
    _print_table(table.rename(columns=_INFO_COLUMNS))
    print(f"\n{_INFO_COLUMNS['error_bound']}: the max error the metadata (zarr.json) claims; "
          f"{_INFO_COLUMNS['measured_error']}: the max error the writer measured on every "
          "value (written with verify=True; NaN: not measured)")
    claimed, measured = table["error_bound"], table["measured_error"]
    for name in table.index[measured > claimed]:
        print(f"{name}: the measured error {measured[name]:.4g} exceeds the claimed bound "
              f"{claimed[name]:.4g}: the metadata claims a bound the data does not meet")
    missing = table["missing_chunks"].fillna(0)
    for name in table.index[missing > 0]:
        print(f"{name}: {missing[name]} chunk object(s) missing")
    if (measured > claimed).any() or (missing > 0).any():
        print(f"run `chunkpress verify {args.store}` to name every damaged chunk (with "
              "--against ORIGINAL: measure the error anew)")
    return 0


_INFO_COLUMNS = {"error_bound": "claimed_bound", "measured_error": "measured_error"}


def _verify(args) -> int:
    import json

    from .storage.verify import summary, verify

    if args.against is not None:  # the store is not checked here: an unfinished write
        _check_input(args.against)  # leaves none, and verify says so
    problems = verify(args.store, against=args.against)
    if args.json:
        arrays = problems.attrs["arrays"]
        print(json.dumps({
            "problems": [{**row, "chunk": None if row["chunk"] is None else list(row["chunk"])}
                         for row in problems.to_dict("records")],
            "arrays": json.loads(arrays.to_json(orient="records")),
            "summary": problems.attrs["summary"]}, indent=1))
    else:
        for row in problems.itertuples():
            where = "" if row.chunk is None else f" chunk {row.chunk}"
            print(f"{row.array}:{where} ({row.object or 'metadata'}): {row.problem}")
        print(summary(problems))
    return EXIT_PROBLEMS if len(problems) else 0


def _evaluate(args) -> int:
    """Every codec at every tolerance on the input's variables: print the table, draw it."""
    import xarray as xr

    from .evaluation import evaluate, plot

    _check_input(args.input)
    if args.plot and os.path.exists(args.plot) and not args.overwrite:
        raise UserError(f"{args.plot} exists; choose another name or pass --overwrite")
    with _scheduler(args):
        ds = _open(args.input, xr)
        print("evaluating:", flush=True)
        table = evaluate(ds, args.codecs, args.tolerances, variables=args.var or None)
        _print_table(table.set_index(["variable", "codec", "setting"]))
        if args.plot:
            plot(table, args.plot, ds)
            print(f"\nwrote {args.plot}: rate-distortion curves, and the error of the best "
                  "codec at the first tolerance over a 2-D slice")
    return 0


def _demo(args) -> int:
    """Make a small realistic dataset with land, compress it to Zarr, print the report."""
    import xarray as xr

    import chunkpress.accessor  # noqa: F401 - the accessor

    out = args.out or tempfile.mkdtemp(prefix="chunkpress-demo-")
    source = os.path.join(out, "ocean.nc")
    store = os.path.join(out, "ocean.zarr")
    _check_output(store, args.overwrite)
    ds = demo_dataset()
    try:
        ds.to_netcdf(source)
        ds = xr.open_dataset(source, chunks={})
        print(f"made {source}: {ds.sizes['time']} months of sea-surface temperature and wind "
              "on a 1-degree grid, land missing")
    except (ImportError, ValueError):  # no netCDF engine: the dataset from memory
        print("made a dataset of sea-surface temperature and wind, land missing "
              "(install h5netcdf to have it written as netCDF too)")
    with _scheduler(args):
        enc = ds.chunkpress.encode("zfp", tolerance={"sst": args.tolerance, "wind": 0.05},
                                   verify=True)
        enc = _run(enc.persist, "compressing")
        _run(enc.to_zarr(store, overwrite=args.overwrite, compute=False), "writing")
    print(f"wrote {store}; plain xarray reads it: xr.open_zarr({store!r})\n")
    _print_table(enc.report())
    back = xr.open_zarr(store)
    error = float(abs(back.sst - ds.sst).max())
    kept = bool((back.sst.isnull() == ds.sst.isnull()).all())
    print(f"\nread back with xr.open_zarr: sst max error {error:.3g} <= {args.tolerance}, "
          f"land kept missing: {kept}")
    return 0


def demo_dataset(shape=(12, 180, 360)):
    """Return a small CF dataset: sea-surface temperature with land missing, wind, times."""
    import numpy as np
    import pandas as pd
    import xarray as xr

    from .demo import ocean_field

    sst = ocean_field(shape)
    rng = np.random.default_rng(1)
    wind = (5 + np.cumsum(rng.standard_normal(shape), axis=2) * 0.05).astype("float32")
    nt, ny, nx = shape
    ds = xr.Dataset(
        {
            "sst": (("time", "lat", "lon"), sst, {"units": "degC", "standard_name":
                                                  "sea_surface_temperature"}),
            "wind": (("time", "lat", "lon"), wind, {"units": "m s-1", "long_name":
                                                    "10 m wind speed"}),
            "land": (("lat", "lon"), np.isnan(sst[0]).astype("int8"), {"flag_values": [0, 1]}),
        },
        coords={
            "time": pd.date_range("2000-01-01", periods=nt, freq="MS"),
            "lat": ("lat", np.linspace(-89.5, 89.5, ny), {"units": "degrees_north"}),
            "lon": ("lon", np.linspace(0.5, 359.5, nx), {"units": "degrees_east"}),
        },
        attrs={"title": "chunkpress demo ocean", "Conventions": "CF-1.8"},
    )
    ds.sst.encoding = {"_FillValue": -999.0, "dtype": "float32"}
    ds.time.encoding = {"units": "days since 2000-01-01", "calendar": "standard"}
    return ds


# --- helpers -------------------------------------------------------------------------------

_NETCDF_ENCODINGS = ("dtype", "_FillValue", "missing_value", "scale_factor", "add_offset",
                     "units", "calendar")


def _check_input(path):
    if "://" in str(path):
        return
    if not os.path.exists(path):
        from .storage.publish import check_complete

        check_complete(path)  # a crash mid-swap is repaired; a write that stopped says so
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or directory; give a netCDF file or Zarr store "
                        "that exists")


def _check_output(path, overwrite, kind="zarr"):
    """Refuse, before any work, an OUT that exists (without --overwrite), or that --overwrite
    would not replace: a Zarr store replaces only a Zarr store, a file only a file."""
    if "://" in str(path) or not os.path.lexists(path):
        return
    if kind == "file":
        if os.path.isdir(path):
            raise UserError(f"{path} is a directory; give the name of the file to write")
    elif not (os.path.isdir(path) and not os.listdir(path)):  # an empty directory: written
        from .storage.publish import check_replaceable

        check_replaceable(path)  # says what is there when it is not a Zarr store
    else:
        return
    if not overwrite:
        raise UserError(f"{path} exists; choose another name or pass --overwrite")


def _open(path, xr):
    """Open anything xarray opens (netCDF, Zarr), lazily, as dask arrays."""
    is_zarr = os.path.isdir(path) or str(path).rstrip("/").endswith(".zarr")
    try:
        if is_zarr:
            return xr.open_zarr(path)
        return xr.open_dataset(path, chunks={})
    except (OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            if is_zarr:
                from .storage.publish import check_complete

                check_complete(path, None, None)  # a write that stopped halfway says so
            raise
        raise UserError(f"{path}: xarray cannot open it ({exc}); give a netCDF file "
                        "(with h5netcdf or netCDF4 installed) or a Zarr store") from exc


def _info_table(store):
    from .storage import info

    table = info(store)
    choices = _auto_choices(store)
    if choices:  # codec="auto": what it chose and why, as the writer recorded it
        table["choice"] = [choices.get(name, "") for name in table.index]
    return table


def _auto_choices(store) -> dict:
    """Return {variable: summary} of the arrays whose attributes record an auto choice."""
    import json

    import zarr

    from .auto import ATTRIBUTE, describe

    if not os.path.isdir(store):
        return {}
    node = zarr.open(store, mode="r")
    arrays = [("", node)] if isinstance(node, zarr.Array) else sorted(node.arrays())
    out = {}
    for name, array in arrays:
        text = array.attrs.get(ATTRIBUTE)
        if isinstance(text, str):
            try:
                out[name or array.path or "/"] = describe(json.loads(text))
            except (ValueError, TypeError, AttributeError):
                out[name or array.path or "/"] = "(unreadable)"
    return out


def _print_table(table):
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):
        print(table.to_string())


@contextlib.contextmanager
def _scheduler(args):
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


def _run(work, label):
    """Compute ``work`` (a delayed, or a callable that computes), showing a progress bar."""
    from dask.delayed import Delayed

    try:
        from distributed import default_client, futures_of, progress

        client = default_client()
    except (ImportError, ValueError):  # no distributed client: the local scheduler
        client = None
    print(f"{label}:", flush=True)
    if client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar(minimum=0):
            return work.compute() if isinstance(work, Delayed) else work()
    if isinstance(work, Delayed) and hasattr(work, "finish"):
        # a chunkpress write: its chunks on the cluster, then published in this process
        try:
            future = client.compute(work.writes)
            progress(future)
            print()
            results = future.result()
        except BaseException:
            work.abort()
            raise
        return work.finish(results)
    if isinstance(work, Delayed):
        future = client.compute(work)
        progress(future)
        print()
        return future.result()
    result = work()
    futures = futures_of(list(getattr(result, "arrays", {}).values()))
    if futures:
        progress(futures)
        print()
    return result


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _names(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must be codec names separated by commas, got {text!r}")
    return names


def _tolerances(text):
    parts = [t for t in text.split(",") if t.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"must be numbers separated by commas, got {text!r}")
    return [_tolerance(t) for t in parts]


def _tolerance(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number (the max absolute error, e.g. 0.01), got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # one line, no usage block: what is wrong and where the help is
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chunkpress", description="Compress scientific arrays to Zarr v3 "
                     "with error-bounded and lossless codecs, in parallel.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name, run, help):
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        sub.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
        return sub

    def scheduler(sub):
        group = sub.add_mutually_exclusive_group()
        group.add_argument("--workers", type=_positive_int, metavar="N",
                           help="threads on this machine (default: one per core)")
        group.add_argument("--scheduler", metavar="ADDRESS",
                           help="a dask.distributed scheduler, e.g. tcp://host:8786")

    sub = command("compress", _compress, "compress a netCDF file or Zarr store into Zarr v3")
    sub.add_argument("input", metavar="IN", help="anything xarray opens (netCDF, Zarr)")
    sub.add_argument("output", metavar="OUT.zarr")
    sub.add_argument("--codec", default="zfp", help="zfp (default), sperr, sz3, lerc, szip, "
                     "pcodec, floatpred+zstd, ...; auto: chosen on samples of each variable, "
                     "per block where that wins (auto-array: one codec a variable)")
    sub.add_argument("--tolerance", type=_tolerance, help="max absolute error, in the "
                     "variables' units")
    sub.add_argument("--rate", type=float, help="bits per value (zfp, sperr)")
    sub.add_argument("--precision", type=int, help="bit planes (zfp)")
    sub.add_argument("--level", type=int, help="level of a lossless codec")
    sub.add_argument("--var", action="append", metavar="NAME",
                     help="compress this variable (repeat; default: every float variable); "
                          "the others are kept exact")
    sub.add_argument("--verify", action="store_true",
                     help="decode every block as it is made and report the measured max error")
    sub.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    scheduler(sub)

    sub = command("decompress", _decompress, "decompress a Zarr store into netCDF")
    sub.add_argument("input", metavar="IN.zarr")
    sub.add_argument("output", metavar="OUT.nc")
    sub.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    scheduler(sub)

    sub = command("info", _info, "per variable: codec, parameters, ratio, error bound, size")
    sub.add_argument("store", metavar="STORE")

    sub = command("verify", _verify, "check every chunk of a store: present, at its place, "
                  "checksum good (no decoding); with --against, decode and measure the max "
                  f"error against the recorded bound. Exits {EXIT_PROBLEMS} on any problem")
    sub.add_argument("store", metavar="STORE")
    sub.add_argument("--against", metavar="ORIGINAL", help="the original data (netCDF or "
                     "Zarr) to compare every decoded chunk with")
    sub.add_argument("--json", action="store_true", help="print the problems, the arrays "
                     "checked and the summary as JSON")

    sub = command("evaluate", _evaluate, "every codec at every tolerance on your data: ratio, "
                  "errors, speeds; rate-distortion pictures")
    sub.add_argument("input", metavar="IN", help="anything xarray opens (netCDF, Zarr)")
    sub.add_argument("--var", action="append", metavar="NAME",
                     help="evaluate this variable (repeat; default: every float variable)")
    sub.add_argument("--codecs", type=_names, metavar="LIST",
                     help="codecs, comma-separated (default: zfp,sz3,sperr,lerc for floats)")
    sub.add_argument("--tolerances", type=_tolerances, metavar="LIST",
                     help="max absolute errors, comma-separated (default: 1e-2, 1e-3, 1e-4 of "
                          "each variable's range)")
    sub.add_argument("--plot", metavar="PNG", help="write the rate-distortion curves and, for "
                     "the best codec at the first tolerance, the error over a 2-D slice")
    sub.add_argument("--overwrite", action="store_true", help="replace PNG if it exists")
    scheduler(sub)

    sub = command("demo", _demo, "make a small ocean dataset, compress it to Zarr, report")
    sub.add_argument("--out", metavar="DIR", help="where to write (default: a new temp dir)")
    sub.add_argument("--tolerance", type=_tolerance, default=0.01)
    sub.add_argument("--overwrite", action="store_true")
    scheduler(sub)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
