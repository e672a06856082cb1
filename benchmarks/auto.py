"""codec="auto" on a multi-variable dataset: its ratio against every single codec's, and what
the sampling costs.

The dataset is built here, in memory, on a quarter-degree grid (``--small``: one degree):

    sst         (24, 720, 1440) float32  sea-surface temperature, NaN over land   0.01 K
    wind        (24, 720, 1440) float32  10 m wind, red along the longitude       0.01 m/s
    theta       (48, 512, 1024) float32  turbulent boundary layer, smooth aloft   0.01 K
    flashes     (24, 720, 1440) int16    lightning counts                         lossless
    salinity    (20, 720, 1440) float32  ocean climatology on 20 standard depths  0.01 psu
    temperature (20, 720, 1440) float32  the same ocean's potential temperature   0.01 K
    wind_month  (12, 360, 720)  float32  monthly scatterometer wind, ocean only   0.01 m/s

The last three are climatologies like those codec="auto" once misjudged: few levels, land as
NaN growing with depth (the ocean floor rises toward the coasts: ~30% land at the surface,
~75% at 5000 m), a strong halocline and thermocline, smooth along the vertical; the monthly
wind is masked over land and over the sea ice of each month (~45%). ``--small`` makes the
shapes of the held-out fields: (20, 180, 360) and (12, 90, 180).

For each variable, in the same run: every candidate codec over the whole variable,
``chunkpress.compress(x, codec, tolerance=t)`` with its own blocking (the best of these is the
best single codec); ``"auto-array"`` (one codec, chosen on samples) and ``"auto"`` (per block
where that wins). Ratios are exact (deterministic); times are the best of --repeat rounds, the
configurations taking turns. Sampling overhead = the sampling's wall time over the rest of
auto's compression (the chosen codec(s) compressing the variable), both best of the rounds.

Targets: auto-array >= 0.98x the best single codec's ratio, auto (per block) >= 1.0x, sampling
<= 15% of the compression time.

    python benchmarks/auto.py [--repeat 3] [--small]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import chunkpress
from chunkpress.demo import ocean_field, weather
from chunkpress.graph import sample

TARGET_AUTO = 0.98
TARGET_BLOCK = 1.0
TARGET_OVERHEAD = 0.15


def wind(shape, seed=1) -> np.ndarray:
    """10 m wind speed: 5 m/s and a random walk along the longitude."""
    rng = np.random.default_rng(seed)
    return (5 + np.cumsum(rng.standard_normal(shape, np.float32), axis=2) * 0.05).astype("f4")


def theta(shape, seed=4) -> np.ndarray:
    """Potential temperature (K): turbulent eddies in the lowest quarter, a stable, smoother
    free atmosphere above with mesoscale (red) variability fading with height."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    y = np.linspace(0, 2 * np.pi, ny)[:, None]
    x = np.linspace(0, 2 * np.pi, nx, endpoint=False)[None, :]
    waves = 1.5 * np.sin(x + y) * np.cos(y)
    top = nz // 4
    out = np.empty(shape, np.float32)
    for k in range(nz):
        if k < top:  # eddies: nearly white at the grid scale
            eddies = rng.standard_normal((ny, nx)) * 0.25
            eddies = 0.6 * eddies + 0.2 * (np.roll(eddies, 1, 0) + np.roll(eddies, 1, 1))
            out[k] = 295 + waves + eddies
        else:
            red = np.cumsum(rng.standard_normal((ny, nx)), axis=1) * 0.02
            red -= red.mean(axis=1, keepdims=True)
            out[k] = 295 + 0.35 * (k - top) + waves + red * np.exp(-(k - top) / nz)
    return out


def flashes(shape, seed=3) -> np.ndarray:
    """Lightning flash counts: Poisson, more over warm water."""
    rng = np.random.default_rng(seed)
    warm = np.nan_to_num(np.clip(ocean_field(shape, seed=5), 0, None), nan=0.0)
    return rng.poisson(warm * 3).astype(np.int16)


#: the standard depths (m) of the ocean climatologies: 20 of the World Ocean Atlas' levels
DEPTHS = (0, 10, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500, 700, 1000, 1500, 2000, 2500,
          3000, 4000, 5000)


