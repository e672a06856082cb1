"""What the graph layer knows of each codec, and the per-block calls into the kernels.

For every codec: the dtypes and dimensionalities its kernel takes, how blocks must be cut for
it, which ``compress()`` arguments it takes and how a global target becomes a block's kernel
arguments. The bytes themselves are made and read by ``chunkpress.kernels`` only; lossless
chains (``"floatpred+zstd"``) add a general-purpose codec from imagecodecs after the predictor.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import NamedTuple

import google_crc32c
import imagecodecs
import numpy as np

from .. import kernels
from ..kernels import ChunkpressError, _isolate
from . import plan

FLOATS = tuple(np.dtype(t) for t in ("float32", "float64"))
INTEGERS = tuple(np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32",
                                       "int64", "uint64"))
ANY_NDIM = tuple(range(1, 33))

#: general-purpose lossless codecs a chain may end with (imagecodecs, every one available here)
BYTE_CODECS = ("zstd", "zlib", "deflate", "lz4", "lzma", "brotli", "bz2")
#: SPERR compresses a 3-D block in chunks of this shape (imagecodecs' and SPERR's default)
SPERR_CHUNK = 256


class ChainError(ChunkpressError):
    """A lossless chain (e.g. floatpred+zstd) failed, or its stored bytes are damaged."""


class BatchError(ChunkpressError):
    """A batch block (an array with more dimensions than its codec takes) is damaged."""


class AutoError(ChunkpressError):
    """A block of codec="auto" is none of the streams auto writes, or its bytes are damaged."""


@dataclass(frozen=True)
class Codec:
    """One codec as the graph layer sees it."""

    name: str
    dtypes: tuple
    ndims: tuple  # the dimensionalities the kernel takes; more are a batch
    targets: tuple  # the compress() arguments it takes
    align: int = 1  # every block extent on the codec's axes a multiple of this
    prefer: int = 1  # what chunks="auto" aligns to (at least ``align``)
    lossless: bool = False
    available: bool = True

    def block_align(self, ndim: int, *, preferred: bool = False) -> tuple:
        """Return the alignment of each axis of an ``ndim`` array (1 on batch axes)."""
        batch, codec_ndim = plan.codec_axes(ndim, self.ndims)
        step = self.prefer if preferred else self.align
        if self.name == "sperr" and codec_ndim != 3:
            step = self.align  # SPERR chunks 3-D volumes only
        return (1,) * batch + (step,) * codec_ndim


CODECS = {
    "zfp": Codec("zfp", FLOATS, (1, 2, 3, 4), ("tolerance", "rate", "precision"), 4, 4,
                 available=kernels.ZFP.available),
    "sperr": Codec("sperr", FLOATS, (2, 3), ("tolerance", "rate", "mode", "quality"),
                   1, SPERR_CHUNK, available=kernels.SPERR.available),
    "sz3": Codec("sz3", FLOATS, (1, 2, 3, 4), ("tolerance",), available=kernels.SZ3.available),
    "lerc": Codec("lerc", tuple(kernels.lerc.DTYPES), (1, 2, 3), ("tolerance",),
                  available=kernels.LERC.available),
    "szip": Codec("szip", tuple(kernels.szip.DTYPES), ANY_NDIM, (), lossless=True,
                  available=kernels.SZIP.available),
    "pcodec": Codec("pcodec", tuple(kernels.pcodec.DTYPES), ANY_NDIM, ("level",), lossless=True,
                    available=kernels.PCODEC.available),
    "jetraw": Codec("jetraw", INTEGERS, (2, 3), (), lossless=True,
                    available=kernels.JETRAW.available),
    # chosen per block among the others (chunkpress.auto); aligned for ZFP, which it may choose
    "auto": Codec("auto", FLOATS + INTEGERS, ANY_NDIM, ("tolerance",), 4, 4),
}
#: codec="auto" chooses per block where that wins, "auto-array" one codec for the whole array
AUTO_NAMES = ("auto", "auto-array")
#: the one lossless chain auto may choose: its streams do not say which chain wrote them
AUTO_CHAINS = {"f": "floatpred+zstd", "i": "zstd", "u": "zstd"}
_FLOATPRED_DTYPES = tuple(np.dtype(t) for t in ("float16", "float32", "float64"))


def get_codec(name) -> Codec:
    """Return the Codec called ``name``: a kernel codec or a lossless chain like floatpred+zstd."""
    if not isinstance(name, str):
        raise TypeError(f"codec must be a string such as 'zfp', got {type(name).__name__}")
    key = name.strip().lower()
    if key in AUTO_NAMES:
        return CODECS["auto"]
    if key in CODECS:
        codec = CODECS[key]
        if not codec.available:
            # the kernel says why (JetrawError names the reason); a ValueError, raised now
            try:
                getattr(kernels, f"{key}_encode")(np.zeros((4, 4), np.uint16))
            except ChunkpressError as exc:
                raise ValueError(str(exc)) from None
            raise ValueError(f"{key}: not available in this build")
        return codec
    parts = key.split("+")
    if len(parts) == 2 and parts[0] == "floatpred" and parts[1] in BYTE_CODECS:
        return Codec(key, _FLOATPRED_DTYPES, ANY_NDIM, ("level",), lossless=True)
    if len(parts) == 1 and key in BYTE_CODECS:
        return Codec(key, FLOATS + INTEGERS + (np.dtype("float16"), np.dtype("bool")),
                     ANY_NDIM, ("level",), lossless=True)
    names = ", ".join(sorted(k for k, c in CODECS.items() if c.available))
    chains = ", ".join(f"floatpred+{b}" for b in BYTE_CODECS)
    raise ValueError(f"codec must be one of {names}, auto-array, {chains} (or one of "
                     f"{', '.join(BYTE_CODECS)} alone), got {name!r}")


def check_input(codec: Codec, dtype, ndim: int) -> None:
    """Raise ValueError unless the codec takes ``dtype`` arrays of ``ndim`` dimensions."""
    dtype = np.dtype(dtype)
    if dtype.newbyteorder("=") not in codec.dtypes:
        allowed = ", ".join(str(d) for d in codec.dtypes)
        raise ValueError(f"{codec.name}: dtype must be one of {allowed}, got {dtype}")
    try:
        plan.codec_axes(ndim, codec.ndims)
    except ValueError as exc:
        raise ValueError(f"{codec.name}: {exc}") from None


def normalize_targets(codec: Codec, **given) -> dict:
    """Return the codec's global target from the ``compress()`` arguments, or raise ValueError.

    Only the arguments the codec takes may be given; the kernels check their values, on a
    small block, when ``compress`` is called (see :func:`probe`).
    """
    given = {k: v for k, v in given.items() if v is not None}
    extra = sorted(set(given) - set(codec.targets))
    if extra:
        takes = ", ".join(codec.targets) or "no parameters"
        raise ValueError(f"{codec.name}: takes {takes}; {', '.join(extra)} "
                         f"{'is' if len(extra) == 1 else 'are'} not for this codec")
    if codec.name == "zfp" and len(given) != 1:
        raise ValueError("zfp: give exactly one of tolerance (max absolute error), rate (bits "
                         f"per value) or precision (bit planes), got {', '.join(given) or 'none'}")
    if codec.name == "sperr":
        return _sperr_target(given)
    if codec.name == "sz3" and "tolerance" not in given:
        raise ValueError("sz3: tolerance (max absolute error, > 0) is required")
    return given


def _sperr_target(given: dict) -> dict:
    if "rate" in given:
        if set(given) - {"rate"} - ({"mode"} if given.get("mode") == "rate" else set()):
            raise ValueError("sperr: rate= is mode='rate' with quality=rate; give one or the other")
        return {"mode": "rate", "quality": given["rate"]}
    mode = given.get("mode")
    if mode is None:
        if "tolerance" not in given or "quality" in given:
            raise ValueError("sperr: give tolerance (max absolute error), rate (bits per value) "
                             "or mode ('rate', 'psnr', 'pwe') with quality")
        return {"mode": "pwe", "tolerance": given["tolerance"]}
    mode = getattr(mode, "value", mode)
    if mode not in ("rate", "psnr", "pwe"):
        raise ValueError(f"sperr: mode must be one of 'rate', 'psnr', 'pwe', got {mode!r}")
    if mode == "pwe":
        tolerance = given.get("tolerance", given.get("quality"))
        if tolerance is None or ("tolerance" in given and "quality" in given):
            raise ValueError("sperr: mode 'pwe' takes tolerance (or quality), exactly one of them")
        return {"mode": "pwe", "tolerance": tolerance}
    if "tolerance" in given:
        raise ValueError(f"sperr: tolerance is for mode 'pwe', not {mode!r}; give quality")
    if "quality" not in given:
        what = "bits per value" if mode == "rate" else "the PSNR in dB of the whole array"
        raise ValueError(f"sperr: mode {mode!r} needs quality ({what})")
    return {"mode": mode, "quality": given["quality"]}


def needs_range(codec: Codec, target: dict) -> bool:
    """Return whether the global value range must be known before blocks are encoded."""
    return codec.name == "sperr" and target.get("mode") == "psnr"


def block_kwargs(codec: Codec, target: dict, block_range=None, global_range=None) -> dict:
    """Return a block's kernel arguments for the global ``target``."""
    if needs_range(codec, target):
        mode, quality = plan.block_psnr(float(target["quality"]), global_range, block_range)
        return {"mode": "psnr", "quality": quality} if mode == "psnr" else {"tolerance": quality}
    return dict(target)


