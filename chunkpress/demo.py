"""Built-in data for the main job (``chunkpress`` alone) and the tests: a sea-surface-
temperature-like field with land, and a small CF dataset of it."""

from __future__ import annotations

import numpy as np



def ocean_field(shape=(24, 360, 720), seed=0) -> np.ndarray:
    """Return a smooth float32 field (time, lat, lon) in deg C with NaN over land (~30%)."""
    rng = np.random.default_rng(seed)
    nt, ny, nx = shape
    lat = np.linspace(-89.75, 89.75, ny)[None, :, None]
    lon = np.linspace(0, 2 * np.pi, nx, endpoint=False)[None, None, :]
    t = np.arange(nt)[:, None, None]
    sst = (
        28 * np.cos(np.deg2rad(lat)) ** 2
        - 1.8
        + 1.5 * np.sin(lon * 3 + t / 4) * np.cos(np.deg2rad(lat))
        + 0.8 * np.sin(2 * np.pi * t / 12)
    )
    sst = sst + 0.05 * rng.standard_normal(sst.shape)
    # continents: smooth blobs of a random field above a threshold, the same for every step
    waves = sum(
        np.sin(k * lon[0] + p) * np.cos(m * np.deg2rad(lat[0]) + q)
        for k, m, p, q in rng.uniform(1, 4, size=(6, 4))
    )
    land = np.broadcast_to(waves > np.quantile(waves, 0.7), sst.shape)
    return np.where(land, np.nan, sst).astype(np.float32)


def demo_dataset(shape=(12, 180, 360)):
    """Return a small CF dataset: sea-surface temperature with land missing, wind, times."""
    import pandas as pd
    import xarray as xr

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
