"""Pointwise-relative bounds: ``|x - y| <= r * |x|`` for every finite value, through any lossy
array codec of the registry (ZFP, SZ3, SPERR, LERC: see :func:`takes`).

The codec never sees the values. It codes ``g``, the base-2 logarithm of their magnitudes,
within an absolute tolerance just under ``log2(1 + r)``: a magnitude decoded within that of
its logarithm is within ``r`` of it, relatively. Signs and zeros are stored exactly beside the
codec's stream (zeros stay zeros, -0.0 included), NaN/±Inf in the frame's mask as always,
and whatever float rounding still leaves outside the bound (subnormals, the largest floats,
a tolerance near the dtype's precision) in the frame's patch, found by decoding the block.

With an absolute ``tolerance`` t too, both hold: above the crossover ``c = t / r``, ``g``
goes on as the straight line tangent to the logarithm there, on which the same tolerance of
``g`` is within t of the value; the patch is checked against ``min(t, r|x|)``.

The stream is a chunkpress frame of the codec (``_frame.py``) with flag 8, *relative*::

    frame parameters: uint8 transform (1: log2 of magnitudes), 3 bytes 0,
                      float64 rel_tolerance, float64 tolerance (0: none),
                      float64 crossover c (+inf: none)
    codec stream:     uint64 S + zstd(sign bits), uint64 Z + zstd(bits of the finite cells
                      g does not code: zeros, and values the patch holds whole), a bit per
                      cell, least significant first; then the codec's own stream of g
                      (float32 or float64, the block's shape; empty when it codes no cell)
    mask, patch:      as in every frame: the non-finite cells, the cells stored exactly

The codec's decoder reads such a frame itself (``_lossy.decode`` calls :func:`invert`).

A chain whose first filter bounds the error relative to each value by one parameter
(``bitround``: keepbits k keeps 2**-(k+1), its registry ``relative``) takes ``rel_tolerance``
too: each block gets the least k within the bound (and, with ``tolerance``, within it at the
block's largest magnitude), and the cells it still leaves outside (subnormals, where bit
rounding's error is absolute) go on unrounded: the filter decodes as the identity, so the
chain's stream is what it always is.
"""

from __future__ import annotations

import math
import struct

import imagecodecs
import numpy as np

from . import _frame, _isolate, registry
from ._numba import kernel
from ._common import (ChunkpressError, as_bytes, as_native, check_tolerance, is_real,
                      write_bytes_out)
from .registry import Param

__all__ = ["PARAM", "RelativeError", "takes", "takes_chain", "codecs", "check_rel_tolerance",
           "check_target", "max_error", "encode_chain", "relative_encode", "relative_decode",
           "relative_check", "invert"]

TRANSFORM_LOG2 = 1
_PARAMS = struct.Struct("<B3xddd")
_LN2 = math.log(2.0)
#: how many units in the last place of a value a decoder's exp2 may differ from this one's
#: (numpy's SIMD exp2 is not correctly rounded): a cell is kept only with that much to spare
_ULPS = 8
#: above this many crossovers, a value is stored exactly (its tolerance: t < r |x| / _FAR)
_FAR = 2.0**20
#: how much more than the bound a codec that left most of it unused is asked for, at most
_WIDEST = 8.0
#: below this magnitude r |x| is subnormal or near it, where float64 keeps too few bits to
#: hold it: bounds are checked on the values times _UP, a power of two (exact, and normal)
_SMALL = 2.0**-900
_UP = 2.0**200


class RelativeError(ChunkpressError):
    """A relative-bound stream is damaged (the codec's own error is raised where it has one)."""