def max_mse(codec: Codec, target: dict, global_range):
    """Return the mean squared error each block must keep, for a PSNR target; else None."""
    if not needs_range(codec, target) or not global_range > 0:
        return None
    return plan.mse_for_psnr(float(target["quality"]), global_range)


def bound(codec: Codec, target: dict):
    """Return the max absolute error every value keeps (0 for lossless), or None."""
    if codec.lossless:
        return 0.0
    tolerance = target.get("tolerance", 0.0 if codec.name in ("lerc", "auto") else None)
    return None if tolerance is None else float(tolerance)


# --- per block -----------------------------------------------------------------------------


class Encoded(NamedTuple):
    """One compressed block and what was measured of it (NaN / -1 where not verified)."""

    data: bytes
    shape: tuple  # of the block
    max_error: float = math.nan  # of the finite values
    sse: float = math.nan  # sum of squared errors of the finite values
    count: int = -1  # finite values
    lo: float = math.nan  # finite value range of the original block
    hi: float = math.nan
    corrected: int = -1  # values stored exactly beside the codec's stream


def encode(block: np.ndarray, codec: Codec, kwargs: dict, verify_bound=False,
           max_mse=None) -> Encoded:
    """Return the Encoded block; with ``verify_bound`` not False, decode and measure it too.

    ``verify_bound`` is the max absolute error to certify (0 for lossless), or None to measure
    without a bound. ``max_mse`` (SPERR's PSNR mode, measured blocks only) is the mean squared
    error the block must keep: a block SPERR leaves above it is encoded again, finer.

    codec="auto" takes ``kwargs`` with the chosen ``codec`` and its kernel arguments, or
    ``tolerance`` (and ``candidates``) alone, to choose here from samples of the block.
    """
    if codec.name == "auto":
        inner, kwargs = _auto_codec(block, kwargs)
        return encode(block, inner, kwargs, verify_bound, max_mse)
    batch, _ = plan.codec_axes(block.ndim, codec.ndims)
    for attempt in range(4):
        if batch:
            data = _encode_batch(block, codec, kwargs, batch)
        else:
            data = _encode_one(block, codec, kwargs)
        if verify_bound is False:
            return Encoded(data, block.shape)
        with _isolate.here():  # a stream just made here: no need of a decoding process
            decoded = decode(data, codec, block.shape, block.dtype)
        encoded = _measure(block, decoded, data, codec, verify_bound)
        if max_mse is None or encoded.count <= 0 or encoded.sse <= max_mse * encoded.count:
            return encoded
        kwargs = _finer(kwargs, encoded.sse / encoded.count, max_mse, attempt)
    return encoded


