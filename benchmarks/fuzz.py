"""Hostile bytes, the long run: every decoder fed mutated streams, in worker processes.

For each target (each per-codec ``NAME_decode`` and the Zarr codec path) a worker process
decodes ``--inputs`` mutations of the seed streams (tests/fuzzing.py: truncations, bit flips,
forged lengths and headers, splices, with and without recomputed checksums). A worker that
dies is a crash, one that stops answering for ``--timeout`` seconds a hang; either way the
input is recorded and a new worker goes on with the next one, so every input is counted.
The table gives per target: inputs tried, crashes, hangs, exceptions that are not a
ChunkpressError, and wrong-silent decodes (a stream that carried a checksum, damaged, decoded
to other values); then "unvouched" (wrong values from a stream whose checksum's own marks
were destroyed with the data: the two-fault limit of ZFP's trailer, see README) and what the
rest did (refused, decoded to the seed's own values, or decoded where nothing vouched for
the bytes). Failing inputs (not the unvouched) are written to ``--save``.

    python benchmarks/fuzz.py [--inputs 100000] [--targets zfp,sperr] [--seed 0]

One worker at a time (the machine is shared); the exit status is 1 if anything was found.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
#: a worker's address space: a decoder fed a forged size fails instead of swapping
WORKER_MEMORY = 3 << 30
FINDINGS = ("crash", "hang", "error", "wrong")


def generate(target, seed, index):
    """Return (seed stream, label, bytes, forged) of input ``index``: the same every time."""
    import fuzzing

    rng = random.Random(f"{seed}-{target}-{index}")
    seeds = fuzzing.seeds(target)
    chosen = rng.choice(seeds)
    label, data, forged = fuzzing.mutate(rng, chosen, seeds)
    return chosen, label, data, forged


def worker(target, seed, start, stop):
    """Decode inputs start..stop-1, one line before and one after each."""
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # the protocol gets stdout's pipe to itself: codecs that print (SZ3 does) go to stderr
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import fuzzing

    for s in fuzzing.seeds(target):  # decode the seeds first: their values are the reference
        fuzzing._clean(target, s)
    for index in range(start, stop):
        chosen, _, data, forged = generate(target, seed, index)
        out.write(f"S {index}\n")
        out.flush()
        result = fuzzing.outcome(target, chosen, data, forged)
        out.write(f"D {index} {result}\n")
        out.flush()


class Run:
    """The worker processes of one target, restarted after every crash or hang."""

    def __init__(self, target, args):
        self.target, self.args = target, args
        self.counts = collections.Counter()
        self.found = []  # (index, what)

    def run(self):
        start, stop = 0, self.args.inputs
        started = time.perf_counter()
        next_report = stop // 10
        while start < stop:
            log = tempfile.TemporaryFile()  # what the worker prints, read after a death
            proc = subprocess.Popen(
                [sys.executable, __file__, "--worker", self.target, "--seed",
                 str(self.args.seed), "--start", str(start), "--stop", str(stop)],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                    [str(TESTS), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
                    OMP_NUM_THREADS="1"),
            )
            last, done = None, set()
            timeout = self.args.timeout + 60  # the first input waits for the seeds too
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], timeout)
                if not ready:
                    proc.kill()
                    proc.wait()
                    self._record(last, "hang")
                    break
                line = proc.stdout.readline()
                if not line:
                    proc.wait()
                    if proc.returncode != 0:
                        if last is None or last in done:
                            log.seek(0)
                            err = log.read().decode(errors="replace")[-2000:]
                            raise SystemExit(f"{self.target}: the worker died outside an "
                                             f"input (exit {proc.returncode}):\n{err}")
                        self._record(last, f"crash (exit {proc.returncode})")
                    break
                timeout = self.args.timeout
                kind, index, *rest = line.decode().split()
                index = int(index)
                if kind == "S":
                    last = index
                    continue
                done.add(index)
                result = rest[0]
                self.counts["inputs"] += 1
                self.counts[result.split(":")[0]] += 1
                if result.startswith(("error", "wrong")):
                    self.found.append((index, result))
                if self.counts["inputs"] >= next_report:
                    rate = self.counts["inputs"] / (time.perf_counter() - started)
                    print(f"  {self.target}: {self.counts['inputs']} inputs, {rate:.0f}/s",
                          file=sys.stderr, flush=True)
                    next_report += max(stop // 10, 1)
            proc.stdout.close()
            log.close()
            start = (last + 1) if last is not None else stop
            if proc.returncode == 0 and last == stop - 1 and last in done:
                break
        self.seconds = time.perf_counter() - started
        return self

    def _record(self, index, what):
        self.counts["inputs"] += 1
        self.counts[what.split(" ")[0]] += 1
        self.found.append((index, what))


def save(run, directory: Path, seed):
    directory.mkdir(parents=True, exist_ok=True)
    for index, what in run.found[:50]:
        chosen, label, data, forged = generate(run.target, seed, index)
        stem = f"{run.target}-{index}"
        (directory / f"{stem}.bin").write_bytes(data)
        (directory / f"{stem}.txt").write_text(
            f"{what}\nseed stream {chosen.name}; {label}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per decoder")
    parser.add_argument("--targets", default=None, help="comma-separated, default: all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds before a hang")
    parser.add_argument("--save", type=Path, default=Path("fuzz-findings"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path[:0] = [str(TESTS), str(HERE.parent)]
    if args.worker:
        return worker(args.worker, args.seed, args.start, args.stop)
    import fuzzing

    targets = args.targets.split(",") if args.targets else list(fuzzing.TARGETS)
    unknown = set(targets) - set(fuzzing.TARGETS)
    if unknown:
        parser.error(f"--targets must be among {', '.join(fuzzing.TARGETS)}, got "
                     f"{', '.join(sorted(unknown))}")
    print(f"{args.inputs} inputs per decoder, seed {args.seed}, hang after {args.timeout:g} s\n")
    header = (f"{'decoder':<10}{'inputs':>9}{'crashes':>9}{'hangs':>7}{'errors':>8}"
              f"{'wrong':>7}{'unvouched':>11}{'refused':>9}{'same':>8}{'accepted':>10}{'s':>7}")
    runs = []
    for target in targets:
        runs.append(Run(target, args).run())
    print(header)
    print("-" * len(header))
    findings = 0
    for run in runs:
        c = run.counts
        findings += sum(c[k] for k in FINDINGS)
        print(f"{run.target:<10}{c['inputs']:>9}{c['crash']:>9}{c['hang']:>7}{c['error']:>8}"
              f"{c['wrong']:>7}{c['unvouched']:>11}{c['refused']:>9}{c['same']:>8}"
              f"{c['accepted']:>10}"
              f"{run.seconds:>7.0f}")
    for run in runs:
        if run.found:
            save(run, args.save, args.seed)
            print(f"\n{run.target}: {len(run.found)} findings, e.g.")
            for index, what in run.found[:5]:
                _, label, _, _ = generate(run.target, args.seed, index)
                print(f"  input {index}: {what}: {label}")
    print(f"\n{'nothing found' if not findings else f'{findings} findings, saved in {args.save}'}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
