"""Block plans: pure functions of shapes and numbers (no dask here).

A *chunking* is dask's: one tuple of block extents per axis. A chunking is *aligned* to
``align`` (one integer per axis) when every block extent along an axis is a multiple of that
axis' alignment, except the last block of the axis, which ends with the array. For ZFP the
alignment is 4 on each axis it encodes, so that every block is cut along ZFP's own 4^d blocks
and compresses to exactly the values the whole array gives.
"""

from __future__ import annotations

import math

MiB = 1 << 20
#: what a block aims at: large enough that scheduling costs nothing, small enough to spread
TARGET_BLOCK_BYTES = 32 * MiB
#: below this, blocks are not split further just to give every worker several
MIN_BLOCK_BYTES = 2 * MiB
#: input blocks larger than this are split when chunks="auto"
MAX_BLOCK_BYTES = 256 * MiB
#: how many blocks each worker should get at least, so that all are busy to the end
BLOCKS_PER_WORKER = 4
#: how far over its share of the array a block may grow to end on whole aligned units
BLOCK_SLACK = 1.15
#: below this PSNR a block is given a point-wise bound instead (see block_psnr)
PSNR_FLOOR = 10.0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _round_up(value: int, step: int) -> int:
    return _ceil_div(value, step) * step


def block_count(nbytes: int, *, workers: int = 1, target_bytes: int = TARGET_BLOCK_BYTES,
                min_bytes: int = MIN_BLOCK_BYTES,
                blocks_per_worker: int = BLOCKS_PER_WORKER) -> int:
    """Return how many blocks an array of ``nbytes`` should be cut into.

    Enough that no block is much over ``target_bytes``, at least ``blocks_per_worker`` per
    worker while blocks stay over ``min_bytes``, and a multiple of ``workers`` when that is
    possible, so that every worker gets the same share.

    >>> block_count(256 * MiB, workers=2)
    8
    >>> block_count(256 * MiB, workers=1)
    8
    >>> block_count(10 * MiB, workers=2)
    4
    >>> block_count(1000, workers=2)
    1
    >>> block_count(0)
    1
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    count = _ceil_div(nbytes, target_bytes)
    most = max(1, nbytes // min_bytes)  # more than this gives blocks under min_bytes
    count = max(count, min(blocks_per_worker * workers, most))
    if count > 1 and count % workers:
        if _round_up(count, workers) <= most:
            count = _round_up(count, workers)
        elif count > workers and count * target_bytes > nbytes + target_bytes:
            count -= count % workers  # fewer, slightly larger blocks, shared evenly
    return max(1, count)


def aligned_block_shape(shape, itemsize: int, align, *, workers: int = 1,
                        target_bytes: int = TARGET_BLOCK_BYTES, min_bytes: int = MIN_BLOCK_BYTES,
                        blocks_per_worker: int = BLOCKS_PER_WORKER) -> tuple:
    """Return the block shape for ``shape``: aligned, about ``block_count`` blocks, slabs first.

    The array is cut along its leading axes first, so that a block of a C-ordered array is
    one contiguous slab the codec reads without a copy; a trailing axis is cut only where
    even the thinnest aligned slab would be too large. Blocks hold at most their share of
    the array (``BLOCK_SLACK`` more, to end on whole aligned units), so there may be more
    than ``block_count`` of them where extents are not multiples of the alignment.

    >>> aligned_block_shape((256, 512, 512), 4, (4, 4, 4), workers=2)
    (32, 512, 512)
    >>> aligned_block_shape((250, 512, 512), 4, (4, 4, 4), workers=2)
    (32, 512, 512)
    >>> aligned_block_shape((4096, 4096, 4096), 4, (4, 4, 4))
    (4, 588, 4096)
    >>> aligned_block_shape((10, 10), 8, (4, 4))
    (10, 10)
    >>> aligned_block_shape((0, 5), 4, (4, 4))
    (0, 5)
    """
    shape = tuple(int(n) for n in shape)
    align = tuple(int(a) for a in align)
    if len(align) != len(shape):
        raise ValueError(f"align {align} does not match shape {shape}")
    if not shape:
        return ()
    nbytes = math.prod(shape) * itemsize
    wanted = block_count(nbytes, workers=workers, target_bytes=target_bytes,
                         min_bytes=min_bytes, blocks_per_worker=blocks_per_worker)
    block = list(shape)
    if wanted == 1 or nbytes == 0:
        return tuple(block)
    # values a block may hold; the slack lets blocks round to whole aligned units without
    # adding one more, smaller block at the end
    budget = nbytes / wanted / itemsize * BLOCK_SLACK
    for axis, (extent, step) in enumerate(zip(shape, align)):
        trailing = math.prod(shape[axis + 1:])
        units = _ceil_div(extent, step)  # aligned pieces along this axis
        if step * trailing <= budget or axis == len(shape) - 1:
            fit = max(1, int(budget // (step * trailing)))  # pieces per block
            pieces = _ceil_div(units, fit)  # blocks along this axis
            block[axis] = min(extent, step * _ceil_div(units, pieces))
            break
        block[axis] = min(extent, step)  # the thinnest slab is still too large: cut deeper
        budget /= block[axis]
    return tuple(block)


def regular_chunks(shape, block_shape) -> tuple:
    """Return the dask chunking of ``shape`` in blocks of ``block_shape``, the rest at the end.

    >>> regular_chunks((10, 8), (4, 8))
    ((4, 4, 2), (8,))
    >>> regular_chunks((0, 3), (0, 3))
    ((0,), (3,))
    """
    chunks = []
    for extent, size in zip(shape, block_shape):
        if extent == 0:
            chunks.append((0,))
            continue
        size = max(1, min(int(size), extent))
        full, rest = divmod(extent, size)
        chunks.append((size,) * full + ((rest,) if rest else ()))
    return tuple(chunks)


def misaligned(chunks, align) -> list:
    """Return ``(axis, block index, extent)`` of the first misaligned block of each bad axis.

    >>> misaligned(((4, 4, 2), (8,)), (4, 4))
    []
    >>> misaligned(((3, 5), (6, 2)), (4, 4))
    [(0, 0, 3), (1, 0, 6)]
    """
    bad = []
    for axis, (extents, step) in enumerate(zip(chunks, align)):
        for index, extent in enumerate(extents[:-1]):
            if extent % step:
                bad.append((axis, index, extent))
                break
    return bad


def is_aligned(chunks, align) -> bool:
    """Return whether every block but the last of each axis is a multiple of ``align``.

    >>> is_aligned(((8, 8, 3),), (4,))
    True
    >>> is_aligned(((6, 6),), (4,))
    False
    """
    return not misaligned(chunks, align)


def block_nbytes(chunks, itemsize: int) -> tuple:
    """Return (largest, mean) bytes of the blocks of a chunking.

    >>> block_nbytes(((4, 4, 2), (8,)), 4)
    (128, 106.66666666666667)
    """
    largest = math.prod(max(extents) for extents in chunks) * itemsize if chunks else itemsize
    count = math.prod(len(extents) for extents in chunks)
    total = math.prod(sum(extents) for extents in chunks) * itemsize
    return largest, total / count


def auto_chunks(shape, itemsize: int, align, input_chunks=None, *, workers: int = 1,
                target_bytes: int = TARGET_BLOCK_BYTES, min_bytes: int = MIN_BLOCK_BYTES,
                max_bytes: int = MAX_BLOCK_BYTES,
                blocks_per_worker: int = BLOCKS_PER_WORKER) -> tuple:
    """Return the chunking that ``chunks="auto"`` uses.

    Without ``input_chunks`` (a numpy array): :func:`aligned_block_shape`. An input chunking
    that is aligned and whose blocks are neither tiny nor huge is kept: nothing moves. Otherwise
    the input's own block extents are rounded to the alignment, tiny blocks are merged along
    the leading axes and huge ones split, so that dask rechunks once, mostly by concatenating
    or slicing neighbouring blocks rather than by reshuffling the array. Small blocks grow
    along the trailing axes first, into contiguous slabs.

    >>> auto_chunks((256, 512, 512), 4, (4, 4, 4), workers=2)[0]
    (32, 32, 32, 32, 32, 32, 32, 32)
    >>> auto_chunks((100, 100), 8, (4, 4), ((50, 50), (30, 30, 30, 10)))
    ((100,), (100,))
    >>> auto_chunks((64, 64, 64), 4, (1, 1, 1), ((8,) * 8, (8,) * 8, (64,)))
    ((64,), (64,), (64,))
    >>> auto_chunks((4000, 4000), 4, (4, 4), ((1000,) * 4, (4000,)))
    ((1000, 1000, 1000, 1000), (4000,))
    """
    shape = tuple(int(n) for n in shape)
    if input_chunks is None:
        return regular_chunks(shape, aligned_block_shape(
            shape, itemsize, align, workers=workers, target_bytes=target_bytes,
            min_bytes=min_bytes, blocks_per_worker=blocks_per_worker))
    nbytes = math.prod(shape) * itemsize
    wanted = block_count(nbytes, workers=workers, target_bytes=target_bytes,
                         min_bytes=min_bytes, blocks_per_worker=blocks_per_worker)
    largest, mean = block_nbytes(input_chunks, itemsize)
    count = math.prod(len(extents) for extents in input_chunks)
    if is_aligned(input_chunks, align) and largest <= max_bytes and (
        mean >= min_bytes or count <= wanted
    ):
        return tuple(tuple(extents) for extents in input_chunks)
    block = list(nearest_aligned_block(shape, input_chunks, align))

    def blocks(b):
        return math.prod(_ceil_div(n, e) for n, e in zip(shape, b) if e)

    # merge small blocks, trailing axes first so that blocks become contiguous slabs
    for axis in reversed(range(len(block))):
        while 0 < block[axis] < shape[axis]:
            grown = block.copy()
            grown[axis] = min(shape[axis], 2 * block[axis])
            if math.prod(grown) * itemsize > target_bytes or blocks(grown) < wanted:
                break
            block = grown
    # split huge blocks, leading axes first
    for axis in range(len(block)):
        size = math.prod(block) * itemsize
        if size <= max_bytes:
            break
        pieces = _ceil_div(size, target_bytes)
        block[axis] = max(align[axis],
                          _round_up(_ceil_div(block[axis], pieces), align[axis]))
    return regular_chunks(shape, block)


def nearest_aligned_block(shape, chunks, align) -> tuple:
    """Return the aligned block shape nearest to a chunking's typical (largest) block.

    >>> nearest_aligned_block((100, 30), ((30, 30, 30, 10), (7, 7, 7, 7, 2)), (4, 4))
    (32, 8)
    >>> nearest_aligned_block((2, 9), ((1, 1), (9,)), (4, 4))
    (2, 9)
    """
    block = []
    for extents, extent, step in zip(chunks, shape, align):
        typical = max(extents) if extents else 0
        if typical >= extent:
            block.append(extent)
        else:
            block.append(min(extent, max(step, step * round(typical / step))))
    return tuple(block)


def check_chunks(chunks) -> None:
    """Raise ValueError for explicit ``chunks`` no block can have: an extent of 0 (or below,
    but -1: the whole axis, as in dask), a bool, or a float that is not whole.

    >>> check_chunks((16, -1, "auto"))
    >>> check_chunks(0)
    Traceback (most recent call last):
    ...
    ValueError: chunks=0: a block extent must be a whole number > 0 (or -1: the whole axis, or 'auto'), got 0
    >>> check_chunks(((8, 8), (4, -3)))
    Traceback (most recent call last):
    ...
    ValueError: chunks=((8, 8), (4, -3)): a block extent must be a whole number > 0 (or -1: the whole axis, or 'auto'), got -3
    """
    def bad(extent, top: bool) -> bool:
        if isinstance(extent, bool):
            return True
        if isinstance(extent, float):
            return not extent.is_integer() or bad(int(extent), top)
        if isinstance(extent, int):
            return extent == 0 and top or extent < (-1 if top else 0)
        return False  # None, "auto", sizes in bytes: dask's own to read

    items = chunks.values() if isinstance(chunks, dict) else \
        chunks if isinstance(chunks, (tuple, list)) else [chunks]
    for item in items:
        inner = item if isinstance(item, (tuple, list)) else [item]
        for extent in inner:
            if bad(extent, inner is not item):
                raise ValueError(f"chunks={chunks!r}: a block extent must be a whole number > 0 "
                                 f"(or -1: the whole axis, or 'auto'), got {extent!r}")


def codec_axes(ndim: int, codec_ndims) -> tuple:
    """Return (batch axes, codec ndim): how an ``ndim`` array maps onto a codec.

    The codec takes the trailing ``codec ndim`` axes of each block; an array with more
    dimensions than the codec takes is a batch over its leading axes.

    >>> codec_axes(3, (1, 2, 3, 4))
    (0, 3)
    >>> codec_axes(5, (1, 2, 3, 4))
    (1, 4)
    >>> codec_axes(0, (1, 2, 3, 4))
    (0, 0)
    >>> codec_axes(1, (2, 3))
    Traceback (most recent call last):
    ...
    ValueError: the codec takes 2 to 3 dimensions, got ndim=1
    """
    codec_ndims = tuple(codec_ndims)
    if ndim in codec_ndims or ndim == 0:
        return 0, ndim
    if ndim > max(codec_ndims):
        return ndim - max(codec_ndims), max(codec_ndims)
    raise ValueError(
        f"the codec takes {min(codec_ndims)} to {max(codec_ndims)} dimensions, got ndim={ndim}"
    )


def mse_for_psnr(psnr: float, value_range: float) -> float:
    """Return the mean squared error at which data of ``value_range`` has PSNR ``psnr`` dB.

    >>> mse_for_psnr(20.0, 10.0)
    1.0
    """
    return (value_range * 10.0 ** (-psnr / 20.0)) ** 2


def psnr_from_sse(sse: float, count: int, value_range: float) -> float:
    """Return the PSNR in dB from a sum of squared errors over ``count`` values.

    >>> psnr_from_sse(100.0, 100, 10.0)
    20.0
    >>> psnr_from_sse(0.0, 100, 10.0)
    inf
    """
    if count == 0 or sse == 0:
        return math.inf
    if value_range == 0:
        return -math.inf
    return 20.0 * math.log10(value_range) - 10.0 * math.log10(sse / count)


def block_psnr(psnr: float, global_range: float, block_range: float,
               floor: float = PSNR_FLOOR) -> tuple:
    """Return a block's SPERR (mode, quality) for a PSNR ``psnr`` of the whole array.

    SPERR's PSNR mode is relative to the block's own value range, so the same dB on every
    block would give each block the error its own range allows, and a block of small range
    would be kept far more finely than the whole array needs. The global target is a mean
    squared error, ``mse_for_psnr(psnr, global_range)``; a block keeps it with PSNR
    ``psnr + 20 log10(block_range / global_range)``. Where that is below ``floor`` (a nearly
    constant block) a point-wise bound of the target's root mean square error is used
    instead, which keeps the same mean squared error and is safe for any block.

    >>> block_psnr(60.0, 10.0, 10.0)
    ('psnr', 60.0)
    >>> block_psnr(60.0, 10.0, 1.0)
    ('psnr', 40.0)
    >>> mode, tolerance = block_psnr(60.0, 10.0, 0.0); mode, round(tolerance, 12)
    ('pwe', 0.01)
    """
    if global_range <= 0 or not math.isfinite(global_range):
        return ("pwe", _pwe_for(psnr, global_range))
    if block_range > 0 and math.isfinite(block_range):
        quality = psnr + 20.0 * math.log10(block_range / global_range)
        if quality >= floor:
            return ("psnr", quality)
    return ("pwe", _pwe_for(psnr, global_range))


def _pwe_for(psnr: float, value_range: float) -> float:
    rmse = math.sqrt(mse_for_psnr(psnr, value_range)) if value_range > 0 else 0.0
    # a constant array: any small bound keeps it (SPERR needs a positive one)
    return rmse if rmse > 0 else 1e-30
