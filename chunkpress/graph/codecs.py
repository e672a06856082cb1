"""What the graph layer knows of each codec: all of it read from the kernels' registry.

:func:`get_codec` turns a name into a :class:`Codec`: a chain of the registry (``"zfp"``,
``"floatpred+zstd"``, ``"zstd"``, ...) or codec="auto". Then the plans of this layer: which
arrays a codec takes, its global target (checked by the kernels' own validators), how blocks
are aligned for it, each block's kernel arguments for the target (a PSNR over the global value
range), the bound every value keeps. The bytes are made and read in ``blocks`` and
``dispatch``; nothing here touches them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..kernels import ChunkpressError, chains, registry, relative
from . import plan

__all__ = ["Codec", "AutoError", "AUTO", "AUTO_NAMES", "get_codec", "accepted", "auto_chain",
           "check_input", "normalize_targets", "needs_range", "block_kwargs", "max_mse",
           "bound", "relative_bound", "error", "probe", "parameter_names", "codec_params"]

FLOATS = tuple(np.dtype(t) for t in ("float32", "float64"))
INTEGERS = tuple(np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32",
                                       "int64", "uint64"))
#: codec="auto" chooses per block where that wins, "auto-array" one codec for the whole array
AUTO_NAMES = ("auto", "auto-array")


class AutoError(ChunkpressError):
    """A block of codec="auto" is none of the streams auto writes, or its bytes are damaged."""


@dataclass(frozen=True, eq=False)
class Codec:
    """One codec as the graph layer sees it; ``chain`` is None for codec="auto".

    A Codec pickles and tokenizes as its name: a worker looks it up in its own registry.
    """

    name: str
    dtypes: tuple
    ndims: tuple  # the dimensionalities the kernel takes; more are a batch
    targets: tuple  # the compress() arguments it takes
    align: int = 1  # every block extent on the codec's axes a multiple of this
    prefer: int = 1  # what chunks="auto" aligns to (at least ``align``) ...
    prefer_ndims: tuple | None = None  # ... on blocks of these dimensionalities (None: all)
    lossless: bool = False
    psnr: bool = False  # a PSNR target holds for the whole array (see the registry)
    holds_shape: bool = True  # a block's stream says its shape (a chain's of bytes does not)
    chain: chains.Chain | None = None

    def block_align(self, ndim: int, *, preferred: bool = False) -> tuple:
        """Return the alignment of each axis of an ``ndim`` array (1 on batch axes)."""
        batch, codec_ndim = plan.codec_axes(ndim, self.ndims)
        step = self.align
        if preferred and (self.prefer_ndims is None or codec_ndim in self.prefer_ndims):
            step = self.prefer
        return (1,) * batch + (step,) * codec_ndim

    @property
    def is_auto(self) -> bool:
        return self.chain is None

    @property
    def error(self) -> type:
        """The codec's error class (ZfpError, ...; ChainError for chains; AutoError)."""
        return AutoError if self.chain is None else self.chain.error

    def __eq__(self, other):
        return isinstance(other, Codec) and other.name == self.name

    def __hash__(self):
        return hash(("chunkpress-codec", self.name))

    def __reduce__(self):
        return get_codec, (self.name,)

    def __dask_tokenize__(self):
        return "chunkpress-codec", self.name


def _of_chain(chain: chains.Chain) -> Codec:
    align = math.lcm(*(p.align for p in chain.parts))
    prefer = chain.terminal.prefer or chain.terminal.align
    return Codec(chain.name, chain.dtypes, chain.ndims, tuple(p.name for p in chain.params),
                 align, math.lcm(align, prefer), chain.terminal.prefer_ndims, chain.lossless,
                 chain.terminal.psnr and not chain.is_chain, chain.holds_shape, chain)


def _auto() -> Codec:
    """codec="auto": aligned for every candidate (ZFP's 4^d blocks), chosen per block."""
    align = math.lcm(*(d.align for d in registry.descriptors() if d.auto and d.available))
    return Codec("auto", FLOATS + INTEGERS, registry.ANY_NDIM, ("tolerance",), align, align)


AUTO = _auto()


@functools.cache
def _codec(key: str) -> Codec:
    chain = chains.resolve(key, AUTO_NAMES)
    if not chain.available:
        raise ValueError(chain.unavailable or f"{key}: not available in this build")
    return _of_chain(chain)


def get_codec(name) -> Codec:
    """Return the Codec called ``name``: a codec of the registry, a chain, or auto."""
    if not isinstance(name, str):
        raise TypeError(f"codec must be a string such as 'zfp', got {type(name).__name__}")
    key = name.strip().lower()
    return AUTO if key in AUTO_NAMES else _codec(key)