def _finer(kwargs: dict, mse: float, max_mse: float, attempt: int) -> dict:
    """Return SPERR arguments that should bring a block's error from ``mse`` to ``max_mse``."""
    if kwargs.get("mode") == "psnr" and attempt < 2:
        gap = 10.0 * math.log10(mse / max_mse)
        return {"mode": "psnr", "quality": kwargs["quality"] + gap + 0.5 * (attempt + 1)}
    # a point-wise bound of the target's root mean square error keeps it by construction
    return {"tolerance": math.sqrt(max_mse) * 0.999}


def decode(data, codec: Codec, shape, dtype) -> np.ndarray:
    """Return the block in ``data`` (an :func:`encode` stream) as an array of ``shape``."""
    shape = tuple(shape)
    if codec.name == "auto":
        codec = get_codec(identify(data, dtype))
    batch, _ = plan.codec_axes(len(shape), codec.ndims)
    if batch:
        return _decode_batch(data, codec, shape, dtype, batch)
    return _decode_one(data, codec, shape, dtype)


def _encode_one(block, codec: Codec, kwargs: dict) -> bytes:
    if codec.name in CODECS:
        return getattr(kernels, f"{codec.name}_encode")(block, **kwargs)
    return _chain_encode(block, codec.name, **kwargs)


