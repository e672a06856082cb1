"""Opening what the user gives: netCDF files and Zarr stores, lazily, with dask."""

from __future__ import annotations

import os

from ._common import UserError

NETCDF_ENCODINGS = ("dtype", "_FillValue", "missing_value", "scale_factor", "add_offset",
                     "units", "calendar")


def check_input(path):
    if "://" in str(path):
        return
    if not os.path.exists(path):
        from ..storage.publish import check_complete

        check_complete(path)  # a crash mid-swap is repaired; a write that stopped says so
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or directory; give a netCDF file or Zarr store "
                        "that exists")


def open(path, xr):
    """Open anything xarray opens (netCDF, Zarr), lazily, as dask arrays."""
    is_zarr = os.path.isdir(path) or str(path).rstrip("/").endswith(".zarr")
    try:
        if is_zarr:
            return xr.open_zarr(path)
        return xr.open_dataset(path, chunks={})
    except (OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            if is_zarr:
                from ..storage.publish import check_complete

                check_complete(path, None, None)  # a write that stopped halfway says so
            raise
        raise UserError(f"{path}: xarray cannot open it ({exc}); give a netCDF file "
                        "(with h5netcdf or netCDF4 installed) or a Zarr store") from exc
