"""``chunkpress evaluate IN``: every codec at every tolerance on the user's data."""

from __future__ import annotations

import os

from ._common import UserError, add_scheduler, names, print_table, scheduler, tolerances
from .inputs import check_input, open

HELP = "every codec at every tolerance on your data: ratio, errors, speeds; rate-distortion pictures"


def add_arguments(sub) -> None:
    sub.add_argument("input", metavar="IN", help="anything xarray opens (netCDF, Zarr)")
    sub.add_argument("--var", action="append", metavar="NAME",
                     help="evaluate this variable (repeat; default: every float variable)")
    sub.add_argument("--codecs", type=names, metavar="LIST",
                     help="codecs, comma-separated (default: zfp,sz3,sperr,lerc for floats)")
    sub.add_argument("--tolerances", type=tolerances, metavar="LIST",
                     help="max absolute errors, comma-separated (default: 1e-2, 1e-3, 1e-4 of "
                          "each variable's range)")
    sub.add_argument("--plot", metavar="PNG", help="write the rate-distortion curves and, for "
                     "the best codec at the first tolerance, the error over a 2-D slice")
    sub.add_argument("--overwrite", action="store_true", help="replace PNG if it exists")
    add_scheduler(sub)


def main(args) -> int:
    """Every codec at every tolerance on the input's variables: print the table, draw it."""
    import xarray as xr

    from ..evaluation import evaluate, plot

    check_input(args.input)
    if args.plot and os.path.exists(args.plot) and not args.overwrite:
        raise UserError(f"{args.plot} exists; choose another name or pass --overwrite")
    with scheduler(args):
        ds = open(args.input, xr)
        print("evaluating:", flush=True)
        table = evaluate(ds, args.codecs, args.tolerances, variables=args.var or None)
        print_table(table.set_index(["variable", "codec", "setting"]))
        if args.plot:
            plot(table, args.plot, ds)
            print(f"\nwrote {args.plot}: rate-distortion curves, and the error of the best "
                  "codec at the first tolerance over a 2-D slice")
    return 0
