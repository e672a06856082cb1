"""``chunkpress demo`` (and ``chunkpress`` alone): the main job on built-in data."""

from __future__ import annotations

import os
import tempfile

from ..demo import demo_dataset
from ._common import add_scheduler, check_output, print_table, scheduler, tolerance
from .progress import run

HELP = "make a small ocean dataset, compress it to Zarr, report"


def add_arguments(sub) -> None:
    sub.add_argument("--out", metavar="DIR", help="where to write (default: a new temp dir)")
    sub.add_argument("--tolerance", type=tolerance, default=0.01)
    sub.add_argument("--overwrite", action="store_true")
    add_scheduler(sub)


def main(args) -> int:
    """Make a small realistic dataset with land, compress it to Zarr, print the report."""
    import xarray as xr

    import chunkpress.accessor  # noqa: F401 - the accessor

    out = args.out or tempfile.mkdtemp(prefix="chunkpress-demo-")
    source = os.path.join(out, "ocean.nc")
    store = os.path.join(out, "ocean.zarr")
    check_output(store, args.overwrite)
    ds = demo_dataset()
    try:
        ds.to_netcdf(source)
        ds = xr.open_dataset(source, chunks={})
        print(f"made {source}: {ds.sizes['time']} months of sea-surface temperature and wind "
              "on a 1-degree grid, land missing")
    except (ImportError, ValueError):  # no netCDF engine: the dataset from memory
        print("made a dataset of sea-surface temperature and wind, land missing "
              "(install h5netcdf to have it written as netCDF too)")
    with scheduler(args):
        enc = ds.chunkpress.encode("zfp", tolerance={"sst": args.tolerance, "wind": 0.05},
                                   verify=True)
        enc = run(enc.persist, "compressing")
        run(enc.to_zarr(store, overwrite=args.overwrite, compute=False), "writing")
    print(f"wrote {store}; plain xarray reads it: xr.open_zarr({store!r})\n")
    print_table(enc.report())
    back = xr.open_zarr(store)
    error = float(abs(back.sst - ds.sst).max())
    kept = bool((back.sst.isnull() == ds.sst.isnull()).all())
    print(f"\nread back with xr.open_zarr: sst max error {error:.3g} <= {args.tolerance}, "
          f"land kept missing: {kept}")
    return 0