def check_rel_tolerance(rel_tolerance, codec: str = "") -> float:
    """Return ``rel_tolerance`` as a float after checking it is a finite number in (0, 1)."""
    what = f"{codec}: rel_tolerance" if codec else "rel_tolerance"
    if not is_real(rel_tolerance):
        raise TypeError(f"{what} must be a number in (0, 1) (the max error relative to each "
                        f"value's magnitude), got {rel_tolerance!r}")
    value = float(rel_tolerance)
    if not 0 < value < 1:  # NaN fails this too
        raise ValueError(f"{what} must be finite, > 0 and < 1, got {rel_tolerance!r}")
    return value


def _check_param(rel_tolerance, dtype=None):
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise ValueError(f"rel_tolerance bounds float values; the array is {np.dtype(dtype)}")
    return check_rel_tolerance(rel_tolerance)


#: the parameter every codec that :func:`takes` it has besides its own
PARAM = Param("rel_tolerance", _check_param,
              "max error relative to each value's magnitude, in (0, 1); zeros kept")


def takes(descriptor) -> bool:
    """Whether an array codec takes ``rel_tolerance`` through the transform: a lossy array
    codec of float dtypes, bounded by ``tolerance``, that frames its streams."""
    return (descriptor.kind == "array" and not descriptor.lossless
            and descriptor.frame_id is not None and "tolerance" in descriptor.param_names
            and any(d.kind == "f" for d in descriptor.dtypes))


def takes_chain(chain) -> bool:
    """Whether a codec as ``compress`` names it (a ``chains.Chain``) takes ``rel_tolerance``:
    a lossy array codec that :func:`takes` it, or a chain whose first filter declares its
    relative bound (``Descriptor.relative``) as a function of its one parameter (bit
    rounding's keepbits), the rest lossless."""
    if not chain.filters:
        return takes(chain.terminal)
    return _filter_takes(chain.filters[0]) and all(p.lossless for p in chain.parts[1:])


def _filter_takes(d) -> bool:
    return d.kind == "filter" and d.relative is not None and len(d.params) == 1


def max_error(target: dict):
    """Return the max absolute error a target with ``rel_tolerance`` keeps: its ``tolerance``,
    or None (the bound is relative only)."""
    tolerance = target.get("tolerance")
    return None if tolerance is None else float(tolerance)


def codecs() -> tuple:
    """Return the names of the codecs that take ``rel_tolerance`` (and are available): the
    lossy array codecs, and the filters that take it named alone (``bitround``)."""
    return tuple(d.name for d in registry.descriptors() if d.available and (
        takes(d) or (_filter_takes(d) and d.terminal)))


def check_target(chain, given: dict, dtype=None) -> dict:
    """Return the global target of a codec given ``rel_tolerance`` (and maybe ``tolerance``).

    ``chain`` is a ``chains.Chain`` that :func:`takes_chain` it. A chain's filter parameter
    (keepbits) is chosen from the bound, per block: it is not given too.
    """
    name = chain.name
    check_rel_tolerance(given["rel_tolerance"], name)
    if not takes_chain(chain):
        raise ValueError(f"{name}: does not take rel_tolerance; the codecs that do: "
                         f"{', '.join(codecs())}")
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise ValueError(f"{name}: rel_tolerance bounds float values; the array is "
                         f"{np.dtype(dtype)}")
    rest = {k: v for k, v in given.items() if k not in ("rel_tolerance", "tolerance")}
    target = {"rel_tolerance": given["rel_tolerance"]}
    if not chain.filters:
        if rest:
            raise ValueError(f"{name}: rel_tolerance goes with tolerance alone (then both "
                             f"hold); {', '.join(sorted(rest))} "
                             f"{'is' if len(rest) == 1 else 'are'} not for it")
        if "tolerance" in given:
            own = {p.name: p for p in chain.terminal.params}["tolerance"]
            own.check(given["tolerance"], dtype)
            target["tolerance"] = given["tolerance"]
        return target
    chosen = chain.filters[0].params[0].name
    if chosen in rest:
        raise ValueError(f"{name}: {chosen} is chosen from rel_tolerance (per block); give "
                         f"one of {chosen} and rel_tolerance")
    if "tolerance" in given:
        check_tolerance(name, given["tolerance"])
        target["tolerance"] = given["tolerance"]
    return {**target, **_rest(chain).check_target(rest, dtype)}