def _decode_one(data, codec: Codec, shape, dtype) -> np.ndarray:
    if codec.name in CODECS:
        decoded = getattr(kernels, f"{codec.name}_decode")(data)
    else:
        decoded = _chain_decode(data, codec.name, shape, dtype)
    if decoded.shape != shape:
        raise _error(codec)(f"{codec.name}: a block of shape {shape} decodes to {decoded.shape}; "
                    "the stored bytes belong to another array")
    return decoded


def probe(codec: Codec, dtype, ndim: int, kwargs: dict) -> None:
    """Encode a tiny block with ``kwargs``, so that a bad parameter fails now, not on a worker."""
    _, codec_ndim = plan.codec_axes(ndim, codec.ndims)
    tiny = np.zeros((4,) * codec_ndim, dtype)
    try:
        _encode_one(tiny, codec, kwargs)
    except ChunkpressError as exc:  # a parameter the codec itself turns down
        raise ValueError(str(exc)) from exc


# --- measuring a block (verify=True) -------------------------------------------------------


def _measure(block, decoded, data, codec: Codec, limit) -> Encoded:
    original = np.asarray(block)
    if codec.lossless or (limit == 0 and original.dtype.kind != "f"):
        if not _same_bits(original, decoded):
            raise _error(codec)(f"{codec.name}: a lossless block does not decode to its "
                                "original values")
        lo, hi = _finite_range(original)
        count = original.size if original.dtype.kind != "f" else int(np.isfinite(original).sum())
        return Encoded(data, original.shape, 0.0, 0.0, count, lo, hi, 0)
    if original.dtype.kind == "f":
        finite = np.isfinite(original)
        if not _same_bits(original[~finite], decoded[~finite]):
            raise _error(codec)(f"{codec.name}: a block's NaN/Inf cells do not decode exactly")
        a = original[finite].astype(np.float64)
        b = decoded[finite].astype(np.float64)
    else:
        a = original.astype(np.float64).reshape(-1)
        b = decoded.astype(np.float64).reshape(-1)
    diff = np.abs(a - b)
    max_error = float(diff.max()) if diff.size else 0.0
    if limit is not None and not max_error <= limit:
        raise _error(codec)(
            f"{codec.name}: a block decodes with max error {max_error!r}, over the tolerance "
            f"{limit!r} the kernel certifies; please report this"
        )
    lo, hi = (float(a.min()), float(a.max())) if a.size else (math.inf, -math.inf)
    return Encoded(data, original.shape, max_error, float(np.dot(diff, diff)), int(a.size), lo, hi,
                   _corrected(data, codec))


def _same_bits(a, b) -> bool:
    if a.shape != b.shape or a.dtype.itemsize != b.dtype.itemsize:
        return False
    if a.dtype.kind not in "fc":
        return bool(np.array_equal(a, b))
    word = np.dtype(f"u{a.dtype.itemsize}") if a.dtype.itemsize in (1, 2, 4, 8) else None
    if word is None:
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(np.ascontiguousarray(a).view(word),
                               np.ascontiguousarray(b).view(word)))


def _finite_range(a) -> tuple:
    if a.size == 0:
        return math.inf, -math.inf
    if a.dtype.kind == "f":
        finite = a[np.isfinite(a)]
        if finite.size == 0:
            return math.inf, -math.inf
        return float(finite.min()), float(finite.max())
    return float(a.min()), float(a.max())


