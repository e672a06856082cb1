"""What the store's safety costs: overwrites, shards, appends, verify, against plain writes.

One run on a smooth float32 field (>= 256 MiB, dimensions time, y, x) in chunks of
(16, 128, 128) elements, ZFP at one tolerance, a local directory store, 2 threads. Each
figure is the best of --repeats rounds; the rows take turns within a round, in a new order
each round, so that a neighbour's load on a shared machine hits them alike. The CPU seconds
of this process are printed too: on a loaded machine they show the work a row does where
its wall time shows mostly the neighbours. Rows and their peers:

- ``chunkpress.to_zarr`` of the array into a new store (the peer of the next four rows);
- the same with ``overwrite=True`` onto an existing store (staged beside it, swapped in by
  renames, the old one deleted): target <= 10% more time;
- the same with ``shards="auto"`` (one task writes a whole shard): target >= 0.9x the
  throughput; the object counts are printed. For comparison (no target), shards of one
  time chunk: many shards, so many tasks per thread;
- ``chunkpress.compress(...).persist()`` of the same blocks, nothing written: ``to_zarr``
  keeps >= 0.9x its throughput;
- ``chunkpress.verify`` of the store written (chunks read, CRC and place checked, nothing
  decoded), the best of 10 calls per round: target >= 1 GB/s of stored bytes;
- ``ds.chunkpress.to_zarr`` of the field as a dataset in one write, and the same data as a
  write of its first 1/12 then 11 appends (``append_dim="time"``): the loop >= 0.85x.

    python benchmarks/store.py [--size-mib 256] [--tolerance 0.01] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dask  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
import zarr  # noqa: E402

import chunkpress  # noqa: E402
import chunkpress.accessor  # noqa: E402,F401  (registers ds.chunkpress)

CHUNK = (16, 128, 128)
STEPS = 12
SMALL_SHARD = (1, 4, 6)  # chunks per shard of the second sharded row
VERIFY_CALLS = 10  # verify is timed as the best of this many calls in each round
TARGETS = {  # name: (what is compared, the target, True if larger is better)
    "overwrite": ("overwrite time / new-store write time", 1.10, False),
    "sharded": ("sharded / unsharded write throughput", 0.90, True),
    "append": ("12-step append loop / one write throughput", 0.85, True),
    "verify": ("verify GB/s of stored bytes", 1.0, True),
    "persist": ("to_zarr / compress().persist() throughput", 0.90, True),
}


def field_shape(size_mib: int) -> tuple:
    """(time, y, x): time a multiple of STEPS chunks, y and x multiples of the chunk."""
    ny, nx = 4 * CHUNK[1], 6 * CHUNK[2]
    per_step = CHUNK[0] * ny * nx * 4
    steps = max(1, -(-size_mib * 2**20 // (STEPS * per_step)))
    return (STEPS * steps * CHUNK[0], ny, nx)


def smooth_field(shape) -> np.ndarray:
    """A smooth float32 field (range about 30), built slab by slab (no float64 temporaries)."""
    nt, ny, nx = shape
    t = np.linspace(0, 3, nt, dtype=np.float32)[:, None, None]
    y = np.linspace(0, 4 * np.pi, ny, dtype=np.float32)[None, :, None]
    x = np.linspace(0, 4 * np.pi, nx, dtype=np.float32)[None, None, :]
    field = np.empty(shape, np.float32)
    for k in range(0, nt, CHUNK[0]):
        s = slice(k, k + CHUNK[0])
        field[s] = (15 + 10 * np.sin(y + t[s]) * np.cos(0.7 * x)
                    + 2 * np.sin(1.3 * x + 0.5 * y) + t[s])
    return field


def objects(path: str) -> tuple:
    """(chunk or shard objects, their bytes): every file of the store but its zarr.json."""
    count = size = 0
    for directory, _, files in os.walk(path):
        for name in files:
            if name != "zarr.json":
                count += 1
                size += os.path.getsize(os.path.join(directory, name))
    return count, size


def timed(function):
    """(wall seconds, CPU seconds of this process, result)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - start, time.process_time() - cpu, result