def _rest(chain):
    """The chain after its first filter: what codes that filter's output (a Chain as well)."""
    return type(chain)(chain.name, chain.filters[1:], chain.terminal)


def encode_chain(chain, block, kwargs: dict):
    """Return the stream of one block of a codec given ``rel_tolerance`` (``Chain.encode``)."""
    if not chain.filters:
        return relative_encode(block, chain.terminal, **kwargs)
    r = check_rel_tolerance(kwargs["rel_tolerance"], chain.name)
    t = kwargs.get("tolerance")
    t = None if t is None else check_tolerance(chain.name, t)
    x = np.ascontiguousarray(block)
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    first = chain.filters[0]
    flat = x.reshape(-1)
    finite = np.isfinite(flat)
    amax = float(np.max(np.abs(flat[finite]), initial=0.0))
    y = first.encode(x.reshape(x.shape or (1,)), **_filter_params(first, r, t, amax, x.dtype))
    y = np.array(y).reshape(-1)  # a copy: the filter's output may be read-only
    # what the filter left outside the bound (bit rounding's subnormals, whose error is
    # absolute) goes to the rest of the chain exactly: the filter decodes as the identity
    outside = finite & ~_within(flat, y, r, t)
    y[outside] = flat[outside]
    others = {k: v for k, v in kwargs.items() if k not in ("rel_tolerance", "tolerance")}
    return _rest(chain).encode(y.reshape(x.shape), **others)


def _filter_params(d, r, t, amax, dtype) -> dict:
    """The least precise value of a filter's one (integer) parameter whose relative bound is
    within ``r`` and, times the block's largest magnitude, within ``t``; else the most precise."""
    param = d.params[0]
    best = None
    for value in range(0, 65):  # the bound falls as the parameter grows (keepbits)
        try:
            value = param.check(value, dtype)
        except (TypeError, ValueError):
            if best is not None:
                break
            continue
        best = value
        bound = d.relative({param.name: value})
        if bound is not None and bound <= r and (t is None or bound * amax <= t):
            break
    return {param.name: best}


def _within(x, y, r, t):
    """Whether each decoded value is within the bound (float64 arithmetic; NaN: False)."""
    with np.errstate(all="ignore"):
        a = x.astype(np.float64)
        b = y.astype(np.float64)
        limit = np.abs(a)
        # r |x| rounds among subnormals, up to a factor 2 off: compare those scaled (exactly)
        small = limit < _SMALL
        scaled = bool(small.any())
        if scaled:
            a[small] *= _UP
            b[small] *= _UP
            limit[small] *= _UP
        error = np.abs(a - b)
        limit *= r
        if t is not None:
            np.minimum(limit, np.where(small, t * _UP, t) if scaled else t, out=limit)
        return error <= limit


def _codec(codec):
    if isinstance(codec, registry.Descriptor):
        d = codec
    else:
        if not isinstance(codec, str):
            raise TypeError(f"codec must be a codec name such as 'zfp', got {codec!r}")
        try:
            d = registry.get(codec.strip().lower())
        except KeyError:
            d = None
    if d is None or not takes(d):
        raise ValueError(f"codec must be one of {', '.join(codecs())} for rel_tolerance, "
                         f"got {codec!r}")
    if not d.available:
        raise ValueError(d.unavailable or f"{d.name}: not available in this build")
    return d


# --- encode ---------------------------------------------------------------------------------


