"""Codec names as ``compress`` takes them: zero or more filters, then one terminal codec.

``"zfp"`` is the array codec alone; ``"floatpred+zstd"`` the float predictor, then zstd;
``"zstd"`` zstd alone; ``"bitround+pcodec"`` bit rounding, then PCODEC. Every name is parsed
here, once, from the registry: a new filter or codec composes with the others by being
registered. The terminal of a chain with filters is lossless (a filter's output is coded
exactly); a chain ending in a bytes codec writes the chain layout (kernels/formats.py). A
filter whose descriptor names a ``terminal`` may be named alone: ``"bitround"`` is the chain
``"bitround+zstd"`` (and is called so).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import formats, registry, relative
from ._common import ChunkpressError

__all__ = ["Chain", "resolve", "accepted", "choices"]


@dataclass(frozen=True, eq=False)
class Chain:
    """A codec as ``compress`` names it: ``filters`` (descriptors), then ``terminal``."""

    name: str
    filters: tuple
    terminal: registry.Descriptor

    @property
    def parts(self) -> tuple:
        return (*self.filters, self.terminal)

    @property
    def is_chain(self) -> bool:
        """Whether this is more than one array codec alone (its Zarr codec is chunkpress.chain)."""
        return bool(self.filters) or self.terminal.kind != "array"

    @property
    def holds_shape(self) -> bool:
        """Whether a stream says the shape of its block (else its reader must know it)."""
        return self.terminal.kind == "array"

    @functools.cached_property
    def dtypes(self) -> tuple:
        first = self.filters[0].dtypes if self.filters else self.terminal.dtypes
        return tuple(d for d in first if all(d in p.dtypes for p in self.parts))

    @functools.cached_property
    def ndims(self) -> tuple:
        return tuple(n for n in self.parts[-1].ndims if all(n in p.ndims for p in self.parts))

    @property
    def params(self) -> tuple:
        own = tuple(p for part in self.parts for p in part.params)
        return own + (relative.PARAM,) if relative.takes_chain(self) else own

    @property
    def lossless(self) -> bool:
        return all(p.lossless for p in self.parts)

    @property
    def available(self) -> bool:
        return all(p.available for p in self.parts)

    @property
    def unavailable(self) -> str:
        return next((p.unavailable for p in self.parts if not p.available), "")

    @property
    def error(self) -> type:
        return formats.ChainError if self.is_chain else self.terminal.error

    def check_target(self, given: dict, dtype=None) -> dict:
        """Return the global target of the parameters ``given``, each checked by its codec."""
        if given.get("rel_tolerance") is not None:  # through the relative transform
            return relative.check_target(self, given, dtype)
        if not self.is_chain:
            return self.terminal.check_target(given, dtype)
        given = {k: v for k, v in given.items() if v is not None}
        takes = [p.name for p in self.params]
        extra = sorted(set(given) - set(takes))
        if extra:
            raise ValueError(f"{self.name}: takes {', '.join(takes) or 'no parameters'}; "
                             f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not "
                             "for this codec")
        own = self._split(given)
        for part, values in zip(self.parts, own):  # each value by its own check, first
            for param in part.params:
                if param.name in values:
                    param.check(values[param.name], dtype)
        target = {}
        for part, values in zip(self.parts, own):  # then each part's rules (required, ...)
            target.update(part.check_target(values, dtype))
        return target

    def max_error(self, target: dict):
        """Return the max absolute error every value keeps under ``target`` (0.0 exact), or None."""
        if "rel_tolerance" in target:
            return relative.max_error(target)
        bounds = [p.max_error(own) for p, own in zip(self.parts, self._split(target))]
        # each part's error adds to those before it (its input is their output)
        return None if any(b is None for b in bounds) else float(sum(bounds))

    def max_relative_error(self, target: dict):
        """Return r with |x - y| <= r * max(|x|, tiny) for every finite value under ``target``
        (see ``Descriptor.relative``; 0.0 exact), or None."""
        if "rel_tolerance" in target:  # |x - y| <= r * |x| itself
            return float(target["rel_tolerance"])
        bounds = [p.max_relative_error(own) for p, own in zip(self.parts, self._split(target))]
        if any(b is None for b in bounds):
            return None
        # each part's error is relative to its input, the output of those before it
        total = 1.0
        for b in bounds:
            total *= 1.0 + b
        return total - 1.0 if total > 1.0 else 0.0

    def _split(self, kwargs: dict) -> list:
        """Return the arguments of each part, in the order of ``parts``."""
        return [{k: v for k, v in kwargs.items() if k in p.param_names} for p in self.parts]

    # --- one block ---

    def encode(self, block, **kwargs):
        """Return the stream of one block (an array of a dtype and ndim the chain takes)."""
        if "rel_tolerance" in kwargs:
            return relative.encode_chain(self, block, kwargs)
        if not self.is_chain:
            return self.terminal.encode(block, **kwargs)
        *own, last = self._split(kwargs)
        a = np.ascontiguousarray(block)
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        shape = a.shape
        for part, args in zip(self.filters, own):
            a = self._call(part.encode, a.reshape(shape or (1,)), **args)
        if self.terminal.kind == "array":
            return self._call(self.terminal.encode, a.reshape(shape), **last)
        return formats.chain_pack(self._call(self.terminal.encode, a, **last))

    def decode(self, data, shape=None, dtype=None) -> np.ndarray:
        """Return the block in ``data``; a chain ending in a bytes codec needs shape and dtype."""
        if not self.is_chain:
            return self.terminal.decode(data)
        if self.terminal.kind == "array":
            a = self._call(self.terminal.decode, data)
        else:
            if shape is None or dtype is None:
                raise ValueError(f"{self.name}: a chain's stream does not hold its shape and "
                                 "dtype: give them")
            shape, dtype = tuple(shape), np.dtype(dtype)
            size = math.prod(shape) * dtype.itemsize
            raw = self._call(self.terminal.decode, formats.chain_unpack(data, self.name), size)
            if len(raw) != size:
                raise formats.ChainError(f"{self.name}: the stream holds {len(raw)} bytes, "
                                         f"{size} expected")
            a = np.frombuffer(raw, dtype)
        shape = a.shape if shape is None else tuple(shape)
        for part in reversed(self.filters):
            a = self._call(part.decode, a.reshape(shape or (1,)))
        a = a.reshape(shape)
        return a if a.flags.writeable else a.copy()

    def check(self, data):
        """Return True where ``data`` is this codec's stream (a chain: its trailer holds)."""
        if self.is_chain and self.terminal.kind == "bytes":
            return formats.is_chain(data)
        check = self.terminal.check
        return None if check is None else check(data)

    def _call(self, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ChunkpressError as exc:
            if isinstance(exc, formats.ChainError):
                raise
            raise formats.ChainError(f"{self.name}: {exc}") from exc
        except (RuntimeError, ValueError, TypeError) as exc:
            raise formats.ChainError(f"{self.name}: {type(exc).__name__}: {exc}") from exc


@functools.cache
def _resolve(key: str) -> Chain:
    by_name = {d.name: d for d in registry.descriptors()}
    alone = by_name.get(key)
    if alone is not None and alone.kind == "filter" and alone.terminal:
        key = f"{key}+{alone.terminal}"  # a filter named alone: its descriptor's chain
    parts = key.split("+")
    if not all(p in by_name for p in parts):
        raise KeyError(key)
    *filters, terminal = (by_name[p] for p in parts)
    if any(f.kind != "filter" for f in filters) or terminal.kind == "filter":
        raise KeyError(key)
    if filters and not terminal.lossless:
        raise ValueError(f"codec: a chain ends in a lossless codec (after {filters[-1].name} "
                         f"comes one of {', '.join(_lossless_terminals())}), got {key!r}")
    chain = Chain(key, tuple(filters), terminal)
    if not chain.dtypes:
        raise ValueError(f"codec: {key!r} takes no dtype: {filters[0].name} makes "
                         f"{_dtypes(filters[0])}, {terminal.name} takes {_dtypes(terminal)}")
    return chain


def resolve(name, others: tuple = ()) -> Chain:
    """Return the Chain ``name`` names ("zfp", "floatpred+zstd", ...), or raise ValueError.

    ``others`` are names a layer above takes too (codec="auto"): an unknown name's message
    lists them first.
    """
    if not isinstance(name, str):
        raise TypeError(f"codec must be a string such as 'zfp', got {type(name).__name__}")
    key = name.strip().lower()
    try:
        return _resolve(key)
    except KeyError:
        pass
    raise ValueError(f"codec must be one of {choices(*others)}; got {name!r}") from None


def choices(*first) -> str:
    """Return the codec names ``resolve`` takes, as a sentence (``first`` named first)."""
    arrays = ", ".join((*first, *registry.names("array", available=True)))
    filters = "/".join(registry.names("filter", available=True)) or "none"
    alone = [f"{d.name} ({d.name}+{d.terminal})" for d in registry.descriptors()
             if d.kind == "filter" and d.terminal and d.available]
    return (f"{arrays}, a bytes codec ({', '.join(registry.names('bytes', available=True))}), "
            + (f"a filter alone: {', '.join(alone)}, " if alone else "")
            + f"or a chain: filters ({filters}) joined by '+' before a lossless codec, such as "
            "floatpred+zstd")


def accepted() -> tuple:
    """Return the codec names ``compress`` takes: filters named alone (where their descriptor
    names a terminal) and chains of one filter included (chains of several filters are taken
    too: each filter's output goes to the next)."""
    out = list(registry.names("array", available=True))
    out += registry.names("bytes", available=True)
    out += [d.name for d in registry.descriptors()
            if d.kind == "filter" and d.terminal and d.available]
    for f in registry.names("filter", available=True):
        for t in _lossless_terminals():
            try:
                _resolve(f"{f}+{t}")
            except (KeyError, ValueError):
                continue
            out.append(f"{f}+{t}")
    return tuple(out)


def _lossless_terminals() -> tuple:
    return tuple(d.name for d in registry.descriptors()
                 if d.kind != "filter" and d.lossless and d.available)


def _dtypes(d) -> str:
    return ", ".join(str(t) for t in d.dtypes)