class Bench:
    """The rows, each a method that does its work once and returns (wall, CPU) seconds."""

    def __init__(self, x, tolerance, work, steps=STEPS):
        self.x, self.tolerance, self.work, self.steps = x, tolerance, work, steps
        nt = x.shape[0]
        self.dataset = xr.Dataset(
            {"t": (("time", "y", "x"), x, {"units": "K"})},
            coords={"time": np.arange(nt, dtype="int64")})
        self.dims = dict(zip(("time", "y", "x"), CHUNK))
        self.step = nt // steps
        self.path = {name: os.path.join(work, f"{name}.zarr")
                     for name in ("write", "sharded", "sharded_small", "one", "appended")}

    def _fresh(self, name):
        shutil.rmtree(self.path[name], ignore_errors=True)
        return self.path[name]

    def write(self):
        path = self._fresh("write")
        return timed(lambda: chunkpress.to_zarr(self.x, path, tolerance=self.tolerance,
                                                chunks=CHUNK))[:2]

    def overwrite(self):
        path = self.path["write"]
        if not os.path.exists(path):
            self.write()
        return timed(lambda: chunkpress.to_zarr(self.x, path, tolerance=self.tolerance,
                                                chunks=CHUNK, overwrite=True))[:2]

    def sharded(self):
        path = self._fresh("sharded")
        return timed(lambda: chunkpress.to_zarr(self.x, path, tolerance=self.tolerance,
                                                chunks=CHUNK, shards="auto"))[:2]

    def sharded_small(self):
        """Shards of one time chunk (4 x 6 chunks, 24 MiB of input): many tasks per thread."""
        path = self._fresh("sharded_small")
        return timed(lambda: chunkpress.to_zarr(self.x, path, tolerance=self.tolerance,
                                                chunks=CHUNK,
                                                shards={"chunks": SMALL_SHARD}))[:2]

    def persist(self):
        seconds, cpu, c = timed(lambda: chunkpress.compress(
            self.x, "zfp", tolerance=self.tolerance, chunks=CHUNK).persist())
        del c
        return seconds, cpu

    def verify(self):
        path = self.path["write"]
        if not os.path.exists(path):
            self.write()
        runs = []
        for _ in range(VERIFY_CALLS):  # tens of ms: one call is at the mercy of a neighbour
            seconds, cpu, problems = timed(lambda: chunkpress.verify(path))
            if len(problems):
                raise RuntimeError(f"verify found problems in a store just written:\n"
                                   f"{problems}")
            runs.append((seconds, cpu))
        return min(runs)

    def one(self):
        path = self._fresh("one")
        return timed(lambda: self.dataset.chunkpress.to_zarr(
            path, tolerance=self.tolerance, chunks=self.dims))[:2]

    def appended(self):
        path = self._fresh("appended")

        def loop():
            first = self.dataset.isel(time=slice(0, self.step))
            first.chunkpress.to_zarr(path, tolerance=self.tolerance, chunks=self.dims)
            for k in range(1, self.steps):
                part = self.dataset.isel(time=slice(k * self.step, (k + 1) * self.step))
                part.chunkpress.to_zarr(path, append_dim="time")

        return timed(loop)[:2]


ROWS = ("write", "overwrite", "sharded", "sharded_small", "persist", "verify", "one",
        "appended")
