"""``chunkpress demo`` (and ``chunkpress`` alone): the main job on built-in data.

It writes a small ocean dataset as the netCDF-4 file (zlib) an archive holds today,
compresses it with ``codec="auto"`` and a bound per variable, every value checked, and prints
one screen: what auto chose and why, the bytes next to the netCDF's, the bound measured on
every value and again on the store read back, land kept missing, and how to open the store.
"""

from __future__ import annotations

import os
import tempfile
import time

from ..demo import BOUNDS, demo_dataset, netcdf_encoding
from ._common import UserError, add_scheduler, check_output, scheduler
from .progress import run

HELP = "make a small ocean dataset as netCDF, compress it to Zarr with codec=auto, report"

#: 24 months on a 1-degree grid: a few seconds on two cores
SHAPE = (24, 180, 360)
#: four months a block: blocks to run in parallel, and auto needs extents in multiples of 4
CHUNKS = {"time": 4}


def add_arguments(sub) -> None:
    sub.add_argument("--out", metavar="DIR", help="where to write ocean.nc and ocean.zarr "
                     "(default: a new temporary directory)")
    sub.add_argument("--overwrite", action="store_true", help="replace them if they exist")
    add_scheduler(sub)


def main(args) -> int:
    """Make the dataset, compress it, check it, print the screen."""
    import xarray as xr

    import chunkpress

    out = args.out or tempfile.mkdtemp(prefix="chunkpress-demo-")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file; give a directory")
    os.makedirs(out, exist_ok=True)
    source, store = os.path.join(out, "ocean.nc"), os.path.join(out, "ocean.zarr")
    check_output(source, args.overwrite, kind="file")
    check_output(store, args.overwrite)

    made = demo_dataset(SHAPE)
    made.to_netcdf(source, engine="h5netcdf", encoding=netcdf_encoding(made))
    nt, ny, nx = SHAPE
    print(f"chunkpress demo ({_where(args)}), its files in\n  {os.path.abspath(out)}\n")
    print("made ocean.nc as archives hold data today (netCDF-4, zlib level 4, shuffle):\n"
          f"  {nt} months, {180 // ny}-degree grid: "
          + ", ".join(_described(made, name) for name in made.data_vars))
    ds = xr.open_dataset(source, chunks={})
    print(f'compressing with codec="auto", a bound per variable, every value checked '
          f"(verify=True) ...", flush=True)
    start = time.perf_counter()
    with scheduler(args) as client:
        enc = ds.chunkpress.encode("auto", tolerance=BOUNDS, chunks=CHUNKS, verify=True)
        enc = enc.persist()
        job = enc.to_zarr(store, overwrite=args.overwrite, compute=False)
        if client is None:
            job.compute()
        else:  # chunks written on the cluster, published here
            run(job, "writing")
        seconds = time.perf_counter() - start
        checked = chunkpress.verify(store, against=source)
        report = enc.report()  # its figures are on the cluster, with the blocks
    print(f"wrote ocean.zarr in {seconds:.1f} s\n")
    arrays = checked.attrs["arrays"].set_index("array")  # per array: checks, max error

    nc_bytes, zarr_bytes = os.path.getsize(source), _tree_bytes(store)
    nc_vars, zarr_vars = _netcdf_variable_bytes(source), _zarr_variable_bytes(store)
    print(f"{'variable':9}{'bound':15}{'codec':7}{'netCDF zlib':>12}{'chunkpress':>12}"
          f"{'smaller':>9}{'max error':>12}")
    for name, row in report.iterrows():
        units = ds[name].attrs.get("units", "")
        if row["codec"] == "exact":  # its error as verify measured it on the store
            bound, error = "exact", f"{arrays.loc[name, 'max_error']:.7g}"
            row["codec"] = _stored_codec(store, name)
        else:
            bound = f"{row['error_bound']:g} {units}"
            error = f"{row['max_error']:.7g}"
        ratio = nc_vars[name] / zarr_vars[name]
        print(f"{name:9}{bound:15}{row['codec']:7}{_mb(nc_vars[name]):>12}"
              f"{_mb(zarr_vars[name]):>12}{ratio:>8.1f}x{error:>12}")
    print(f"{'whole dataset, coordinates and metadata':38}{_mb(nc_bytes):>12}"
          f"{_mb(zarr_bytes):>12}{nc_bytes / zarr_bytes:>8.1f}x")
    packed = [n for n, r in report.iterrows() if r["codec"] == "exact" and r["error_bound"]]
    for name in packed:
        var = ds[name]
        print(f"  {name}: packed by its producer as {var.encoding['dtype']} in steps of "
              f"{var.encoding['scale_factor']:g} {var.attrs.get('units', '')}: kept as stored")

    print('\ncodec="auto" chose per variable by the ratios (to raw float32) it measured on samples:')
    for name, array in enc.arrays.items():
        print(f"  {name:6}{_why(array.choice)}")

    print("\nbound held on every value: max error measured while compressing (verify=True), and"
          '\nagain on the store read back: chunkpress.verify("ocean.zarr", against="ocean.nc")')
    for name, row in report.iterrows():
        if row["codec"] != "exact":
            print(f"  {name:6}{row['max_error']:.7g}, read back {arrays.loc[name, 'max_error']:.7g}"
                  f" <= {row['error_bound']:g} {ds[name].attrs.get('units', '')}")
    totals = checked.attrs["summary"]
    placed = int(arrays.loc[arrays["checks"].str.contains("place"), "chunks"].sum())
    print(f"chunkpress.verify(\"ocean.zarr\"): {totals['chunks']} chunks: checksums, and "
          f"places where recorded ({placed}): "
          + ("no problems" if checked.empty else f"{len(checked)} PROBLEMS"))
    back = xr.open_zarr(store)
    for name in enc.arrays:
        before, after = (v.isnull().values for v in (ds[name], back[name]))
        if before.any():
            print(f"land kept missing: {name} has {before.sum():,} NaN in ocean.nc, "
                  f"{after.sum():,} in the store, "
                  + ("the same cells" if (before == after).all() else "NOT THE SAME CELLS"))
    print("\nopen it in plain xarray:")
    print(f'  import xarray as xr\n  xr.open_zarr("{os.path.abspath(store)}")')
    problems = not checked.empty or any(
        not r["max_error"] <= r["error_bound"] if r["codec"] != "exact"
        else arrays.loc[name, "max_error"] != 0 for name, r in report.iterrows())
    return 3 if problems else 0


