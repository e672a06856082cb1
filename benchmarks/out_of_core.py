"""Bigger than memory: a lazily generated float32 field of 4, 16 and 32 GiB into a Zarr store.

Each field is smooth, with a NaN region (land), made block by block from its coordinates, so
it never exists whole. ``chunkpress.to_zarr`` compresses it with ZFP into a local directory
store on the local threaded scheduler; then ``chunkpress.from_zarr`` reads it back in a
streaming reduction against the generator (max error of the finite values, NaN cells that
moved). A thread samples the resident memory of the whole process tree every 50 ms.

Memory stays flat as the array grows because every task is small and nothing is kept: a
block is made, encoded and written by the tasks of one group (a few MiB), and dask's ordering
runs the groups one after the other; reading, each block is decoded, compared and dropped.
Target: peak RSS <= 3 GiB at every size.

    python benchmarks/out_of_core.py [--sizes 4 16 32] [--tolerance 0.01] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

import chunkpress  # noqa: E402

LIMIT = 3 * 2**30
PLANE = (2048, 2048)  # every size has these (y, x) planes; the z extent grows
CHUNKS = (64, 256, 256)  # 16 MiB float32 blocks, the Zarr chunks


def make_block(block_info=None):
    """The field's values in one block, from its coordinates: smooth waves, land as NaN."""
    (z0, z1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    z = np.arange(z0, z1, dtype=np.float32)[:, None, None]
    y = np.arange(y0, y1, dtype=np.float32)[None, :, None]
    x = np.arange(x0, x1, dtype=np.float32)[None, None, :]
    block = (np.float32(10) + np.sin(np.float32(0.01) * z + np.float32(0.004) * y)
             * np.cos(np.float32(0.003) * x) * np.float32(5) + np.float32(0.002) * y)
    land = (y - 1300) ** 2 + (x - 700) ** 2 < 400.0**2  # a round island, through every depth
    return np.where(land, np.float32(np.nan), block.astype(np.float32))


def field(gib: int) -> da.Array:
    depth = gib * 2**30 // (4 * PLANE[0] * PLANE[1])
    shape = (depth, *PLANE)
    chunks = tuple(tuple(min(c, n - i) for i in range(0, n, c)) for n, c in zip(shape, CHUNKS))
    return da.map_blocks(make_block, chunks=chunks, dtype=np.float32,
                         meta=np.empty((0, 0, 0), np.float32))


class PeakRSS:
    """Samples the resident memory of this process and all its children."""

    def __init__(self, interval=0.05):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def stored_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def compare(x: da.Array, y: da.Array):
    """Return (max abs error of the finite values, cells whose NaN-ness changed), streaming."""
    finite = da.isfinite(x)
    error = da.where(finite, da.abs(x.astype(np.float64) - y), 0.0).max()
    moved = (da.isnan(x) != da.isnan(y)).sum()
    return dask.compute(error, moved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 16, 32], help="GiB")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where the stores go (default: a temp dir)")
    args = parser.parse_args()

    total = psutil.virtual_memory().total
    print(f"ZFP tolerance {args.tolerance}, chunks {CHUNKS}, local threads x{args.threads}, "
          f"machine memory {total / 2**30:.1f} GiB, RSS limit {LIMIT / 2**30:.0f} GiB")
    print(f"\n{'size GiB':>8} {'shape':>20} {'write s':>8} {'MB/s':>7} {'write peak':>11} "
          f"{'read s':>7} {'MB/s':>7} {'read peak':>10} {'ratio':>7} {'max error':>10} "
          f"{'NaN moved':>9}  ok")
    work = tempfile.mkdtemp(prefix="chunkpress-ooc-", dir=args.dir)
    all_ok = True
    try:
        for gib in args.sizes:
            x = field(gib)
            path = os.path.join(work, f"field{gib}.zarr")
            with dask.config.set(scheduler="threads", num_workers=args.threads):
                with PeakRSS() as write_peak:
                    start = time.perf_counter()
                    chunkpress.to_zarr(x, path, tolerance=args.tolerance, chunks=CHUNKS)
                    write_s = time.perf_counter() - start
                with PeakRSS() as read_peak:
                    start = time.perf_counter()
                    error, moved = compare(x, chunkpress.from_zarr(path))
                    read_s = time.perf_counter() - start
            ratio = x.nbytes / stored_bytes(path)
            ok = (max(write_peak.peak, read_peak.peak) <= LIMIT and error <= args.tolerance
                  and moved == 0)
            all_ok &= ok
            mb = x.nbytes / 1e6
            print(f"{gib:8d} {str(x.shape):>20} {write_s:8.1f} {mb / write_s:7.0f} "
                  f"{write_peak.peak / 2**30:9.2f} G {read_s:7.1f} {mb / read_s:7.0f} "
                  f"{read_peak.peak / 2**30:8.2f} G {ratio:7.2f} {error:10.3g} {moved:9d}  "
                  f"{'yes' if ok else 'NO'}", flush=True)
            shutil.rmtree(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nall targets met" if all_ok else "\nTARGET MISSED")


if __name__ == "__main__":
    main()
