"""codec="auto": the codec with the highest ratio that keeps the bound, chosen on samples.

``chunkpress.compress(x, "auto", tolerance=t)`` (and ``to_zarr``, the accessor, the command)
samples the array, in parallel on whatever scheduler runs dask, and compresses it:

1. Each candidate (ZFP, SZ3, SPERR, LERC for floats; PCODEC, SZIP, LERC and floatpred+zstd or
   zstd for integers and lossless) encodes windows shaped like the blocks it would cut for
   itself, 4 windows of 48K values at least, about 0.5% of a large array's values
   (``chunkpress.graph.sample``: short axes whole, missing values filled as in the block): a
   lossy codec each window alone, a lossless codec the windows joined into one stream. Each
   predicts the bytes of the whole array from its bytes per value; the highest predicted
   ratio wins the array.
2. ``"auto"`` then tries, on windows of every block of the winner's blocks, the winner and
   the candidates that beat it at one of the windows of step 1, within a time ``BUDGET``:
   a block takes another codec where every window of it says that saves ``SWITCH_MARGIN`` of
   its bytes, if the blocks that switch save ``TOTAL_MARGIN`` of the array's (a smooth
   interior and a noisy boundary layer may take different codecs). ``"auto-array"`` stops
   after step 1.

Where every block takes the winner, the result is exactly ``compress(x, winner, ...)`` (its
store is a plain store of that codec). Otherwise the blocks are codec "auto": each stream says
which codec wrote it, and the Zarr codec ``chunkpress.auto`` reads it. The result's ``choice``
says what was chosen and why (the sampled ratios).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import dask
import dask.threaded
import numpy as np
from dask.base import get_scheduler, tokenize
from dask.task_spec import List, Task, TaskRef

from .graph import build, codecs, information, pipeline, sample
from .graph.compressed import CompressedArray
from .kernels import registry

__all__ = ["compress", "choose", "Choice", "AutoCompressedArray", "SWITCH_MARGIN",
           "ATTRIBUTE"]

#: a block leaves the array's codec where another encodes its windows in this share fewer bytes
SWITCH_MARGIN = 0.05
#: ... and only where the blocks that leave save this share of the array's bytes in all
TOTAL_MARGIN = 0.02
#: lossy candidates whose first trials come within this share of the best are tried again,
#: on this many windows, this share of the array's values in all, and each window twice the
#: first ones at least (a small array's whole blocks)
CLOSE = 0.3
REFINE_WINDOWS = 8
REFINE = 0.02
#: ... but not a candidate SLOWER times slower than the first trials' leader and SURE behind
#: it: the first windows read a fast codec short, not long (its prediction gains with the
#: extent it sees, its tables weigh more in a window than in its block: SZ3 3-25% short on
#: the benchmark's fields at a tolerance of 0.01, 40% on one at 0.001), so a fast leader's
#: lead holds, and refining a slow codec (SPERR: 2-6x slower than SZ3) to confirm it costs a
#: third of the fast leader's whole compression. The speeds are the registry's figures
#: (Descriptor.speed), not timings: the same data, the same trials, whatever else runs
SURE = 0.04
SLOWER = 2.0
#: in the second round, a candidate SLOWER times faster than the slowest there takes windows
#: GROW times as large, in about the slow one's time: a year of half-degree SST in SZ3's
#: blocks of three whole maps read 22% short on windows of 100K values (SPERR's: exact)
GROW = 4.0
#: the per-block trials take at most this share of the time the array's codec will take
BUDGET = 0.06
#: ... or this many seconds of one core, for a small array
MIN_BUDGET = 0.1
#: the Zarr attribute (a JSON string) that records the choice of a variable written by xarray
ATTRIBUTE = "chunkpress_auto"


@dataclass(frozen=True, eq=False)
class Choice:
    """What codec="auto" chose for an array, and the sampled figures it chose by."""

    codec: str  # the array's codec: the best sampled ratio
    params: dict  # its chunkpress.compress() arguments
    ratios: dict  # sampled ratio of each candidate, best first
    speeds: dict  # sampled encode MB/s of each candidate, one core
    blocks: np.ndarray | None = None  # each block's codec where blocks differ, else None
    sampled: float = 0.0  # values the trials encoded, per candidate, over the array's
    seconds: float = 0.0  # wall time of the sampling
    per_block: bool = True  # whether blocks could leave the array's codec
    tolerance: float | None = None

    @property
    def codecs(self) -> dict:
        """How many blocks each codec encodes (just the array's codec, where all take it)."""
        if self.blocks is None:
            return {self.codec: None}
        names, counts = np.unique(self.blocks.astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return {str(names[i]): int(counts[i]) for i in order}

    def summary(self) -> str:
        """One line: the codec(s) chosen, and the sampled ratios they were chosen by."""
        return describe(self.to_dict())

    def to_dict(self) -> dict:
        """The choice as plain JSON values (the Zarr attribute ``chunkpress_auto``)."""
        return {"codec": self.codec, "params": self.params,
                "blocks": None if self.blocks is None else self.codecs,
                "sampled_ratios": {k: _round(v) for k, v in self.ratios.items()},
                "sampled_fraction": _round(self.sampled), "per_block": self.per_block}

    def __repr__(self) -> str:
        return f"<chunkpress.auto.Choice {self.summary()}>"


def describe(choice: dict) -> str:
    """Return the one-line summary of a choice (a :meth:`Choice.to_dict`)."""
    ratios = ", ".join(f"{k} {v:.3g}" for k, v in choice.get("sampled_ratios", {}).items()
                       if v is not None)
    blocks = choice.get("blocks")
    if blocks:
        what = ", ".join(f"{k} in {n} block{'s' if n != 1 else ''}" for k, n in blocks.items())
    else:
        what = str(choice.get("codec"))
    share = choice.get("sampled_fraction")
    tail = f" (trials: {share:.2%} of the values per candidate)" if share else ""
    return f"{what}; sampled ratios {ratios}{tail}" if ratios else what


def _round(value):
    return None if value is None or not math.isfinite(value) else float(f"{value:.4g}")


class AutoCompressedArray(CompressedArray):
    """A CompressedArray made by codec="auto"; ``choice`` says what was chosen and why.

    ``persist()``, ``compute()`` and dask's own persist and compute keep the choice.
    """

    def __init__(self, *args, choice: Choice, **kwargs):
        super().__init__(*args, **kwargs)
        self._choice = choice

    @property
    def choice(self) -> Choice:
        """The codec chosen (per block where they differ) and the sampled ratios."""
        return self._choice

    @property
    def attributes(self) -> dict:
        """The choice, kept in a store as :data:`ATTRIBUTE` (``chunkpress info`` shows it),
        beside the chosen codec's own (a bit rounding's)."""
        return {**super().attributes, ATTRIBUTE: attribute(self._choice)}

    @classmethod
    def _of(cls, compressed: CompressedArray, choice: Choice) -> AutoCompressedArray:
        if isinstance(compressed, AutoCompressedArray):
            return compressed
        out = cls.__new__(cls)
        out.__dict__.update(compressed.__dict__)
        out._choice = choice
        return out

    def persist(self, **kwargs) -> AutoCompressedArray:
        return AutoCompressedArray._of(super().persist(**kwargs), self._choice)

    def __dask_postcompute__(self):
        finalize, args = super().__dask_postcompute__()
        return _finalize, (finalize, args, self._choice)

    def __dask_postpersist__(self):
        rebuild, args = super().__dask_postpersist__()
        return _rebuild, (rebuild, args, self._choice)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f"\n  auto: {self._choice.summary()}>"


def _finalize(results, finalize, args, choice):
    return AutoCompressedArray._of(finalize(results, *args), choice)


def _rebuild(dsk, rebuild, args, choice, rename=None):
    return AutoCompressedArray._of(rebuild(dsk, *args, rename=rename), choice)


# --- the one call --------------------------------------------------------------------------


def compress(data, codec="auto", *, tolerance=None, rate=None, precision=None, mode=None,
             quality=None, level=None, rel_tolerance=None, candidates=None,
             sample_fraction=sample.FRACTION, chunks="auto",
             verify=False) -> AutoCompressedArray:
    """Return ``data`` compressed with the codec(s) auto chooses (see the module docstring).

    ``codec`` is "auto" (per block where that wins) or "auto-array" (one codec). The targets
    are ``tolerance`` and ``rel_tolerance``: with a tolerance > 0 a float array is compressed
    lossy within it; without one (or 0), and for integers, losslessly. With ``rel_tolerance``
    (and maybe ``tolerance``, both then hold) the candidates are the codecs that take it, bit
    rounding among them, and the array takes one of them. ``candidates`` restricts the codecs
    tried;
    ``sample_fraction`` is the share of values the trials encode. ``chunks`` and ``verify`` are
    :func:`chunkpress.compress`'s. The sampling runs now; the compression is lazy.
    """
    per_block = _mode(codec)
    target = codecs.normalize_targets(codecs.AUTO, dict(tolerance=tolerance, rate=rate,
                                                        precision=precision, mode=mode,
                                                        quality=quality, level=level))
    if not isinstance(verify, (bool, np.bool_)):
        raise TypeError(f"verify must be True or False, got {verify!r}")
    x = pipeline.as_array(data)
    choice, blocked, settings = _choose(x, target.get("tolerance"), per_block, candidates,
                                        sample_fraction, chunks, rel_tolerance)
    if choice.blocks is None:  # exactly compress(x, winner, ...)
        spec = codecs.get_codec(choice.codec)
        target = codecs.normalize_targets(spec, choice.params, x.dtype)
        compressed = pipeline.compress_array(x, spec, target, chunks, verify)
        return AutoCompressedArray._of(
            compressed.with_attributes(information.attributes(spec, target)), choice)
    # blocks differ: the "auto" codec, each block told its codec
    auto = codecs.AUTO
    kwargs = {index: {"codec": name, **settings[name].kwargs}
              for index, name in np.ndenumerate(choice.blocks)}
    params = {**target, "candidates": tuple(settings)}
    verify_bound = codecs.bound(auto, target) if verify else False
    blocks = build.encode_array(blocked, auto, kwargs, verify_bound, None)
    recipe = build.Recipe(blocked, auto, kwargs, verify_bound, None,
                          data if isinstance(data, np.ndarray) else None)
    return AutoCompressedArray(blocks, blocked.dtype.newbyteorder("="), auto, params,
                               bool(verify), recipe=recipe, choice=choice)


def choose(data, codec="auto", *, tolerance=None, rel_tolerance=None, candidates=None,
           sample_fraction=sample.FRACTION, chunks="auto") -> Choice:
    """Return what :func:`compress` would choose for ``data``, without compressing it."""
    target = codecs.normalize_targets(codecs.AUTO, {"tolerance": tolerance})
    return _choose(pipeline.as_array(data), target.get("tolerance"), _mode(codec), candidates,
                   sample_fraction, chunks, rel_tolerance)[0]


def _mode(codec) -> bool:
    """Return whether ``codec`` (auto or auto-array) chooses per block."""
    if not isinstance(codec, str) or codec.strip().lower() not in codecs.AUTO_NAMES:
        raise ValueError(f"codec must be 'auto' (per block where that wins) or 'auto-array' "
                         f"(one codec for the array), got {codec!r}")
    return codec.strip().lower() == "auto"


def _choose(x, tolerance, per_block, names, fraction, chunks, rel_tolerance=None):
    """Return (the Choice, the winner's blocked array, {name: Candidate})."""
    start = time.perf_counter()
    tolerance = codecs.normalize_targets(codecs.AUTO, {"tolerance": tolerance}).get("tolerance")
    tolerance = None if tolerance is None else float(tolerance)
    if isinstance(fraction, (bool, np.bool_)) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction <= 1:
        raise ValueError(f"auto: sample_fraction must be a number in (0, 1], got {fraction!r}")
    auto = codecs.AUTO
    codecs.check_input(auto, x.dtype, x.ndim)
    if not (isinstance(chunks, str) and chunks == "auto"):
        pipeline.blocked(x, auto, chunks)  # explicit chunks must suit every candidate (ZFP: 4^d)
    settings = {c.name: c for c in sample.candidates(x.dtype, x.ndim, tolerance, names,
                                                     rel_tolerance=rel_tolerance)}
    # a relative bound: one codec for the array (a chain's stream, bitround+zstd's, does not
    # say which chain wrote it; the Zarr codec "auto" reads no relative frames)
    per_block = per_block and rel_tolerance is None
    blocked, by_alignment = {}, {}
    for name in settings:  # codecs aligned alike (SZ3, LERC, ...) cut the same blocks
        spec = codecs.get_codec(name)
        alignment = (spec.block_align(x.ndim), spec.block_align(x.ndim, preferred=True))
        if alignment not in by_alignment:
            by_alignment[alignment] = pipeline.blocked(x, spec, chunks)
        blocked[name] = by_alignment[alignment]
    first = next(iter(blocked.values()))
    trials = _Trials(x, first.name if isinstance(x, np.ndarray) else x.name, settings)
    total = x.size * x.dtype.itemsize
    if x.size == 0 or x.ndim == 0:  # nothing to sample: the first candidate
        name = next(iter(settings))
        choice = Choice(name, settings[name].params, {n: math.nan for n in settings},
                        {n: math.nan for n in settings}, None, 0.0,
                        time.perf_counter() - start, per_block, tolerance)
        return choice, blocked[name], settings
    chain = codecs.auto_chain(x.dtype)
    if chain in settings and len(settings) == 1 and \
            _ragged_blocks(blocked[chain].chunks):
        # a chain's stream does not hold its shape: ragged edge blocks need another codec
        settings["szip"] = sample.candidates(x.dtype, x.ndim, tolerance, ["szip"])[0]
        blocked["szip"] = blocked[chain]

    def jobs(name, ws):  # joined: one trial of the windows; else one per window
        return [ws] if sample.joins(settings[name]) else [(w,) for w in ws]

    # 1. every candidate on windows shaped like its own blocks: the array's codec, by the
    # bytes they predict (see graph/sample.py for what a window must show a codec)
    full = {name: tuple(sample.array_windows(
        b.chunks, fraction, min_window=sample.MIN_JOINED if sample.joins(settings[name])
        else sample.MIN_WINDOW)) for name, b in blocked.items()}
    trials.run([(name, job, blocked[name].chunks) for name, ws in full.items()
                for job in jobs(name, ws)])
    results = {name: _together([trials.result(name, job, blocked[name].chunks)
                                for job in jobs(name, ws)]) for name, ws in full.items()}
    ratios = _ratios(results, settings)
    speeds, rates = {}, {}
    for name, r in results.items():
        speeds[name] = r.raw / r.seconds / 1e6 if r.seconds else math.nan
        if len(r.streams) == len(full[name]) > 1:  # each window its own stream: its own rate
            rates[name] = [f / (r.raw / len(r.streams)) for f in r.streams]

    # 2. the lossy candidates within step 1's error of the best, again, on larger windows at
    # more places: what a stream costs beyond its values' rate (SZ3's tables, its edges)
    # fades as the windows grow toward their blocks, and more places see the land as it is
    best = max((v for v in ratios.values() if math.isfinite(v)), default=math.nan)
    nominal = {name: _nominal_speed(name) for name in settings}
    close = [name for name in settings if ratios[name] >= (1 - CLOSE) * best]
    close = [name for name in close if not _settled_behind(name, close, ratios, nominal)]
    scale = {}
    volume = max([REFINE * x.size / REFINE_WINDOWS] + [2 * _volume(full[name][0])
                                                       for name in close])
    if REFINE_WINDOWS * volume < sample.WHOLE * x.size:  # not a small array's whole blocks
        # joined windows are one long stream each: their rate settled already
        close = [name for name in close if not sample.joins(settings[name])]
    if len(close) > 1:
        slowest = min(nominal[name] for name in close)
        grow = {name: GROW if nominal[name] >= SLOWER * slowest > 0 else 1.0 for name in close}
        larger = {name: tuple(sample.array_windows(blocked[name].chunks, 0.0,
                                                   min_window=int(volume * grow[name]),
                                                   min_windows=REFINE_WINDOWS))
                  for name in close}
        trials.run([(name, job, blocked[name].chunks) for name, ws in larger.items()
                    for job in jobs(name, ws)])
        refined = _ratios({name: _together([trials.result(name, job, blocked[name].chunks)
                                            for job in jobs(name, ws)])
                           for name, ws in larger.items()}, settings)
        # how far each read short on the first windows, which a block's windows match in size
        scale = {name: refined[name] / ratios[name] for name in refined
                 if math.isfinite(refined[name] / ratios[name])}
        ratios.update(refined)
    order = sorted(settings, key=lambda n: -ratios[n] if math.isfinite(ratios[n]) else math.inf)
    winner = order[0]
    ratios = {name: ratios[name] for name in order}
    speeds = {name: speeds[name] for name in order}
    chunked = blocked[winner]

    # 3. per block: the winner and the candidates that came close, on windows of every block
    grid = None
    ragged = _ragged_blocks(chunked.chunks)
    blocks = []
    others = []

    def windows_of(indices):
        return {index: tuple(sample.block_windows(chunked.chunks, index, fraction))
                for index in indices}

    if per_block and chunked.npartitions > 1:
        blocks = list(np.ndindex(*chunked.numblocks))
        windows = windows_of(blocks)

        def cost(name):  # MB the trials of every block take, those step 1 ran left out
            todo = {}
            for ws in windows.values():
                for job in jobs(name, ws):
                    if not trials.ran(name, job, chunked.chunks):
                        todo[tuple(map(_key, job))] = sum(_volume(w) for w in job)
            return sum(todo.values()) * x.dtype.itemsize / 1e6

        # within a budget: the trials of every block take at most BUDGET of the time the
        # winner will take to compress the array (one core's speeds, both), or MIN_BUDGET
        spent = cost(winner) / speeds[winner]
        budget = max(BUDGET * total / 1e6 / speeds[winner], MIN_BUDGET)
        # a block's windows smaller than the block read a fast winner short against a slow
        # codec (see SURE): by 20-30% on a field half land, which no margin covers
        windowed = any(_volume(w) < math.prod(chunked.chunks[a][j] for a, j in enumerate(i))
                       for i, ws in windows.items() for w in ws)
        for name in order[1:]:
            if windowed and 0 < nominal[name] * SLOWER <= nominal[winner]:
                continue
            if _contends(name, winner, rates) and spent + cost(name) / speeds[name] <= budget:
                others.append(name)
                spent += cost(name) / speeds[name]
        if not others:
            blocks = []
    if winner == chain and ragged:
        # a chain's stream does not hold its shape: ragged edge blocks take another codec
        others += [n for n in order if n != chain][:1]
        blocks = blocks or sorted(ragged)
    if blocks:
        names = [winner, *dict.fromkeys(others)]
        windows = windows_of(blocks)
        trials.run([(name, job, chunked.chunks) for ws in windows.values() for name in names
                    for job in jobs(name, ws)])
        sizes = {}
        for index, ws in windows.items():
            values = math.prod(chunked.chunks[a][j] for a, j in enumerate(index))
            # the block's bytes, predicted from each window's rate (as far short of the block's
            # as step 1's of step 2's); a window mostly missing values (land) tells how codecs
            # fill it, not how they code the block: no evidence
            evidence = [sum(_volume(w) for w in job) <= 2 * trials.result(
                winner, job, chunked.chunks).finite for job in jobs(winner, ws)]
            predicted = {}
            for name in names:
                per_byte = [r.nbytes / r.raw for r in (trials.result(name, job, chunked.chunks)
                                                       for job in jobs(name, ws))]
                if len(per_byte) == 1:  # a joined trial: one prediction, for each window
                    per_byte *= len(ws)
                # (a window that is its whole block was measured, not sampled: as it is)
                predicted[name] = [p * values * x.dtype.itemsize /
                                   (1.0 if _volume(w) >= values else scale.get(name, 1.0))
                                   for p, w in zip(per_byte, ws)]
            if len(evidence) == 1:
                evidence *= len(ws)
            forced = winner == chain and index in ragged  # must leave the chain: no choice
            kept = [k for k in range(len(ws)) if evidence[k] or forced]
            if kept:
                sizes[index] = [{name: predicted[name][k] for name in names} for k in kept]
        grid = block_choice(chunked.numblocks, sizes, winner, ragged, chain, per_block)
    sampled = trials.encoded / total / len(settings) if total else 0.0
    choice = Choice(winner, settings[winner].params, ratios, speeds, grid, sampled,
                    time.perf_counter() - start, per_block, tolerance)
    return choice, chunked, settings


def _settled_behind(name, close, ratios, nominal) -> bool:
    """Whether the first trials settle that ``name`` loses to the leader of ``close``: it is
    SLOWER times slower than the leader and SURE behind it (see SURE). A slow leader is
    refined with its challengers: the windows may have read the faster ones short."""
    leader = max(close, key=lambda n: ratios[n])
    return name != leader and 0 < nominal[name] * SLOWER <= nominal[leader] and \
        ratios[name] < (1 - SURE) * ratios[leader]


def _nominal_speed(name) -> float:
    """The registry's encode speed of a candidate (Descriptor.speed; 0: not known, a
    chain's)."""
    try:
        return float(registry.get(name).speed)
    except KeyError:
        return 0.0


def _contends(name, winner, rates) -> bool:
    """Whether a candidate may win blocks of the array: at one window at least (centred on
    the same point for every candidate) it beat the winner by SWITCH_MARGIN. Joined windows
    (lossless codecs) do not tell: those never leave the array's codec."""
    if name in rates and winner in rates and len(rates[name]) == len(rates[winner]):
        return any(r < (1 - SWITCH_MARGIN) * w for r, w in zip(rates[name], rates[winner]))
    return False


def block_choice(numblocks, sizes: dict, winner: str, ragged=(), chain=None,
                 per_block=True, margin: float = SWITCH_MARGIN,
                 total_margin: float = TOTAL_MARGIN):
    """Return each block's codec (an object array), or None where every block takes ``winner``.

    ``sizes`` maps a block index to a list, one per window of the block, of {codec: the
    block's bytes predicted from that window}. A block takes another codec only where every
    window predicts it ``margin`` fewer bytes than the winner (the least in all where
    several do), and only if the blocks that switch save ``total_margin`` of all blocks'
    bytes; a ``ragged`` edge block never takes the lossless ``chain`` (its stream does not
    record the block's shape).

    >>> block_choice((3,), {(0,): [{"sz3": 100, "sperr": 97}], (1,): [{"sz3": 100, "sperr": 80}],
    ...                     (2,): [{"sz3": 100, "sperr": 80}, {"sz3": 100, "sperr": 101}]}, "sz3")
    array(['sz3', 'sperr', 'sz3'], dtype=object)
    >>> block_choice((2,), {(0,): [{"sz3": 100, "sperr": 99}]}, "sz3") is None
    True
    >>> block_choice((50,), {(i,): [{"sz3": 100, "sperr": 100 if i else 80}] for i in range(50)},
    ...              "sz3") is None
    True
    """
    grid = np.full(numblocks, winner, dtype=object)
    for index, by_window in sizes.items():
        names = [n for n in by_window[0] if not (n == chain and index in ragged)]
        if not names:
            continue
        total = {n: sum(w[n] for w in by_window) for n in names}
        if winner not in names:  # a chain on a ragged edge block: the next best must do
            grid[index] = min(total, key=total.get)
            continue
        if not per_block:
            continue
        better = [n for n in names if n != winner and
                  all(w[n] < (1 - margin) * w[winner] for w in by_window)]
        if better:
            grid[index] = min(better, key=total.get)
    if per_block:
        # one block's sample is small: switch only where the blocks that switch add up
        kept = sum(sum(w[winner] for w in ws) for ws in sizes.values())
        mixed = sum(sum(w[grid[index]] for w in ws) for index, ws in sizes.items())
        if mixed > (1 - total_margin) * kept:
            forced = {i for i, ws in sizes.items() if winner not in ws[0] or
                      (winner == chain and i in ragged)}
            for index in np.ndindex(*grid.shape):
                if index not in forced:
                    grid[index] = winner
    return None if (grid == winner).all() else grid


def _ratios(results, settings) -> dict:
    """Return each candidate's ratio predicted by its trials' bytes per value; a mask costs
    every lossy candidate the same, its bytes per value pooled over them all."""
    filled = [r for name, r in results.items() if sample.fills(settings[name])]
    mask_rate = sum(r.mask for r in filled) / sum(r.raw for r in filled) if filled else 0.0
    ratios = {}
    for name, r in results.items():
        mask = mask_rate * r.raw if sample.fills(settings[name]) else r.mask
        per_byte = (r.nbytes - r.mask + mask) / r.raw if r.raw else math.nan
        ratios[name] = 1 / per_byte if per_byte > 0 else math.nan
    return ratios


def _together(results) -> sample.Trial:
    """Return the figures of several trials as one."""
    return sample.Trial(sum(r.raw for r in results), sum(r.nbytes for r in results),
                        sum(r.seconds for r in results),
                        tuple(f for r in results for f in r.streams), sum(r.mask for r in results),
                        sum(r.finite for r in results))


def _ragged_blocks(chunks) -> set:
    """Return the indices of the blocks smaller than the first along some axis (edge blocks)."""
    short = [{j for j, n in enumerate(axis) if n < axis[0]} for axis in chunks]
    return {index for index in np.ndindex(*(len(a) for a in chunks))
            if any(j in s for j, s in zip(index, short))}


class _Trials:
    """Trial encodes run in parallel by the scheduler, one task per codec and set of windows,
    each encoded once; a lossy codec's windows are filled in their blocks first, once for
    each way of filling (sample.seen); ``encoded`` counts the bytes the trials encoded."""

    def __init__(self, x, token, settings):
        self.x = x
        self.token = token
        self.settings = settings
        self.results = {}
        self.encoded = 0
        self.means = {}  # a block's key -> its finite mean (a "mean" fill's), taken once

    def _views(self, name, windows, chunks) -> tuple:
        """Each window as (its block, its slices there, the codec's fill) to fill it as in
        its block, or (the window, None, None) to take it as it is."""
        fill = sample.fills(self.settings[name])
        if fill:
            return tuple((*sample.context(chunks, w), fill) for w in windows)
        return tuple((w, None, None) for w in windows)

    def run(self, jobs) -> None:
        """Run the trials of ``jobs``: (codec name, windows, the chunks of their blocks)."""
        todo = {}  # (codec name, views key) -> views
        for name, windows, chunks in jobs:
            views = self._views(name, windows, chunks)
            key = (name, _views_key(views))
            if key not in self.results:
                todo[key] = views
        if not todo:
            return
        # the trials' text names them exactly (codec, its arguments, the windows' bounds)
        base = "chunkpress-sample-" + tokenize(
            self.token, repr([(self.settings[name], key) for name, key in todo]))
        inputs = {}  # a window to fill: its task (numpy) or delayed value (dask), made once
        if isinstance(self.x, np.ndarray):
            # the windows are views: a plain graph of the trials, straight to the scheduler
            # (a fast codec's trials take milliseconds; dask.delayed's bookkeeping would too)
            graph, means = {}, {}  # means: a block's key -> the task taking its mean

            def mean(region):  # each block's once, for all the windows in it (6M values: 3 ms)
                block = _key(region)
                if block in self.means:
                    return self.means[block]
                if block not in means:
                    means[block] = f"{base}-mean-{len(means)}"
                    graph[means[block]] = Task(means[block], sample.block_mean,
                                               self.x[region])
                return TaskRef(means[block])

            def window(region, local, fill):
                if local is None:
                    return self.x[region]
                key = inputs.setdefault(_views_key(((region, local, fill),)),
                                        f"{base}-seen-{len(inputs)}")
                graph[key] = Task(key, sample.seen, self.x[region], local, fill,
                                  mean(region) if fill == "mean" else None)
                return TaskRef(key)

            keys = [f"{base}-{i}" for i in range(len(todo))]
            for key, ((name, _), views) in zip(keys, todo.items()):
                graph[key] = Task(key, sample.trial, List(*(window(*v) for v in views)),
                                  self.settings[name])
            *done, taken = (get_scheduler() or dask.threaded.get)(
                graph, [*keys, list(means.values())])
            self.means.update(zip(means, taken))
        else:
            def window(region, local, fill):
                if local is None:
                    return self.x[region]
                key = _views_key(((region, local, fill),))
                if key not in inputs:
                    inputs[key] = dask.delayed(sample.seen, pure=True)(
                        self.x[region], local, fill, dask_key_name=f"{base}-seen-{len(inputs)}")
                return inputs[key]

            tasks = [dask.delayed(sample.trial, pure=True)([window(*v) for v in views],
                                                           self.settings[name],
                                                           dask_key_name=f"{base}-{i}")
                     for i, ((name, _), views) in enumerate(todo.items())]
            done = dask.compute(*tasks)
        for key, result in zip(todo, done):
            self.results[key] = result
            self.encoded += result.raw

    def ran(self, name, windows, chunks) -> bool:
        """Whether the trial of the windows with the codec ``name`` ran already."""
        return (name, _views_key(self._views(name, windows, chunks))) in self.results

    def result(self, name, windows, chunks) -> sample.Trial:
        """:func:`sample.trial`'s figures of the windows with the codec ``name``."""
        return self.results[name, _views_key(self._views(name, windows, chunks))]


def _views_key(views) -> tuple:
    return tuple((_key(region), None if local is None else _key(local), fill)
                 for region, local, fill in views)


def _volume(window) -> int:
    return math.prod(s.stop - s.start for s in window)


def _key(window) -> tuple:
    return tuple((s.start, s.stop) for s in window)


def attribute(choice: Choice) -> str:
    """Return the JSON text of :data:`ATTRIBUTE`, which ``chunkpress info`` shows."""
    return json.dumps(choice.to_dict())