def relative_encode(data, codec, *, rel_tolerance, tolerance=None, out=None):
    """Return the stream of ``data`` (float32/64) through ``codec`` with ``|x - y| <= r|x|``
    on every finite value (and ``|x - y| <= tolerance`` where that is given too)."""
    d = _codec(codec)
    r = check_rel_tolerance(rel_tolerance, d.name)
    t = None
    if tolerance is not None:
        t = {p.name: p for p in d.params}["tolerance"].check(tolerance, None)
    floats = tuple(t for t in d.dtypes if t.kind == "f")
    a = as_native(data, d.name, dtypes=floats, ndims=d.ndims, zero_d=True)
    if t == 0 or a.size == 0:  # exact (LERC's tolerance 0), or nothing to bound
        return write_bytes_out(d.encode(a, tolerance=0.0 if t == 0 else 1.0), out, d.name)
    block = a.reshape((1,) * d.ndims[0]) if a.ndim == 0 else a
    x = block.reshape(-1)
    with np.errstate(all="ignore"):
        magnitude = np.abs(x).astype(np.float64)
        finite = np.isfinite(magnitude)
        live = finite & (magnitude != 0)
        crossover = math.inf if t is None else t / r
        if math.isfinite(crossover):
            # far up the line, t is a sliver of the value (the float's own spacing, soon):
            # such values go in the patch as they are rather than stretch g over decades
            live &= ~(magnitude > crossover * _FAR)
        g = _forward(magnitude, live, crossover)
    negative = np.signbit(x) & finite
    mask = None
    if not finite.all():
        mask = _frame.Mask(np.packbits(~finite, bitorder="little"), x[~finite])
    sections = b"".join(_section(np.packbits(bits, bitorder="little"))
                        for bits in (negative, finite & ~live))
    params = _PARAMS.pack(TRANSFORM_LOG2, r, 0.0 if t is None else t, crossover)

    def frame(inner, decoded) -> bytearray:
        """The block's frame around the codec's stream of g, with the cells to patch."""
        if decoded is None:
            y = np.where(negative, -0.0, 0.0).astype(a.dtype)
        else:
            y = _values(decoded.reshape(-1), crossover, live, negative, a.dtype)
        writer = _frame.Writer(d.name, a.dtype, a.shape, params, 0)
        writer.put_payload(sections + bytes(inner))
        return writer.finish(mask, _patch(x, y, finite, crossover, r, t), relative=True)

    if not live.any():
        stream = frame(b"", None)
    else:
        tau, g_dtype = _inner_tolerance(r, a.dtype, g, live)
        # a constant where g codes nothing (zeros, NaN): measured, it costs the codecs less
        # than a smooth guess on fields with land and zero crossings
        g = np.where(live, g, np.mean(g[live])).astype(g_dtype).reshape(block.shape)
        inner, decoded = _coded(d, g, tau)
        stream = frame(inner, decoded)
        used = float(np.max(np.abs(decoded.reshape(-1)[live].astype(np.float64) -
                                   g.reshape(-1)[live])))
        if used < tau / 3:
            # the codec left most of the bound unused (ZFP keeps about a fifth of it): asked
            # for more, it leaves a few cells outside, which the patch holds; the smaller wins
            wider = frame(*_coded(d, g, tau * min(_WIDEST, 0.8 * tau / used if used else
                                                  _WIDEST)))
            stream = wider if len(wider) < len(stream) else stream
    if len(stream) > a.nbytes:
        # values the bound leaves no room to code (an absolute tolerance below their float
        # spacing, noise): the block's own values, exactly, take less
        writer = _frame.Writer(d.name, a.dtype, a.shape, b"", 0)
        writer.put_payload(_frame.zstd(a))
        stored = writer.finish(stored=True)
        stream = stored if len(stored) < len(stream) else stream
    return write_bytes_out(stream, out, d.name)


def _coded(d, g, tau) -> tuple:
    """(The codec's stream of g within ``tau``, what it decodes to)."""
    inner = d.encode(g, tolerance=tau)
    with _isolate.here():  # a stream just made here
        return inner, d.decode(inner)