def _corrected(data, codec: Codec) -> int:
    """Return how many values the kernel stored exactly beside the codec's stream."""
    # the patch is the kernels' business; their frame says how many cells it holds
    from ..kernels import _frame

    counts = []
    for stream in batch_streams(data)[1] if _is_batch(data) else [data]:
        if not _frame.is_frame(stream):
            counts.append(0)
            continue
        frame = _frame.unpack(stream, codec.name, _error(codec))
        counts.append(0 if frame.patch is None else len(frame.patch.index))
    return int(sum(counts))


def _error(codec: Codec) -> type:
    """Return the error class of the codec (ZfpError, ...; ChainError for chains)."""
    if codec.name not in CODECS:
        return ChainError
    if codec.name == "auto":
        return AutoError
    return getattr(kernels, f"{codec.name.capitalize()}Error", ChunkpressError)


def block_range(block: np.ndarray) -> tuple:
    """Return the (min, max) of a block's finite values; (inf, -inf) when it has none."""
    return _finite_range(np.asarray(block))


# --- codec="auto": each block's stream names its codec ------------------------------------


def _auto_codec(block, kwargs: dict) -> tuple:
    """Return (the codec, its kernel arguments) of an auto block: given, or chosen here."""
    kwargs = dict(kwargs)
    name = kwargs.pop("codec", None)
    if name is None:
        from . import sample  # the samples and candidates of codec="auto"

        candidates = sample.candidates(block.dtype, block.ndim, kwargs.get("tolerance"),
                                       kwargs.get("candidates"))
        chosen = sample.choose_in_block(block, candidates)
        name, kwargs = chosen.name, chosen.kwargs
    if name not in CODECS and name != AUTO_CHAINS.get(np.dtype(block.dtype).kind):
        raise ValueError(f"auto: a block's codec must be a chunkpress codec or "
                         f"{AUTO_CHAINS.get(np.dtype(block.dtype).kind)}, got {name!r}")
    inner = get_codec(name)
    if inner.name == "auto":
        raise ValueError("auto: a block's codec must be a concrete codec, not auto")
    return inner, kwargs


def identify(data, dtype) -> str:
    """Return the codec that wrote a block's stream: a frame or the codec's own stream says it.

    Frames carry their codec; ZFP and LERC streams start with their magic; a lossless chain's
    stream ends with its trailer and CRC-32C (the chain is auto's for the dtype, see
    ``AUTO_CHAINS``); SPERR's stream, which has no magic, is what is left if its header adds
    up. A batch block is its streams' codec.
    """
    buf = memoryview(data).cast("B")
    if _is_batch(buf):
        streams = batch_streams(buf)[1]
        if not streams:
            raise AutoError("auto: an empty batch block does not say its codec")
        buf = streams[0]
    for name in ("zfp", "lerc", "sz3", "szip", "pcodec"):
        if getattr(kernels, f"{name}_check")(buf):
            return name
    chain = AUTO_CHAINS.get(np.dtype(dtype).kind)
    if chain is not None and _is_chain(buf):
        return chain
    if kernels.sperr_check(buf):
        return "sperr"
    raise AutoError("auto: a stored block is none of the streams codec='auto' writes (a "
                    "chunkpress frame, a ZFP, LERC or SPERR stream, a lossless chain); the "
                    "stored bytes are damaged or belong to another array")


def _is_chain(buf) -> bool:
    if len(buf) < 8 or bytes(buf[-4:]) != _CHAIN_TRAILER:
        return False
    return google_crc32c.value(bytes(buf[:-8])) == struct.unpack_from("<I", buf, len(buf) - 8)[0]


# --- lossless chains: optional floating-point predictor, then a general-purpose codec ----

_CHAIN_TRAILER = b"CPC\x01"


def _chain_encode(block, name: str, level=None) -> bytes:
    *pre, byte_codec = name.split("+")
    a = np.ascontiguousarray(block)
    if pre:
        a = kernels.floatpred_encode(a.reshape(a.shape or (1,)))
    try:
        stream = getattr(imagecodecs, f"{byte_codec}_encode")(a, level=level)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ChainError(f"{name}: {type(exc).__name__}: {exc}") from exc
    return bytes(stream) + struct.pack("<I", google_crc32c.value(bytes(stream))) + _CHAIN_TRAILER