def accepted() -> tuple:
    """Return the codec names ``compress`` takes: the registry's array codecs, auto, the bytes
    codecs alone and the chains of one filter (chains of several filters are taken too)."""
    names = chains.accepted()
    arrays = registry.names("array", available=True)
    return (*[n for n in names if n in arrays], *AUTO_NAMES,
            *[n for n in names if n not in arrays])


def auto_chain(dtype) -> str | None:
    """Return the one lossless chain codec="auto" may choose for ``dtype`` (its streams do not
    say which chain wrote them): the filters and the bytes codec registered for auto."""
    dtype = np.dtype(dtype).newbyteorder("=")
    ends = [d for d in registry.descriptors()
            if d.kind == "bytes" and "lossless" in d.auto and d.available]
    if not ends or dtype.kind not in "fiu":
        return None
    filters = [d.name for d in registry.descriptors()
               if d.kind == "filter" and "lossless" in d.auto and dtype in d.dtypes]
    return "+".join([*filters, ends[0].name])


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


def normalize_targets(codec: Codec, given: dict, dtype=None) -> dict:
    """Return the codec's global target from the ``compress()`` arguments ``given``.

    Each value is checked by its kernel's validator (the registry's); None values are left
    out. A bad one is a ValueError or TypeError naming the argument and what is allowed.
    """
    # numpy scalars as Python numbers (np.int64 keepbits from xbitinfo, say): a target goes
    # into a store's zarr.json, which JSON cannot write them into
    given = {k: v.item() if isinstance(v, np.generic) else v for k, v in given.items()
             if v is not None}
    if codec.chain is not None:
        return codec.chain.check_target(given, dtype)
    extra = sorted(set(given) - {"tolerance"})
    if extra:
        raise ValueError(f"auto: takes tolerance; {', '.join(extra)} "
                         f"{'is' if len(extra) == 1 else 'are'} not for this codec")
    if "tolerance" in given:  # none or 0: lossless
        kernels.check_tolerance("auto", given["tolerance"], allow_zero=True)
    return given


def parameter_names() -> tuple:
    """Return every parameter name a registered codec takes, ``rel_tolerance`` included."""
    return tuple(dict.fromkeys([*(p for d in registry.descriptors() for p in d.param_names),
                                relative.PARAM.name]))


def codec_params(where: str, params: dict) -> dict:
    """Return ``params``, the keyword arguments ``where`` (e.g. "compress") took beyond those
    it names, after checking that some registered codec takes each: a codec added by its
    kernel module brings its own parameters. A name no codec takes is a TypeError."""
    unknown = sorted(set(params) - set(parameter_names()))
    if unknown:
        raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}; the "
                        f"codecs' parameters are {', '.join(parameter_names())}")
    return params


def needs_range(codec: Codec, target: dict) -> bool:
    """Return whether the global value range must be known before blocks are encoded."""
    return codec.psnr and target.get("mode") == "psnr"


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
    if codec.chain is None:
        return float(target.get("tolerance") or 0.0)
    return codec.chain.max_error(target)


def relative_bound(codec: Codec, target: dict):
    """Return r, the max error relative to each value, |x - y| <= r * max(|x|, tiny) (tiny: the
    dtype's smallest normal number; 0 for lossless), or None (see the registry's
    ``Descriptor.relative``)."""
    if codec.chain is None:
        return 0.0 if not target.get("tolerance") else None
    return codec.chain.max_relative_error(target)


def certified_relative(codec: Codec, target: dict) -> tuple:
    """Return (r, floored): the relative bound a block is certified to, as compress and
    verify hold it: ``rel_tolerance`` as given (|x - y| <= r |x|, floored False), else the
    bound the codec claims by its parameters (bit rounding's keepbits: |x - y| <= r max(|x|,
    tiny), floored True), or (None, False)."""
    if target.get("rel_tolerance") is not None:
        return target["rel_tolerance"], False
    claimed = relative_bound(codec, target) if not target.get("tolerance") else None
    return (claimed, True) if claimed else (None, False)


def error(codec: Codec) -> type:
    """Return the error class of the codec's failures and damaged streams."""
    return codec.error


def probe(codec: Codec, dtype, ndim: int, kwargs: dict) -> None:
    """Encode a tiny block with ``kwargs``, so that what the validators cannot tell (the codec
    itself turning the block down) fails now, not on a worker."""
    _, codec_ndim = plan.codec_axes(ndim, codec.ndims)
    tiny = np.zeros((4,) * codec_ndim, dtype)
    try:
        codec.chain.encode(tiny, **kwargs)
    except ChunkpressError as exc:
        raise ValueError(str(exc)) from exc