#: the ocean's hypsometry: the share of its area shallower than each depth (m)
HYPSOMETRY = ((0.0, 0), (0.07, 200), (0.09, 1000), (0.12, 2000), (0.2, 3000), (0.4, 4000),
              (0.75, 5000), (1.0, 6000))


def ocean_floor(ny, nx, seed=7) -> np.ndarray:
    """Depth of the ocean floor (m) on a (lat, lon) grid, 0 on land: continents (~30% of the
    Earth, ~40% of a latitude-longitude grid's cells with Antarctica), shelves and slopes
    around them, abyssal plains crossed by mid-ocean ridges, depths distributed as the real
    ocean's (:data:`HYPSOMETRY`); the same planet at every resolution."""
    rng = np.random.default_rng(seed)
    lat = np.deg2rad(np.linspace(-89.5, 89.5, ny))[:, None]
    lon = np.linspace(0, 2 * np.pi, nx, endpoint=False)[None, :]
    continents = sum(np.sin(k * lon + p) * np.cos(m * lat + q)
                     for k, m, p, q in rng.uniform(1, 4, size=(6, 4)))
    # ragged coastlines, islands: red relief 8 degrees across
    continents = continents + 0.25 * continents.std() * weather((1, ny, nx), 8 * ny / 180, 3,
                                                                 seed)[0]
    coast = np.quantile(continents, 0.7)
    land = (continents > coast) | (lat < np.deg2rad(-70) + 0.05 * continents)
    # the farther from the coast, the deeper, with ridges and relief; ranked onto HYPSOMETRY
    distance = (coast - continents) / continents.std() - 0.4 * np.cos(3 * lon + 2 * lat) ** 8 \
        + 0.15 * weather((1, ny, nx), 3 * ny / 180, 3, seed + 1)[0]
    rank = np.argsort(np.argsort(distance[~land])) / max(1, (~land).sum() - 1)
    share, depth = zip(*HYPSOMETRY)
    floor = np.zeros((ny, nx))
    floor[~land] = np.maximum(np.interp(rank, share, depth), 5.0)
    return floor


def _anomalies(nz, ny, nx, degrees, seed, weights):
    """Smooth anomalies (``degrees`` across; a climatology averages the weather out) shared
    by every level, with each level's weight."""
    modes = weather((len(weights[0]), ny, nx), degrees * ny / 180, 5, seed)
    return np.einsum("km,myx->kyx", np.asarray(weights), modes)


def salinity(ny, nx, seed=11) -> np.ndarray:
    """Salinity climatology (psu) on :data:`DEPTHS`: salty subtropics and fresh high
    latitudes at the surface, a halocline over ~300 m to a uniform 34.7 at depth, the
    intermediate-water minimum near 800 m in the south, mesoscale features fading with depth,
    the small noise of an objective analysis; NaN below the ocean floor."""
    z = np.asarray(DEPTHS, float)[:, None, None]
    lat = np.deg2rad(np.linspace(-89.5, 89.5, ny))[None, :, None]
    surface = 34.6 + 1.3 * np.cos(2 * lat) * np.cos(lat) - 0.6 * np.sin(lat) ** 4
    deep = 34.7 + 0.05 * np.cos(lat)
    mixing = np.exp(-z / 300)
    intermediate = -0.35 * np.exp(-((z - 800) / 350) ** 2) * (lat < 0) * np.cos(lat) ** 2
    weights = np.stack([0.4 * np.exp(-z[:, 0, 0] / 150), 0.15 * np.exp(-z[:, 0, 0] / 600)], 1)
    anomalies = _anomalies(len(DEPTHS), ny, nx, 8, seed, weights)
    noise = 0.01 * weather((len(DEPTHS), ny, nx), 2 * ny / 180, 3, seed + 5) * \
        np.exp(-z / 1500)
    values = mixing * surface + (1 - mixing) * deep + intermediate + anomalies + noise
    return _below_floor(values, ny, nx)