LABELS = {
    "write": "to_zarr, new store",
    "overwrite": "to_zarr, overwrite=True of a store",
    "sharded": 'to_zarr, shards="auto", new store',
    "sharded_small": f'to_zarr, shards={{"chunks": {SMALL_SHARD}}}',
    "persist": "compress(...).persist(), no store",
    "verify": "verify (no decoding)",
    "one": "ds.chunkpress.to_zarr, one write",
    "appended": f"ds.chunkpress.to_zarr, 1 + {STEPS - 1} appends",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="size of the field (>= 256)")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many rounds")
    parser.add_argument("--verbose", action="store_true", help="print every round's timings")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module="xarray")

    shape = field_shape(args.size_mib)
    x = smooth_field(shape)
    mb = x.nbytes / 1e6
    print(f"field {shape} float32 (time, y, x), {x.nbytes / 2**20:.0f} MiB, chunks {CHUNK}, "
          f"ZFP tolerance {args.tolerance}, {args.threads} threads, local directory store, "
          f"best of {args.repeats}; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start")
    work = tempfile.mkdtemp(prefix="chunkpress-bench-store-")
    best = dict.fromkeys(ROWS, np.inf)
    cpu = dict.fromkeys(ROWS, np.inf)
    try:
        with dask.config.set(scheduler="threads", num_workers=args.threads):
            warm = Bench(x[:2 * CHUNK[0], :2 * CHUNK[1], :2 * CHUNK[2]].copy(),
                         args.tolerance, os.path.join(work, "warm"), steps=2)
            os.makedirs(warm.work)
            for name in ROWS:  # imports, thread pools, first calls
                getattr(warm, name)()
            bench = Bench(x, args.tolerance, work)
            shuffle = np.random.default_rng(1).permutation
            for round_ in range(args.repeats):
                # a new order every round: no row always inherits the same machine state
                for name in (ROWS[i] for i in shuffle(len(ROWS))):
                    seconds, cpu_seconds = getattr(bench, name)()
                    best[name] = min(best[name], seconds)
                    cpu[name] = min(cpu[name], cpu_seconds)
                    if args.verbose:
                        print(f"  round {round_ + 1}: {name:10s} {seconds:7.3f} s, "
                              f"{cpu_seconds:7.3f} CPU s")
            counts = {name: objects(bench.path[name])
                      for name in ("write", "sharded", "sharded_small")}
            stored = counts["write"][1]
            ok = np.array_equal(chunkpress.from_zarr(bench.path["one"]
                                                     + "/t").compute(),
                                chunkpress.from_zarr(bench.path["appended"]
                                                     + "/t").compute())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    head = (f"{'':40s} {'seconds':>8s} {'CPU s':>7s} {'MB/s':>9s} {'objects':>8s} "
            f"{'stored MB':>10s}")
    print("\n" + head)
    print("-" * len(head))
    for name in ROWS:
        seconds = best[name]
        rate = (stored if name == "verify" else x.nbytes) / 1e6 / seconds
        count, size = counts.get(name, ("", None))
        print(f"{LABELS[name]:40s} {seconds:8.3f} {cpu[name]:7.3f} {rate:9.1f} {count!s:>8s} "
              f"{'' if size is None else f'{size / 1e6:10.1f}'}")
    print(f"(MB/s: of the {mb:.0f} MB field; for verify, of the {stored / 1e6:.1f} MB stored. "
          f"CPU s: this process's, least of the rounds. The appended store reads back "
          f"identical to the one-write store: {'yes' if ok else 'NO'})")

    def ratios(seconds):
        return {"overwrite": seconds["overwrite"] / seconds["write"],
                "sharded": seconds["write"] / seconds["sharded"],
                "append": seconds["one"] / seconds["appended"],
                "verify": stored / 1e9 / seconds["verify"],
                "persist": seconds["persist"] / seconds["write"]}

    measured, by_cpu = ratios(best), ratios(cpu)
    print()
    missed = []
    for name, (what, target, larger) in TARGETS.items():
        value = measured[name]
        met = value >= target if larger else value <= target
        if not met:
            missed.append(name)
        print(f"{what:44s} {value:6.3f}  target {'>=' if larger else '<='} {target:.2f}  "
              f"{'met   ' if met else 'MISSED'}  (same ratio of CPU seconds: "
              f"{by_cpu[name]:.3f})")
    print("all targets met" if not missed else f"missed: {', '.join(missed)}")
    print(f"chunkpress {chunkpress.__version__}, zarr {zarr.__version__}, "
          f"dask {dask.__version__}, xarray {xr.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
