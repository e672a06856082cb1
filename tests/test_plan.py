"""Block plans: properties that hold for any shape (hypothesis) and the doctests."""

import doctest
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkpress.graph import plan

MiB = plan.MiB

shapes = st.lists(st.integers(0, 3000), min_size=1, max_size=5).map(tuple)
aligns = st.sampled_from([1, 4, 256])
itemsizes = st.sampled_from([1, 4, 8])
workers = st.integers(1, 16)


def covers(chunks, shape):
    return tuple(sum(c) for c in chunks) == tuple(shape) and all(
        all(e > 0 for e in c) or c == (0,) for c in chunks
    )


def test_doctests():
    failures, tried = doctest.testmod(plan)
    assert tried > 10 and failures == 0


@settings(max_examples=300, deadline=None)
@given(shapes, aligns, itemsizes, workers)
def test_aligned_block_shape_is_aligned_and_covers(shape, step, itemsize, n):
    align = (step,) * len(shape)
    block = plan.aligned_block_shape(shape, itemsize, align, workers=n)
    chunks = plan.regular_chunks(shape, block)
    assert covers(chunks, shape)
    assert plan.is_aligned(chunks, align)


@settings(max_examples=300, deadline=None)
@given(shapes, itemsizes, workers)
def test_zfp_blocks_stay_near_the_target(shape, itemsize, n):
    align = (4,) * len(shape)
    block = plan.aligned_block_shape(shape, itemsize, align, workers=n)
    nbytes = math.prod(block) * itemsize
    # a block exceeds the target only by the rounding to whole aligned units on one axis, or
    # because the thinnest aligned slab along every leading axis is already larger
    thinnest = 4 ** len(shape) * itemsize
    assert nbytes <= max(plan.TARGET_BLOCK_BYTES * plan.BLOCK_SLACK, thinnest)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 1 << 34), workers)
def test_block_count_gives_every_worker_several_blocks_when_large(nbytes, n):
    count = plan.block_count(nbytes, workers=n)
    assert count >= 1
    if nbytes >= plan.BLOCKS_PER_WORKER * n * plan.MIN_BLOCK_BYTES:
        assert count >= plan.BLOCKS_PER_WORKER * n
    if count > 1:
        assert nbytes / count >= min(plan.MIN_BLOCK_BYTES, nbytes) / 2
    assert nbytes / count <= plan.TARGET_BLOCK_BYTES * 1.5 or (
        count == 1 and nbytes <= plan.TARGET_BLOCK_BYTES
    )


def test_benchmark_field_is_cut_in_contiguous_slabs():
    # 256 MiB float32: 8 slabs of 32 MiB, 4 per worker on 2 workers
    chunks = plan.auto_chunks((256, 512, 512), 4, (4, 4, 4), workers=2)
    assert chunks == ((32,) * 8, (512,), (512,))


@st.composite
def chunkings(draw):
    shape = draw(st.lists(st.integers(1, 400), min_size=1, max_size=4).map(tuple))
    chunks = []
    for extent in shape:
        pieces = []
        left = extent
        while left:
            piece = draw(st.integers(1, left))
            pieces.append(piece)
            left -= piece
        chunks.append(tuple(pieces))
    return shape, tuple(chunks)


@settings(max_examples=300, deadline=None)
@given(chunkings(), st.sampled_from([1, 4]), itemsizes, workers)
def test_auto_chunks_of_any_input_are_aligned(shape_chunks, step, itemsize, n):
    shape, chunks = shape_chunks
    align = (step,) * len(shape)
    out = plan.auto_chunks(shape, itemsize, align, chunks, workers=n,
                           target_bytes=64 * 1024, min_bytes=4096, max_bytes=256 * 1024)
    assert covers(out, shape)
    assert plan.is_aligned(out, align)
    if plan.is_aligned(chunks, align) and max(plan.block_nbytes(chunks, itemsize)[0], 0) <= 4096:
        # tiny aligned blocks are merged, never split
        assert math.prod(len(c) for c in out) <= math.prod(len(c) for c in chunks)


@settings(max_examples=200, deadline=None)
@given(chunkings(), st.sampled_from([1, 4]))
def test_misaligned_finds_exactly_the_bad_axes(shape_chunks, step):
    shape, chunks = shape_chunks
    align = (step,) * len(shape)
    bad = {axis for axis, _, _ in plan.misaligned(chunks, align)}
    for axis, extents in enumerate(chunks):
        assert (axis in bad) == any(e % step for e in extents[:-1])


def test_aligned_input_of_sensible_size_is_kept():
    chunks = ((64,) * 4, (512,), (512,))  # 64 MiB blocks of float32
    assert plan.auto_chunks((256, 512, 512), 4, (4, 4, 4), chunks, workers=2) == chunks


def test_misaligned_input_is_rounded_to_the_nearest_alignment():
    chunks = ((30,) * 8 + (16,), (512,), (512,))
    out = plan.auto_chunks((256, 512, 512), 4, (4, 4, 4), chunks)
    assert set(out[0][:-1]) == {32} and out[1:] == ((512,), (512,))


@pytest.mark.parametrize("ndim,expected", [(0, (0, 0)), (1, (0, 1)), (4, (0, 4)), (6, (2, 4))])
def test_codec_axes_batches_the_leading_axes(ndim, expected):
    assert plan.codec_axes(ndim, (1, 2, 3, 4)) == expected


@settings(max_examples=200, deadline=None)
@given(st.floats(1, 150), st.floats(1e-6, 1e6), st.floats(0, 1))
def test_block_psnr_keeps_the_global_mean_squared_error(psnr, global_range, fraction):
    block_range = global_range * fraction
    mode, quality = plan.block_psnr(psnr, global_range, block_range)
    target = plan.mse_for_psnr(psnr, global_range)
    if mode == "psnr":
        # the block's own PSNR over its own range is the global target MSE
        assert math.isclose(plan.mse_for_psnr(quality, block_range), target, rel_tol=1e-9)
    else:
        assert mode == "pwe" and quality ** 2 <= target * (1 + 1e-9)


def test_psnr_round_trip():
    mse = plan.mse_for_psnr(47.5, 3.0)
    assert math.isclose(plan.psnr_from_sse(mse * 1000, 1000, 3.0), 47.5)