def _forward(magnitude, live, crossover):
    """g of each live magnitude (NaN elsewhere): log2, the tangent line above ``crossover``."""
    g = np.full(magnitude.shape, np.nan)
    np.log2(magnitude, out=g, where=live)
    if math.isfinite(crossover):
        above = live & (magnitude > crossover)
        if above.any():
            g[above] = math.log2(crossover) + (magnitude[above] - crossover) / (crossover * _LN2)
    return g


def _inner_tolerance(r, dtype, g, live):
    """Return (the codec's tolerance on g, g's dtype): float32 for a float32 block where its
    rounding of g costs little of the bound."""
    full = math.log1p(r) / _LN2
    # float64 rounding of log2/exp2, and the final rounding to the block's dtype
    budget = full - 2.0**-40 - _ULPS * float(np.finfo(dtype).eps) / _LN2
    if dtype == np.float32:
        top = float(np.max(np.abs(g[live])))
        rounding = 0.5 * float(np.spacing(np.float32(top))) if np.isfinite(top) else math.inf
        if budget - rounding >= 0.5 * full:
            return budget - rounding, np.dtype(np.float32)
    return max(budget, 0.5 * full), np.dtype(np.float64)


def _section(array) -> bytes:
    packed = _frame.zstd(array)
    return struct.pack("<Q", len(packed)) + packed


def _values(g, crossover, live, negative, dtype):
    """The values a decoded g stands for: magnitudes, zeros where not live, signs."""
    g = np.ascontiguousarray(g, g.dtype if g.dtype.char in "fd" else np.float64).reshape(-1)
    out = np.empty(g.size, dtype)
    start = math.log2(crossover) if math.isfinite(crossover) else math.inf
    _VALUES[g.dtype.char + out.dtype.char](g, live.view(np.uint8), negative.view(np.uint8),
                                           start, crossover, crossover * _LN2, out)
    return out


def _values_loop(g, live, negative, start, crossover, slope, out):
    """out[i]: 2**g[i], or above ``start`` the line ``crossover + (g - start) * slope``; 0
    where not live; negated where negative (zeros too)."""
    for i in range(out.size):
        m = 0.0
        if live[i]:
            v = np.float64(g[i])
            m = crossover + (v - start) * slope if v > start else np.exp2(v)
        out[i] = -m if negative[i] else m


def _outside_loop(x, y, finite, r, t, crossover, spare, out):
    """out[i]: 1 where finite x[i] decoded as y[i] is outside min(r |x|, t), less ``spare``
    |x| at or below the crossover (float64 arithmetic)."""
    for i in range(x.size):
        outside = 0
        if finite[i]:
            a = np.float64(x[i])
            b = np.float64(y[i])
            below = abs(a) <= crossover
            bound = t
            if abs(a) < _SMALL:  # r |x| would round among subnormals: scaled, exactly
                a *= _UP
                b *= _UP
                bound = t * _UP
            m = abs(a)
            limit = r * m
            if bound < limit:
                limit = bound
            if below:
                limit -= spare * m
            if not abs(a - b) <= limit:
                outside = 1
        out[i] = outside


_U8 = "Array(uint8, 1, 'C', readonly=True)"
#: by the dtype characters of g and of the values ("fd": float32 g, float64 values)
_VALUES = {
    np.dtype(g).char + np.dtype(o).char: kernel(
        f"void(Array({g}, 1, 'C', readonly=True), {_U8}, {_U8}, float64, float64, float64, "
        f"{o}[::1])")(_values_loop)
    for g in ("float32", "float64") for o in ("float32", "float64")}
_OUTSIDE = {
    np.dtype(t).char: kernel(f"void(Array({t}, 1, 'C', readonly=True), Array({t}, 1, 'C', "
                             f"readonly=True), {_U8}, float64, float64, float64, float64, "
                             "uint8[::1])")(_outside_loop)
    for t in ("float32", "float64")}


