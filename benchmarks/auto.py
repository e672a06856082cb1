"""codec="auto" on a multi-variable dataset: its ratio against every single codec's, and what
the sampling costs.

The dataset is built here, in memory, on a quarter-degree grid:

    sst      (24, 720, 1440) float32  sea-surface temperature, NaN over land     0.01 K
    wind     (24, 720, 1440) float32  10 m wind, red along the longitude         0.01 m/s
    theta    (48, 512, 1024) float32  turbulent boundary layer, smooth aloft     0.01 K
    flashes  (24, 720, 1440) int16    lightning counts                           lossless

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
from chunkpress.demo import ocean_field
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


def dataset(small=False) -> dict:
    """{name: (array, tolerance)}; ``small`` divides every horizontal extent by 4."""
    d = 4 if small else 1
    grid = (24, 720 // d, 1440 // d)
    return {
        "sst": (ocean_field(grid), 0.01),
        "wind": (wind(grid), 0.01),
        "theta": (theta((48, 512 // d, 1024 // d)), 0.01),
        "flashes": (flashes(grid), None),
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
