"""Zarr v3 codecs: each chunk's bytes are one chunkpress kernel stream.

The codecs are registered through the ``zarr.codecs`` entry-point group under namespaced names
(``chunkpress.zfp``, ``chunkpress.sperr``, ...), so a store written by chunkpress opens with
plain ``zarr.open_array`` wherever chunkpress is installed, without importing it. Their
parameters (the global target: ``tolerance``, ``rate``, ...) are the codec's configuration in
the array's ``zarr.json``. A checksum is zarr's ``crc32c`` codec, after this one.

Edge chunks: zarr hands a codec full-size edge chunks, while chunkpress.to_zarr stores each
edge block's real extent only (ZFP then gives, at the array's end too, the values whole-array
compression gives, and no bytes go on padding). Decoding pads such a block with the fill value;
zarr discards what lies outside the array.

Two fields every chunkpress codec takes besides its target:

- ``write``: the array's write identifier. Each chunk then ends with a place record (see
  ``chunkpress.storage.integrity``): decoding refuses a chunk of another write, and chunkpress's
  own readers also check the chunk's grid index, which zarr does not give to codecs.
- ``missing``: the CF ``_FillValue`` of a float variable. A value zarr hands the codec that is
  equal to it (xarray's own writes put ``_FillValue`` where data is missing) is stored as NaN,
  kept exactly by the codec's mask, and not pushed into a lossy codec; readers decoding the CF
  conventions see it missing either way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration
from zarr.registry import register_codec

from ..graph import blocks, codecs, dispatch, measure
from ..kernels import chains, registry, relative
from . import integrity

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer


@dataclass(frozen=True)
class ChunkpressCodec(ArrayBytesCodec):
    """Base of the chunkpress Zarr codecs: the fields are the codec's global target."""

    codec: ClassVar[str]  # the chunkpress codec, e.g. "zfp"
    is_fixed_size = False
    #: fields that are not part of the codec's target (see the module's docstring)
    bookkeeping: ClassVar[tuple] = ("write", "missing")
    write: str | None = None
    missing: float | None = None

    def __post_init__(self):
        # validated here, so that a bad zarr.json or argument fails on open, not on a chunk
        if self.write is not None and (not isinstance(self.write, str) or len(self.write) != 16
                                       or any(c not in "0123456789abcdef" for c in self.write)):
            raise ValueError(f"{self.name}: write must be 16 lowercase hex digits, "
                             f"got {self.write!r}")
        if self.missing is not None:
            if isinstance(self.missing, bool) or not isinstance(self.missing, (int, float)):
                raise TypeError(f"{self.name}: missing must be a number, got {self.missing!r}")
            object.__setattr__(self, "missing", float(self.missing))
        codecs.normalize_targets(self.spec, self.target)  # the kernels' own checks

    @property
    def name(self) -> str:
        return f"chunkpress.{self.codec}"

    @property
    def spec(self) -> codecs.Codec:
        return codecs.get_codec(self.codec)

    @property
    def target(self) -> dict:
        """The parameters given, as ``chunkpress.compress`` takes them."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None and f.name not in self.bookkeeping}

    @property
    def extra(self) -> dict:
        """The bookkeeping fields set (``write``, ``missing``), as stored in the configuration."""
        return {k: getattr(self, k) for k in self.bookkeeping if getattr(self, k) is not None}

    def with_extra(self, **extra) -> ChunkpressCodec:
        """Return this codec with bookkeeping fields set (e.g. a write identifier)."""
        return replace(self, **extra)

    @property
    def error(self) -> type:
        return self.spec.error

    @classmethod
    def from_dict(cls, data) -> Self:
        _, configuration = parse_named_configuration(data, f"chunkpress.{cls.codec}",
                                                     require_configuration=False)
        return cls(**(configuration or {}))

    def to_dict(self) -> dict:
        return {"name": self.name, "configuration": {**self.target, **self.extra}}

    def validate(self, *, shape, dtype, chunk_grid) -> None:
        codecs.check_input(self.spec, dtype.to_native_dtype(), len(shape))

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer:
        block = self._block(chunk_array)
        spec = self.spec
        target = codecs.normalize_targets(spec, self.target, block.dtype)
        if codecs.needs_range(spec, target):
            # a chunk written by zarr on its own: its PSNR is over its own value range
            lo, hi = measure.block_range(block)
            span = hi - lo if hi >= lo else 0.0
            kwargs = codecs.block_kwargs(spec, target, span, span)
        else:
            kwargs = codecs.block_kwargs(spec, target)
        data = dispatch.encode(block, spec, kwargs).data
        return self._sealed(data, chunk_spec)

    def _block(self, chunk_array) -> np.ndarray:
        """The chunk zarr hands over, with values equal to ``missing`` as NaN."""
        block = np.ascontiguousarray(chunk_array.as_numpy_array())
        if self.missing is not None and block.dtype.kind == "f":
            missing = block == np.asarray(self.missing, block.dtype)
            if missing.any():
                block = np.where(missing, np.asarray(np.nan, block.dtype), block)
        return block

    def _sealed(self, data, chunk_spec) -> Buffer:
        """The stream, then (for a write) the place record of a chunk zarr wrote: unplaced."""
        if self.write is not None:
            data = b"".join((data, integrity.record(
                (integrity.UNPLACED,) * len(chunk_spec.shape), self.write)))
        return chunk_spec.prototype.buffer.from_array_like(np.frombuffer(data, np.uint8))

    async def _encode_single(self, chunk_array, chunk_spec):
        return self._encode_sync(chunk_array, chunk_spec)

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        data = chunk_bytes.as_numpy_array()
        if self.write is not None:
            try:
                data, _ = integrity.split(data, self.write, len(chunk_spec.shape))
            except integrity.PlaceError as exc:
                raise self.error(f"{self.name}: a chunk of this array cannot be used: {exc}; "
                                 "`chunkpress verify` names it") from None
        block = decode_chunk(data, self.spec, chunk_spec.shape,
                             chunk_spec.dtype.to_native_dtype(), chunk_spec.fill_value)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(block)

    async def _decode_single(self, chunk_bytes, chunk_spec):
        return self._decode_sync(chunk_bytes, chunk_spec)


def _generated(class_name: str, codec: str, params: tuple, doc: str, base=ChunkpressCodec):
    """Return a frozen dataclass of ``base`` with one field (default None) per parameter."""
    cls = dataclasses.make_dataclass(
        class_name, [(p, object, dataclasses.field(default=None)) for p in params],
        bases=(base,), frozen=True, namespace={"codec": codec, "__doc__": doc})
    cls.__module__ = __name__  # found by pickle and the entry points, as the module's own
    globals()[class_name] = cls
    return cls


def _class_name(codec: str) -> str:
    return f"{codec.capitalize()}Codec"


def _params(d) -> tuple:
    """A codec's target fields: its parameters, and ``rel_tolerance`` where it takes one."""
    return d.param_names + ((relative.PARAM.name,) if relative.takes(d) else ())


