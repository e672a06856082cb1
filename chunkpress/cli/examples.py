"""The examples each subcommand's ``--help`` ends with (its epilog)."""

from __future__ import annotations

EXAMPLES = {
    "compress": """\
examples:
  chunkpress compress sst.nc sst.zarr --tolerance 0.01
  chunkpress compress in.nc out.zarr --codec auto --tolerance 0.01 --verify
  chunkpress compress in.nc out.zarr --codec zfp --tolerance 0.05 --var sst --workers 8""",
    "decompress": """\
examples:
  chunkpress decompress sst.zarr sst.nc
  chunkpress decompress sst.zarr sst.nc --netcdf-compression zstd --overwrite""",
    "info": """\
examples:
  chunkpress info sst.zarr           # a table in 100 columns
  chunkpress info sst.zarr --long    # every field, however wide
  chunkpress info sst.zarr --json    # for scripts: per variable codec, sizes, bounds""",
    "verify": """\
examples:
  chunkpress verify sst.zarr                     # every chunk present and sound
  chunkpress verify sst.zarr --against sst.nc    # and the error within the bound
  chunkpress verify out.zarr --against 'monthly_*.nc'   # the inputs compress was given
  chunkpress verify sst.zarr --json || echo damaged""",
    "evaluate": """\
examples:
  chunkpress evaluate sst.nc --var sst
  chunkpress evaluate sst.nc --codecs zfp,sz3,sperr --tolerances 0.1,0.01 --plot rd.png""",
    "demo": """\
examples:
  chunkpress                  # the same as `chunkpress demo`
  chunkpress demo --out /tmp/chunkpress-demo --overwrite""",
}


def epilog(command: str) -> str | None:
    """The examples of ``command`` (None: it has none)."""
    return EXAMPLES.get(command)
