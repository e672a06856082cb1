"""The main job on built-in data: a sea-surface-temperature-like field with land, every codec.

Runs on a fresh machine with no data of the user's: ``chunkpress`` (the command, no arguments).
"""

from __future__ import annotations

import time

import numpy as np

from . import kernels


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


def main() -> None:
    field = ocean_field()
    land = np.isnan(field)
    tolerance = 0.01
    print(f"sea surface temperature, {field.shape} float32, {field.nbytes / 2**20:.1f} MiB, "
          f"{land.mean():.0%} land (NaN); tolerance {tolerance} deg C where lossy\n")
    print(f"{'codec':<10}{'setting':<22}{'ratio':>8}{'max error':>12}{'NaN kept':>10}"
          f"{'encode MB/s':>13}{'decode MB/s':>13}")
    runs = [
        ("zfp", dict(tolerance=tolerance)),
        ("sz3", dict(tolerance=tolerance)),
        ("sperr", dict(tolerance=tolerance)),
        ("lerc", dict(tolerance=tolerance)),
        ("pcodec", dict(level=8)),
        ("szip", dict(coding="nn")),
    ]
    for codec, params in runs:
        encode = getattr(kernels, f"{codec}_encode")
        decode = getattr(kernels, f"{codec}_decode")
        start = time.perf_counter()
        stream = encode(field, **params)
        middle = time.perf_counter()
        decoded = decode(stream)
        end = time.perf_counter()
        error = float(np.nanmax(np.abs(decoded.astype(np.float64) - field)))
        kept = bool(np.array_equal(np.isnan(decoded), land))
        setting = ", ".join(f"{k}={v}" for k, v in params.items())
        mb = field.nbytes / 1e6
        print(f"{codec:<10}{setting:<22}{field.nbytes / len(stream):>8.1f}{error:>12.2e}"
              f"{'yes' if kept else 'NO':>10}{mb / (middle - start):>13.0f}"
              f"{mb / (end - middle):>13.0f}")


if __name__ == "__main__":
    main()
