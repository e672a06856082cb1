"""The one-call API: compress any array block by block on dask, and decompress it lazily."""

from __future__ import annotations

import dask.array as da
import numpy as np

from . import auto
from .graph import build, codecs, pipeline
from .graph import information as _information
from .graph.compressed import CompressedArray

__all__ = ["compress", "decompress"]


def compress(data, codec="zfp", *, tolerance=None, rate=None, precision=None, mode=None,
             quality=None, level=None, chunks="auto", verify=False,
             rel_tolerance=None, keepbits=None, digits=None, method=None,
             information=None, **extra) -> CompressedArray:
    """Return the lazy compressed form of ``data``, one codec stream per block.

    ``data`` is a dask array, a numpy array, or anything ``dask.array.asarray`` takes. The
    blocks are encoded in parallel by whatever scheduler computes the result: the local
    threads by default, a ``distributed.Client`` unchanged.

    Targets hold for the whole array: ``tolerance`` bounds the error of every value, SPERR's
    ``mode="psnr"`` with ``quality`` dB is the PSNR of the whole array over its global value
    range, ``rate`` is bits per value overall. Per codec:

    - ``zfp``: exactly one of ``tolerance``, ``rate``, ``precision``. 1-4 dimensions.
    - ``sperr``: ``tolerance``; or ``rate``; or ``mode`` 'rate' | 'psnr' | 'pwe' with
      ``quality``. 2-3 dimensions. PSNR mode reads the input twice: once for the value range.
    - ``sz3``: ``tolerance``. ``lerc``: ``tolerance`` (0 or None: lossless).
    - ``szip``, ``pcodec`` (``level``), ``"floatpred+zstd"`` and the other lossless chains
      (``level`` of the final codec): lossless.
    - ``"bitround"`` (``"bitround+zstd"``), ``"bitround+pcodec"``: ``keepbits`` mantissa bits
      kept, rounded to nearest (a relative bound of 2**-(keepbits+1)); or ``information``
      (e.g. 0.99): the keepbits holding that share of the array's real information, chosen
      once from the data (see ``chunkpress.graph.information``). NaN and +-Inf pass unchanged.
    - ``"quantize"`` (``"quantize+zstd"``), ``"quantize+pcodec"``: netCDF-4's quantization,
      ``digits`` and ``method`` ("bitgroom", "granularbr" or "bitround"); NaN/Inf kept.
    - ``"auto"``, ``"auto-array"``: ``tolerance`` (none or 0: lossless) and/or
      ``rel_tolerance``; the codec is chosen from samples of the data, per block where that
      wins (one for the array under a relative bound; see ``chunkpress.auto``).
    - any other parameter a registered codec takes (its descriptor's ``params``), by name.

    ``rel_tolerance=r`` (float arrays; ZFP, SZ3, SPERR, LERC, bitround) bounds each value's
    error by ``r`` times its magnitude: ``|x - y| <= r * |x|``, zeros stay zeros, signs are
    kept, whatever the magnitudes (subnormals to the largest floats); with ``tolerance`` too,
    both hold. The lossy array codecs code the log of the magnitudes, bitround keeps the
    fewest bits within ``r`` (see ``chunkpress.kernels.relative``).

    An array with more dimensions than its codec takes is compressed as a batch over its
    leading axes (each block holds one codec stream per leading index).

    ``chunks="auto"`` cuts blocks of tens of MiB aligned to the codec (multiples of 4 for
    ZFP, so that any chunking gives exactly the values of whole-array compression), at least
    a few per worker; aligned dask chunks of a sensible size are kept as they are, others are
    rechunked once. Explicit ``chunks`` (anything dask's ``normalize_chunks`` takes) must be
    aligned, or a ValueError says how to fix them.

    ``verify=True`` decodes every block in the task that encodes it and measures it: the
    figures ``max_error``, ``psnr`` and ``corrected`` (values the codec left outside the
    tolerance, which the kernels store exactly) follow, and a block over its bound is an error.
    With SPERR's PSNR mode, a block SPERR leaves short of its share of the target is encoded
    again, finer, so that the measured PSNR of the whole array is at least ``quality``.

    A numpy array is not copied: leave it unchanged until the result has been computed.
    Bad arguments raise ValueError/TypeError here, before any task runs.
    """
    if isinstance(codec, str) and codec.strip().lower() in codecs.AUTO_NAMES:
        codecs.normalize_targets(codecs.AUTO, dict(keepbits=keepbits, digits=digits,
                                                   method=method, information=information,
                                                   **codecs.codec_params("compress", extra)))
        return auto.compress(data, codec, tolerance=tolerance, rate=rate, precision=precision,
                             mode=mode, quality=quality, level=level, chunks=chunks,
                             verify=verify, rel_tolerance=rel_tolerance)
    spec = codecs.get_codec(codec)
    if not isinstance(verify, (bool, np.bool_)):
        raise TypeError(f"verify must be True or False, got {verify!r}")
    x = pipeline.as_array(data)
    codecs.check_input(spec, x.dtype, x.ndim)
    given = dict(tolerance=tolerance, rate=rate, precision=precision, mode=mode,
                 quality=quality, level=level, rel_tolerance=rel_tolerance, keepbits=keepbits,
                 digits=digits, method=method, **codecs.codec_params("compress", extra))
    share = _information.check(spec, information, given)
    if share is not None:  # the rest checked with a keepbits the data will choose
        given[_information.PARAMETER] = _information.placeholder(x.dtype)
    target = codecs.normalize_targets(spec, given, x.dtype)
    # a bad value for the codec fails here, on a tiny block, not on a worker
    codecs.probe(spec, x.dtype, x.ndim, codecs.block_kwargs(spec, target, 1.0, 1.0))
    if share is not None:  # one pass over the data: the keepbits of every block
        target[_information.PARAMETER] = _information.keepbits(
            pipeline.blocked(x, spec, chunks), share)
    compressed = pipeline.compress_array(x, spec, target, chunks, verify)
    return compressed.with_attributes(_information.attributes(spec, target, share))


def decompress(compressed: CompressedArray) -> da.Array:
    """Return the lazy dask array that ``compressed`` decodes to: same shape, dtype, chunks."""
    if not isinstance(compressed, CompressedArray):
        raise TypeError(f"decompress takes a CompressedArray (from compress), "
                        f"got {type(compressed).__name__}")
    return build.decode_array(compressed.blocks, compressed.spec, compressed.dtype,
                              compressed.name)