def _chain_decode(data, name: str, shape, dtype) -> np.ndarray:
    *pre, byte_codec = name.split("+")
    buf = memoryview(data).cast("B")
    if len(buf) < 8 or bytes(buf[-4:]) != _CHAIN_TRAILER:
        raise ChainError(f"{name}: not a chunkpress {name} stream (no trailer)")
    stream = buf[:-8]
    if google_crc32c.value(bytes(stream)) != struct.unpack_from("<I", buf, len(buf) - 8)[0]:
        raise ChainError(f"{name}: checksum mismatch; the stored bytes are damaged")
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    try:
        raw = getattr(imagecodecs, f"{byte_codec}_decode")(stream, out=max(size, 1))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ChainError(f"{name}: {type(exc).__name__}: {exc}") from exc
    if len(raw) != size:
        raise ChainError(f"{name}: the stream holds {len(raw)} bytes, {size} expected")
    a = np.frombuffer(raw, dtype).reshape(shape or (1,))
    if pre:
        a = kernels.floatpred_decode(a)
    return a.reshape(shape).copy() if not a.flags.writeable else a.reshape(shape)


# --- batch blocks: arrays with more dimensions than the codec takes -----------------------
#
# magic b"\x89CPB", uint8 version 1, uint8 number of batch axes B, uint16 0, B uint64 extents,
# one uint64 length per stream, uint32 CRC-32C of all that; then the streams, C order. Each
# stream is the kernel's own, with its own checksum.

_BATCH_MAGIC = b"\x89CPB"


def _encode_batch(block, codec: Codec, kwargs: dict, batch: int) -> bytes:
    lead = block.shape[:batch]
    streams = [_encode_one(block[index], codec, kwargs) for index in np.ndindex(*lead)]
    head = (_BATCH_MAGIC + struct.pack("<BBH", 1, batch, 0) + struct.pack(f"<{batch}Q", *lead)
            + struct.pack(f"<{len(streams)}Q", *(len(s) for s in streams)))
    return b"".join([head, struct.pack("<I", google_crc32c.value(head)), *map(bytes, streams)])


def _is_batch(data) -> bool:
    return bytes(memoryview(data).cast("B")[:4]) == _BATCH_MAGIC


def batch_streams(data, lead=None) -> tuple[tuple, list]:
    """Return (the batch extents, the streams in C order) of a batch block, after its checks."""
    buf = memoryview(data).cast("B")
    if len(buf) < 12 or bytes(buf[:4]) != _BATCH_MAGIC:
        raise BatchError("batch block: not a chunkpress batch block (bad magic)")
    version, batch, _ = struct.unpack_from("<BBH", buf, 4)
    if version != 1 or batch > 32:
        raise BatchError(f"batch block: unknown version {version} or {batch} batch axes")
    if len(buf) < 8 + 8 * batch + 4:
        raise BatchError("batch block: truncated")
    extents = struct.unpack_from(f"<{batch}Q", buf, 8)
    count = math.prod(extents)
    end = 8 + 8 * batch + 8 * count
    if len(buf) < end + 4:
        raise BatchError("batch block: truncated")
    if google_crc32c.value(bytes(buf[:end])) != struct.unpack_from("<I", buf, end)[0]:
        raise BatchError("batch block: checksum mismatch; the stored bytes are damaged")
    if lead is not None and tuple(extents) != tuple(lead):
        raise BatchError(f"batch block: holds {extents} streams, {lead} expected")
    lengths = struct.unpack_from(f"<{count}Q", buf, 8 + 8 * batch)
    pos, streams = end + 4, []
    for length in lengths:
        streams.append(buf[pos:pos + length])
        pos += length
    if pos != len(buf):
        raise BatchError("batch block: lengths do not add up; the stored bytes are damaged")
    return tuple(extents), streams


def _decode_batch(data, codec: Codec, shape, dtype, batch: int) -> np.ndarray:
    lead = shape[:batch]
    out = np.empty(shape, dtype)
    for index, stream in zip(np.ndindex(*lead), batch_streams(data, lead)[1]):
        out[index] = _decode_one(stream, codec, shape[batch:], dtype)
    return out