#: one class per array codec of the registry: ZfpCodec, SperrCodec, ... (chunkpress.zfp, ...)
_BY_CODEC = {d.name: _generated(_class_name(d.name), d.name, _params(d),
                                f"chunkpress.{d.name}: {d.doc}. Fields: the codec's target "
                                f"({', '.join(_params(d)) or 'none'}), write, missing.")
             for d in registry.descriptors() if d.kind == "array"}


@dataclass(frozen=True)
class _ChainBase(ChunkpressCodec):
    codec: ClassVar[str] = "chain"
    chain: str = "floatpred+zstd"

    def __post_init__(self):
        try:
            chain = codecs.get_codec(self.chain) if isinstance(self.chain, str) else None
        except ValueError:
            chain = None
        if chain is None or chain.is_auto or not chain.chain.is_chain:
            raise ValueError(f"chunkpress.chain: chain must name a chain such as "
                             f"'floatpred+zstd' or 'bitround+zstd', got {self.chain!r}")
        super().__post_init__()

    @property
    def spec(self) -> codecs.Codec:
        return codecs.get_codec(self.chain)

    @property
    def target(self) -> dict:
        return {k: v for k, v in super().target.items() if k != "chain"}

    def to_dict(self) -> dict:
        return {"name": self.name,
                "configuration": {"chain": self.chain, **self.target, **self.extra}}


def _chain_params() -> tuple:
    """Every parameter a part of a chain takes (filters, bytes codecs, lossless array codecs)."""
    parts = [d for d in registry.descriptors() if d.kind != "array" or d.lossless]
    # a chain that takes rel_tolerance (bitround's) takes a tolerance with it
    relatives = ("rel_tolerance", "tolerance") if any(
        relative.takes_chain(chains.resolve(d.name)) for d in parts
        if d.kind == "filter" and d.terminal and d.available) else ()
    return tuple(dict.fromkeys([*(p for d in parts for p in d.param_names), *relatives]))


