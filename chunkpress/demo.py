"""Built-in data for the main job (``chunkpress`` alone) and the tests: a sea-surface-
temperature-like field with land, and a small CF dataset of an ocean month by month."""

from __future__ import annotations

import numpy as np

#: what the main job asks of each variable: the max absolute error, in its own units
BOUNDS = {"sst": 0.01, "wind": 0.05}


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


def weather(shape, scale_cells=8.0, slope=3.0, seed=1) -> np.ndarray:
    """Return float64 anomalies (time, lat, lon) of unit variance, correlated in space over
    about ``scale_cells`` cells (a power spectrum falling as k**-slope), periodic in lon."""
    rng = np.random.default_rng(seed)
    nt, ny, nx = shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    k = np.hypot(ky, kx)
    amplitude = (k + 1 / scale_cells) ** (-slope / 2)
    amplitude[0, 0] = 0.0
    noise = rng.standard_normal((nt, ny, nx))
    field = np.fft.irfft2(np.fft.rfft2(noise) * amplitude, s=(ny, nx))
    return field / field.std()


def demo_dataset(shape=(24, 180, 360)):
    """Return a small CF dataset of an ocean, month by month: ``sst`` (deg C, land missing),
    ``wind`` (10 m wind speed, m s-1, everywhere), ``slp`` (sea-level pressure in hPa, packed
    as int16 with ``scale_factor``/``add_offset`` as its producer stored it) and ``land``
    (an int8 mask); the netCDF encodings are those of a typical archive file."""
    import pandas as pd
    import xarray as xr

    nt, ny, nx = shape
    sst = ocean_field(shape)
    lat = np.deg2rad(np.linspace(-89.5, 89.5, ny))[None, :, None]
    # zonal wind: easterly trades, westerlies at mid-latitudes; storms move the rest
    u = -6 * np.cos(3 * lat) * np.cos(lat) + 3 * weather(shape, seed=1)
    v = 2.5 * weather(shape, seed=2)
    wind = np.hypot(u, v).astype(np.float32)
    # highs in the subtropics, lows at 60 degrees, weather on top; 0.1 hPa steps
    slp = 1013 + 8 * np.cos(4 * lat) * np.cos(lat) + 6 * weather(shape, 16.0, seed=3)
    slp = np.round((slp - 1000) / 0.1) * 0.1 + 1000
    ds = xr.Dataset(
        {
            "sst": (("time", "lat", "lon"), sst, {
                "units": "degC", "standard_name": "sea_surface_temperature"}),
            "wind": (("time", "lat", "lon"), wind, {
                "units": "m s-1", "standard_name": "wind_speed", "long_name": "10 m wind speed"}),
            "slp": (("time", "lat", "lon"), slp.astype(np.float32), {
                "units": "hPa", "standard_name": "air_pressure_at_mean_sea_level"}),
            "land": (("lat", "lon"), np.isnan(sst[0]).astype("int8"), {
                "flag_values": [0, 1], "flag_meanings": "ocean land"}),
        },
        coords={
            "time": pd.date_range("2000-01-01", periods=nt, freq="MS"),
            "lat": ("lat", np.linspace(-89.5, 89.5, ny), {"units": "degrees_north"}),
            "lon": ("lon", np.linspace(0.5, 359.5, nx), {"units": "degrees_east"}),
        },
        attrs={"title": "chunkpress demo ocean", "Conventions": "CF-1.8"},
    )
    ds.sst.encoding = {"_FillValue": -999.0, "dtype": "float32"}
    ds.slp.encoding = {"dtype": "int16", "scale_factor": 0.1, "add_offset": 1000.0,
                       "_FillValue": -32767}
    ds.time.encoding = {"units": "days since 2000-01-01", "calendar": "standard"}
    return ds


def netcdf_encoding(ds, level=4) -> dict:
    """The encodings of the netCDF-4 file most archives hold: zlib (deflate) at ``level``
    with the byte shuffle, on every data variable, keeping each variable's own encoding, in
    the chunks netCDF-C gives a small file's variables: each whole (h5netcdf's own smaller
    chunks made the file 3% larger than the netCDF library writes it)."""
    return {name: {**ds[name].encoding, "zlib": True, "complevel": level, "shuffle": True,
                   **({"chunksizes": ds[name].shape} if ds[name].ndim else {})}
            for name in ds.data_vars}