def temperature(ny, nx, seed=13) -> np.ndarray:
    """Potential temperature climatology (deg C) of the same ocean: warm tropics, a
    thermocline deepening from ~100 m at the equator to ~400 m in the subtropics, cold
    (0-2 deg C) at depth, eddies fading with depth; NaN below the ocean floor."""
    z = np.asarray(DEPTHS, float)[:, None, None]
    lat = np.deg2rad(np.linspace(-89.5, 89.5, ny))[None, :, None]
    surface = -1.5 + 29.5 * np.cos(lat) ** 2
    deep = 0.5 + 1.5 * np.cos(lat)
    thermocline = 100 + 300 * np.sin(2 * np.abs(lat)) ** 2
    profile = 1 / (1 + np.exp((z - thermocline) / (0.4 * thermocline)))
    weights = np.stack([1.2 * np.exp(-z[:, 0, 0] / 250), 0.4 * np.exp(-z[:, 0, 0] / 1000)], 1)
    anomalies = _anomalies(len(DEPTHS), ny, nx, 8, seed, weights)
    noise = 0.02 * weather((len(DEPTHS), ny, nx), 2 * ny / 180, 3, seed + 5) * \
        np.exp(-z / 1000)
    values = deep + (surface - deep) * profile + anomalies + noise
    return _below_floor(np.maximum(values, -1.9), ny, nx)  # sea water freezes at -1.9


def _below_floor(values, ny, nx) -> np.ndarray:
    floor = ocean_floor(ny, nx)
    land = np.asarray(DEPTHS, float)[:, None, None] >= floor[None]
    return np.where(land, np.nan, values).astype(np.float32)


def wind_month(ny, nx, seed=21) -> np.ndarray:
    """Monthly 10 m wind speed climatology (m/s) from a scatterometer: trades, doldrums,
    westerlies strongest in each hemisphere's winter, month-to-month persistent anomalies;
    NaN over land and over each month's sea ice."""
    months = 12
    t = np.arange(months)[:, None, None]
    lat = np.deg2rad(np.linspace(-89.5, 89.5, ny))[None, :, None]
    season = np.cos(2 * np.pi * (t - 0.5) / 12)  # +1 in January
    base = 6.5 - 2.0 * np.cos(6 * lat) * np.cos(lat) + 2.5 * np.sin(lat) ** 2
    westerlies = 1.8 * season * np.sin(lat) * np.exp(-((np.abs(lat) - 0.9) / 0.35) ** 2)
    anomalies = weather((months, ny, nx), 15 * ny / 180, 5, seed)
    for m in range(1, months):  # a month remembers the last
        anomalies[m] = 0.6 * anomalies[m - 1] + 0.8 * anomalies[m]
    values = base - westerlies + 0.7 * anomalies
    land = ocean_floor(ny, nx)[None] == 0
    ice_edge = np.deg2rad(70 - 6 * season * np.sign(lat))  # further from the pole in winter
    ice = np.abs(lat) > ice_edge + np.deg2rad(3) * weather((months, ny, nx), 10 * ny / 180,
                                                            3, seed + 1)
    return np.where(land | ice, np.nan, values).astype(np.float32)


