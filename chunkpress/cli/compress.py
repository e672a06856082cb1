"""``chunkpress compress IN OUT.zarr``: compress a netCDF file or Zarr store into Zarr v3."""

from __future__ import annotations

from ._common import add_scheduler, print_table, scheduler, tolerance
from .info import info_table
from .inputs import check_input, open
from ._common import check_output
from .progress import run

HELP = "compress a netCDF file or Zarr store into Zarr v3"


def add_arguments(sub) -> None:
    sub.add_argument("input", metavar="IN", help="anything xarray opens (netCDF, Zarr)")
    sub.add_argument("output", metavar="OUT.zarr")
    sub.add_argument("--codec", default="zfp", help="zfp (default), sperr, sz3, lerc, szip, "
                     "pcodec, floatpred+zstd, ...; auto: chosen on samples of each variable, "
                     "per block where that wins (auto-array: one codec a variable)")
    sub.add_argument("--tolerance", type=tolerance, help="max absolute error, in the "
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
    add_scheduler(sub)


def main(args) -> int:
    import xarray as xr

    import chunkpress.accessor  # noqa: F401 - the accessor

    check_input(args.input)
    check_output(args.output, args.overwrite)  # a store replaced only once the new one is whole
    params = {"tolerance": args.tolerance, "rate": args.rate, "precision": args.precision,
              "level": args.level}
    params = {k: v for k, v in params.items() if v is not None}
    with scheduler(args):
        ds = open(args.input, xr)
        enc = ds.chunkpress.encode(args.codec, variables=args.var or None, verify=args.verify,
                                   **params)
        if args.verify:
            enc = run(enc.persist, "compressing")
        job = enc.to_zarr(args.output, overwrite=args.overwrite, compute=False)
        run(job, "writing")  # published here: this process checks every chunk is there
        report = enc.report() if args.verify else info_table(args.output)
    print_table(report)
    return 0
