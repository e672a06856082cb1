"""``chunkpress compress IN... OUT.zarr``: compress netCDF files or Zarr stores into Zarr v3."""

from __future__ import annotations

import argparse
import sys

from . import bounds
from ._common import UserError, add_scheduler, check_output, print_table, scheduler
from .info import info_table
from .inputs import add_arguments as add_input_arguments
from .inputs import (check_input, check_remote_output, expand, open_inputs, remote_errors,
                     storage_options)
from .progress import run

HELP = "compress netCDF files or Zarr stores into Zarr v3"

EXAMPLES = """\
examples:
  chunkpress compress sst.nc sst.zarr --tolerance 0.01
  chunkpress compress 'model_*.nc' out.zarr --codec sz3 --tolerance 0.1% --tolerance SLP=0.05
  chunkpress compress a.nc b.nc c.nc out.zarr --config bounds.toml --workers 8
  chunkpress compress coads.cdf out.zarr --no-decode-times --codec sperr --mode psnr --quality 60
  chunkpress compress sst.nc sst.zarr --codec bitround --information 0.99
  chunkpress compress sst.nc sst.zarr --codec quantize --digits 3 --method granularbr
  chunkpress compress s3://bucket/in.zarr s3://bucket/out.zarr --tolerance 0.01 \\
      --storage-option endpoint_url=https://host --storage-option anon=false

Several inputs (or a quoted glob) are put together along their record dimension (the netCDF
unlimited dimension, or time). Times xarray cannot decode (e.g. 'hours since 0000-01-01')
are kept as the numbers stored, with their units, and a note says so (as --no-decode-times).
A setting given as VAR=VALUE is for that variable, a bare one for the rest; the most specific
wins: VAR= on the command line, [variables.VAR] in --config, a bare value, [defaults]. A
percentage tolerance is of the variable's range (max - min), measured in one pass first.
"""


def add_arguments(sub) -> None:
    sub.epilog = EXAMPLES
    sub.formatter_class = argparse.RawDescriptionHelpFormatter
    sub.add_argument("input", nargs="+", metavar="IN",
                     help="netCDF files or Zarr stores (or a quoted glob such as 'sst_*.nc'), "
                          "put together along their record dimension")
    sub.add_argument("output", metavar="OUT.zarr", help="the Zarr v3 store to write (the last "
                     "name given)")
    bounds.add_arguments(sub)
    sub.add_argument("--var", action="append", metavar="NAME",
                     help="compress this variable (repeat; default: every float variable "
                          "but the coordinates' cell bounds); the others are kept exact")
    add_input_arguments(sub)
    sub.add_argument("--verify", action="store_true",
                     help="decode every block as it is made and report the measured max error")
    sub.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    sub.add_argument("--portable", action="store_true",
                     help="write only codecs zarr and numcodecs have (no --codec): the store "
                          "opens where chunkpress is not installed; each bound certified")
    add_scheduler(sub)
    bounds.add_codec_arguments(sub)  # last: a parameter never takes one of the options above


def main(args) -> int:
    import chunkpress.accessor  # noqa: F401 - the accessor

    options = storage_options(args)
    config = bounds.load_config(args.config) if args.config else None
    paths = expand(args.input, options)
    if options and not any("://" in str(p) for p in [*paths, args.output]):
        raise UserError(f"--storage-option {next(iter(options))}=...: is for s3://... (fsspec) "
                        "inputs and outputs, and IN and OUT are local paths; drop it")
    for path in paths:
        check_input(path, options)
    check_output(args.output, args.overwrite)  # a store replaced only once the new one is whole
    if "://" in str(args.output) and str(args.output).rstrip("/").lower().endswith(".zip"):
        raise UserError(f"{args.output}: a .zip store is written on a local path only (this "
                        "would be a directory named .zip); on an object store name it .zarr, "
                        "or write the .zip here and upload it")
    check_remote_output(args.output, args.overwrite, options)
    with remote_errors([*paths, args.output], options), scheduler(args):
        notes = []  # said once the settings hold: a mistake in them is then the one line
        ds = open_inputs(paths, decode_times=args.decode_times, engine=args.engine,
                         storage_options=options, note=notes.append)
        if args.portable:
            bounds.check_portable(bounds.from_args(args))
        chosen = bounds.resolve(ds, bounds.from_args(args), config, args.var, args.config)
        chosen = bounds.absolute(ds, chosen)  # percentages: one pass over the data
        ds = _exact_in_larger_chunks(ds, chosen)
        for text in notes:
            print(f"chunkpress: note: {text}", file=sys.stderr)
        line = bounds.describe_relative(chosen)
        if line:
            print(line)
        if args.portable:
            return _portable(ds, chosen, args, options)
        enc = ds.chunkpress.encode(verify=args.verify, **bounds.encode_arguments(chosen))
        if args.verify:
            enc = run(enc.persist, "compressing")
        job = enc.to_zarr(args.output, overwrite=args.overwrite, compute=False,
                          storage_options=_output_options(args.output, options))
        run(job, "writing")  # published here: this process checks every chunk is there
        report = enc.report() if args.verify else _table(args.output, options)
    print_table(report)
    return 0


#: bytes a chunk of a variable kept exact holds at least (where the variable has as many)
EXACT_CHUNK = 4 * 2**20


def _exact_in_larger_chunks(ds, chosen):
    """The variables kept exact in chunks of EXACT_CHUNK bytes at least along their first
    axis. They are stored in the chunks they are read in, and a netCDF file's record
    dimension comes in chunks of one record: an hourly year's flag variable was 8760 objects
    of a few hundred bytes each. (The compressed variables take their codec's blocks.)"""
    import math

    larger = {}
    for name, var in ds.data_vars.items():
        if name in chosen or var.chunks is None or var.ndim == 0 or var.size == 0:
            continue
        per_row = math.prod(var.shape[1:]) * var.dtype.itemsize or 1
        rows = min(var.shape[0], max(1, EXACT_CHUNK // per_row))
        if max(var.chunks[0]) < rows:
            larger[name] = var.chunk({var.dims[0]: rows})
    return ds.assign(larger) if larger else ds


def _portable(ds, chosen, args, options) -> int:
    """--portable: numcodecs' filters for each variable's bound, written and certified."""
    given = bounds.encode_arguments(chosen)
    codecs = {c for c in given.pop("codec", {}).values() if c not in (None, "zfp")}
    if getattr(args, "codec", None) or codecs:
        where = "--codec" if getattr(args, "codec", None) else f"codec from {args.config}"
        raise UserError(f"--portable chooses numcodecs' codecs for each bound; drop {where} "
                        "(or drop --portable)")
    kept = {k: given[k] for k in ("tolerance", "rel_tolerance", "variables") if k in given}
    others = sorted(k for k in given if k not in kept)
    if others:
        raise UserError(f"--portable takes --tolerance and --rel-tolerance only; drop "
                        f"{', '.join('--' + k.replace('_', '-') for k in others)}")
    job = ds.chunkpress.to_zarr(args.output, portable=True, overwrite=args.overwrite,
                                compute=False,
                                storage_options=_output_options(args.output, options),
                                **kept)
    run(job, "writing")
    print_table(_table(args.output, options))
    return 0


def _output_options(output, options):
    """The --storage-option values for the output: a URL's (an input's may be a URL where
    the output is a local path)."""
    return (options or None) if "://" in str(output) else None


def _table(output, options):
    if "://" not in str(output):
        return info_table(output)  # with what codec="auto" chose
    from ..storage import info

    return info(output, storage_options=options or None)