#: a chain such as ``floatpred+zstd``: ``chain`` names it, the other fields its parts' targets
ChainCodec = _generated("ChainCodec", "chain", _chain_params(),
                        "A chain such as ``floatpred+zstd`` or ``bitround+zstd``: ``chain`` "
                        "names it, the other fields its parts' parameters (``keepbits`` of "
                        "bit rounding, ``level`` of its last codec).",
                        base=_ChainBase)
@dataclass(frozen=True)
class AutoCodec(ChunkpressCodec):
    """codec="auto": each chunk is the stream of the codec chosen for it, which says which.

    Reading needs nothing more than the stream (see ``chunkpress.graph.dispatch.identify``).
    A chunk that zarr writes on its own is encoded with the candidate that encodes windows of
    it to the fewest bytes. ``candidates`` (default: auto's for the dtype) are the codecs
    chosen from, ``tolerance`` their bound (none: lossless).
    """

    codec: ClassVar[str] = "auto"
    tolerance: float | None = None
    candidates: tuple | None = None

    def __post_init__(self):
        if self.candidates is not None:
            names = self.candidates
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise TypeError(f"chunkpress.auto: candidates must be a list of codec names, "
                                f"got {names!r}")
            object.__setattr__(self, "candidates", tuple(n.strip().lower() for n in names))
            for name in self.candidates:
                codecs.get_codec(name)  # an unknown name fails here, naming the choices
        super().__post_init__()

    @property
    def target(self) -> dict:
        return {} if self.tolerance is None else {"tolerance": self.tolerance}

    def to_dict(self) -> dict:
        configuration = dict(self.target)
        if self.candidates is not None:
            configuration["candidates"] = list(self.candidates)
        return {"name": self.name, "configuration": {**configuration, **self.extra}}

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer:
        block = self._block(chunk_array)
        kwargs = {**self.target, "candidates": self.candidates}
        data = dispatch.encode(block, self.spec, kwargs).data
        return self._sealed(data, chunk_spec)


_BY_CODEC["auto"] = AutoCodec


def zarr_codec(codec: str, target: dict | None = None, **extra) -> ChunkpressCodec:
    """Return the Zarr codec of a chunkpress codec name and its global target.

    ``extra``: the bookkeeping fields, ``write`` and ``missing`` (see the module's docstring).
    """
    spec = codecs.get_codec(codec)
    target = {**(target or {}), **{k: v for k, v in extra.items() if v is not None}}
    if spec.name in _BY_CODEC:
        return _BY_CODEC[spec.name](**target)
    return ChainCodec(chain=spec.name, **target)


def decode_chunk(data, spec: codecs.Codec, chunk_shape, dtype, fill_value=0) -> np.ndarray:
    """Return the ``chunk_shape`` block in a stored stream, padding an edge block's stream."""
    chunk_shape = tuple(chunk_shape)
    block = decode_block(data, spec, chunk_shape, dtype)
    if block.shape == chunk_shape:
        return block
    padded = np.full(chunk_shape, fill_value, block.dtype)
    padded[tuple(slice(0, n) for n in block.shape)] = block
    return padded


def decode_block(data, spec: codecs.Codec, chunk_shape, dtype) -> np.ndarray:
    """Return the block in a stored stream as it was stored: an edge block is not padded."""
    chunk_shape = tuple(chunk_shape)
    dtype = np.dtype(dtype)
    if spec.is_auto:  # the stream says its codec
        spec = codecs.get_codec(dispatch.identify(data, dtype))
    if not spec.holds_shape:  # a chain's stream: its block is the chunk, whole
        return blocks.decode(data, spec, chunk_shape, dtype)
    block = blocks.decode_any(memoryview(data).cast("B"), spec)
    shape = block.shape
    if len(shape) != len(chunk_shape) or any(s > c for s, c in zip(shape, chunk_shape)):
        raise spec.error(f"{spec.name}: the stored stream holds a block of shape {shape}, which "
                         f"does not fit the chunk shape {chunk_shape}; the bytes belong to "
                         "another array")
    if block.dtype != dtype:
        raise spec.error(f"{spec.name}: the stored stream holds {block.dtype} values, the array "
                         f"is {dtype}; the stored bytes belong to another array")
    return block


for _cls in (*_BY_CODEC.values(), ChainCodec):
    # for a process that has imported chunkpress without it being installed (a source tree)
    register_codec(f"chunkpress.{_cls.codec}", _cls)

__all__ = ["ChunkpressCodec", *(c.__name__ for c in _BY_CODEC.values()), "ChainCodec",
           "zarr_codec", "decode_chunk", "decode_block"]
