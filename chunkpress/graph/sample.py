"""What codec="auto" chooses from: the candidates, the windows it samples, trial encodes.

A candidate is tried on *windows* shaped like the blocks it would cut for itself, scaled
down, centred on the points of a Latin hypercube over the array (the same places for every
candidate), each inside the block that holds its point; offsets are multiples of 4, so that
ZFP sees its own 4^d blocks. A window shows a codec what its block will show it:

- its short axes whole: a climatology's 20 depth levels, a slab three time steps deep. Along
  an axis of few values a codec's prediction or wavelet changes with every value cut
  (SPERR on a salinity climatology cut from 20 levels to 10: 17% more bytes);
- 48K values at least: below that, what a stream costs beyond its values' rate (a header,
  SZ3's Huffman tree, the wavelet levels SPERR loses on a narrow extent) weighs more in a
  window than in its block, and unequally from codec to codec: halving a window costs SPERR
  what its blocks never pay, so no such cost is told apart and extrapolated;
- its missing values as the codec's kernel fills them in the whole block (the registry's
  ``fill``): the block's finite mean, or bridged along each row and column of the block's
  2-D slices from coast to coast (a window filled alone would bridge them from its own
  edges: flat land, which cost SPERR 10-20% more than the block's on a climatology that is
  half land). Its mask's bytes are counted apart, the same share of the values for every
  candidate.

For a choice per block, each block gets windows of its own. Here are the pure plans and the
per-window calls; ``chunkpress.auto`` runs them on dask. The candidates are the codecs the
registry marks for auto (a descriptor's ``auto`` roles), in the registry's order.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np

from ..kernels import registry, relative, split_nonfinite
from . import blocks, codecs

#: the candidates of a float array with a tolerance
LOSSY = tuple(d.name for d in registry.descriptors()
              if d.kind == "array" and "lossy" in d.auto and d.available)
#: the candidates of an integer array, or of floats without a tolerance (and auto's chain)
LOSSLESS = tuple(d.name for d in registry.descriptors()
                 if d.kind == "array" and "lossless" in d.auto and d.available)
#: share of an array's values the trial encodes sample (windows are never smaller than below)
FRACTION = 0.005
#: values in a window at least: below this, stream headers and window edges skew the ratios
MIN_WINDOW = 49152
#: ... in a window joined with the others into one stream (a lossless codec's trial)
MIN_JOINED = 32768
#: windows of an array at least, and at most (a huge array's are larger)
MIN_WINDOWS = 4
MAX_WINDOWS = 256
#: windows that would take this share of the array are its whole blocks: exact, at little more
WHOLE = 1 / 3
#: offsets and shrunk extents of windows are multiples of this (ZFP's block)
ALIGN = 4
#: window extents are at least this (or the block's): an axis this short is sampled whole
THIN = 32


class Candidate(NamedTuple):
    """A codec auto may choose, with its arguments for the bound."""

    name: str
    params: dict  # as chunkpress.compress takes them
    kwargs: dict  # a block's kernel arguments


def candidates(dtype, ndim: int, tolerance=None, names=None, *,
               rel_tolerance=None) -> list[Candidate]:
    """Return the candidates for ``dtype`` arrays of ``ndim`` dimensions at ``tolerance``.

    Floats with a tolerance > 0: ZFP, SZ3, SPERR (2-D and more), LERC at that tolerance.
    Integers, and floats without a tolerance: PCODEC, SZIP, LERC and one lossless chain,
    floatpred+zstd for floats and zstd for integers (LERC keeps an integer tolerance too).
    Floats with ``rel_tolerance``: every codec that takes it (the registry's, through
    ``chunkpress.kernels.relative``: the lossy array codecs and bit rounding), with
    ``tolerance`` too where one is given. ``names`` restricts the choice; a codec named there
    that does not fit is a ValueError.
    """
    dtype = np.dtype(dtype).newbyteorder("=")
    chain = codecs.auto_chain(dtype)
    lossy = tolerance is not None and tolerance > 0
    if rel_tolerance is not None:
        relative.check_rel_tolerance(rel_tolerance, "auto")
        default = relative.codecs()
    else:
        default = LOSSY if lossy and dtype.kind == "f" else LOSSLESS + ((chain,) if chain else ())
    if names is None:
        wanted, explicit = default, False
    else:
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"auto: candidates must be a list of codec names, got {names!r}")
        wanted, explicit = tuple(n.strip().lower() for n in names), True
        if not wanted:
            raise ValueError("auto: candidates is empty; name at least one codec")
    out = []
    for name in dict.fromkeys(wanted):
        try:
            out.append(_candidate(name, dtype, ndim, tolerance, chain, rel_tolerance))
        except ValueError:
            if explicit:
                raise
    if not out:
        raise ValueError(f"auto: no candidate codec takes {dtype} arrays of {ndim} dimensions"
                         + (" with rel_tolerance" if rel_tolerance is not None else ""))
    return out


def _candidate(name, dtype, ndim, tolerance, chain, rel_tolerance=None) -> Candidate:
    spec = codecs.get_codec(name)
    if spec.is_auto:
        raise ValueError("auto: candidates are concrete codecs, not auto")
    # (under a relative bound the array takes one codec: a chain, bitround+zstd, may be it)
    if rel_tolerance is None and spec.chain.is_chain and spec.name != chain:
        raise ValueError(f"auto: the one lossless chain it may choose for {dtype} is {chain}, "
                         f"got {name!r} (a chain's stream does not say which chain wrote it)")
    codecs.check_input(spec, dtype, ndim)
    if rel_tolerance is not None:
        params = {"rel_tolerance": float(rel_tolerance)}
        if tolerance:
            params["tolerance"] = float(tolerance)
    elif spec.lossless:
        params = {}
    elif "tolerance" in spec.targets and tolerance:
        params = {"tolerance": float(tolerance)}
    elif _exact_by_default(spec):
        params = {}  # lossless without parameters (LERC)
    else:
        raise ValueError(f"auto: {spec.name} keeps a bound only with a tolerance > 0; without "
                         "one auto chooses among lossless codecs")
    target = codecs.normalize_targets(spec, params, dtype)
    kwargs = codecs.block_kwargs(spec, target)
    codecs.probe(spec, dtype, ndim, kwargs)
    return Candidate(spec.name, params, kwargs)


def _exact_by_default(spec) -> bool:
    """Whether a codec given no parameters keeps every value exactly (LERC)."""
    try:
        return codecs.bound(spec, codecs.normalize_targets(spec, {})) == 0
    except ValueError:  # it needs parameters
        return False


# --- windows (pure) ------------------------------------------------------------------------


def window_shape(extent, volume: float, align: int = ALIGN, thin: int = THIN) -> tuple:
    """Return the shape of a window of about ``volume`` values of a block of ``extent``.

    The block scaled down, its proportions kept, no axis below ``thin`` (an axis no longer
    than that stays whole: a slab three time steps deep is sampled three deep, a climatology
    on 20 depth levels on all 20); shrunk extents are multiples of ``align``.

    >>> window_shape((3, 720, 1440), 49152)
    (3, 92, 180)
    >>> window_shape((20, 180, 256), 49152)
    (20, 40, 60)
    >>> window_shape((48, 128, 256), 49152)
    (32, 32, 48)
    >>> window_shape((10, 10), 49152)
    (10, 10)
    """
    extent = tuple(int(n) for n in extent)
    shape = list(extent)
    free = [a for a, n in enumerate(extent) if n > thin]
    while free and math.prod(shape) > volume:
        fixed = math.prod(shape[a] for a in range(len(shape)) if a not in free)
        scale = (volume / fixed / math.prod(extent[a] for a in free)) ** (1 / len(free))
        small = [a for a in free if extent[a] * scale < thin]
        if small:  # these stop at ``thin``; the others shrink more
            for a in small:
                shape[a] = thin
                free.remove(a)
            continue
        for a in free:
            shape[a] = min(extent[a], max(thin, round(extent[a] * scale / align) * align))
        break
    return tuple(shape)


def lhs_points(shape, count: int, seed=()) -> list:
    """Return ``count`` points of a Latin hypercube over ``shape``, fixed by shape and ``seed``.

    Along every axis each of ``count`` equal strata holds one point, so that a layer that
    matters (a noisy boundary layer, a coast) is sampled in proportion to its size.

    >>> lhs_points((100, 8), 4)
    [(26, 1), (52, 7), (82, 4), (15, 2)]
    """
    rng = np.random.default_rng([len(shape), *shape, *seed])
    strata = [rng.permutation(count) for _ in shape]
    jitter = rng.random((count, len(shape)))
    return [tuple(int((strata[a][k] + jitter[k, a]) * n / count) for a, n in enumerate(shape))
            for k in range(count)]


def place(point, window, start, stop) -> tuple:
    """Return the slices of a ``window`` shape about ``point``, inside [start, stop).

    Offsets are multiples of ``ALIGN`` from ``start``, so that ZFP sees its own 4^d blocks.

    >>> place((50, 3), (16, 8), (0, 0), (100, 8))
    (slice(40, 56, None), slice(0, 8, None))
    """
    out = []
    for p, w, a, b in zip(point, window, start, stop):
        offset = min(max(0, (p - a - w // 2) // ALIGN * ALIGN), (b - a - w) // ALIGN * ALIGN)
        offset = max(0, offset)
        out.append(slice(a + offset, a + offset + min(w, b - a)))
    return tuple(out)


def array_windows(chunks, fraction: float = FRACTION, *, min_window: int = MIN_WINDOW,
                  min_windows: int = MIN_WINDOWS) -> list:
    """Return the windows that sample a chunked array for one candidate: a list of slices.

    The windows all have the shape of the array's (first) block scaled down
    (:func:`window_shape`) to ``min_window`` values, or to ``fraction`` of the array's values
    over ``MAX_WINDOWS`` windows if that is more (a block of less than twice that, or windows
    that would take ``WHOLE`` of the array: whole blocks); they are centred on the points of
    a Latin hypercube over the array, which do not depend on the chunking, so every candidate,
    each sampled in windows shaped like its own blocks, sees the same places. A window lies
    in the block that holds its point, as a block's content is what a codec's stream sees.

    >>> [w[0] for w in array_windows(((3, 3, 3, 3), (720,), (1440,)), 0.005)]
    [slice(0, 3, None), slice(3, 6, None), slice(6, 9, None), slice(9, 12, None)]
    """
    shape = tuple(sum(c) for c in chunks)
    total = math.prod(shape)
    if total == 0:
        return []
    count = min(max(min_windows, round(fraction * total / min_window)), MAX_WINDOWS)
    volume = max(min_window, fraction * total / count)
    block = tuple(c[0] for c in chunks)
    # a window of half its block or more is the block, and so are windows that would take
    # WHOLE of the array (a small array is sampled exactly)
    whole = 2 * volume >= math.prod(block) or count * volume >= WHOLE * total
    window = block if whole else window_shape(block, volume)
    edges = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
    out = []
    for point in sorted(lhs_points(shape, count)):
        # inside the block that holds the point, where it fits (not in a smaller edge block)
        index = [int(np.searchsorted(e, p, side="right")) - 1 for e, p in zip(edges, point)]
        start = tuple(int(e[j]) for e, j in zip(edges, index))
        stop = tuple(int(e[j + 1]) for e, j in zip(edges, index))
        if any(b - a < w for a, b, w in zip(start, stop, window)):
            start, stop = (0,) * len(shape), shape
        slices = place(point, window, start, stop)
        if slices not in out:  # a small array: sampled once, whole
            out.append(slices)
    return out


def block_windows(chunks, index, fraction: float = FRACTION, *, count: int = 2,
                  min_window: int = MIN_WINDOW) -> list:
    """Return ``count`` windows of the block at ``index``, each ``min_window`` values or
    ``fraction`` of the block over ``count``, whichever is more (a small block: itself).

    Every candidate encodes the same windows of a block; smaller ones would favour the codecs
    whose streams cost least beyond their values' rate (see the module's text).

    >>> ws = block_windows(((24,), (720,), (1440,)), (0, 0, 0), 0.005)
    >>> [tuple(s.stop - s.start for s in w) for w in ws]
    [(24, 36, 72), (24, 36, 72)]
    """
    start = tuple(int(sum(c[:j])) for c, j in zip(chunks, index))
    extent = tuple(int(c[j]) for c, j in zip(chunks, index))
    volume = max(min_window, fraction * math.prod(extent) / count)
    window = extent if 2 * volume >= math.prod(extent) else window_shape(extent, volume)
    stop = tuple(a + e for a, e in zip(start, extent))
    out = []
    for point in lhs_points(extent, count, index):
        slices = place(tuple(a + p for a, p in zip(start, point)), window, start, stop)
        if slices not in out:
            out.append(slices)
    return out


def context(chunks, window) -> tuple:
    """Return (block, local): the slices of the block that holds ``window`` (and the window,
    where it is wider), the block a kernel fills the window's missing values in, and the
    window's slices inside it.

    >>> block, local = context(((10, 10), (180,), (360,)), (slice(12, 20), slice(40, 96),
    ...                                                      slice(8, 124)))
    >>> [(s.start, s.stop) for s in block], [(s.start, s.stop) for s in local]
    ([(10, 20), (0, 180), (0, 360)], [(2, 10), (40, 96), (8, 124)])
    """
    block = []
    for lengths, s in zip(chunks, window):
        edges = np.concatenate([[0], np.cumsum(lengths)])
        j = int(np.searchsorted(edges, s.start, side="right")) - 1
        block.append(slice(min(int(edges[j]), s.start), max(int(edges[j + 1]), s.stop)))
    local = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(window, block))
    return tuple(block), local


class Seen(NamedTuple):
    """A window as a lossy kernel sees it in its block, and the bytes of its mask."""

    values: np.ndarray  # its non-finite cells filled as in the block
    mask: int  # bytes of the mask of its non-finite cells (0 where all are finite)
    finite: int  # its finite cells


def seen(block, local, fill: str, mean: float | None = None) -> Seen:
    """Return the window ``block[local]`` as a lossy kernel that fills NaN/Inf cells its
    ``fill`` way (the registry's) sees it inside ``block``, and the bytes of its mask.

    "mean": the block's finite mean. "smooth": bridged as the kernel bridges them within the
    window and as much again on each side along the last two axes; the block's rows and
    columns beyond seldom change it (SPERR's bytes of such windows are within 2% of the
    block's fill on climatologies half land, 8-11% off filled alone), for a tenth of the
    cost of filling the block. Another fill: the kernel's, on the whole block. ``mean``: the
    block's (:func:`block_mean`), where the caller took it once for all its windows.
    """
    window = np.asarray(block[local])
    bad = ~np.isfinite(window) if window.dtype.kind == "f" else None
    if bad is None or not bad.any():
        return Seen(np.ascontiguousarray(window), 0, window.size)
    if fill == "mean":
        mean = block_mean(block) if mean is None else mean
        values = np.where(bad, window.dtype.type(mean), window)
    elif fill == "smooth":  # the kernel bridges each 2-D slice (the last two axes) alone
        lead = block.ndim - 2
        near = tuple(s if axis < lead else _around(s, n)
                     for axis, (s, n) in enumerate(zip(local, block.shape)))
        inner = tuple(slice(s.start - r.start, s.stop - r.start) for s, r in zip(local, near))
        values = _filled(block[near], fill)[inner]
    else:
        values = _filled(block, fill)[local]
    # the frame's mask: a bit per cell and the non-finite values, each through zstd
    zstd = registry.get("zstd").encode
    mask = len(zstd(np.packbits(bad, bitorder="little"), level=1)) + \
        len(zstd(np.ascontiguousarray(window[bad]).view(np.uint8), level=1))
    return Seen(np.ascontiguousarray(values), mask, window.size - int(np.count_nonzero(bad)))


#: values the block's finite mean is taken on, at most: a lattice over the last two axes
MEAN_VALUES = 1 << 21


def block_mean(block) -> float:
    """Return the finite mean of ``block`` (0 if none), on a lattice of its 2-D slices where
    it holds more than MEAN_VALUES values: the kernel's own fill takes the mean of every
    finite cell, and a window asks it of a block up to 6M values large, each time (10 ms, a
    third of the sampling of a 95 MiB SST). The lattice's mean is the block's within a small
    share of its range, but on a block whose every slice is alike (SZ3 predicts each from the
    last: a few bits per value) a fill that close still moved its ratio by 7%: blocks of up
    to 2M values take every cell."""
    step = 1
    if block.ndim >= 2 and block.size > MEAN_VALUES:
        step = math.ceil(math.sqrt(block.size / MEAN_VALUES))
    lattice = block[..., ::step, ::step] if step > 1 else block
    finite = np.isfinite(lattice)
    if not finite.any() and step > 1:  # the lattice missed the few finite cells
        lattice, finite = block, np.isfinite(block)
    return float(lattice[finite].mean(dtype=np.float64)) if finite.any() else 0.0


def _around(s: slice, n: int) -> slice:
    """Return the slice ``s`` with its own length again on each side, within [0, n)."""
    return slice(max(0, 2 * s.start - s.stop), min(n, 2 * s.stop - s.start))


def _filled(region, fill: str) -> np.ndarray:
    """Return ``region`` with its NaN/Inf cells filled by the kernels' ``fill``."""
    region = np.ascontiguousarray(region, dtype=region.dtype.newbyteorder("="))  # (the native
    # fill reads native floats: a big-endian array is filled as the kernel fills its blocks)
    count = region.size - int(np.count_nonzero(np.isfinite(region)))
    return split_nonfinite(region, count, fill)[0] if count else region


def half_window(window) -> tuple:
    """Return the window halved along its longest axis but the last, about the same centre.

    (auto no longer encodes halves: what a stream costs beyond its values' rate does not
    scale from a window's half to its block alike for every codec; see the module's text.)

    >>> half_window((slice(0, 3), slice(8, 108), slice(0, 40)))
    (slice(0, 3, None), slice(32, 80, None), slice(0, 40, None))
    """
    extents = [s.stop - s.start for s in window]
    axes = [a for a in range(len(extents) - 1) if extents[a] > 1] or [len(extents) - 1]
    axis = max(axes, key=lambda a: extents[a])
    half = extents[axis] // 2 // ALIGN * ALIGN if extents[axis] >= 2 * ALIGN \
        else max(1, extents[axis] // 2)
    start = window[axis].start + (extents[axis] - half) // 2 // ALIGN * ALIGN
    return tuple(slice(start, start + half) if a == axis else slice(s.start, s.stop)
                 for a, s in enumerate(window))


# --- trial encodes -------------------------------------------------------------------------


def joins(candidate: Candidate) -> bool:
    """Whether a candidate's trial joins its windows into one stream, or encodes each alone.

    A lossy codec predicts a value from its neighbours: each window is its own stream, so no
    seam between windows spoils the prediction. A lossless codec's model is the stream's
    (PCODEC's bins, zstd's dictionary): the windows are joined, so that it meets the mixture
    of values a block holds (ocean and land, calm and storm), not one homogeneous corner.
    """
    return codecs.get_codec(candidate.name).lossless or not (
        candidate.kwargs.get("tolerance") or candidate.kwargs.get("rel_tolerance"))


def fills(candidate: Candidate) -> str | None:
    """How a candidate's kernel fills a block's NaN/Inf cells for its codec ("smooth" or
    "mean", the registry's ``fill``), or None where the codec keeps them itself (and under a
    relative bound, whose kernel fills the logs of the magnitudes its own way)."""
    if joins(candidate) or "rel_tolerance" in candidate.kwargs:
        return None
    return registry.get(candidate.name).fill


class Trial(NamedTuple):
    """What a candidate's trial on a set of windows cost."""

    raw: int  # bytes of the windows' values
    nbytes: int  # bytes of its streams, their masks' included
    seconds: float  # encoding
    streams: tuple  # bytes of each stream (and its mask)
    mask: int  # bytes of the masks in all
    finite: int  # finite values in all


def trial(windows, candidate: Candidate) -> Trial:
    """Return what ``candidate`` makes of ``windows`` (arrays of one shape, or :class:`Seen`).

    The windows are joined along their last axis into one stream, or encoded one by one (see
    :func:`joins`); a :class:`Seen` window's stream counts its mask's bytes too.
    """
    spec = codecs.get_codec(candidate.name)
    seen_as = windows
    masks = [w.mask if isinstance(w, Seen) else 0 for w in windows]
    windows = [w.values if isinstance(w, Seen) else np.asarray(w) for w in windows]
    if joins(candidate) and len(windows) > 1:
        arrays = [np.concatenate(windows, axis=-1)]
        masks = [sum(masks)]
    else:
        arrays = [np.ascontiguousarray(w) for w in windows]
    sizes, seconds = [], 0.0
    for block, mask in zip(arrays, masks):
        start = _clock()
        sizes.append(len(blocks.encode(block, spec, candidate.kwargs).data) + mask)
        seconds += _clock() - start
    finite = sum(w.finite if isinstance(w, Seen) else _finite(w) for w in seen_as)
    return Trial(sum(b.nbytes for b in arrays), sum(sizes), seconds, tuple(sizes), sum(masks),
                 finite)


#: a trial's clock: the encoding thread's CPU time (the kernels run on one thread), so that
#: what the trials beside it or other processes take of the machine does not count; the
#: wall clock where the thread's is coarse (Windows: 15.6 ms)
_clock = time.thread_time if time.get_clock_info("thread_time").resolution <= 1e-6 \
    else time.perf_counter


def _finite(window) -> int:
    window = np.asarray(window)
    return int(np.count_nonzero(np.isfinite(window))) if window.dtype.kind == "f" else window.size


def choose_in_block(block, candidates, fraction: float = FRACTION) -> Candidate:
    """Return the candidate that encodes windows of ``block`` to the fewest bytes."""
    if len(candidates) == 1 or block.size == 0:
        return candidates[0]
    chunks = tuple((n,) for n in block.shape)
    windows = block_windows(chunks, (0,) * block.ndim, fraction)
    plain = [block[w] for w in windows]
    seen_as = {fill: [seen(block, w, fill) for w in windows]
               for fill in {fills(c) for c in candidates} - {None}}
    sizes = [trial(seen_as[fills(c)] if fills(c) else plain, c).nbytes for c in candidates]
    return candidates[int(np.argmin(sizes))]