def _patch(x, y, finite, crossover, r, t):
    """The finite cells whose decoded value is outside the bound: on the logarithm's side
    with some to spare (another machine's exp2 may round otherwise; the line above the
    crossover is plain arithmetic, the same everywhere)."""
    outside = np.empty(x.size, np.uint8)
    _OUTSIDE[x.dtype.char](x, y, finite.view(np.uint8), r, math.inf if t is None else t,
                           crossover, _ULPS * float(np.finfo(x.dtype).eps), outside)
    index = np.flatnonzero(outside)
    return _frame.Patch(index.astype(np.int64), x[index]) if index.size else None


# --- decode ---------------------------------------------------------------------------------


def invert(frame, shape, decode_inner, codec: str, error: type) -> np.ndarray:
    """Return the block of a relative frame before its mask and patch are applied.

    ``decode_inner(stream)`` decodes the codec's stream of g (``_lossy.decode`` passes the
    codec's own decoder).
    """
    params = bytes(frame.params)
    if len(params) != _PARAMS.size:
        raise error(f"{codec}: corrupt relative frame (parameters of {len(params)} bytes)")
    transform, r, t, crossover = _PARAMS.unpack(params)
    if frame.dtype.kind != "f" or transform != TRANSFORM_LOG2 or not 0 < r < 1 or (
            not t >= 0 or not crossover > 0):
        raise error(f"{codec}: corrupt relative frame parameters, or a transform this version "
                    f"does not know ({transform})")
    size = math.prod(shape)
    buf = memoryview(frame.payload).cast("B")
    pos, bits = 0, []
    for _ in range(2):
        if pos + 8 > len(buf):
            raise error(f"{codec}: relative frame truncated")
        (length,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        if length > len(buf) - pos:
            raise error(f"{codec}: relative frame section runs past the end")
        raw = _bits(buf[pos:pos + length], (size + 7) // 8, codec, error)
        bits.append(np.unpackbits(np.frombuffer(raw, np.uint8), count=size,
                                  bitorder="little").view(bool))
        pos += length
    negative, zero = bits
    inner = buf[pos:]
    if len(inner) == 0:
        live = np.zeros(size, bool)
        g = np.zeros(size)
    else:
        if _frame.is_frame(inner) and len(inner) > 6 and inner[6] & _frame.FLAG_RELATIVE:
            raise error(f"{codec}: corrupt relative frame (a relative stream inside)")
        g = decode_inner(inner)
        if g.dtype.kind != "f" or g.size != size:
            raise error(f"{codec}: the relative frame's stream decodes to {g.shape} {g.dtype}, "
                        f"not {size} floats; the stream is corrupt")
        live = ~zero
    y = _values(g.reshape(-1), crossover, live, negative, frame.dtype.newbyteorder("="))
    return y.reshape(shape)


def _bits(section, nbytes: int, codec: str, error: type) -> bytes:
    """The bytes of a zstd section that must hold exactly ``nbytes``."""
    try:
        raw = imagecodecs.zstd_decode(section, out=max(nbytes, 1))
    except imagecodecs.ZstdError as exc:
        raise error(f"{codec}: corrupt relative frame section: {exc}") from None
    if len(raw) != nbytes:
        raise error(f"{codec}: relative frame section holds {len(raw)} bytes, {nbytes} "
                    "expected; the stream is corrupt")
    return raw


def relative_decode(data, codec=None, *, out=None):
    """Return the array in a :func:`relative_encode` stream (the codec's decoder reads it too)."""
    buf = as_bytes(data, "relative")
    name = _frame.frame_codec(buf) if codec is None else codec
    if name is None:
        raise RelativeError("relative: not a chunkpress frame")
    if name == "unknown":
        raise RelativeError("relative: a frame of a codec this version does not know")
    return _codec(name).decode(buf, out=out)


def relative_check(data) -> bool:
    """Return True where ``data`` is a frame written by :func:`relative_encode`."""
    buf = memoryview(data).cast("B")
    return _frame.is_frame(buf) and len(buf) > 6 and bool(buf[6] & _frame.FLAG_RELATIVE)