def _where(args) -> str:
    if getattr(args, "scheduler", None):
        return f"the dask scheduler at {args.scheduler}"
    threads = args.workers or os.cpu_count() or 1
    return f"local scheduler, {threads} thread{'s' if threads != 1 else ''}, no server"


def _described(ds, name) -> str:
    var = ds[name]
    if "scale_factor" in var.encoding:
        return f"{name} (packed {var.encoding['dtype']})"
    if name == "land":
        return f"{name} ({var.dtype} mask)"
    missing = " with land missing" if bool(var.isnull().any()) else ""
    return f"{name}{missing}"


def _why(choice) -> str:
    """The sampled ratios, best first, and the share of values they were measured on."""
    ratios = ", ".join(f"{k} {v:.3g}" for k, v in choice.ratios.items() if v == v)
    chosen = choice.codec if choice.blocks is None else ", ".join(
        f"{k} in {n} blocks" for k, n in choice.codecs.items())
    return f"{ratios} (on {choice.sampled:.0%} of values) -> {chosen}"


def _mb(nbytes) -> str:
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 1e5 else f"{nbytes / 1e3:.1f} kB"


def _stored_codec(store, name) -> str:
    """The lossless codec zarr wrote a variable kept exact with (its last, but the CRC)."""
    import json

    with open(os.path.join(store, name, "zarr.json")) as f:
        names = [c["name"] for c in json.load(f)["codecs"] if c["name"] != "crc32c"]
    return names[-1] if len(names) > 1 else "none"


def _tree_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files)


def _zarr_variable_bytes(store) -> dict:
    """Each variable's chunk bytes, as HDF5's storage size counts a netCDF variable's: its
    metadata (zarr.json) is in the whole dataset's line, as the netCDF header is."""
    return {name: _tree_bytes(os.path.join(store, name))
            - os.path.getsize(os.path.join(store, name, "zarr.json"))
            for name in os.listdir(store) if os.path.isdir(os.path.join(store, name))}


def _netcdf_variable_bytes(path) -> dict:
    """Each variable's stored (compressed) bytes in a netCDF-4 file, as HDF5 reports them."""
    import h5py

    with h5py.File(path, "r") as f:
        return {name: f[name].id.get_storage_size() for name in f
                if isinstance(f[name], h5py.Dataset)}
