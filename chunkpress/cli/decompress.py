"""``chunkpress decompress IN.zarr OUT.nc``: a Zarr store back into netCDF."""

from __future__ import annotations

from ._common import add_scheduler, check_output, scheduler
from .inputs import NETCDF_ENCODINGS, check_input, open
from .progress import run

HELP = "decompress a Zarr store into netCDF"


def add_arguments(sub) -> None:
    sub.add_argument("input", metavar="IN.zarr")
    sub.add_argument("output", metavar="OUT.nc")
    sub.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_scheduler(sub)


def main(args) -> int:
    import xarray as xr

    from ..storage.publish import replacing_file

    check_input(args.input)
    check_output(args.output, args.overwrite, kind="file")
    with scheduler(args):
        ds = open(args.input, xr)
        for var in ds.variables.values():  # the zarr codecs mean nothing to netCDF
            var.encoding = {k: v for k, v in var.encoding.items() if k in NETCDF_ENCODINGS}
        with replacing_file(args.output) as temporary:  # OUT is replaced once whole
            run(ds.to_netcdf(temporary, compute=False), "writing")
    print(f"wrote {args.output}")
    return 0
