"""Per-chunk kernels against the plain imagecodecs calls they wrap, single thread, one run.

On two 64 MiB float32 fields without non-finite values, a smooth one and the same with 1%
noise (Gaussian, its standard deviation 1% of the field's range: large streams, where copies
show), each chunkpress kernel and the imagecodecs call it wraps are timed alternately (best of
several repeats); one table per field gives throughput in MB/s of the uncompressed field and
the ratio chunkpress / imagecodecs.
Targets: every codec >= 0.95x, encode and decode; floatpred (numba) encode >= 1.0x and
decode >= 2.0x imagecodecs. chunkpress's SZ3 and LERC decodes run in its decoding process
(README "Hostile bytes"), one decode at a time, as users get them: the round trip is in the
figures.

    python benchmarks/kernels.py [--repeats N] [--size-mib 64] [--codecs zfp,lerc]
                                 [--fields smooth,noisy]

(``--codecs`` reruns some rows: the machine may be shared, and a row missed by noise is
rerun rather than believed.)
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import imagecodecs as ic  # noqa: E402
import numpy as np  # noqa: E402

import chunkpress as cp  # noqa: E402


def smooth_field(size_mib: int) -> np.ndarray:
    n = round((size_mib * 2**20 / 4) ** (1 / 3))
    t = np.linspace(0, 4 * np.pi, n, dtype=np.float32)
    field = (
        np.sin(t)[:, None, None] * np.cos(0.7 * t)[None, :, None]
        + 0.5 * np.sin(1.3 * t)[None, None, :]
        + 0.1 * t[:, None, None]
    )
    return np.ascontiguousarray(field, dtype=np.float32)


def noisy_field(size_mib: int, seed: int = 0) -> np.ndarray:
    """The smooth field plus Gaussian noise of 1% of its range (what ZFP compresses least)."""
    field = smooth_field(size_mib)
    sigma = np.float32(0.01 * float(field.max() - field.min()))
    field += np.random.default_rng(seed).standard_normal(field.shape, np.float32) * sigma
    return field


FIELDS = {"smooth": smooth_field, "noisy": noisy_field}


def best_time(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def cases(x: np.ndarray, tol: float):
    """(codec, peer encode, peer decode, chunkpress encode, chunkpress decode, slow)."""
    shape, dtype = x.shape, x.dtype
    szip_params = dict(options_mask=32 | 8, pixels_per_block=32, bits_per_pixel=32,
                       pixels_per_scanline=32 * 128)
    return [
        ("zfp", lambda: ic.zfp_encode(x, tol, mode="a"), ic.zfp_decode,
         lambda: cp.zfp_encode(x, tolerance=tol), cp.zfp_decode, False),
        ("sz3", lambda: ic.sz3_encode(x, mode="abs", abs=tol),
         lambda s: ic.sz3_decode(s, shape, dtype),
         lambda: cp.sz3_encode(x, tolerance=tol), cp.sz3_decode, False),
        ("sperr", lambda: ic.sperr_encode(x, tol, "pwe", numthreads=1),
         lambda s: ic.sperr_decode(s, numthreads=1),
         lambda: cp.sperr_encode(x, tolerance=tol), cp.sperr_decode, True),
        ("lerc", lambda: ic.lerc_encode(x, tol), ic.lerc_decode,
         lambda: cp.lerc_encode(x, tolerance=tol), cp.lerc_decode, False),
        ("szip", lambda: ic.szip_encode(x, **szip_params),
         lambda s: ic.szip_decode(s, **szip_params, out=x.nbytes),
         lambda: cp.szip_encode(x), cp.szip_decode, False),
        ("pcodec", lambda: ic.pcodec_encode(x, 8),
         lambda s: ic.pcodec_decode(s, shape=shape, dtype=dtype),
         lambda: cp.pcodec_encode(x), cp.pcodec_decode, False),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--codecs", default=None,
                        help="comma-separated codecs to run (default: all, floatpred included)")
    parser.add_argument("--fields", default=",".join(FIELDS),
                        help=f"comma-separated fields to run (default: {','.join(FIELDS)})")
    args = parser.parse_args()
    chosen = set(args.codecs.split(",")) if args.codecs else None
    misses = []
    for field in args.fields.split(","):
        misses += [f"{codec} {op} ({field})"
                   for codec, op in table(field, FIELDS[field](args.size_mib), args, chosen)]
        print()
    print("all targets met" if not misses else f"targets missed: {', '.join(misses)}")


def table(field: str, x: np.ndarray, args, chosen) -> list:
    """Print the table of one field; return the (codec, op) rows that missed their target."""
    mb = x.nbytes / 1e6
    tol = 1e-3 * float(x.max() - x.min())
    print(f"{field} field {x.shape} {x.dtype}, {x.nbytes / 2**20:.0f} MiB, tolerance {tol:.3g}, "
          f"single thread, best of {args.repeats} (slow codecs: best of 2), "
          f"load average {os.getloadavg()[0]:.2f}\n")
    header = (f"{'codec':<10}{'op':<8}{'imagecodecs MB/s':>18}{'chunkpress MB/s':>17}"
              f"{'ratio':>8}{'target':>8}  ok")
    print(header)
    print("-" * len(header))
    misses = []

    def row(codec, op, peer_s, ours_s, target):
        ratio = peer_s / ours_s
        ok = ratio >= target
        if not ok:
            misses.append((codec, op))
        print(f"{codec:<10}{op:<8}{mb / peer_s:>18.1f}{mb / ours_s:>17.1f}{ratio:>8.3f}"
              f"{target:>8.2f}  {'yes' if ok else 'NO'}")

    for codec, peer_enc, peer_dec, our_enc, our_dec, slow in cases(x, tol):
        if chosen is not None and codec not in chosen:
            continue
        repeats = 2 if slow else args.repeats
        peer_stream, our_stream = peer_enc(), our_enc()  # warm up, and the streams to decode
        peer_e = ours_e = peer_d = ours_d = float("inf")
        for _ in range(repeats):  # alternate, so drift on a shared machine hits both
            peer_e = min(peer_e, best_time(peer_enc, 1))
            ours_e = min(ours_e, best_time(our_enc, 1))
            peer_d = min(peer_d, best_time(lambda: peer_dec(peer_stream), 1))
            ours_d = min(ours_d, best_time(lambda: our_dec(our_stream), 1))
        row(codec, "encode", peer_e, ours_e, 0.95)
        row(codec, "decode", peer_d, ours_d, 0.95)
        print(f"{'':<10}{'size':<8}{len(peer_stream):>18,}{len(our_stream):>17,}"
              f"{len(peer_stream) / len(our_stream):>8.3f}")

    if chosen is not None and "floatpred" not in chosen:
        return misses
    encoded = ic.floatpred_encode(x)
    cp.floatpred_encode(x), cp.floatpred_decode(encoded)  # JIT warm-up
    assert cp.floatpred_encode(x).tobytes() == encoded.tobytes()  # bit-identical
    peer_e = ours_e = peer_d = ours_d = float("inf")
    for _ in range(args.repeats):
        peer_e = min(peer_e, best_time(lambda: ic.floatpred_encode(x), 1))
        ours_e = min(ours_e, best_time(lambda: cp.floatpred_encode(x), 1))
        peer_d = min(peer_d, best_time(lambda: ic.floatpred_decode(encoded), 1))
        ours_d = min(ours_d, best_time(lambda: cp.floatpred_decode(encoded), 1))
    row("floatpred", "encode", peer_e, ours_e, 1.0)
    row("floatpred", "decode", peer_d, ours_d, 2.0)
    return misses


if __name__ == "__main__":
    main()
