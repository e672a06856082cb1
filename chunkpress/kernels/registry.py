"""The codec registry: one :class:`Descriptor` per codec, written in the codec's kernel module.

A kernel module registers its codec by ending with ``DESCRIPTOR = Descriptor(...)`` (a module
of several codecs, such as ``bytecodecs``, with ``DESCRIPTORS = (...)``); :func:`descriptors`
finds them in every public module of ``chunkpress.kernels``. Every layer above reads this
registry and nothing else: the graph's block planning and target validation, chains
(``chunkpress.kernels.chains``), the Zarr codec classes, codec="auto"'s candidates, the
command line's choices, ``chunkpress.CODECS``, the README's table and the conformance tests.

Three kinds of codec:

- ``"array"``: a block in, a self-describing stream out (ZFP, SZ3, PCODEC, ...);
- ``"filter"``: an array in, an array of the same shape and dtype out (the float predictor,
  bit rounding), always followed by a lossless codec in a chain (``"floatpred+zstd"``);
- ``"bytes"``: a general-purpose lossless codec of raw bytes (zstd, zlib, ...), the last
  codec of a chain, alone too (``"zstd"``).

A minimal descriptor, for a lossless filter that takes no parameter::

    DESCRIPTOR = Descriptor(
        name="shuffle", kind="filter", encode=shuffle_encode, decode=shuffle_decode,
        error=ShuffleError, dtypes=FLOAT_DTYPES, lossless=True, doc="byte shuffle")
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._common import ChunkpressError

__all__ = ["Param", "Descriptor", "KINDS", "ANY_NDIM", "descriptors", "get", "names",
           "check_params", "markdown_table"]

KINDS = ("array", "filter", "bytes")
#: every dimensionality a chunkpress block may have (zarr's limit)
ANY_NDIM = tuple(range(1, 33))
#: modules of chunkpress.kernels that hold no codec
_NOT_CODECS = {"registry", "chains", "formats"}


@dataclass(frozen=True)
class Param:
    """One parameter a codec takes from ``chunkpress.compress`` (and its Zarr configuration).

    ``check(value, dtype)`` is the kernel's own check, the one every layer calls: it returns
    the value as the kernel takes it, or raises TypeError (wrong type) or ValueError (bad
    value) naming the codec, the parameter and what is allowed. ``dtype`` is the array's
    (native) dtype where known, None where not (a Zarr codec's configuration, read before its
    array): a check that needs it accepts what some dtype allows when it is None.
    """

    name: str
    check: Callable
    doc: str = ""  # one line: what the value means and what is allowed ("max absolute error, > 0")
    required: bool = False  # the codec cannot run without it (SZ3's tolerance)


@dataclass(frozen=True, eq=False)
class Descriptor:
    """Everything chunkpress knows of one codec. Only ``name`` to ``dtypes`` are required."""

    #: lowercase, no "+": the name ``compress`` takes; an array codec's Zarr codec is
    #: ``chunkpress.<name>`` (one entry-point line in pyproject.toml)
    name: str
    #: "array", "filter" or "bytes" (see the module's docstring)
    kind: str
    #: array: (ndarray, **params) -> a bytes-like stream that holds the block's shape and dtype;
    #: filter: (ndarray, **params) -> ndarray of the same shape and dtype;
    #: bytes: (C-contiguous ndarray, **params) -> bytes-like
    encode: Callable
    #: array: (stream) -> ndarray; filter: (ndarray) -> ndarray (the identity for a lossy
    #: filter); bytes: (stream, nbytes) -> a bytes-like of ``nbytes`` bytes
    decode: Callable
    #: the codec's ChunkpressError subclass: what its failures and damaged streams raise
    error: type
    #: the numpy dtypes (native byte order) the kernel takes
    dtypes: tuple
    #: the dimensionalities the kernel takes; an array with more is a batch over its leading
    #: axes (array codecs), each leading index one stream
    ndims: tuple = ANY_NDIM
    #: the parameters, in the order a Zarr configuration lists them
    params: tuple = ()
    #: (stream) -> True where the codec wrote it; False or None where it did not or cannot tell
    check: Callable | None = None
    #: whether every value decodes bit for bit, whatever the parameters
    lossless: bool = False
    #: whether this build can run the codec; if not, ``unavailable`` says why, to the user
    available: bool = True
    unavailable: str = ""
    #: the codec's id in chunkpress frames (see kernels/formats.py): array codecs that frame
    frame_id: int | None = None
    #: every block extent on the codec's axes is a multiple of ``align``; chunks="auto" aligns
    #: to ``prefer`` (0: ``align``), on blocks of the dimensionalities ``prefer_ndims`` only
    #: (None: all): SPERR compresses 3-D volumes in chunks of 256^3, 2-D slabs whole
    align: int = 1
    prefer: int = 0
    prefer_ndims: tuple | None = None
    #: (given, dtype) -> the global target: the parameters given (None left out, names
    #: checked) after the rules between them, e.g. ZFP's "exactly one of". Default: each
    #: Param's check, the required ones present; the values are kept as given
    target: Callable | None = None
    #: (target) -> the max absolute error every value keeps (0.0: exact) or None (no
    #: point-wise bound). Default: 0.0 where lossless, else the target's tolerance, if any
    bound: Callable | None = None
    #: (target) -> r, the max relative error: |x - y| <= r * max(|x|, tiny) for every finite
    #: x (tiny: the dtype's smallest normal number, so subnormals keep r * tiny), or None
    #: (no such bound; the default). Bit rounding's is 2**-(keepbits+1)
    relative: Callable | None = None
    #: a filter: the lossless codec after it when it is named alone ("bitround" is
    #: "bitround+zstd"); empty: the filter is named in a chain only ("floatpred+zstd")
    terminal: str = ""
    #: whether the target {"mode": "psnr", "quality": dB} is the PSNR of the whole array: the
    #: graph computes the value range first and gives each block ``mode="psnr", quality=``
    #: of its own, or ``tolerance=`` (see graph/plan.block_psnr)
    psnr: bool = False
    #: what a lossy codec sees in place of a block's NaN/Inf cells (its mask keeps them):
    #: "smooth" (a continuation of the finite cells around) or "mean" (the block's finite
    #: mean); None: the codec keeps them itself. codec="auto"'s samples fill theirs alike
    fill: str | None = None
    #: roles in codec="auto": "lossy" (a candidate for floats with a tolerance), "lossless"
    #: (for the rest). A filter or bytes codec with "lossless" is part of auto's one chain
    auto: tuple = ()
    #: how ``check`` knows the codec's streams: "magic" (a magic number or a frame: certain),
    #: "layout" (a layout that adds up: tried after the others), "none"
    recognised: str = "magic"
    #: the order in listings and among auto's candidates (smaller first)
    rank: int = 100
    #: one core's encode MB/s, roughly: a smooth float32 field at a tolerance of 1e-3 of its
    #: range (benchmarks/zarr_write.py's), measured on the 2-core machine; 0: not known.
    #: codec="auto" plans by these figures (which codec is the slow one), never by a timing
    speed: float = 0.0
    #: parameters that make a typical stream: the conformance tests' and the README's
    example: dict = field(default_factory=dict)
    #: one line for the README's table and the command line's help
    doc: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"codec names are lowercase identifiers, got {self.name!r}")
        object.__setattr__(self, "dtypes", tuple(np.dtype(d) for d in self.dtypes))
        if not issubclass(self.error, ChunkpressError):
            raise TypeError(f"{self.name}: error must subclass ChunkpressError")

    def __repr__(self) -> str:
        return f"<Descriptor {self.name} ({self.kind})>"

    @property
    def param_names(self) -> tuple:
        return tuple(p.name for p in self.params)

    def check_target(self, given: dict, dtype=None) -> dict:
        """Return the global target of the parameters ``given`` (None values left out)."""
        given = {k: v for k, v in given.items() if v is not None}
        extra = sorted(set(given) - set(self.param_names))
        if extra:
            takes = ", ".join(self.param_names) or "no parameters"
            raise ValueError(f"{self.name}: takes {takes}; {', '.join(extra)} "
                             f"{'is' if len(extra) == 1 else 'are'} not for this codec")
        if self.target is None:
            return check_params(self, given, dtype)
        for param in self.params:  # each value by its own check, before the rules between them
            if param.name in given:
                param.check(given[param.name], dtype)
        return self.target(given, dtype)

    def max_error(self, target: dict):
        """Return the max absolute error every value keeps under ``target`` (or None)."""
        if self.bound is not None:
            return self.bound(target)
        if self.lossless:
            return 0.0
        return None if target.get("tolerance") is None else float(target["tolerance"])

    def max_relative_error(self, target: dict):
        """Return the max relative error under ``target`` (see ``relative``; 0.0 lossless),
        or None."""
        if self.lossless:
            return 0.0
        bound = None if self.relative is None else self.relative(target)
        return None if bound is None else float(bound)


def check_params(descriptor: Descriptor, given: dict, dtype=None) -> dict:
    """Check each value given with its Param's check and the required ones are there; return
    ``given`` unchanged (the default target of a descriptor)."""
    for param in descriptor.params:
        if param.name in given:
            param.check(given[param.name], dtype)
        elif param.required:
            raise ValueError(f"{descriptor.name}: {param.name} ({param.doc}) is required")
    return dict(given)


@functools.cache
def descriptors() -> tuple:
    """Return every registered codec: array codecs, filters, bytes codecs, each by rank."""
    from . import __path__ as path, _frame

    found = {}
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_") or info.name in _NOT_CODECS:
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        own = getattr(module, "DESCRIPTORS", ()) + (
            (module.DESCRIPTOR,) if hasattr(module, "DESCRIPTOR") else ())
        for d in own:
            if d.name in found:
                raise RuntimeError(f"two codecs are called {d.name!r}")
            if d.frame_id is not None:
                _frame.register_codec(d.name, d.frame_id)
            found[d.name] = d
    return tuple(sorted(found.values(), key=lambda d: (KINDS.index(d.kind), d.rank, d.name)))


def get(name: str) -> Descriptor:
    """Return the descriptor of the codec ``name``; KeyError if there is none."""
    for d in descriptors():
        if d.name == name:
            return d
    raise KeyError(name)


def names(kind: str | None = None, *, available: bool | None = None) -> tuple:
    """Return the registered codec names, of one ``kind`` and availability if given."""
    return tuple(d.name for d in descriptors()
                 if (kind is None or d.kind == kind)
                 and (available is None or d.available == available))


def markdown_table() -> str:
    """Return the README's table of the codecs: name, kind, dtypes, ndims, parameters, lossless."""
    rows = ["| codec | kind | dtypes | ndim | parameters | lossless |",
            "|---|---|---|---|---|---|"]
    for d in descriptors():  # every registered codec, available in this build or not
        name = d.name
        params = ", ".join(f"`{p.name}`" for p in d.params) or "none"
        lossless = "yes" if d.lossless else (
            "with tolerance 0" if d.max_error({}) == 0 else "no")
        rows.append(f"| {name} | {d.kind} | {_dtypes_text(d.dtypes)} | {_ndims_text(d.ndims)} "
                    f"| {params} | {lossless} |")
    return "\n".join(rows) + "\n"


def _dtypes_text(dtypes) -> str:
    """float32/64, (u)int8/16, bool: a compact name of a set of dtypes."""
    bits = {kind: sorted(8 * d.itemsize for d in dtypes if d.kind == kind) for kind in "fiub"}
    parts = []
    if bits["f"]:
        parts.append("float" + "/".join(map(str, bits["f"])))
    if bits["i"] and bits["i"] == bits["u"]:
        parts.append("(u)int" + "/".join(map(str, bits["i"])))
    else:
        parts += [f"{name}" + "/".join(map(str, bits[k]))
                  for k, name in (("i", "int"), ("u", "uint")) if bits[k]]
    return ", ".join(parts + ["bool"] * bool(bits["b"]))


def _ndims_text(ndims) -> str:
    if tuple(ndims) == ANY_NDIM:
        return "any"
    return f"{min(ndims)}-{max(ndims)}" if len(ndims) > 1 else str(ndims[0])