def dataset(small=False) -> dict:
    """{name: (array, tolerance)}; ``small`` divides every horizontal extent by 4."""
    d = 4 if small else 1
    grid = (24, 720 // d, 1440 // d)
    return {
        "sst": (ocean_field(grid), 0.01),
        "wind": (wind(grid), 0.01),
        "theta": (theta((48, 512 // d, 1024 // d)), 0.01),
        "flashes": (flashes(grid), None),
        "salinity": (salinity(720 // d, 1440 // d), 0.01),
        "temperature": (temperature(720 // d, 1440 // d), 0.01),
        "wind_month": (wind_month(360 // d, 720 // d), 0.01),
    }


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def run_single(x, codec, tolerance):
    params = {} if tolerance is None else {"tolerance": tolerance}
    c = chunkpress.compress(x, codec, **params).persist()
    return c.nbytes, c


def run_auto(x, codec, tolerance):
    c = chunkpress.compress(x, codec, tolerance=tolerance).persist()
    return c.nbytes, c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="a 16x smaller dataset")
    args = parser.parse_args()

    print(f"codec='auto' against every single codec, best of {args.repeat} rounds; "
          f"targets: auto >= {TARGET_AUTO}x best, per block >= {TARGET_BLOCK}x, "
          f"sampling <= {TARGET_OVERHEAD:.0%}\n")
    rows = []
    for name, (x, tolerance) in dataset(args.small).items():
        codecs = [c.name for c in sample.candidates(x.dtype, x.ndim, tolerance)]
        best_time = {}
        ratios = {}
        auto = {}
        for _ in range(args.repeat):
            for codec in codecs:
                seconds, (nbytes, _) = timed(lambda: run_single(x, codec, tolerance))
                ratios[codec] = x.nbytes / nbytes
                best_time[codec] = min(best_time.get(codec, np.inf), seconds)
            for mode in ("auto-array", "auto"):
                seconds, (nbytes, c) = timed(lambda: run_auto(x, mode, tolerance))
                sampling = c.choice.seconds
                entry = auto.setdefault(mode, {"ratio": x.nbytes / nbytes, "choice": c.choice,
                                               "sampling": np.inf, "rest": np.inf})
                entry["sampling"] = min(entry["sampling"], sampling)
                entry["rest"] = min(entry["rest"], seconds - sampling)
        best = max(ratios, key=ratios.get)
        rows.append((name, x, tolerance, ratios, best, auto, best_time))
        report(rows[-1])
    summary(rows)


def report(row) -> None:
    name, x, tolerance, ratios, best, auto, best_time = row
    bound = "lossless" if tolerance is None else f"tolerance {tolerance:g}"
    print(f"{name}: {x.shape} {x.dtype}, {x.nbytes / 2**20:.0f} MiB, {bound}")
    print(f"  {'single codec':<22}{'ratio':>8}{'x best':>8}{'compress s':>12}")
    for codec, ratio in sorted(ratios.items(), key=lambda kv: -kv[1]):
        print(f"  {codec:<22}{ratio:>8.3f}{ratio / ratios[best]:>8.3f}{best_time[codec]:>12.3f}")
    for mode, entry in auto.items():
        choice = entry["choice"]
        what = ", ".join(f"{k} x{v}" if v else k for k, v in choice.codecs.items())
        overhead = entry["sampling"] / entry["rest"]
        print(f"  {mode:<22}{entry['ratio']:>8.3f}{entry['ratio'] / ratios[best]:>8.3f}"
              f"{entry['rest']:>12.3f}   chose {what}; sampling {entry['sampling']:.3f} s "
              f"= {overhead:.1%} (trials: {choice.sampled:.2%} of the values per codec)")
    print()


def summary(rows) -> None:
    print(f"{'variable':<10}{'best single':>16}{'auto-array':>12}{'x best':>8}{'auto':>9}"
          f"{'x best':>8}{'sampling':>10}{'sampling':>10}   targets (>= {TARGET_AUTO}, "
          f">= {TARGET_BLOCK}, <= {TARGET_OVERHEAD:.0%})")
    print(f"{'':<10}{'':>16}{'':>12}{'':>8}{'per block':>9}{'':>8}{'array':>10}"
          f"{'block':>10}")
    met = []
    for name, x, tolerance, ratios, best, auto, _ in rows:
        a, b = auto["auto-array"], auto["auto"]
        qa, qb = a["ratio"] / ratios[best], b["ratio"] / ratios[best]
        oa, ob = a["sampling"] / a["rest"], b["sampling"] / b["rest"]
        flags = (qa >= TARGET_AUTO, qb >= TARGET_BLOCK, max(oa, ob) <= TARGET_OVERHEAD)
        met.append(flags)
        print(f"{name:<10}{best:>8} {ratios[best]:>7.3f}{a['ratio']:>12.3f}{qa:>8.3f}"
              f"{b['ratio']:>9.3f}{qb:>8.3f}{oa:>10.1%}{ob:>10.1%}   "
              + "  ".join("met" if f else "NOT MET" for f in flags))
    for i, what in enumerate(("auto >= 0.98x best single", "per block >= 1.0x best single",
                              "sampling <= 15% of compression")):
        print(f"{what}: met on {sum(m[i] for m in met)} of {len(met)} variables")


if __name__ == "__main__":
    main()
